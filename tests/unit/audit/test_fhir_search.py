"""The AuditEvent search parameters, as plain Python (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from clinical_ai.audit.balp import EVENT_CODES
from clinical_ai.audit.fhir_search import MAX_COUNT, AuditEventSearch, parse_audit_event_search
from clinical_ai.fhir.search import SearchParameterError


def _parse(**params: str | list[str]) -> AuditEventSearch:
    return parse_audit_event_search(
        {k.replace("__", ":"): v if isinstance(v, list) else [v] for k, v in params.items()},
        organization="org",
    )


@pytest.mark.parametrize(
    ("value", "start", "end"),
    [
        ("2026", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2024-02", datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
        ("2026-12-31", datetime(2026, 12, 31, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        (
            "2026-03-02T10:15",
            datetime(2026, 3, 2, 10, 15, tzinfo=UTC),
            datetime(2026, 3, 2, 10, 16, tzinfo=UTC),
        ),
        (
            "2026-03-02T10:15:30.5+02:00",
            datetime(2026, 3, 2, 10, 15, 30, 500000, tzinfo=timezone(timedelta(hours=2))),
            datetime(2026, 3, 2, 10, 15, 30, 600000, tzinfo=timezone(timedelta(hours=2))),
        ),
    ],
)
def test_eq_dates_cover_their_precision(value: str, start: datetime, end: datetime) -> None:
    search = _parse(date=value)
    assert search.filters.occurred_from == start
    assert search.filters.occurred_before == end


def test_prefixes_become_bounds_and_combine() -> None:
    day = datetime(2026, 3, 2, tzinfo=UTC)
    assert _parse(date="gt2026-03-02").filters.occurred_from == day + timedelta(days=1)
    assert _parse(date="le2026-03-02").filters.occurred_before == day + timedelta(days=1)
    assert _parse(date="lt2026-03-02").filters.occurred_before == day
    both = _parse(date=["ge2026-03-01", "ge2026-03-02", "lt2026-04-01", "lt2026-03-20"]).filters
    assert (both.occurred_from, both.occurred_before) == (day, datetime(2026, 3, 20, tzinfo=UTC))


def test_organization_is_always_set_and_count_is_capped() -> None:
    search = _parse(_count="100000")
    assert search.filters.organization == "org" and search.count == MAX_COUNT


def test_type_and_outcome_map_back_to_actions() -> None:
    rest = _parse(type="rest").filters
    assert rest.actions_in == frozenset(a for a, c in EVENT_CODES.items() if c.type.code == "rest")
    default = _parse(type="110100").filters
    assert default.actions_in is None and "intake.job.create" in default.actions_excluded
    serious = _parse(outcome="8").filters
    assert serious.outcome == "failure" and serious.actions_in is not None
    assert "intake.job.process" in serious.actions_in
    minor = _parse(outcome="4").filters
    assert minor.actions_in is None and "intake.job.process" in minor.actions_excluded
    both = _parse(type="rest", subtype="intake.job.create").filters
    assert both.action == "intake.job.create"


@pytest.mark.parametrize(
    "params",
    [
        {"unknown": "x"},
        {"date": "2026-02-30"},
        {"date": "sa2026"},
        {"date": ""},
        {"agent": "x" * 300},
        {"subtype": ["a", "b"]},
        {"outcome": "http://example.org|0"},
        {"patient": "urn:other|p"},
    ],
)
def test_unreadable_parameters_are_refused_by_name(params: dict[str, str | list[str]]) -> None:
    with pytest.raises(SearchParameterError) as excinfo:
        _parse(**params)
    assert excinfo.value.parameter == next(iter(params))
