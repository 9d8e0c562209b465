"""FHIR R4 ``date``, ``dateTime`` and ``instant`` values: reading them, the span a partial one covers, and
writing a datetime as one. Plain Python; the one place these rules are written.

The grammar read is ``YYYY[-MM[-DD[Thh:mm[:ss[.fraction]][Z|±hh:mm]]]]``, ASCII digits only. It is looser
than the specification in two ways that real data and search strings need: the seconds may be missing (as
FHIR search allows), and a time without a zone is read as UTC. FHIR requires the zone whenever a time is
given; reading a zoneless time as the server's local time would move the value with the server. A fraction
finer than a microsecond is cut to the microsecond. Every datetime given back is timezone-aware.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Literal

Precision = Literal["year", "month", "day", "minute", "second", "fraction"]

_DATE_TIME = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?:\.(?P<fraction>\d+))?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?)?)?)?",
    re.ASCII,
)
_STEPS: dict[Precision, timedelta] = {
    "day": timedelta(days=1),
    "minute": timedelta(minutes=1),
    "second": timedelta(seconds=1),
}


class FhirDateError(ValueError):
    """Text that is not a FHIR date, dateTime or instant (or names a day, time or zone that does not
    exist), or a datetime that has no FHIR form."""


@dataclass(frozen=True)
class FhirDateTime:
    """A date, dateTime or instant as read: the first instant it covers and how precisely it was written."""

    start: datetime  # timezone-aware; UTC when the text gave no zone
    precision: Precision
    zoned: bool  # the text gave a zone (``Z`` or an offset), as an instant must
    fraction_digits: int = 0

    def end(self) -> datetime:
        """The first instant after the span the value covers (``2024-02`` covers February 2024, so its end
        is 2024-03-01; ``2024-05-01T10:15`` covers one minute). Raises ``FhirDateError`` when that end lies
        past the year 9999 or the value is written finer than a microsecond."""
        start = self.start
        if self.precision == "fraction" and self.fraction_digits > 6:
            raise FhirDateError("a span finer than a microsecond cannot be represented")
        try:
            if self.precision == "year":
                return start.replace(year=start.year + 1)
            if self.precision == "month":
                return start + timedelta(days=calendar.monthrange(start.year, start.month)[1])
            if self.precision == "fraction":
                return start + timedelta(microseconds=10 ** (6 - self.fraction_digits))
            return start + _STEPS[self.precision]
        except (ValueError, OverflowError):
            raise FhirDateError("the span ends after the year 9999") from None


def parse_fhir_date_time(text: str) -> FhirDateTime:
    """Read a FHIR date, dateTime or instant; raises ``FhirDateError`` on anything else (surrounding
    whitespace included)."""
    match = _DATE_TIME.fullmatch(text)
    if match is None:
        raise FhirDateError(f"{text[:64]!r} is not a FHIR date, dateTime or instant")
    fraction = match["fraction"] or ""
    zone = _zone(match["zone"])
    try:
        start = datetime(
            int(match["year"]),
            int(match["month"] or 1),
            int(match["day"] or 1),
            int(match["hour"] or 0),
            int(match["minute"] or 0),
            int(match["second"] or 0),
            int(fraction[:6].ljust(6, "0")),
            tzinfo=zone,
        )
    except ValueError as error:
        raise FhirDateError(f"{text[:64]!r} is not a valid date: {error}") from None
    return FhirDateTime(
        start=start,
        precision=_precision(match),
        zoned=match["zone"] is not None,
        fraction_digits=len(fraction),
    )


def fhir_datetime_or_none(value: object) -> datetime | None:
    """The first instant of a FHIR date, dateTime or instant (``2026-11`` is 2026-11-01T00:00Z), or
    ``None`` when ``value`` is not one: not a string, garbage, a day or time that does not exist.
    Surrounding whitespace is ignored."""
    if not isinstance(value, str):
        return None
    try:
        return parse_fhir_date_time(value.strip()).start
    except FhirDateError:
        return None


def fhir_datetime_text(value: datetime) -> str:
    """``value`` as a FHIR dateTime or instant in its own offset (``2026-11-20T10:15:00+02:00``).
    Raises ``FhirDateError`` for a naive datetime, or an offset FHIR cannot write (one with seconds)."""
    offset = value.utcoffset()
    if offset is None:
        raise FhirDateError("the datetime must be timezone-aware: FHIR writes the zone")
    if offset % timedelta(minutes=1):
        raise FhirDateError("FHIR cannot write a time zone offset with seconds")
    return value.isoformat()


def fhir_instant_text(value: datetime) -> str:
    """``value`` as a FHIR instant in UTC (``2026-11-20T08:15:00+00:00``); raises ``FhirDateError`` for a
    naive datetime rather than guessing that it is in the server's zone."""
    if value.utcoffset() is None:
        raise FhirDateError("the datetime must be timezone-aware: FHIR writes the zone")
    return fhir_datetime_text(value.astimezone(UTC))


def _zone(text: str | None) -> timezone:
    if text is None or text == "Z":
        return UTC
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > 23 or minutes > 59:
        raise FhirDateError(f"{text!r} is not a time zone offset")
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if text[0] == "-" else offset)


def _precision(match: re.Match[str]) -> Precision:
    if match["fraction"] is not None:
        return "fraction"
    if match["second"] is not None:
        return "second"
    if match["minute"] is not None:
        return "minute"
    if match["day"] is not None:
        return "day"
    return "month" if match["month"] is not None else "year"
