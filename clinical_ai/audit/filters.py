"""What a search of the audit log asks for: one plain description, shared by the console, the NDJSON export
and the FHIR AuditEvent search, turned into a query in ``selectors.audit_events_filter``."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime


@dataclass(frozen=True)
class AuditFilters:
    """Every field narrows the search; empty ones are ignored. Times are timezone-aware."""

    occurred_from: datetime | None = None  # inclusive
    occurred_before: datetime | None = None  # exclusive
    actor_type: str = ""
    actor_id: str = ""
    # The console's search by name: the event's (actor_type, actor_id) must be one of these (None: any).
    actors_in: frozenset[tuple[str, str]] | None = None
    action: str = ""  # exact
    action_prefix: str = ""  # e.g. "deid."
    # Set by the FHIR type/subtype/outcome searches: the action must be one of these (None: any), and must
    # not be one of ``actions_excluded``.
    actions_in: frozenset[str] | None = None
    actions_excluded: frozenset[str] = frozenset()
    outcome: str = ""
    patient_pseudonym: str = ""
    patient_prefix: str = ""  # the console: the start of a pseudonym (the form asks for 6 characters or more)
    object_type: str = ""
    object_id: str = ""
    request_id: str = ""
    # The id of any entity the event names: its object id or its request id.
    entity: str = ""
    organization: str = ""  # set for EHR clients: they see their own organization's events only

    def used(self) -> list[str]:
        """The names of the filters in use; audit rows record these, never the values searched for."""
        return [f.name for f in fields(self) if getattr(self, f.name) not in (None, "", frozenset())]
