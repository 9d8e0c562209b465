"""Undoing a patient's date shift: the real time of a date the de-identified copy holds. Pure Python.

The de-identification stage (``clinical_ai.deid.engine.dates``) moves the calendar date of every ``date``,
``dateTime`` and ``instant`` with a day by the patient's whole number of days (``pseudonyms.date_shift_days``)
and keeps the time of day and the zone offset as they were written. A shifted instant is therefore the
original instant plus exactly that many times 24 hours, whatever offset it is later rewritten in (a model
writes its times in UTC), and taking the days back off is exact. A year or a year and month is not shifted
(the stage redacts it to its year instead), so it is already real and comes back unchanged.

Only the web process, for a clinician allowed to re-identify the patient, should call this: workers and
models see shifted dates only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from clinical_ai.fhir.dates import FhirDateError, Precision, parse_fhir_date_time


@dataclass(frozen=True)
class PatientTime:
    """A FHIR date, dateTime or instant as read, with the shift undone (a shift of 0 reads it as it is).

    ``instant`` is the first moment it covers (timezone-aware; UTC when the text had no zone);
    ``precision`` says how much of it was written: a ``day`` is a calendar date, not a moment, and has no
    time zone to convert; ``year`` and ``month`` were never shifted."""

    instant: datetime
    precision: Precision
    zoned: bool

    @property
    def has_time(self) -> bool:
        return self.precision not in ("year", "month", "day")

    @property
    def calendar_date(self) -> date:
        return self.instant.date()


def unshift_fhir_date_time(text: str, shift_days: int) -> PatientTime | None:
    """The real time of ``text``, a date the de-identification stage shifted by ``shift_days``; ``None``
    when ``text`` is not a FHIR date, dateTime or instant."""
    try:
        parsed = parse_fhir_date_time(text.strip())
    except FhirDateError:
        return None
    if parsed.precision in ("year", "month"):
        return PatientTime(parsed.start, parsed.precision, parsed.zoned)
    try:
        instant = parsed.start - timedelta(days=shift_days)
    except OverflowError:
        return None
    return PatientTime(instant, parsed.precision, parsed.zoned)
