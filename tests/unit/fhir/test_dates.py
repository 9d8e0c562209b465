"""FHIR date, dateTime and instant values: reading, the spans of partial values, writing. No database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from clinical_ai.fhir.dates import (
    FhirDateError,
    FhirDateTime,
    fhir_datetime_or_none,
    fhir_datetime_text,
    fhir_instant_text,
    parse_fhir_date_time,
)
from clinical_ai.fhir.search import SearchParameterError, date_parameter, instant_bounds

PLUS_TWO = timezone(timedelta(hours=2))

# --- reading --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20T08:15:00+00:00", datetime(2026, 11, 20, 8, 15, tzinfo=UTC)),
        ("2026-11-20T08:15:00Z", datetime(2026, 11, 20, 8, 15, tzinfo=UTC)),
        ("2026-11-20T08:15:00.5Z", datetime(2026, 11, 20, 8, 15, 0, 500000, tzinfo=UTC)),
        ("2026-11-20T08:15:00.123456789Z", datetime(2026, 11, 20, 8, 15, 0, 123456, tzinfo=UTC)),
        ("2026-11-20T10:15:00+02:00", datetime(2026, 11, 20, 8, 15, tzinfo=UTC)),
        ("2026-11-20T03:15:00-05:00", datetime(2026, 11, 20, 8, 15, tzinfo=UTC)),
        ("2026-11-20T08:15:00", datetime(2026, 11, 20, 8, 15, tzinfo=UTC)),
        ("2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),
        ("2026-11", datetime(2026, 11, 1, tzinfo=UTC)),
        ("2026", datetime(2026, 1, 1, tzinfo=UTC)),
    ],
)
def test_parse_fhir_datetime_is_aware(text: str, expected: datetime) -> None:
    parsed = fhir_datetime_or_none(text)
    assert parsed == expected
    assert parsed is not None and parsed.tzinfo is not None


def test_parse_fhir_datetime_keeps_the_offset() -> None:
    parsed = fhir_datetime_or_none("2026-11-20T10:15:00+05:30")
    assert parsed is not None
    assert parsed.utcoffset() == timedelta(hours=5, minutes=30)
    assert parsed.tzinfo == timezone(timedelta(hours=5, minutes=30))


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2026-13-01", "2026-02-30", "2026-11-20T25:00:00Z", "20261120", 20261120, None]
)
def test_parse_fhir_datetime_refuses_what_is_not_a_datetime(text: Any) -> None:
    assert fhir_datetime_or_none(text) is None


@pytest.mark.parametrize(
    ("text", "precision", "zoned"),
    [
        ("2024", "year", False),
        ("2024-05", "month", False),
        ("2024-05-01", "day", False),
        ("2024-05-01T10:15", "minute", False),
        ("2024-05-01T10:15Z", "minute", True),
        ("2024-05-01T10:15:30", "second", False),
        ("2024-05-01T10:15:30-03:00", "second", True),
        ("2024-05-01T10:15:30.250Z", "fraction", True),
    ],
)
def test_precision_and_zone_are_as_written(text: str, precision: str, zoned: bool) -> None:
    parsed = parse_fhir_date_time(text)
    assert (parsed.precision, parsed.zoned) == (precision, zoned)
    assert parsed.start.tzinfo is not None


def test_leap_day_exists_only_in_leap_years() -> None:
    assert parse_fhir_date_time("2024-02-29").start == datetime(2024, 2, 29, tzinfo=UTC)
    assert parse_fhir_date_time("2000-02-29").start == datetime(2000, 2, 29, tzinfo=UTC)
    for text in ("2023-02-29", "1900-02-29", "2024-02-30"):
        with pytest.raises(FhirDateError):
            parse_fhir_date_time(text)


def test_zones_z_and_offsets_name_the_same_instant() -> None:
    z = parse_fhir_date_time("2026-11-20T08:15:00Z").start
    assert parse_fhir_date_time("2026-11-20T10:15:00+02:00").start == z
    assert parse_fhir_date_time("2026-11-20T08:15:00-00:00").start == z
    assert parse_fhir_date_time("2026-11-20T08:15:00+00:00").start == z
    assert parse_fhir_date_time("2026-11-20T08:15:00").start == z  # no zone: UTC, not the server's zone
    assert parse_fhir_date_time("2026-11-21T08:14:00+23:59").start == z


@pytest.mark.parametrize(
    "text",
    [
        "",
        "26",
        "2026-1",
        "2026-01-1",
        "2026-00",
        "0000",
        "2026/01/01",
        "2026-01-01 10:15:00Z",
        "2026-01-01T10Z",  # an hour alone is not a time
        "2026-01-01T10:15:00+2:00",
        "2026-01-01T10:15:00+0200",
        "2026-01-01T10:15:00+24:00",
        "2026-01-01T10:15:00+05:60",
        "2026-01-01T24:00:00Z",
        "2026-01-01T10:60:00Z",
        "2026-01-01T10:15:60Z",  # leap seconds are not representable
        "2026-01-01T10:15:00.Z",
        "2026-01-01Z",  # a zone belongs to a time
        "٢٠٢٦",  # digits, but not ASCII ones
        "2026-01-01T10:15:00ZZ",
        "yesterday",
    ],
)
def test_garbage_is_refused(text: str) -> None:
    with pytest.raises(FhirDateError):
        parse_fhir_date_time(text)
    assert fhir_datetime_or_none(text) is None


def test_the_lenient_reader_ignores_surrounding_whitespace_only() -> None:
    for text in (" 2026-11-20", "2026-11-20\n"):
        with pytest.raises(FhirDateError):
            parse_fhir_date_time(text)  # the strict reader takes no surrounding whitespace
        assert fhir_datetime_or_none(text) == datetime(2026, 11, 20, tzinfo=UTC)
    assert fhir_datetime_or_none(["2026"]) is None


def test_a_fhir_date_error_is_a_value_error() -> None:
    assert issubclass(FhirDateError, ValueError)


# --- spans ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2024-02", datetime(2024, 2, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
        ("2023-02", datetime(2023, 2, 1, tzinfo=UTC), datetime(2023, 3, 1, tzinfo=UTC)),
        ("2026-12", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2024-02-29", datetime(2024, 2, 29, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
        ("2026-12-31", datetime(2026, 12, 31, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        (
            "2026-03-02T10:15Z",
            datetime(2026, 3, 2, 10, 15, tzinfo=UTC),
            datetime(2026, 3, 2, 10, 16, tzinfo=UTC),
        ),
        (
            "2026-03-02T10:15:30+02:00",
            datetime(2026, 3, 2, 10, 15, 30, tzinfo=PLUS_TWO),
            datetime(2026, 3, 2, 10, 15, 31, tzinfo=PLUS_TWO),
        ),
        (
            "2026-03-02T10:15:30.5+02:00",
            datetime(2026, 3, 2, 10, 15, 30, 500000, tzinfo=PLUS_TWO),
            datetime(2026, 3, 2, 10, 15, 30, 600000, tzinfo=PLUS_TWO),
        ),
        (
            "2026-03-02T10:15:30.123456Z",
            datetime(2026, 3, 2, 10, 15, 30, 123456, tzinfo=UTC),
            datetime(2026, 3, 2, 10, 15, 30, 123457, tzinfo=UTC),
        ),
    ],
)
def test_a_value_covers_its_precision(text: str, start: datetime, end: datetime) -> None:
    parsed = parse_fhir_date_time(text)
    assert (parsed.start, parsed.end()) == (start, end)


@pytest.mark.parametrize("text", ["9999", "9999-12", "9999-12-31", "9999-12-31T23:59:59Z"])
def test_a_span_past_the_year_9999_is_refused(text: str) -> None:
    parsed = parse_fhir_date_time(text)  # the value itself is fine
    with pytest.raises(FhirDateError):
        parsed.end()


def test_a_span_finer_than_a_microsecond_is_refused() -> None:
    with pytest.raises(FhirDateError):
        parse_fhir_date_time("2026-03-02T10:15:30.1234567Z").end()
    assert FhirDateTime(datetime(2026, 1, 1, tzinfo=UTC), "year", zoned=False).end() == datetime(
        2027, 1, 1, tzinfo=UTC
    )


# --- writing --------------------------------------------------------------------------------------


def test_writing_keeps_the_offset_or_converts_to_utc() -> None:
    when = datetime(2026, 11, 20, 10, 15, tzinfo=PLUS_TWO)
    assert fhir_datetime_text(when) == "2026-11-20T10:15:00+02:00"
    assert fhir_instant_text(when) == "2026-11-20T08:15:00+00:00"
    precise = datetime(2026, 11, 20, 8, 15, 0, 123000, tzinfo=UTC)
    assert fhir_datetime_text(precise) == "2026-11-20T08:15:00.123000+00:00"


@pytest.mark.parametrize(
    "when", [datetime(2026, 2, 28, 23, 0, tzinfo=UTC), datetime(2024, 2, 29, 12, tzinfo=UTC)]
)
def test_written_values_read_back_as_the_same_instant(when: datetime) -> None:
    for text in (fhir_datetime_text(when), fhir_instant_text(when)):
        assert parse_fhir_date_time(text).start == when


def test_writing_refuses_naive_datetimes_and_second_offsets() -> None:
    naive = datetime(2026, 11, 20, 10, 15)  # naive: the point of the test
    for write in (fhir_datetime_text, fhir_instant_text):
        with pytest.raises(FhirDateError):
            write(naive)
    with pytest.raises(FhirDateError):
        fhir_datetime_text(datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=1, seconds=30))))


# --- search ---------------------------------------------------------------------------------------


def test_a_date_parameter_has_a_prefix_and_a_span() -> None:
    day = datetime(2026, 3, 2, tzinfo=UTC)
    assert date_parameter("date", "2026-03-02") == date_parameter("date", "eq2026-03-02")
    parsed = date_parameter("date", "ge2026-03-02")
    assert (parsed.prefix, parsed.start, parsed.end) == ("ge", day, day + timedelta(days=1))
    # An unencoded '+' in a query string arrives as a space.
    assert date_parameter("date", "2026-03-02T10:00:00 02:00").start == datetime(2026, 3, 2, 8, tzinfo=UTC)


@pytest.mark.parametrize(
    "value", ["sa2026", "ne2026", "ap2026", "2026-02-30", "yesterday", "eq", "9999-12-31"]
)
def test_unreadable_date_parameters_are_refused_by_name(value: str) -> None:
    with pytest.raises(SearchParameterError) as caught:
        date_parameter("_lastUpdated", value)
    assert caught.value.parameter == "_lastUpdated"


def test_instant_bounds_combine_every_value() -> None:
    day = datetime(2026, 3, 2, tzinfo=UTC)
    assert instant_bounds("date", []) == (None, None)
    assert instant_bounds("date", ["2026-03-02"]) == (day, day + timedelta(days=1))
    assert instant_bounds("date", ["gt2026-03-02"]) == (day + timedelta(days=1), None)
    assert instant_bounds("date", ["le2026-03-02"]) == (None, day + timedelta(days=1))
    assert instant_bounds("date", ["lt2026-03-02"]) == (None, day)
    both = instant_bounds("date", ["ge2026-03-01", "ge2026-03-02", "lt2026-04-01", "lt2026-03-20"])
    assert both == (day, datetime(2026, 3, 20, tzinfo=UTC))
    for values in ([""], ["2026" + "-01" * 40]):
        with pytest.raises(SearchParameterError):
            instant_bounds("date", values)
