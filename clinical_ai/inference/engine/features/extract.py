"""Computing a manifest's declarative features for one patient, from the de-identified record. No Django.

Which resources count: those not withdrawn (status entered-in-error or cancelled; also not-done and
not-taken, an immunization or procedure that did not happen; a Condition or AllergyIntolerance whose
verification status is entered-in-error or refuted), dated (an undated resource cannot be placed inside a
window, nor shown to have happened before the prediction time, so it never counts), and dated inside the
window ``(as_of - lookback, as_of]``: anything after ``as_of`` is ignored, so a training sample taken at an
earlier ``as_of`` sees exactly what a live run would have seen then.

Each resource type has one event time (``_EVENT_TIMES``): an Observation's effective time, an Encounter's
start, a MedicationRequest's authoredOn... The prediction time of a live run is the newest event time of the
record (``context_as_of``): the shifted timeline has no "now" a worker may know.

The record is indexed once per call (by resource type, then by coded element, times parsed once and sorted
newest first), so each feature is a scan of the events of its own type.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from clinical_ai.fhir.dates import FhirDateError, fhir_datetime_or_none, parse_fhir_date_time
from clinical_ai.inference.engine.features.types import (
    FeatureSet,
    FeatureSpec,
    FeatureValue,
    FeatureVector,
    ValueStatus,
)
from clinical_ai.inference.engine.observations import (
    IGNORED_STATUSES,
    concept_codes,
    convert,
    element_quantity,
    first_match,
)
from clinical_ai.inference.engine.types import PatientContext, SourceResource

REFS_MAX = 20
TIME_UNIT_SECONDS: dict[str, float] = {"d": 86400.0, "h": 3600.0}

# Statuses that say the event did not happen to the patient.
WITHDRAWN_STATUSES = IGNORED_STATUSES | {"not-done", "not-taken"}
# Condition and AllergyIntolerance: a diagnosis recorded in error or ruled out is not one.
WITHDRAWN_VERIFICATION = frozenset({"entered-in-error", "refuted"})
# Resources that are no event of the patient's care, left out of the prediction time: Provenance.recorded is
# when a record was written (a Synthea export's date, months after the last visit), a Patient's dates are
# birth and death, directories have none.
NOT_EVENTS = frozenset(
    {
        "Patient",
        "Provenance",
        "AuditEvent",
        "Practitioner",
        "PractitionerRole",
        "Organization",
        "Location",
        "Device",
        "Medication",
        "Substance",
        "RelatedPerson",
        "Group",
        "HealthcareService",
        "Endpoint",
        "Bundle",
        "ValueSet",
        "CodeSystem",
        # Billing: a claim is created after the visit it bills (Synthea's a day later), not an event of care.
        "Account",
        "ChargeItem",
        "Claim",
        "ClaimResponse",
        "Coverage",
        "CoverageEligibilityRequest",
        "CoverageEligibilityResponse",
        "ExplanationOfBenefit",
        "Invoice",
        "PaymentNotice",
        "PaymentReconciliation",
    }
)

# A resource's event time, given the times already parsed for this record: the resources of one visit share
# a handful of time strings (a panel, its report, the encounter), and parsing is most of the work of indexing.
TimeOf = Callable[[Mapping[str, Any], dict[str, datetime | None]], datetime | None]


_UNPARSED = datetime.min  # a sentinel: fhir_datetime_or_none never gives a naive datetime


def _first_time(*paths: str) -> TimeOf:
    """The first of ``paths`` ("onsetDateTime", "period.start") that holds a FHIR date/dateTime/instant."""
    split = tuple(tuple(path.split(".")) for path in paths)

    def time_of(resource: Mapping[str, Any], parsed: dict[str, datetime | None]) -> datetime | None:
        for path in split:
            value: Any = resource.get(path[0])
            if len(path) == 2:
                value = value.get(path[1]) if isinstance(value, Mapping) else None
            if isinstance(value, str):
                when = parsed.get(value, _UNPARSED)
                if when is _UNPARSED:
                    when = parsed[value] = fhir_datetime_or_none(value)
                if when is not None:
                    return when
        return None

    return time_of


# observations.observation_effective's rule (tests/unit/inference/features check they agree), with the cache.
_OBSERVATION_TIME = _first_time(
    "effectiveDateTime", "effectivePeriod.end", "effectivePeriod.start", "effectiveInstant", "issued"
)


_EVENT_TIMES: dict[str, TimeOf] = {
    "Observation": _OBSERVATION_TIME,
    "DiagnosticReport": _OBSERVATION_TIME,
    "Condition": _first_time("onsetDateTime", "onsetPeriod.start", "recordedDate"),
    "AllergyIntolerance": _first_time("onsetDateTime", "onsetPeriod.start", "recordedDate"),
    "Encounter": _first_time("period.start"),
    "MedicationRequest": _first_time("authoredOn"),
    "MedicationStatement": _first_time("effectiveDateTime", "effectivePeriod.start"),
    "MedicationAdministration": _first_time("effectiveDateTime", "effectivePeriod.start"),
    "Procedure": _first_time("performedDateTime", "performedPeriod.start"),
    "Immunization": _first_time("occurrenceDateTime"),
}
# Any other type (for the prediction time only): its clinical time first, when it was written last.
_OTHER_TIME = _first_time(
    "effectiveDateTime",
    "effectivePeriod.start",
    "effectiveInstant",
    "occurrenceDateTime",
    "occurrencePeriod.start",
    "performedDateTime",
    "performedPeriod.start",
    "period.start",
    "billablePeriod.start",
    "started",
    "onsetDateTime",
    "authoredOn",
    "date",
    "recordedDate",
    "issued",
    "created",
)


def event_time(resource: Mapping[str, Any]) -> datetime | None:
    """When ``resource`` happened to the patient, by its type's rule; ``None`` when undated or no event."""
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or resource_type in NOT_EVENTS:
        return None
    return _EVENT_TIMES.get(resource_type, _OTHER_TIME)(resource, {})


