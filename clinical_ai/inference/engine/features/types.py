"""Declarative model features: what a manifest says to compute from FHIR, and what was computed. No Django.

A manifest's ``features`` list names, in the order the model takes them, one number per feature: an aggregate
of coded values or events in a window before the prediction time (``"mean heart rate over 24 h"``,
``"emergency visits in 12 months"``, ``"days since the last creatinine"``), or a demographic (age at the
prediction time from the de-identified birth date, administrative sex). ``spec.py`` parses and checks them,
``extract.py`` computes them for one patient. docs/models.md has the format.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Aggregate = Literal["latest", "min", "max", "mean", "count", "slope", "time_since", "present"]
AGGREGATES: tuple[Aggregate, ...] = (
    "latest",
    "min",
    "max",
    "mean",
    "count",
    "slope",
    "time_since",
    "present",
)
# The aggregates that need a number per resource (an Observation's value); the others count events.
NUMERIC_AGGREGATES: frozenset[str] = frozenset({"latest", "min", "max", "mean", "slope"})
Source = Literal["resource", "age", "sex"]
MissingPolicy = Literal["impute", "refuse"]
ValueStatus = Literal["observed", "imputed", "missing"]


@dataclass(frozen=True)
class MissingRule:
    """What to do when a feature has no value: feed ``value`` to the model (shown as imputed, never as
    recorded), or refuse to score the patient ("cannot be scored", naming the feature)."""

    policy: MissingPolicy
    value: float | None = None  # the imputed value when policy is "impute"


@dataclass(frozen=True)
class FeatureSpec:
    """One model input column.

    ``source`` "resource": ``aggregate`` over the patient's ``resource_type`` resources whose ``element``
    (a coded element: ``code``, ``class``, ``type``, ``medicationCodeableConcept``...) holds one of ``codes``
    ("system|code"), dated inside ``lookback`` before the prediction time (``None``: all history). Numeric
    aggregates read the value converted to ``unit`` (UCUM; "" takes the value as sent). ``time_since`` is in
    ``time_unit`` ("d" or "h"); ``slope`` is per ``time_unit``; ``present`` is 1.0 or 0.0.
    ``source`` "age": whole years at the prediction time. ``source`` "sex": 1.0 when the administrative
    gender equals ``equals``, else 0.0.
    ``label`` is the clinician's words ("mean heart rate, last 24 h"): shown on the review page.
    """

    name: str
    label: str
    source: Source
    aggregate: Aggregate | None = None
    resource_type: str = ""
    element: str = ""
    codes: frozenset[str] = frozenset()
    lookback: timedelta | None = None
    unit: str = ""
    time_unit: str = "d"
    equals: str = ""
    missing: MissingRule = MissingRule("refuse")

    @property
    def window_text(self) -> str:
        """The window in words: "last 24 h", "last 90 days", "all history", "at prediction time"."""
        if self.source != "resource":
            return "at prediction time"
        if self.lookback is None:
            return "all history"
        seconds = int(self.lookback.total_seconds())
        if seconds % 86400 == 0 and seconds >= 2 * 86400:
            days = seconds // 86400
            if days % 365 == 0 and days >= 365:
                years = days // 365
                return f"last {years} year" + ("s" if years > 1 else "")
            return f"last {days} day" + ("s" if days > 1 else "")
        hours = seconds / 3600
        return f"last {hours:g} h"


@dataclass(frozen=True)
class FeatureSet:
    features: tuple[FeatureSpec, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def resource_types(self) -> frozenset[str]:
        """The resource types to load for a patient (Patient always: age and sex, and the prediction time)."""
        return frozenset({f.resource_type for f in self.features if f.resource_type} | {"Patient"})

    def __len__(self) -> int:
        return len(self.features)


@dataclass(frozen=True)
class FeatureValue:
    """One computed feature for one patient.

    ``value`` is what the model receives (the imputed value when ``status`` is "imputed"; ``None`` only when
    ``status`` is "missing", which means the missing rule refuses). ``observed`` is the value computed from
    the record, ``None`` when nothing qualified. ``refs`` are the ``SourceResource.ref`` of the resources the
    value came from (newest first; all of them for counts, capped at 20), ``last_time`` the newest of their
    times. ``window_start``/``window_end`` bound the resources considered (``window_start`` None: all history).
    """

    spec: FeatureSpec
    value: float | None
    observed: float | None
    status: ValueStatus
    refs: tuple[str, ...] = ()
    last_time: datetime | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None


@dataclass(frozen=True)
class FeatureVector:
    """Every feature of one patient at ``as_of`` (the prediction time, in the patient's shifted timeline)."""

    as_of: datetime | None
    values: tuple[FeatureValue, ...]

    @property
    def refused(self) -> tuple[FeatureValue, ...]:
        """Features missing whose rule refuses to score: the model must not run on this patient."""
        return tuple(v for v in self.values if v.status == "missing")

    @property
    def row(self) -> list[float]:
        """The model's input row, in manifest order. Raises ValueError when a feature refuses to score."""
        if self.refused:
            raise ValueError("cannot be scored: " + ", ".join(v.spec.name for v in self.refused))
        return [float(v.value) for v in self.values if v.value is not None]
