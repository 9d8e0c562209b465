"""What a NEWS2 result says: each parameter's evidence, the one-line summary a clinician reads, the names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from clinical_ai.fhir.dates import fhir_instant_text
from clinical_ai.inference.builtin.news2.chart import BANDS, Parameter
from clinical_ai.inference.builtin.news2.reading import Observed
from clinical_ai.inference.engine.observations import LOINC
from clinical_ai.inference.engine.types import NOT_SCORED_TEXT

FINDING_KEY = "news2"
OUTCOME = "Clinical deterioration (NEWS2 escalation)"
NO_VITALS = "no NEWS2 vital signs recorded"
PARTIAL_NOTE = (
    "Partial score: missing and out-of-date parameters are not scored, so the full NEWS2 may be higher. "
    "Take and record the missing observations now."
)
# What to do when the recorded part reaches no trigger (RCP NEWS2 2017: a score needs all seven parameters,
# and clinical concern escalates whatever the score).
NOT_SCORED_RESPONSE = (
    "Not enough observations to score NEWS2: this is not a low score. Take and record a full set of "
    "observations now (respiration rate, SpO2, air or oxygen, systolic blood pressure, pulse, "
    "consciousness, temperature) and score them. If you are worried about the patient, escalate now on "
    "clinical judgement; do not wait for a score."
)
_MAX_SUMMARY = 139

Status = Literal["scored", "missing", "stale"]


def iso(when: datetime | None) -> str | None:
    return fhir_instant_text(when) if when else None


@dataclass(frozen=True)
class ParameterResult:
    parameter: Parameter
    status: Status
    observed: Observed | None
    reason: str | None = None
    age_hours: float | None = None

    def evidence(self) -> dict[str, Any]:
        parameter, observed = self.parameter, self.observed
        reading = observed.reading if observed else None
        primary_loinc = next(
            (c.partition("|")[2] for c in parameter.codes if c.startswith(f"{LOINC}|")), None
        )
        matched = reading.code if reading else None
        item: dict[str, Any] = {
            "name": parameter.name,
            "label": parameter.label,
            "loinc": matched.partition("|")[2]
            if matched and matched.startswith(f"{LOINC}|")
            else primary_loinc,
            "code": matched,
            "value": observed.value if observed else None,
            "unit": observed.unit if observed else None,
            "original_value": observed.original_value if observed else None,
            "original_unit": observed.original_unit if observed else None,
            "effective": iso(reading.effective) if reading else None,
            "ref": reading.ref if reading else None,
            "resourceType": "Observation" if reading else None,
            "score": observed.score if observed and self.status == "scored" else None,
            "range": observed.range if observed else None,
            "status": self.status,
            "age_hours": self.age_hours,
        }
        if self.reason:
            item["reason"] = self.reason
        return item


def summary_text(
    aggregate: int,
    band: str | None,
    red: list[Parameter],
    total: int,
    missing: int,
    stale: int,
) -> str:
    """The finding's summary. Complete: the score and its band. Incomplete: the partial sum as a lower bound
    and the band it already reaches ("at least medium"), or, when it reaches none, "cannot be scored"."""
    gaps = []
    if missing:
        gaps.append(f"{missing} of {total} parameters missing")
    if stale:
        gaps.append(f"{stale} out of date" if missing else f"{stale} of {total} parameters out of date")
    incomplete = f" ({', '.join(gaps)})" if gaps else ""
    if band is None:
        return f"NEWS2 {NOT_SCORED_TEXT}{incomplete}"[:_MAX_SUMMARY]
    complete = not (missing or stale)
    score = f"NEWS2 {aggregate}" if complete else f"NEWS2 at least {aggregate}"
    # The top band has nothing above it: "at least high" is high.
    risk = f"{band} risk" if complete or band == BANDS[-1] else f"at least {band} risk"
    why = f", red score in {red[0].label.lower()}" if red and (band == "low-medium" or not complete) else ""
    incomplete = f", incomplete{incomplete}" if incomplete else ""
    summary = f"{score}{why}{incomplete} — {risk}"
    return summary if len(summary) <= _MAX_SUMMARY else f"{score}{incomplete} — {risk}"[:_MAX_SUMMARY]


def missing_labels(results: list[ParameterResult], stale_after_hours: float) -> tuple[str, ...]:
    """What was not scored, in the chart's words: "Pulse", "Temperature (over 24 h old)"."""
    return tuple(
        r.parameter.label
        if r.status == "missing"
        else f"{r.parameter.label} (over {stale_after_hours:g} h old)"
        for r in results
        if r.status != "scored"
    )


def incomplete_message(results: list[ParameterResult]) -> str:
    """The run's note, in the chart's words (it is shown to clinicians with the run)."""
    missing = [r.parameter.label for r in results if r.status == "missing"]
    stale = [r.parameter.label for r in results if r.status == "stale"]
    parts = [
        f"not recorded: {', '.join(missing)}" if missing else "",
        f"out of date: {', '.join(stale)}" if stale else "",
    ]
    return f"NEWS2 incomplete; {'; '.join(p for p in parts if p)}"
