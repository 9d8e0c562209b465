"""Date shifting and partial redaction of FHIR date, dateTime and instant values.

Semantics follow the reference anonymizer so its outputs can be reproduced:

* the shift is a whole number of days in [-50, 50], from a polynomial hash (seed 131, modulo 101) of
  ``prefix + key``, where the prefix is the scope's name (file, folder) or else the id of the top-level
  resource at the time of shifting; a fixed offset or a per-patient offset replaces it;
* only values with a day are shifted; a year or year-month value is redacted instead (to its year when
  partial dates are enabled);
* a value indicating an age over 89 (fewer than 90 years ago counts as not) is redacted, year included;
* a time of day is reset to zeros, keeping the time zone (``dateShiftKeepTime`` keeps it instead);
* an instant written with ``Z`` comes back with ``+00:00``, as the reference's serialiser writes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta

AGE_THRESHOLD = 89
SHIFT_RANGE = 50
_SHIFT_SEED = 131

# The FHIR value patterns; group 1 is the year, 5 the month, 7 the day, 8 (dateTime) the time and zone.
_DATE_RE = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?"
)
_DATETIME_RE = re.compile(
    r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
)
_TIME_RE = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?")


@dataclass(frozen=True, slots=True)
class DateOutcome:
    """The new value (None: removed) and whether it was shifted (else redacted, fully or to the year)."""

    value: str | None
    shifted: bool


def shift_offset(key: str, prefix: str) -> int:
    """Days to shift by for ``prefix + key``, in [-50, 50]."""
    offset = 0
    for byte in (prefix + key).encode("utf-8"):
        offset = (offset * _SHIFT_SEED + byte) % (2 * SHIFT_RANGE + 1)
    return offset - SHIFT_RANGE


def redact_date(value: str, *, partial: bool, today: date, date_time: bool = False) -> DateOutcome:
    """Redaction: to the year if ``partial`` and the value does not indicate an age over 89, else removed."""
    if not partial:
        return DateOutcome(None, shifted=False)
    match = (_DATETIME_RE if date_time else _DATE_RE).search(value)
    if match is None or _over_age_threshold(match, today):
        # Not a recognisable date (the reference would keep it as is; we remove it) or an age over 89.
        return DateOutcome(None, shifted=False)
    return DateOutcome(match.group(1), shifted=False)


def shift_date(value: str, offset: int, *, partial: bool, today: date) -> DateOutcome:
    """Shift a FHIR ``date`` by ``offset`` days (redact when it has no day or indicates an age over 89)."""
    match = _DATE_RE.search(value)
    if match is None or match.group(7) is None or _over_age_threshold(match, today):
        return redact_date(value, partial=partial, today=today)
    shifted = _ymd(match) + timedelta(days=offset)
    return DateOutcome(shifted.isoformat(), shifted=True)


def shift_date_time(
    value: str, offset: int, *, partial: bool, today: date, instant: bool = False, keep_time: bool = False
) -> DateOutcome:
    """Shift a FHIR ``dateTime``/``instant`` by ``offset`` days; the time is zeroed unless ``keep_time``."""
    if instant and value.endswith("Z"):
        value = value[:-1] + "+00:00"
    match = _DATETIME_RE.search(value)
    if match is None or match.group(7) is None or _over_age_threshold(match, today):
        return redact_date(value, partial=partial, today=today, date_time=True)
    new_date = (_ymd(match) + timedelta(days=offset)).isoformat()
    timestamp = match.group(8)
    if timestamp is None:
        return DateOutcome(new_date, shifted=True)
    if not keep_time:
        time_match = _TIME_RE.search(timestamp)
        if time_match is not None:
            time = time_match.group(0)
            timestamp = timestamp.replace(time, re.sub(r"\d", "0", time))
    return DateOutcome(f"{new_date}{timestamp}", shifted=True)


def _ymd(match: re.Match[str]) -> date:
    return date(int(match.group(1)), int(match.group(5)), int(match.group(7)))


def _over_age_threshold(match: re.Match[str], today: date) -> bool:
    year = int(match.group(1))
    month = int(match.group(5)) if match.group(5) else 1
    day = int(match.group(7)) if match.group(7) else 1
    before_birthday = today.month < month or (today.month == month and today.day < day)
    age = today.year - year - (1 if before_birthday else 0)
    return age > AGE_THRESHOLD


def age_over_threshold(age: float) -> bool:
    return age > AGE_THRESHOLD
