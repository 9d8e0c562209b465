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
    NOT_SCORED_RESPONSE,
    OUTCOME,
    PARTIAL_NOTE,
    ParameterResult,
    Status,
    incomplete_message,
    iso,
    missing_labels,
    summary_text,
)
from clinical_ai.inference.engine.types import (
    Completeness,
    Finding,
    ModelResult,
    PatientContext,
    Urgency,
)


class News2Model:
    """NEWS2 on the latest de-identified vital signs of each patient (see the package docstring)."""

    def __init__(
        self,
        *,
        chart: Chart,
        thresholds: Mapping[str, float],
        urgency_by_band: Mapping[str, Urgency],
        qualitative_risk_by_band: Mapping[str, str],
        urgency_not_scored: Urgency = "info",
    ) -> None:
        self.chart = chart
        self.thresholds = dict(thresholds)
        self.urgency_by_band = dict(urgency_by_band)
        self.qualitative_risk_by_band = dict(qualitative_risk_by_band)
        self.urgency_not_scored = urgency_not_scored

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

    def _band_at_least(self, aggregate: int, red: list[Parameter]) -> str | None:
        """The band a partial sum already reaches, or None when it reaches no trigger. Each unscored
        parameter can only add points, so a partial sum of 7 is high, and one of 5 at least medium. A red
        score alone means at least low-medium, but with parameters unscored the key threshold (5) cannot be
        ruled out either, so it escalates as at least medium (the issue's floor; see the model card)."""
        if aggregate >= self.thresholds["high"]:
            return "high"
        if aggregate >= self.thresholds["medium"] or red:
            return "medium"
        return None

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
        band = self._band(aggregate, red) if complete else self._band_at_least(aggregate, red)
        completeness: Completeness = (
            "complete" if complete else ("lower_bound" if band is not None else "not_scored")
        )
        evidence: dict[str, Any] = {
            "parameters": [r.evidence() for r in results],
            "complete": complete,
            "completeness": completeness,
            "missing": missing,
            "stale": stale,
            "red_score_parameters": [p.name for p in red],
            "thresholds": dict(self.thresholds),
            "reference_time": iso(reference),
            "scale": self.chart.scale,
        }
        summary = summary_text(aggregate, band, red, len(results), len(missing), len(stale))
        stale_hours = float(self.thresholds["stale_after_hours"])
        missing_inputs = missing_labels(results, stale_hours)
        if band is None:
            # Below every trigger with parameters unscored: no score, no band, nothing that reads as low.
            evidence.update({"partial_sum": aggregate, "clinical_response": NOT_SCORED_RESPONSE})
            finding = Finding(
                key=FINDING_KEY,
                kind="risk",
                urgency=self.urgency_not_scored,
                summary=summary,
                evidence=evidence,
                risk={"outcome": OUTCOME},
                completeness=completeness,
                missing_inputs=missing_inputs,
            )
        else:
            evidence.update(
                {
                    "aggregate": aggregate,
                    "band": band,
                    "clinical_response": self.chart.clinical_responses[band],
                }
            )
            if not complete:
                evidence["note"] = PARTIAL_NOTE
            finding = Finding(
                key=FINDING_KEY,
                kind="risk",
                urgency=self.urgency_by_band[band],
                summary=summary,
                evidence=evidence,
                score=float(aggregate),
                risk={
                    "band": band,
                    "score": float(aggregate),
                    "qualitative_risk": self.qualitative_risk_by_band[band],
                    "outcome": OUTCOME,
                },
                completeness=completeness,
                missing_inputs=missing_inputs,
            )
        features: dict[str, Any] = {
            r.parameter.name: r.observed.feature if r.status == "scored" and r.observed else None
            for r in results
        }
        # Drift monitoring compares whole scores only: a partial sum is a lower bound, not an aggregate.
        features["news2_aggregate"] = aggregate if complete else None
        messages = () if complete else (incomplete_message(results),)
        return ModelResult(pseudonym, (finding,), features, messages)