def withdrawn(resource: Mapping[str, Any]) -> bool:
    """The resource says it did not happen: recorded in error, cancelled, not done, refuted."""
    if resource.get("status") in WITHDRAWN_STATUSES:
        return True
    verification = resource.get("verificationStatus")
    return verification is not None and any(
        key.rpartition("|")[2] in WITHDRAWN_VERIFICATION for key in concept_codes(verification)
    )


def element_codes(value: Any) -> frozenset[str]:
    """The ``"system|code"`` keys of a coded element: a CodeableConcept, a Coding (Encounter.class in R4),
    or a list of either (Encounter.type, reasonCode)."""
    if isinstance(value, list):
        return frozenset().union(*(element_codes(item) for item in value))
    if not isinstance(value, Mapping):
        return frozenset()
    if "coding" in value:
        return frozenset(concept_codes(value))
    if isinstance(value.get("code"), str):
        return frozenset({f"{value.get('system') or ''}|{value['code']}"})
    return frozenset()


def _observation_codes(resource: Mapping[str, Any]) -> frozenset[str]:
    codes = set(concept_codes(resource.get("code")))
    for component in resource.get("component") or ():
        if isinstance(component, Mapping):
            codes.update(concept_codes(component.get("code")))
    return frozenset(codes)


def context_as_of(context: PatientContext) -> datetime | None:
    """The prediction time of a live run: the newest event time in the patient's record, any resource type
    (``event_time``), withdrawn resources ignored; ``None`` when nothing is dated."""
    return _RecordIndex(context).newest()


# --- the per-patient index ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Event:
    time: datetime
    order: int  # position in the record: on equal times the later one is the newer
    source: SourceResource
    codes: frozenset[str]


