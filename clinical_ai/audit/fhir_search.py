"""FHIR search parameters of ``GET [base]/AuditEvent``, parsed into ``AuditFilters``. Plain Python.

Supported (each at most once, except ``date``; no comma lists):

- ``date``: ``[eq|ge|gt|le|lt]YYYY[-MM[-DD[Thh:mm[:ss[.fff]][Z|±hh:mm]]]]``, repeatable (all must hold);
  a value without a time zone is UTC. ``eq`` (the default) means within the value's precision.
- ``agent`` / ``agent:identifier``: ``[system|]value``; the system ``urn:clinical-ai:actor:<type>`` picks
  the actor type.
- ``entity`` / ``entity:identifier``: the id of the object acted on or the X-Request-Id; with
  ``urn:clinical-ai:object:<type>|id`` the object only, with the pseudonym system the patient.
- ``patient`` / ``patient:identifier``: the patient pseudonym (``Patient/<pseudonym>`` also accepted).
- ``type``, ``subtype``: tokens ``[system|]code`` of the export's codes (see ``balp``), or our action name
  as a subtype.
- ``outcome``: 0, 4, 8 or 12.
- ``_count`` (1..200; larger values are capped), ``_cursor`` (from the Bundle's ``next`` link), ``_format``
  (JSON only).

Anything else is refused with the parameter's name, rather than ignored: an auditor's tool that believes it
filtered must not receive unfiltered results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from clinical_ai.audit.balp import (
    ACTOR_SYSTEM_PREFIX,
    OBJECT_SYSTEM_PREFIX,
    OUTCOME_CODES,
    OUTCOME_SYSTEM,
    PATIENT_PSEUDONYM_SYSTEM,
    actions_with_outcome,
    actions_with_subtype,
    actions_with_type,
)
from clinical_ai.audit.filters import AuditFilters
from clinical_ai.fhir.search import SearchParameterError, instant_bounds, single_value

DEFAULT_COUNT = 50
MAX_COUNT = 200
ACTOR_TYPES = ("user", "ehr_client", "worker", "system", "anonymous")
SEARCH_PARAMETERS = {
    "date",
    "agent",
    "agent:identifier",
    "entity",
    "entity:identifier",
    "patient",
    "patient:identifier",
    "type",
    "subtype",
    "outcome",
    "_count",
    "_cursor",
    "_format",
}
_FORMATS = {"json", "application/json", "application/fhir+json"}


@dataclass(frozen=True)
class AuditEventSearch:
    filters: AuditFilters
    count: int
    cursor: int | None  # events older than this sequence number


def _single(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    """``single_value``, and no comma lists: the audit search takes one value per parameter."""
    value = single_value(params, name)
    if value is None:
        return None
    if "," in value:
        raise SearchParameterError(name, f"{name}: lists of values (a,b) are not supported")
    return value


def _token(value: str) -> tuple[str | None, str]:
    """``system|code`` → (system, code); ``code`` → (None, code); ``|code`` → ("", code)."""
    if "|" in value:
        system, _, code = value.partition("|")
        return system, code
    return None, value


def _with_dates(filters: AuditFilters, values: Sequence[str]) -> AuditFilters:
    occurred_from, occurred_before = instant_bounds("date", values)  # events are instants
    return replace(filters, occurred_from=occurred_from, occurred_before=occurred_before)


def _narrow(
    filters: AuditFilters, only: frozenset[str] | None, never: frozenset[str] = frozenset()
) -> AuditFilters:
    actions_in = filters.actions_in
    if only is not None:
        actions_in = only if actions_in is None else actions_in & only
    return replace(filters, actions_in=actions_in, actions_excluded=filters.actions_excluded | never)


def _single_or_identifier(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    """``name`` or ``name:identifier``, once between them: given both, one would be silently ignored."""
    plain, identifier = _single(params, name), _single(params, f"{name}:identifier")
    if plain is not None and identifier is not None:
        raise SearchParameterError(f"{name}:identifier", f"give {name} or {name}:identifier, not both")
    return plain if plain is not None else identifier


def parse_audit_event_search(params: Mapping[str, Sequence[str]], *, organization: str) -> AuditEventSearch:
    """Read the query parameters of an AuditEvent search; raises ``SearchParameterError`` on the first
    parameter that is unknown, repeated or unreadable. ``organization``: the only one the caller may see."""
    for name in params:
        if name not in SEARCH_PARAMETERS:
            raise SearchParameterError(name, f"the search parameter {name[:64]!r} is not supported")
    filters = _with_dates(AuditFilters(organization=organization), params.get("date") or [])

    agent = _single_or_identifier(params, "agent")
    if agent is not None:
        system, value = _token(agent)
        if system:
            actor_type = system.removeprefix(ACTOR_SYSTEM_PREFIX)
            if not system.startswith(ACTOR_SYSTEM_PREFIX) or actor_type not in ACTOR_TYPES:
                raise SearchParameterError("agent", f"unknown agent identifier system {system[:64]!r}")
            filters = replace(filters, actor_type=actor_type)
        filters = replace(filters, actor_id=value)

    entity = _single_or_identifier(params, "entity")
    if entity is not None:
        system, value = _token(entity)
        if system == PATIENT_PSEUDONYM_SYSTEM:
            filters = replace(filters, patient_pseudonym=value)
        elif system and system.startswith(OBJECT_SYSTEM_PREFIX):
            filters = replace(filters, object_type=system.removeprefix(OBJECT_SYSTEM_PREFIX), object_id=value)
        else:
            filters = replace(filters, entity=value)

    patient = _single_or_identifier(params, "patient")
    if patient is not None:
        system, value = _token(patient.removeprefix("Patient/"))
        if system not in (None, "", PATIENT_PSEUDONYM_SYSTEM):
            raise SearchParameterError("patient", f"unknown patient identifier system {system[:64]!r}")
        filters = replace(filters, patient_pseudonym=value)

    event_type = _single(params, "type")
    if event_type is not None:
        filters = _narrow(filters, *actions_with_type(*_token(event_type)))

    subtype = _single(params, "subtype")
    if subtype is not None:
        system, code = _token(subtype)
        standard = actions_with_subtype(system, code)
        # A standard subtype (or an unknown system, which matches nothing) narrows to the actions that carry
        # it; our own action system names one action.
        filters = replace(filters, action=code) if standard is None else _narrow(filters, standard)

    outcome = _single(params, "outcome")
    if outcome is not None:
        system, code = _token(outcome)
        if system not in (None, "", OUTCOME_SYSTEM) or code not in OUTCOME_CODES:
            raise SearchParameterError("outcome", "outcome must be 0, 4, 8 or 12")
        our_outcome, only, never = actions_with_outcome(code)
        filters = _narrow(replace(filters, outcome=our_outcome), only, never)

    count = DEFAULT_COUNT
    raw_count = _single(params, "_count")
    if raw_count is not None:
        if not raw_count.isdigit() or int(raw_count) < 1:
            raise SearchParameterError("_count", "_count must be a whole number of at least 1")
        count = min(int(raw_count), MAX_COUNT)

    cursor = None
    raw_cursor = _single(params, "_cursor")
    if raw_cursor is not None:
        if not raw_cursor.isdigit() or len(raw_cursor) > 20:
            raise SearchParameterError("_cursor", "_cursor must be taken from a next link")
        cursor = int(raw_cursor)

    response_format = _single(params, "_format")
    if response_format is not None and response_format not in _FORMATS:
        raise SearchParameterError("_format", "only JSON is offered (_format=json)")

    return AuditEventSearch(filters=filters, count=count, cursor=cursor)
