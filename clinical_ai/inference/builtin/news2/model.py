"""The NEWS2 model: each parameter's latest reading, staleness against the newest, the sum and the band."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from clinical_ai.inference.builtin.news2.chart import Chart, Parameter
from clinical_ai.inference.builtin.news2.reading import latest_observed
from clinical_ai.inference.builtin.news2.result import (
    FINDING_KEY,
    NO_VITALS,
    OUTCOME,
    PARTIAL_NOTE,
    ParameterResult,
    Status,
    incomplete_message,
    iso,
    summary_text,
)
from clinical_ai.inference.engine.types import Finding, ModelResult, PatientContext, Urgency


class News2Model:
    """NEWS2 on the latest de-identified vital signs of each patient (see the package docstring)."""

    def __init__(
        self,
        *,
        chart: Chart,
        thresholds: Mapping[str, float],
        urgency_by_band: Mapping[str, Urgency],
        qualitative_risk_by_band: Mapping[str, str],
    ) -> None:
        self.chart = chart
        self.thresholds = dict(thresholds)
        self.urgency_by_band = dict(urgency_by_band)
        self.qualitative_risk_by_band = dict(qualitative_risk_by_band)

    def predict(self, contexts: Sequence[PatientContext]) -> list[ModelResult]:
        return [self.assess(context) for context in contexts]

    def assess(self, context: PatientContext) -> ModelResult:
        """One patient: a finding with the (possibly partial) score, or none when no vital sign is usable."""
        observations = context.of_type("Observation")
        selected = [(p, *latest_observed(p, observations)) for p in self.chart.parameters]
        used = [observed for _, observed, _ in selected if observed is not None]
        if not used:
            reasons = [f"{p.name}: {reason}" for p, _, reason in selected if reason != "not recorded"]
            message = f"{NO_VITALS} (none usable: {'; '.join(reasons)})" if reasons else NO_VITALS
            features: dict[str, Any] = {p.name: None for p in self.chart.parameters}
            return ModelResult(
                context.patient_pseudonym, (), {**features, "news2_aggregate": None}, (message,)
            )
        reference = max(cast(datetime, observed.reading.effective) for observed in used)
        stale_after = timedelta(hours=float(self.thresholds["stale_after_hours"]))
        results: list[ParameterResult] = []
        for parameter, observed, reason in selected:
            if observed is None:
                results.append(ParameterResult(parameter, "missing", None, reason))
                continue
            age = reference - cast(datetime, observed.reading.effective)
            status: Status = "stale" if age > stale_after else "scored"
            reason = (
                f"older than {self.thresholds['stale_after_hours']:g} h before the latest vital sign"
                if status == "stale"
                else None
            )
            results.append(
                ParameterResult(parameter, status, observed, reason, round(age.total_seconds() / 3600, 2))
            )
        return self._result(context.patient_pseudonym, results, reference)

    def _band(self, aggregate: int, red: list[Parameter]) -> str:
        if aggregate >= self.thresholds["high"]:
            return "high"
        if aggregate >= self.thresholds["medium"]:
            return "medium"
        return "low-medium" if red else "low"

    def _result(self, pseudonym: str, results: list[ParameterResult], reference: datetime) -> ModelResult:
        scores = {
            r.parameter.name: r.observed.score
            for r in results
            if r.status == "scored" and r.observed is not None and r.observed.score is not None
        }
        aggregate = sum(scores.values())
        red = [
            r.parameter
            for r in results
            if r.parameter.name in scores
            and scores[r.parameter.name] >= self.thresholds["red_single_parameter"]
        ]
        missing = [r.parameter.name for r in results if r.status == "missing"]
        stale = [r.parameter.name for r in results if r.status == "stale"]
        complete = not missing and not stale
        band = self._band(aggregate, red)
        evidence: dict[str, Any] = {
            "parameters": [r.evidence() for r in results],
            "aggregate": aggregate,
            "complete": complete,
            "missing": missing,
            "stale": stale,
            "band": band,
            "red_score_parameters": [p.name for p in red],
            "thresholds": dict(self.thresholds),
            "clinical_response": self.chart.clinical_responses[band],
            "reference_time": iso(reference),
            "scale": self.chart.scale,
        }
        if not complete:
            evidence["note"] = PARTIAL_NOTE
        finding = Finding(
            key=FINDING_KEY,
            kind="risk",
            urgency=self.urgency_by_band[band],
            summary=summary_text(aggregate, band, red, len(results), len(missing), len(stale)),
            evidence=evidence,
            score=float(aggregate),
            risk={
                "band": band,
                "score": float(aggregate),
                "qualitative_risk": self.qualitative_risk_by_band[band],
                "outcome": OUTCOME,
            },
        )
        features: dict[str, Any] = {
            r.parameter.name: r.observed.feature if r.status == "scored" and r.observed else None
            for r in results
        }
        features["news2_aggregate"] = aggregate
        messages = () if complete else (incomplete_message(missing, stale),)
        return ModelResult(pseudonym, (finding,), features, messages)