class _RecordIndex:
    """The record grouped by resource type; events (dated, not withdrawn, newest first) built on first use
    for each type and coded element, and reused by every feature that reads them."""

    def __init__(self, context: PatientContext) -> None:
        self._by_type: dict[str, list[tuple[int, SourceResource]]] = {}
        for order, source in enumerate(context.resources):
            self._by_type.setdefault(source.resource_type, []).append((order, source))
        self._dated: dict[str, list[tuple[datetime, int, SourceResource]]] = {}
        self._events: dict[tuple[str, str], list[_Event]] = {}
        self._parsed: dict[str, datetime | None] = {}  # time strings of this record, parsed once

    def newest(self) -> datetime | None:
        """The newest event time of every type but ``NOT_EVENTS`` (each type's times indexed on the way)."""
        newest: datetime | None = None
        for resource_type in self._by_type:
            if resource_type in NOT_EVENTS:
                continue
            dated = self._dated_of(resource_type)
            if dated and (newest is None or dated[0][0] > newest):
                newest = dated[0][0]
        return newest

    @property
    def patient(self) -> SourceResource | None:
        patients = self._by_type.get("Patient")
        return patients[0][1] if patients else None

    def _dated_of(self, resource_type: str) -> list[tuple[datetime, int, SourceResource]]:
        dated = self._dated.get(resource_type)
        if dated is None:
            time_of = _EVENT_TIMES.get(resource_type, _OTHER_TIME)
            dated = []
            for order, source in self._by_type.get(resource_type, ()):
                if withdrawn(source.resource):
                    continue
                when = time_of(source.resource, self._parsed)
                if when is not None:
                    dated.append((when, order, source))
            dated.sort(key=lambda item: (item[0], item[1]), reverse=True)
            self._dated[resource_type] = dated
        return dated

    def events(self, resource_type: str, element: str) -> list[_Event]:
        key = (resource_type, element)
        events = self._events.get(key)
        if events is None:
            if resource_type == "Observation":  # a code inside a panel's component counts as the panel's
                events = [
                    _Event(when, order, source, _observation_codes(source.resource))
                    for when, order, source in self._dated_of(resource_type)
                ]
            else:
                events = [
                    _Event(when, order, source, element_codes(source.resource.get(element)))
                    for when, order, source in self._dated_of(resource_type)
                ]
            self._events[key] = events
        return events


# --- computing ------------------------------------------------------------------------------------


def features_extract(
    feature_set: FeatureSet, context: PatientContext, *, as_of: datetime | None = None
) -> FeatureVector:
    """Every feature of ``feature_set`` for the patient of ``context`` at ``as_of`` (timezone-aware; ``None``:
    the record's newest event, ``context_as_of``). Without any dated event there is no prediction time:
    resource features then find nothing and age is missing, each handled by its missing rule."""
    if as_of is not None and as_of.utcoffset() is None:
        raise ValueError("as_of must be timezone-aware")
    index = _RecordIndex(context)
    if as_of is None:
        as_of = index.newest()
    values = tuple(_feature_value(spec, index, as_of) for spec in feature_set.features)
    return FeatureVector(as_of=as_of, values=values)


def _feature_value(spec: FeatureSpec, index: _RecordIndex, as_of: datetime | None) -> FeatureValue:
    if spec.source == "age":
        patient = index.patient
        age = (
            None if patient is None or as_of is None else age_years(patient.resource.get("birthDate"), as_of)
        )
        refs = (patient.ref,) if patient is not None and age is not None else ()
        return _valued(spec, age, refs=refs, window_end=as_of)
    if spec.source == "sex":
        patient = index.patient
        gender = patient.resource.get("gender") if patient is not None else None
        if patient is None or not isinstance(gender, str) or not gender:
            return _valued(spec, None, window_end=as_of)
        return _valued(spec, 1.0 if gender == spec.equals else 0.0, refs=(patient.ref,), window_end=as_of)
    return _resource_value(spec, index, as_of)


def _resource_value(spec: FeatureSpec, index: _RecordIndex, as_of: datetime | None) -> FeatureValue:
    start = as_of - spec.lookback if as_of is not None and spec.lookback is not None else None
    events = (
        [] if as_of is None else _window(index.events(spec.resource_type, spec.element), spec, start, as_of)
    )
    aggregate = spec.aggregate

    def done(
        observed: float | None, refs: tuple[str, ...] = (), last: datetime | None = None
    ) -> FeatureValue:
        return _valued(spec, observed, refs=refs, last_time=last, window_start=start, window_end=as_of)

    last_time = events[0].time if events else None
    if aggregate == "count":
        return done(float(len(events)), _refs(events), last_time)
    if aggregate == "present":
        return done(1.0 if events else 0.0, _refs(events), last_time)
    if aggregate == "time_since":
        if not events or as_of is None:
            return done(None)
        elapsed = (as_of - events[0].time).total_seconds() / TIME_UNIT_SECONDS[spec.time_unit]
        return done(elapsed, (events[0].source.ref,), last_time)
    points = _observation_points(events, spec)
    if not points:
        return done(None)
    if aggregate in ("latest", "min", "max"):
        chosen = points[0]  # newest first: on a tie of min or max the newest reading is the one cited
        if aggregate == "min":
            chosen = min(points, key=lambda point: point.value)
        elif aggregate == "max":
            chosen = max(points, key=lambda point: point.value)
        return done(chosen.value, (chosen.ref,), chosen.time)
    if aggregate == "mean":
        return done(math.fsum(point.value for point in points) / len(points), _refs(points), points[0].time)
    slope = least_squares_slope(
        [(point.time, point.value) for point in points], unit=TIME_UNIT_SECONDS[spec.time_unit]
    )
    return done(
        slope, _refs(points) if slope is not None else (), points[0].time if slope is not None else None
    )


