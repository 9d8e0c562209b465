"""The search parameters of the outputs the gateway serves, parsed and checked. Plain Python.

Which parameters each type takes, how ``patient``/``subject`` (and their ``:identifier`` forms), ``_id``,
``status``, ``_lastUpdated``, ``_count`` and ``_cursor`` are read, and the keyset cursor's text. See
``integrations.fhir.outputs`` for what the answers hold.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from clinical_ai.fhir.search import SearchParameterError, instant_bounds, single_value
from clinical_ai.inference.engine.fhir_output import PSEUDONYM_SYSTEM

logger = logging.getLogger(__name__)


# The types served, with the names of their patient search parameters (R4) and whether ``status`` applies.
PATIENT_PARAMETERS: dict[str, tuple[str, ...]] = {
    "GuidanceResponse": ("patient", "subject"),
    "RiskAssessment": ("patient", "subject"),
    "DetectedIssue": ("patient",),
    "RequestGroup": ("patient", "subject"),
    "Condition": ("patient", "subject"),
    "Provenance": ("patient",),
    "Device": (),  # the model: one per version, for every patient
}
OUTPUT_TYPES: tuple[str, ...] = tuple(PATIENT_PARAMETERS)
TYPES_WITH_STATUS = frozenset({"GuidanceResponse", "RiskAssessment", "DetectedIssue", "RequestGroup"})
COMMON_PARAMETERS = ("_id", "_lastUpdated", "_count", "_cursor", "_format")
DEFAULT_COUNT = 50
MAX_COUNT = 200
MAX_LIST_VALUES = 50
_FORMATS = {"json", "application/json", "application/fhir+json"}
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_PATIENT_URL = re.compile(r"^(?:.*/)?Patient/(?P<id>[A-Za-z0-9\-.]{1,64})$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# --- search parameters (plain Python) ---------------------------------------------------------------


def search_parameters(resource_type: str) -> tuple[str, ...]:
    """Every parameter name a search of ``resource_type`` accepts (for the CapabilityStatement too)."""
    names: list[str] = list(COMMON_PARAMETERS)
    for name in PATIENT_PARAMETERS[resource_type]:
        names.extend((name, f"{name}:identifier"))
    if resource_type in TYPES_WITH_STATUS:
        names.append("status")
    return tuple(names)


@dataclass(frozen=True)
class PatientCriterion:
    """Whose resources: the EHR's ``Patient/<id>``, or the identity (MRN) a pseudonym is made from, or a
    pseudonym itself."""

    reference: str | None = None  # "Patient/123"
    identity: str | None = None  # "identifier:<system>|<value>"
    pseudonym: str | None = None


@dataclass(frozen=True)
class OutputSearch:
    resource_type: str
    patient: PatientCriterion | None = None
    ids: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    updated_from: datetime | None = None  # inclusive
    updated_before: datetime | None = None  # exclusive
    count: int = DEFAULT_COUNT
    cursor: tuple[datetime, int] | None = None
    # The parameters understood, as given (for the self and next links), and the names ignored.
    used: tuple[tuple[str, str], ...] = ()
    ignored: tuple[str, ...] = field(default_factory=tuple)


def _token_list(params: Mapping[str, Sequence[str]], name: str) -> tuple[str, ...]:
    value = single_value(params, name)
    if value is None:
        return ()
    tokens = tuple(v.strip() for v in value.split(","))
    if len(tokens) > MAX_LIST_VALUES or not all(tokens):
        raise SearchParameterError(name, f"{name} takes 1 to {MAX_LIST_VALUES} non-empty values")
    return tokens


def _patient(name: str, value: str) -> PatientCriterion:
    if name.endswith(":identifier"):
        system, bar, code = value.partition("|")
        if not bar or not code:
            raise SearchParameterError(name, f"{name} takes system|value (the system is required)")
        if system == PSEUDONYM_SYSTEM:
            return PatientCriterion(pseudonym=code)
        return PatientCriterion(identity=f"identifier:{system}|{code}")
    match = _PATIENT_URL.match(value)
    if match is not None:
        return PatientCriterion(reference=f"Patient/{match['id']}")
    if FHIR_ID.match(value):
        return PatientCriterion(reference=f"Patient/{value}")
    raise SearchParameterError(name, f"{name} must be Patient/<id>, <id> or a Patient URL")


def cursor_text(last_updated: datetime, pk: int) -> str:
    return f"{(last_updated - _EPOCH) // timedelta(microseconds=1)}.{pk}"


def _cursor(value: str) -> tuple[datetime, int]:
    micros, dot, pk = value.partition(".")
    if not dot or not micros.isdigit() or not pk.isdigit() or len(micros) > 20 or len(pk) > 20:
        raise SearchParameterError("_cursor", "_cursor must be taken from a next link")
    return _EPOCH + timedelta(microseconds=int(micros)), int(pk)


def parse_output_search(
    resource_type: str, params: Mapping[str, Sequence[str]], *, lenient: bool = False
) -> OutputSearch:
    """Read the query of a search of ``resource_type`` (one of ``OUTPUT_TYPES``). Raises
    ``SearchParameterError`` on the first parameter that is unknown (unless ``lenient``), repeated or
    unreadable."""
    known = search_parameters(resource_type)
    unknown = tuple(name for name in params if name not in known)
    if unknown and not lenient:
        raise SearchParameterError(unknown[0], f"the search parameter {unknown[0][:64]!r} is not supported")
    patient_names = [
        name for name in known if name.split(":")[0] in ("patient", "subject") and params.get(name)
    ]
    if len(patient_names) > 1:
        raise SearchParameterError(patient_names[1], "give the patient once (patient or subject)")
    patient = None
    if patient_names:
        value = single_value(params, patient_names[0])
        patient = _patient(patient_names[0], value or "")
    ids = _token_list(params, "_id")
    if any(not FHIR_ID.match(i) for i in ids):
        raise SearchParameterError("_id", "_id takes FHIR ids ([A-Za-z0-9-.], at most 64 characters)")
    updated_from, updated_before = instant_bounds("_lastUpdated", params.get("_lastUpdated") or [])
    count = DEFAULT_COUNT
    raw_count = single_value(params, "_count")
    if raw_count is not None:
        if not raw_count.isdigit() or len(raw_count) > 9:
            raise SearchParameterError("_count", "_count must be a whole number")
        count = min(int(raw_count), MAX_COUNT)
    raw_cursor = single_value(params, "_cursor")
    response_format = single_value(params, "_format")
    if response_format is not None and response_format not in _FORMATS:
        raise SearchParameterError("_format", "only JSON is offered (_format=json)")
    return OutputSearch(
        resource_type=resource_type,
        patient=patient,
        ids=ids,
        statuses=_token_list(params, "status") if "status" in known else (),
        updated_from=updated_from,
        updated_before=updated_before,
        count=count,
        cursor=_cursor(raw_cursor) if raw_cursor is not None else None,
        used=tuple((name, value) for name in params if name in known for value in params[name]),
        ignored=unknown,
    )
