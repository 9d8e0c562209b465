"""What a NEWS2 result says: each parameter's evidence, the one-line summary a clinician reads, the names."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from clinical_ai.fhir.dates import fhir_instant_text
from clinical_ai.inference.builtin.news2.chart import Parameter
from clinical_ai.inference.builtin.news2.reading import Observed
from clinical_ai.inference.engine.observations import LOINC

FINDING_KEY = "news2"
OUTCOME = "Clinical deterioration (NEWS2 escalation)"
NO_VITALS = "no NEWS2 vital signs recorded"
PARTIAL_NOTE = "Partial score: missing and stale parameters are not scored, so the full NEWS2 may be higher."
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
    aggregate: int, band: str, red: list[Parameter], total: int, missing: int, stale: int
) -> str:
    """The finding's summary: the score (a lower bound when incomplete), why, and the risk band."""
    score = f"NEWS2 {aggregate}" if not (missing or stale) else f"NEWS2 ≥{aggregate}"
    gaps = []
    if missing:
        gaps.append(f"{missing} of {total} parameters missing")
    if stale:
        gaps.append(f"{stale} stale" if missing else f"{stale} of {total} parameters stale")
    incomplete = f" (incomplete: {', '.join(gaps)})" if gaps else ""
    why = f", red score in {red[0].label.lower()}" if band == "low-medium" and red else ""
    summary = f"{score}{why}{incomplete} — {band} risk"
    return summary if len(summary) <= _MAX_SUMMARY else f"{score}{incomplete} — {band} risk"


def incomplete_message(missing: list[str], stale: list[str]) -> str:
    parts = [
        f"missing {', '.join(missing)}" if missing else "",
        f"stale {', '.join(stale)}" if stale else "",
    ]
    return f"NEWS2 incomplete: {'; '.join(p for p in parts if p)}"