def _window(
    events: Sequence[_Event], spec: FeatureSpec, start: datetime | None, end: datetime
) -> list[_Event]:
    wanted = spec.codes
    chosen: list[_Event] = []
    for event in events:  # newest first
        if event.time > end:
            continue
        if start is not None and event.time <= start:
            break
        if not wanted or not wanted.isdisjoint(event.codes):
            chosen.append(event)
    return chosen


@dataclass(frozen=True, slots=True)
class _Point:
    time: datetime
    ref: str
    value: float


def _observation_points(events: Iterable[_Event], spec: FeatureSpec) -> list[_Point]:
    """The values coded with one of the feature's codes (top level or component), converted to its unit;
    newest first. A value recorded as absent, without a number, or in a unit that does not convert is
    skipped: converting an unknown unit would be a guess."""
    points: list[_Point] = []
    for event in events:
        resource = event.source.resource
        elements: list[Mapping[str, Any]] = []
        if first_match(resource.get("code"), spec.codes) is not None:
            elements.append(resource)
        for component in resource.get("component") or ():
            if isinstance(component, Mapping) and first_match(component.get("code"), spec.codes) is not None:
                elements.append(component)
        for element in elements:
            if "dataAbsentReason" in element:
                continue
            quantity = element_quantity(element)
            if quantity is None:
                continue
            value = convert(quantity, spec.unit) if spec.unit else quantity.value
            if value is not None and math.isfinite(value):
                points.append(_Point(event.time, event.source.ref, value))
    return points


def least_squares_slope(points: Sequence[tuple[datetime, float]], *, unit: float) -> float | None:
    """The ordinary least-squares slope of value against time, per ``unit`` seconds; ``None`` with fewer than
    two points or when every point has the same time (no trend can be drawn)."""
    if len(points) < 2:
        return None
    origin = points[0][0]
    xs = [(when - origin).total_seconds() / unit for when, _ in points]
    ys = [value for _, value in points]
    mean_x = math.fsum(xs) / len(xs)
    mean_y = math.fsum(ys) / len(ys)
    spread = math.fsum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    return math.fsum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def _refs(items: Iterable[_Event | _Point]) -> tuple[str, ...]:
    refs: list[str] = []
    for item in items:
        ref = item.source.ref if isinstance(item, _Event) else item.ref
        if ref not in refs:
            refs.append(ref)
            if len(refs) == REFS_MAX:
                break
    return tuple(refs)


def _valued(
    spec: FeatureSpec,
    observed: float | None,
    *,
    refs: tuple[str, ...] = (),
    last_time: datetime | None = None,
    window_start: datetime | None = None,
    window_end: datetime | None = None,
) -> FeatureValue:
    """The value the model receives: what was observed, else the missing rule's imputed value, else none
    (the rule refuses to score)."""
    status: ValueStatus = "observed"
    value = observed
    if observed is None:
        status, value = (
            ("imputed", spec.missing.value) if spec.missing.policy == "impute" else ("missing", None)
        )
    return FeatureValue(
        spec=spec,
        value=value,
        observed=observed,
        status=status,
        refs=refs,
        last_time=last_time,
        window_start=window_start,
        window_end=window_end,
    )


def age_years(birth_date: Any, as_of: datetime) -> float | None:
    """Whole years from ``birth_date`` (a FHIR date) to ``as_of``'s calendar day, or ``None`` when it is not
    a date or lies after ``as_of``.

    A birth date cut to the year or the month (de-identification may keep only "1970" or "1970-03") is read
    at the middle of that span (2 July 1970, 16 March 1970): the age is then off by at most half a year
    either way, where the start of the span would always add up to a whole year. Within that span the age
    is 0, never negative. Training (an explicit ``as_of``) and scoring use this same rule.
    """
    if not isinstance(birth_date, str):
        return None
    try:
        parsed = parse_fhir_date_time(birth_date.strip())
        span_end = parsed.end()
    except FhirDateError:
        return None
    today = as_of.date()
    first_day = parsed.start.date()
    if first_day > today:
        return None
    born: date = first_day
    if parsed.precision in ("year", "month"):
        born = (parsed.start + (span_end - parsed.start) / 2).date()
    years = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    return float(max(years, 0))
