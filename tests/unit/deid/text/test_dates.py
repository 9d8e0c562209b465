"""Dates in text are found and shifted in their own written format; years, durations, times stay."""

from __future__ import annotations

import pytest

from clinical_ai.deid.engine.text.dates import find_dates, looks_like_date, parse_date_text, shift_date_text


@pytest.mark.parametrize(
    ("written", "shifted"),
    [
        ("14 March 2026", "2 March 2026"),
        ("20 Nov 2026", "8 Nov 2026"),
        ("1959-03-14", "1959-03-02"),
        ("03/14/1959", "03/02/1959"),
        ("14/03/1959", "02/03/1959"),
        ("3/14/1959", "3/2/1959"),
        ("14.03.1959", "02.03.1959"),
        ("March 14, 1959", "March 2, 1959"),
        ("Mar 14 1959", "Mar 2 1959"),
        ("14-Mar-1959", "02-Mar-1959"),
        ("14-Mar-59", "02-Mar-59"),
        ("14th of March, 2026", "2nd of March, 2026"),
        ("Saturday, 14 March 2026", "Monday, 2 March 2026"),
        ("SEPT 3, 2025", "AUG 22, 2025"),
        ("Sept 23, 2025", "Sept 11, 2025"),
        ("5 January 2026", "24 December 2025"),
        ("May 5, 2026", "April 23, 2026"),
        ("14 March", "2 March"),
        ("Jan 5th", "Dec 24th"),
        ("14 Jan. 2026", "2 Jan. 2026"),
        ("Feb. 5, 2026", "Jan. 24, 2026"),
        ("March 2026", "March 2026"),
        ("03/2026", "03/2026"),
    ],
)
def test_a_date_is_shifted_and_keeps_its_format(written: str, shifted: str) -> None:
    assert shift_date_text(written, -12) == shifted
    spans = find_dates(f"seen on {written}.")
    assert [f"seen on {written}."[s.start : s.end] for s in spans] == [written]


def test_month_year_dates_shift_from_mid_month() -> None:
    assert shift_date_text("March 2026", -20) == "February 2026"
    assert shift_date_text("03/2026", 20) == "04/2026"


def test_ambiguous_numeric_dates_follow_the_configured_order() -> None:
    assert shift_date_text("03/04/2026", 1) == "03/05/2026"  # month first (US) by default
    assert shift_date_text("03/04/2026", 1, day_first=True) == "04/04/2026"
    assert parse_date_text("03/04/2026", day_first=True).isoformat() == "2026-04-03"  # type: ignore[union-attr]


def test_the_date_of_an_iso_timestamp_is_found_and_the_time_kept() -> None:
    text = "collected 2026-11-20T10:30:00Z"
    (span,) = find_dates(text)
    assert text[span.start : span.end] == "2026-11-20"


@pytest.mark.parametrize(
    "text",
    [
        "in 2019",
        "for three days",
        "3 days ago",
        "yesterday",
        "a 67 year-old woman",
        "BP 150/90, HR 110",
        "version 1.2.10",
        "13/14/2020",
        "31/02/2026",
        "at 10:30",
        "may 5 tablets",
        "0.15/30 28 day pack",
    ],
)
def test_what_is_not_a_day_or_month_is_not_a_date(text: str) -> None:
    assert find_dates(text) == []


def test_unreadable_dates_are_not_shifted() -> None:
    assert shift_date_text("the 14th", -12) is None
    assert shift_date_text("31/02/2026", -12) is None


@pytest.mark.parametrize(
    ("text", "date_like"),
    [
        ("early March", True),
        ("Christmas Day", True),
        ("on 3/14", True),
        ("three days", False),
        ("2019", False),
    ],
)
def test_ner_dates_the_patterns_cannot_read(text: str, date_like: bool) -> None:
    assert looks_like_date(text) is date_like
