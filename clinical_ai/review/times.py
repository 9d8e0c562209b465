"""Times as the review pages show them: real ones in the site's time zone with their age ("3 h ago"), or,
for a viewer who may not undo the date shift, the de-identified copy's own, labelled as shifted. Pure
Python: the caller says which (``TimeLens``) after the vault has allowed it, on record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, tzinfo

from clinical_ai.fhir.dates import fhir_datetime_or_none
from clinical_ai.vault.dates import PatientTime, unshift_fhir_date_time

_MINUTE = 60
_HOUR = 60 * _MINUTE
_DAY = 24 * _HOUR


def _count(number: int, unit: str) -> str:
    return f"{number} {unit}{'' if number == 1 else 's'}"


def time_ago(then: datetime, now: datetime) -> str:
    """How long before ``now`` ``then`` was, as a ward says it: "just now", "25 min ago", "3 h ago",
    "2 days ago", "3 weeks ago", "5 months ago", "4 years ago". A time after ``now`` (a clock ahead of
    ours) says so: "in 2 h"."""
    seconds = int((now - then).total_seconds())
    later = seconds < 0
    seconds = abs(seconds)
    if seconds < _MINUTE:
        return "just now"
    if seconds < _HOUR:
        amount = f"{seconds // _MINUTE} min"
    elif seconds < 2 * _DAY:
        amount = f"{seconds // _HOUR} h"
    elif seconds < 14 * _DAY:
        amount = _count(seconds // _DAY, "day")
    elif seconds < 61 * _DAY:
        amount = _count(seconds // (7 * _DAY), "week")
    elif seconds < 730 * _DAY:
        amount = _count(int(seconds // (30.44 * _DAY)), "month")
    else:
        amount = _count(int(seconds // (365.25 * _DAY)), "year")
    return f"in {amount}" if later else f"{amount} ago"


def days_ago(then: date, today: date) -> str:
    """The age of a calendar date (no time of day): "today", "yesterday", "3 days ago", "2 years ago"."""
    days = (today - then).days
    if days == 0:
        return "today"
    if days == 1:
        return "yesterday"
    if days < 0:
        return "in the future"
    return time_ago(datetime.combine(then, datetime.min.time()), datetime.combine(today, datetime.min.time()))


def age_in_years(birth_date: str, today: date) -> int | None:
    """A person's age in whole years on ``today`` from a FHIR birth date ("1959-03-14"; a year alone or a
    year and month count from their first day); ``None`` when it is not a date or lies after ``today``."""
    born = fhir_datetime_or_none(birth_date)
    if born is None:
        return None
    born_on = born.date()
    years = today.year - born_on.year - ((today.month, today.day) < (born_on.month, born_on.day))
    return years if years >= 0 else None


@dataclass(frozen=True)
class ShownTime:
    """One time as a page shows it: ``text`` ("2026-11-20 03:15 EST"), ``iso`` for ``<time datetime>``,
    ``ago`` ("2 weeks ago", "" where it would mislead), ``real`` False when the date is still shifted."""

    text: str
    iso: str
    ago: str
    real: bool


@dataclass(frozen=True)
class TimeLens:
    """How a page shows a patient's times: ``shift_days`` undoes the de-identification shift (the vault
    allowed it, on record); ``None`` leaves the times shifted, and every one is then shown as such."""

    zone: tzinfo
    now: datetime
    shift_days: int | None = None

    @property
    def real(self) -> bool:
        return self.shift_days is not None

    def read(self, text: str) -> PatientTime | None:
        return unshift_fhir_date_time(text, self.shift_days or 0)

    def show(self, text: str) -> ShownTime | None:
        """``text`` (a FHIR date, dateTime or instant from the de-identified copy) as this page shows it;
        ``None`` when it is not one."""
        moment = self.read(text)
        if moment is None:
            return None
        return self.show_moment(moment)

    def show_moment(self, moment: PatientTime) -> ShownTime:
        if moment.precision == "year":
            written = f"{moment.instant:%Y}"
        elif moment.precision == "month":
            written = f"{moment.instant:%Y-%m}"
        elif moment.precision == "day":
            written = moment.calendar_date.isoformat()
        elif self.real:
            written = self.local_text(moment.instant)
        else:  # a shifted time is only shown as written: converting it to a zone would suggest it is real
            written = f"{moment.instant:%Y-%m-%d %H:%M}"
        iso = moment.instant.isoformat() if moment.has_time else written
        if not self.real:
            return ShownTime(text=written, iso=iso, ago="", real=False)
        if moment.has_time:
            ago = time_ago(moment.instant, self.now)
        elif moment.precision == "day":
            ago = days_ago(moment.calendar_date, self.now.astimezone(self.zone).date())
        else:
            ago = ""
        return ShownTime(text=written, iso=iso, ago=ago, real=True)

    def local_text(self, moment: datetime) -> str:
        return local_time_text(moment, self.zone)


def local_time_text(moment: datetime, zone: tzinfo) -> str:
    """A real, timezone-aware moment in a site's time zone: "2026-11-20 03:15 EST"."""
    local = moment.astimezone(zone)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname() or ''}".rstrip()
