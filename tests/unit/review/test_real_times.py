"""Real times and patient search keys, without a database: undoing the date shift exactly as the
de-identification engine applied it, times in a site's zone with how long ago, ages, name tokens and the
keyed index of names and MRNs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from clinical_ai.deid.engine import dates as engine_dates
from clinical_ai.review.times import TimeLens, age_in_years, days_ago, local_time_text, time_ago
from clinical_ai.vault.dates import unshift_fhir_date_time
from clinical_ai.vault.pseudonyms import (
    name_tokens,
    normalized_mrn,
    patient_mrn_index_key,
    patient_name_index_key,
)

TODAY = date(2026, 12, 5)
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize("shift", [-180, -47, -30, 30, 61, 180])
@pytest.mark.parametrize(
    "original",
    [
        "2026-11-20T08:15:00+00:00",
        "2026-11-20T08:15:00Z",
        "2026-03-29T01:30:00+01:00",  # the night the clocks change in London
        "2026-11-01T23:59:59.250-05:00",
        "2024-02-29T12:00:00+05:30",
    ],
)
def test_undoing_the_engines_shift_of_a_date_time_gives_the_original_instant(
    original: str, shift: int
) -> None:
    shifted = engine_dates.shift_date_time(
        original, shift, partial=True, today=TODAY, instant=original.endswith("Z"), keep_time=True
    ).value
    assert shifted is not None and shifted != original
    real = unshift_fhir_date_time(shifted, shift)
    assert real is not None
    assert real.instant == datetime.fromisoformat(original)
    assert real.has_time and real.zoned


@pytest.mark.parametrize("shift", [-120, 45])
def test_undoing_the_shift_of_a_date_gives_the_original_calendar_day(shift: int) -> None:
    shifted = engine_dates.shift_date("1959-03-14", shift, partial=True, today=TODAY).value
    assert shifted is not None
    real = unshift_fhir_date_time(shifted, shift)
    assert real is not None and real.precision == "day" and not real.has_time
    assert real.calendar_date == date(1959, 3, 14)


def test_the_engine_drops_a_zoneless_time_and_the_date_still_comes_back() -> None:
    shifted = engine_dates.shift_date_time("2026-11-20T08:15:00", 40, partial=True, today=TODAY).value
    assert shifted == "2026-12-30"
    real = unshift_fhir_date_time(str(shifted), 40)
    assert real is not None and real.calendar_date == date(2026, 11, 20) and real.precision == "day"


@pytest.mark.parametrize(("partial", "precision"), [("2019", "year"), ("2019-07", "month")])
def test_a_year_or_a_month_was_never_shifted_and_stays_as_it_is(partial: str, precision: str) -> None:
    # The engine keeps only the year of a partial date: that year is the real one.
    assert engine_dates.shift_date(partial, 90, partial=True, today=TODAY).value == "2019"
    real = unshift_fhir_date_time(partial, 90)
    assert real is not None and real.precision == precision
    assert real.instant == datetime(2019, 1 if precision == "year" else 7, 1, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01", "20261120", " 2026-02-30 "])
def test_what_is_not_a_fhir_date_gives_nothing(text: str) -> None:
    assert unshift_fhir_date_time(text, 30) is None


NOW = datetime(2026, 12, 5, 13, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("then", "expected"),
    [
        (NOW - timedelta(seconds=20), "just now"),
        (NOW - timedelta(minutes=25), "25 min ago"),
        (NOW - timedelta(hours=3, minutes=50), "3 h ago"),
        (NOW - timedelta(hours=47), "47 h ago"),
        (NOW - timedelta(days=2, hours=1), "2 days ago"),
        (NOW - timedelta(days=15), "2 weeks ago"),
        (NOW - timedelta(days=100), "3 months ago"),
        (NOW - timedelta(days=365 * 4 + 30), "4 years ago"),
        (NOW - timedelta(days=365 * 8 + 60), "8 years ago"),
        (NOW + timedelta(hours=2, minutes=5), "in 2 h"),
    ],
)
def test_time_ago_as_a_ward_says_it(then: datetime, expected: str) -> None:
    assert time_ago(then, NOW) == expected


def test_one_is_singular() -> None:
    assert time_ago(NOW - timedelta(days=365 * 1 + 400), NOW) == "2 years ago"
    assert time_ago(NOW - timedelta(days=7 * 2), NOW) == "2 weeks ago"
    assert days_ago(date(2026, 12, 5), TODAY) == "today"
    assert days_ago(date(2026, 12, 4), TODAY) == "yesterday"
    assert days_ago(date(2026, 12, 1), TODAY) == "4 days ago"


@pytest.mark.parametrize(
    ("birth", "age"),
    [
        ("1959-03-14", 67),
        ("1959-12-05", 67),
        ("1959-12-06", 66),
        ("1948", 78),
        ("2027-01-01", None),
        ("x", None),
    ],
)
def test_age_in_whole_years(birth: str, age: int | None) -> None:
    assert age_in_years(birth, TODAY) == age


def test_a_real_time_is_shown_in_the_sites_zone_with_how_long_ago() -> None:
    shift = 33
    lens = TimeLens(zone=NEW_YORK, now=NOW, shift_days=shift)
    shown = lens.show("2026-12-23T08:15:00+00:00")  # the de-identified copy: 2026-11-20 + 33 days
    assert shown is not None and shown.real
    assert shown.text == "2026-11-20 03:15 EST"
    assert shown.ago == "2 weeks ago"
    assert shown.iso == "2026-11-20T08:15:00+00:00"
    summer = lens.show("2026-08-20T12:00:00+00:00")
    assert summer is not None and summer.text == "2026-07-18 08:00 EDT"
    day = lens.show("2026-12-06")
    assert day is not None and (day.text, day.ago) == ("2026-11-03", "4 weeks ago")
    assert local_time_text(datetime(2026, 12, 5, 0, 30, tzinfo=UTC), ZoneInfo("Europe/London")) == (
        "2026-12-05 00:30 GMT"
    )


def test_a_shifted_time_is_shown_as_written_with_no_age_and_marked_as_not_real() -> None:
    lens = TimeLens(zone=NEW_YORK, now=NOW)  # the viewer may not undo the shift
    shown = lens.show("2027-01-08T08:15:00+00:00")
    assert shown is not None and not shown.real
    assert shown.text == "2027-01-08 08:15"  # not converted to a zone: that would suggest it is real
    assert shown.ago == ""


def test_name_tokens_fold_case_and_accents_and_split_compound_names() -> None:
    assert name_tokens("Margaret Okafor-Lindqvist") == ["margaret", "okafor", "lindqvist"]
    assert name_tokens("  ÉLODIE d\u2019Aubigné ") == ["elodie", "d", "aubigne"]
    assert name_tokens("BRENNAN brennan") == ["brennan"]
    assert name_tokens("  - ") == []


def test_index_keys_are_keyed_per_site_and_hold_no_plaintext() -> None:
    key = b"k" * 32
    brennan = patient_name_index_key(key=key, organization="st-elsewhere", token="brennan")
    assert len(brennan) == 64 and "brennan" not in brennan
    assert brennan != patient_name_index_key(key=key, organization="county", token="brennan")
    assert brennan != patient_name_index_key(key=b"j" * 32, organization="st-elsewhere", token="brennan")
    mrn = patient_mrn_index_key(key=key, organization="st-elsewhere", mrn="5582-3301")
    assert mrn == patient_mrn_index_key(key=key, organization="st-elsewhere", mrn=" 5582 3301 ")
    assert mrn != patient_name_index_key(key=key, organization="st-elsewhere", token="55823301")
    assert normalized_mrn(" AB-12/34.5 ") == "ab12345"
