"""The anonymization methods (``substitute`` and ``scrub`` have modules of their own), one node at a time.

Each method gets a node, the rule and the run's :class:`MethodContext`, changes the node in place, and
returns a :class:`Outcome`: the operations done (they become ``meta.security`` labels) and whether the
node is now claimed, i.e. no later rule may process it. The reference tool claims every node a rule
reaches; ``scrub`` claims only the text it takes, so dates or codes inside an Annotation stay open to
the rules after it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from enum import StrEnum
from functools import cache
from typing import Any

from clinical_ai.deid.engine import dates, fhir_types
from clinical_ai.deid.engine.config import OtherValues, Parameters, RangeType, Rule
from clinical_ai.deid.engine.fhirpath import CompiledExpression, FhirPathEvaluationError
from clinical_ai.deid.engine.fhirpath_values import to_output_value
from clinical_ai.deid.engine.nodes import Node
from clinical_ai.deid.engine.types import PatientContext, PseudonymSink, TextItem


class ProcessingError(Exception):
    """A node could not be processed (the reference tool's AnonymizerProcessingException); what happens
    next is the configuration's ``processingErrors``."""


class Operation(StrEnum):
    REDACT = "REDACTED"
    ABSTRACT = "ABSTRED"
    CRYPTO_HASH = "CRYTOHASH"
    ENCRYPT = "ENCRYPT"
    PERTURB = "PERTURBED"
    SUBSTITUTE = "SUBSTITUTED"
    GENERALIZE = "GENERALIZED"


_V3_OBSERVATION_VALUE = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"

# The labels exactly as the reference tool writes them (some without a system), in its order.
SECURITY_LABELS: dict[Operation, dict[str, str]] = {
    Operation.REDACT: {"system": _V3_OBSERVATION_VALUE, "code": "REDACTED", "display": "redacted"},
    Operation.ABSTRACT: {"system": _V3_OBSERVATION_VALUE, "code": "ABSTRED", "display": "abstracted"},
    Operation.CRYPTO_HASH: {
        "system": _V3_OBSERVATION_VALUE,
        "code": "CRYTOHASH",
        "display": "cryptographic hash function",
    },
    Operation.ENCRYPT: {"code": "ENCRYPT", "display": "exact value is transformed into ciphertext"},
    Operation.PERTURB: {"code": "PERTURBED", "display": "exact value is replaced with another exact value"},
    Operation.SUBSTITUTE: {
        "code": "SUBSTITUTED",
        "display": "exact value is replaced with a predefined value",
    },
    Operation.GENERALIZE: {"code": "GENERALIZED", "display": "exact value is replaced with a general value"},
}


@dataclass(frozen=True, slots=True)
class Outcome:
    operations: frozenset[Operation] = frozenset()
    claimed: bool = True


NOTHING = Outcome()
NOT_CLAIMED = Outcome(claimed=False)


@dataclass(slots=True)
class ScrubTarget:
    """Free text waiting for the scrubber: where it came from and how to write the result back."""

    resource: Node  # the resource whose rule selected it (its labels get REDACTED)
    item: TextItem
    write_back: Callable[[str | None], None]  # None: no scrubber, remove the text


@dataclass(slots=True)
class MethodContext:
    parameters: Parameters
    visited: set[Node]
    resource: Node  # the resource being processed
    today: date
    patient: PatientContext | None = None
    sink: PseudonymSink | None = None
    scope_key: str | None = None  # file or folder name when dateShiftScope is file/folder
    generalize_cases: dict[int, list[tuple[CompiledExpression, CompiledExpression]]] = field(
        default_factory=dict
    )
    scrub_targets: list[ScrubTarget] = field(default_factory=list)
    # Counts the methods' changes to the tree's shape (elements added or removed), so that an index of a
    # resource's elements (compiled rules) is rebuilt after one.
    structure_changes: int = 0
    # cryptoHash results of this input by value (compiled rules; None: computed every time). One input
    # names the same patient, encounter and practitioner hundreds of times. Never kept past the input.
    hashes: dict[str, str] | None = None
    reference_hashes: dict[str, tuple[str, str]] | None = None  # reference -> (hashed reference, id part)


Processor = Callable[[Node, Rule, MethodContext], Outcome]


def _has_value(node: Node) -> bool:
    return node.value is not None and node.value != ""


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- keep, redact ---------------------------------------------------------------------------------------


def keep(node: Node, rule: Rule, context: MethodContext) -> Outcome:
    return NOTHING


def redact(node: Node, rule: Rule, context: MethodContext) -> Outcome:
    if not _has_value(node):
        return NOTHING
    parameters = context.parameters
    if node.fhir_type in ("date", "dateTime", "instant") and isinstance(node.value, str):
        outcome = dates.redact_date(
            node.value,
            partial=parameters.enable_partial_dates_for_redact,
            today=context.today,
            date_time=node.fhir_type != "date",
        )
        node.value = outcome.value
        return Outcome(frozenset({Operation.REDACT}))
    if _is_age_value(node):
        if not parameters.enable_partial_ages_for_redact or dates.age_over_threshold(_number(node.value)):
            node.value = None
        return Outcome(frozenset({Operation.REDACT}))
    if node.name == "postalCode" and isinstance(node.value, str):
        if not parameters.enable_partial_zip_codes_for_redact:
            node.value = None
            return Outcome(frozenset({Operation.REDACT}))
        node.value = partial_zip(node.value, parameters.restricted_zip_code_tabulation_areas)
        return Outcome(frozenset({Operation.ABSTRACT}))
    node.value = None
    return Outcome(frozenset({Operation.REDACT}))


def partial_zip(postal_code: str, restricted: tuple[str, ...]) -> str:
    """HIPAA Safe Harbor: keep the first three digits, unless they are a restricted (small) ZCTA."""
    if any(postal_code.startswith(prefix) for prefix in restricted):
        return re.sub(r"\d", "0", postal_code)
    if len(postal_code) >= 3:
        return postal_code[:3] + re.sub(r"\d", "0", postal_code[3:])
    return postal_code


def _is_age_value(node: Node) -> bool:
    return node.fhir_type == "decimal" and node.parent is not None and node.parent.fhir_type == "Age"


def _number(value: Any) -> float:
    try:
        return float(Decimal(str(value)))
    except (InvalidOperation, ValueError) as error:
        raise ProcessingError(f"not a number: {type(value).__name__}") from error


# --- dateShift ------------------------------------------------------------------------------------------


def date_shift(node: Node, rule: Rule, context: MethodContext) -> Outcome:
    if not _has_value(node) or node.fhir_type not in ("date", "dateTime", "instant"):
        return NOTHING
    if not isinstance(node.value, str):
        raise ProcessingError(f"{node.fhir_type} value is not a string at {node.location()}")
    parameters = context.parameters
    offset = shift_days(node, context)
    try:
        if node.fhir_type == "date":
            outcome = dates.shift_date(
                node.value, offset, partial=parameters.enable_partial_dates_for_redact, today=context.today
            )
        else:
            outcome = dates.shift_date_time(
                node.value,
                offset,
                partial=parameters.enable_partial_dates_for_redact,
                today=context.today,
                instant=node.fhir_type == "instant",
                keep_time=parameters.date_shift_keep_time,
            )
    except ValueError as error:
        raise ProcessingError(f"invalid {node.fhir_type} at {node.location()}") from error
    node.value = outcome.value
    return Outcome(frozenset({Operation.PERTURB if outcome.shifted else Operation.REDACT}))


def shift_days(node: Node, context: MethodContext) -> int:
    """Per patient when a patient is known, else the fixed offset, else derived from key and scope."""
    if context.patient is not None:
        return context.patient.date_shift_days
    parameters = context.parameters
    if parameters.date_shift_fixed_offset_days is not None:
        return parameters.date_shift_fixed_offset_days
    prefix = context.scope_key or ""
    if not prefix:
        root_id = node.root().first_child("id")
        prefix = _text(root_id.value) if root_id is not None and root_id.value is not None else ""
    return dates.shift_offset(parameters.date_shift_key, prefix)


# --- cryptoHash, encrypt --------------------------------------------------------------------------------


@cache
def _reference_patterns() -> tuple[re.Pattern[str], ...]:
    """Literal reference forms whose id part is transformed: [base/]Type/id[/_history/v], urn:oid, urn:uuid."""
    types = "|".join(sorted(fhir_types.resource_type_names(), key=len, reverse=True))
    return (
        re.compile(
            rf"^(?P<prefix>((http|https)://([A-Za-z0-9\\/.:%$])*)?({types})/)(?P<id>[A-Za-z0-9\-.]{{1,64}})"
            r"(?P<suffix>/_history/[A-Za-z0-9\-.]{1,64})?$"
        ),
        re.compile(r"^(?P<prefix>urn:oid:)(?P<id>[0-2](\.(0|[1-9][0-9]*))+)(?P<suffix>)$"),
        re.compile(
            r"^(?P<prefix>urn:uuid:)"
            r"(?P<id>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})(?P<suffix>)$"
        ),
    )


def hmac_sha256_hex(value: str, key: str) -> str:
    """Lower-case hex HMAC-SHA256 of the UTF-8 value (an empty value stays empty, as in the reference)."""
    if not value:
        return value
    return hmac.new(key.encode("utf-8"), value.encode("utf-8"), hashlib.sha256).hexdigest()


def transform_reference(reference: str, transform: Callable[[str], str]) -> tuple[str, str]:
    """(new reference, the part transformed): only the id of ``Type/id``, ``urn:uuid:``, ``urn:oid:`` and
    ``#id`` references changes, so references still resolve after their targets' ids are hashed."""
    if reference.startswith("#"):
        return f"#{transform(reference[1:])}", reference[1:]
    for pattern in _reference_patterns():
        match = pattern.match(reference)
        if match is not None:
            original = match.group("id")
            return f"{match.group('prefix')}{transform(original)}{match.group('suffix') or ''}", original
    return transform(reference), reference


def crypto_hash(node: Node, rule: Rule, context: MethodContext) -> Outcome:
    if not _has_value(node):
        return NOTHING
    key = context.parameters.crypto_hash_key
    hashes = context.hashes

    def hash_value(text: str) -> str:
        if hashes is None:
            return hmac_sha256_hex(text, key)
        found = hashes.get(text)
        if found is None:
            found = hashes[text] = hmac_sha256_hex(text, key)
        return found

    value = _text(node.value)
    if _is_reference_like(node):
        if node.name == "url" and value in fhir_types.resource_type_names():
            return NOTHING  # a transaction's ``POST Patient``: the type alone identifies nobody
        references = context.reference_hashes
        known = references.get(value) if references is not None else None
        if known is None:
            known = transform_reference(value, hash_value)
            if references is not None:
                references[value] = known
        new_value, original = known
        pseudonym = hash_value(original)
    else:
        original = value
        new_value = pseudonym = hash_value(value)
    node.value = new_value
    if context.sink is not None:
        context.sink.record(kind=_element_kind(node), pseudonym=pseudonym, original=original)
    return Outcome(frozenset({Operation.CRYPTO_HASH}))


def _is_reference_like(node: Node) -> bool:
    """Reference.reference, as the reference tool; also a bundle entry's fullUrl and request.url (ours),
    so that ``urn:uuid:`` links between entries still resolve after hashing."""
    parent = node.parent
    if parent is None:
        return False
    if node.name == "reference":
        return parent.fhir_type == "Reference"
    if node.name == "fullUrl":
        return parent.name == "entry" and parent.parent is not None and parent.parent.fhir_type == "Bundle"
    if node.name == "url" and parent.name == "request":
        entry = parent.parent
        return (
            entry is not None
            and entry.name == "entry"
            and entry.parent is not None
            and entry.parent.fhir_type == "Bundle"
        )
    return False


def _element_kind(node: Node) -> str:
    """``Patient.identifier.value``: the element's path in its resource, without indices (no PHI)."""
    names: list[str] = []
    current: Node | None = node
    while current is not None and not current.is_resource:
        names.append(current.name)
        current = current.parent
    resource_type = current.fhir_type if current is not None else None
    return ".".join([resource_type or "Resource", *reversed(names)])


def encrypt_text(plain: str, key: str) -> str:
    """AES-CBC, PKCS#7 padding, random IV prepended, base64: the reference tool's format."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    data = padder.update(plain.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key.encode("utf-8")), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(data) + encryptor.finalize()).decode("ascii")


def decrypt_text(cipher_text: str, key: str) -> str:
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    raw = base64.b64decode(cipher_text)
    if len(raw) < 16:
        raise ValueError("cipher text shorter than the IV")
    decryptor = Cipher(algorithms.AES(key.encode("utf-8")), modes.CBC(raw[:16])).decryptor()
    padded = decryptor.update(raw[16:]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return (unpadder.update(padded) + unpadder.finalize()).decode("utf-8")


def encrypt(node: Node, rule: Rule, context: MethodContext) -> Outcome:
    if not _has_value(node):
        return NOTHING
    node.value = encrypt_text(_text(node.value), context.parameters.encrypt_key)
    return Outcome(frozenset({Operation.ENCRYPT}))


# --- perturb --------------------------------------------------------------------------------------------

_NUMBER_TYPES = frozenset({"decimal", "integer", "positiveInt", "unsignedInt", "integer64"})
_INTEGER_TYPES = frozenset({"integer", "positiveInt", "unsignedInt", "integer64"})
_QUANTITY_TYPES = frozenset(
    {"Quantity", "Age", "Count", "Distance", "Duration", "Money", "MoneyQuantity", "SimpleQuantity"}
)
_random = random.SystemRandom()


def perturb(node: Node, rule: Rule, context: MethodContext) -> Outcome:
    value_node: Node | None = None
    if node.fhir_type in _NUMBER_TYPES:
        value_node = node
    elif node.fhir_type in _QUANTITY_TYPES:
        value_node = node.first_child("value")
    if value_node is None or value_node.value is None or value_node in context.visited:
        return NOTHING
    if isinstance(value_node.value, bool):
        raise ProcessingError(f"cannot perturb a boolean at {value_node.location()}")
    try:
        original = Decimal(str(value_node.value))
    except InvalidOperation as error:
        raise ProcessingError(f"cannot perturb a non-number at {value_node.location()}") from error
    is_integer = value_node.fhir_type in _INTEGER_TYPES
    round_to = 0 if is_integer else (2 if rule.round_to is None else rule.round_to)
    span = Decimal(str(rule.span))
    if rule.range_type is RangeType.PROPORTIONAL:
        span = abs(original) * span
    noise = Decimal(str(_random.uniform(float(-span / 2), float(span / 2))))
    perturbed = (original + noise).quantize(Decimal(1).scaleb(-round_to), rounding=ROUND_HALF_EVEN)
    if value_node.fhir_type == "positiveInt" and perturbed <= 0:
        perturbed = Decimal(1)
    if value_node.fhir_type == "unsignedInt" and perturbed < 0:
        perturbed = Decimal(0)
    value_node.value = int(perturbed) if is_integer else perturbed
    for descendant in node.all_descendants():
        context.visited.add(descendant)
    return Outcome(frozenset({Operation.PERTURB}))


# --- generalize -----------------------------------------------------------------------------------------


def generalize(node: Node, rule: Rule, context: MethodContext) -> Outcome:
    if not node.primitive:
        raise ProcessingError(
            f"generalize applies to primitive values only, not to {node.fhir_type or 'a complex element'} at {node.location()}"
        )
    if node.value is None:
        return NOTHING
    for condition, replacement in context.generalize_cases[rule.index]:
        try:
            if condition.is_true(node):
                result = replacement.evaluate(node)
                node.value = to_output_value(result[0]) if result else None
                return Outcome(frozenset({Operation.GENERALIZE}))
        except FhirPathEvaluationError as error:
            raise ProcessingError(
                f"generalize case {condition.text!r} failed at {node.location()}: {error}"
            ) from error
    if rule.other_values is OtherValues.REDACT:
        node.value = None
    return Outcome(frozenset({Operation.GENERALIZE}))
