"""References by business identifier: the keyed digest a held resource's identifier is stored and looked up
by, and (below) FHIR conditional references (``Practitioner?identifier=system|value``) resolved or kept as
logical identifier references. Plain Python, no Django.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from clinical_ai.fhir.resource_types import is_r4_resource_type

_IDENTIFIER_KEY_DOMAIN = b"clinical-ai/fhir/identifier/v1"


def _length_prefixed(*parts: str) -> bytes:
    """Each part as its UTF-8 byte length, a colon and the bytes: no two different tuples encode alike,
    whatever characters (``|``, ``:``, NUL) the parts hold."""
    encoded = bytearray()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        encoded += f"{len(data)}:".encode("ascii")
        encoded += data
    return bytes(encoded)


def identifier_key(*, key: bytes, organization: str, resource_type: str, system: str, value: str) -> str:
    """The keyed HMAC-SHA256 (hex) of one business identifier of one resource type within one organization.

    ``HeldIdentifier.identifier_sha256`` holds this with ``key=settings.PSEUDONYM_KEY.encode()`` and the
    organization's slug: identifiers (an NPI, a facility code) are looked up without being stored in clear,
    and a digest from one organization never matches another's. System and value are taken exactly as
    given (FHIR token matching on ``system|value`` is exact); an empty system is a distinct, legal system.
    """
    if not key:
        raise ValueError("identifier_key needs a non-empty key")
    message = _IDENTIFIER_KEY_DOMAIN + _length_prefixed(organization, resource_type, system, value)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


# --- conditional references -----------------------------------------------------------------------------

_ESCAPABLE = frozenset("|,$\\")


@dataclass(frozen=True)
class ConditionalReferences:
    """What ``conditional_references_resolve`` did to one resource: ``resolved`` became ``Type/id``,
    ``kept`` became logical references by identifier (nothing held matched, or several did), ``unreadable``
    are conditional references of another shape (other search parameters), left exactly as they were."""

    resolved: int = 0
    kept: int = 0
    unreadable: int = 0

    def __add__(self, other: ConditionalReferences) -> ConditionalReferences:
        return ConditionalReferences(
            self.resolved + other.resolved, self.kept + other.kept, self.unreadable + other.unreadable
        )


def _token_split(text: str) -> tuple[str, str] | None:
    """``system|value`` of a token search value, FHIR escapes (``\\|``, ``\\,``, ``\\$``, ``\\\\``) undone;
    None for a list of values (an unescaped comma), no or several unescaped bars, or an empty value."""
    parts: list[str] = [""]
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            if index + 1 >= len(text) or text[index + 1] not in _ESCAPABLE:
                return None
            parts[-1] += text[index + 1]
            index += 2
            continue
        if char == ",":
            return None
        if char == "|":
            parts.append("")
        else:
            parts[-1] += char
        index += 1
    if len(parts) != 2 or not parts[1]:
        return None
    return parts[0], parts[1]


def conditional_reference_parse(reference: str) -> tuple[str, str, str] | None:
    """``(type, system, value)`` of a FHIR conditional reference ``Type?identifier=system|value`` (the
    query percent-decoded, UTF-8); None for anything else: a literal reference, an absolute URL, another or
    a further search parameter, a modifier (``identifier:of-type``), a value list, no system bar, an empty
    value. ``|value`` (no system) is read as the empty system, as FHIR token search does."""
    if not isinstance(reference, str):
        return None
    resource_type, mark, query = reference.partition("?")
    if not mark or not is_r4_resource_type(resource_type) or "&" in query or ";" in query:
        return None
    name, equals, raw_value = query.partition("=")
    if not equals or name != "identifier":
        return None
    try:
        decoded = unquote(raw_value, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return None
    token = _token_split(decoded)
    if token is None:
        return None
    return resource_type, token[0], token[1]


def _references_in(node: Any) -> Iterator[dict[str, Any]]:
    """Every JSON object under ``node`` with a ``reference`` string (a Reference), depth first, without
    recursion (no document is too deep to walk)."""
    stack: list[Any] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            if isinstance(current.get("reference"), str):
                yield current
            stack.extend(reversed(list(current.values())))
        elif isinstance(current, list):
            stack.extend(reversed(current))


def conditional_references_in(resource: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    """The ``(type, system, value)`` of every readable conditional reference in ``resource``: what a caller
    looks up in one query before ``conditional_references_resolve`` asks for each."""
    return {
        parsed
        for reference in _references_in(resource)
        if (parsed := conditional_reference_parse(reference["reference"])) is not None
    }


def conditional_references_resolve(
    resource: dict[str, Any], lookup: Callable[[str, str, str], str | None]
) -> ConditionalReferences:
    """Rewrite, in place, each conditional reference ``Type?identifier=system|value`` in ``resource``.

    ``lookup(type, system, value)`` gives the id of the one resource held with that identifier, or None
    (none, or several: an ambiguous match is never guessed). A match becomes ``{"reference": "Type/id"}``;
    otherwise the Reference becomes a logical one, ``{"type": Type, "identifier": {"system", "value"}}``,
    which FHIR allows and which needs no server to be read. ``display``, ``id`` and extensions are kept
    either way. Never raises on odd content: whatever is not a readable conditional reference is left as
    it was, and counted as ``unreadable`` when it looked like one (``Type?`` and any other query)."""
    resolved = kept = unreadable = 0
    for reference in list(_references_in(resource)):
        text = reference["reference"]
        parsed = conditional_reference_parse(text)
        if parsed is None:
            if "?" in text and is_r4_resource_type(text.partition("?")[0]):
                unreadable += 1
            continue
        resource_type, system, value = parsed
        target = lookup(resource_type, system, value)
        if target:
            reference["reference"] = f"{resource_type}/{target}"
            resolved += 1
            continue
        del reference["reference"]
        reference["type"] = resource_type
        reference["identifier"] = {"system": system, "value": value} if system else {"value": value}
        kept += 1
    return ConditionalReferences(resolved, kept, unreadable)
