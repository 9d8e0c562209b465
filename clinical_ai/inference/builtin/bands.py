"""A risk model's probability in bands: the manifest's ``thresholds.warning`` and ``thresholds.critical`` give
the suggestion's urgency (the CDS Hooks card indicator), its band and its qualitative risk. Shared by the
TorchScript tabular model and the declarative models."""

from __future__ import annotations

from typing import Any

from clinical_ai.inference.engine.manifest import ManifestError, ModelManifest
from clinical_ai.inference.engine.types import Urgency


class Bands:
    """A probability's band and urgency against the manifest's thresholds (warning <= critical)."""

    def __init__(self, manifest: ModelManifest) -> None:
        try:
            self.warning = float(manifest.thresholds["warning"])
            self.critical = float(manifest.thresholds["critical"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(
                f"{manifest.id}: thresholds.warning and thresholds.critical are required"
            ) from exc
        if not 0 <= self.warning <= self.critical <= 1:
            raise ManifestError(f"{manifest.id}: thresholds must satisfy 0 <= warning <= critical <= 1")

    def of(self, probability: float) -> tuple[Urgency, str, str]:
        if probability >= self.critical:
            return "critical", "high", "high"
        if probability >= self.warning:
            return "warning", "medium", "moderate"
        return "info", "low", "low"

    def risk(self, probability: float, outcome: str) -> dict[str, Any]:
        """The finding's RiskAssessment details: band, score and probability, qualitative risk, outcome."""
        _, band, qualitative = self.of(probability)
        return {
            "band": band,
            "score": probability,
            "probability": probability,
            "qualitative_risk": qualitative,
            "outcome": outcome,
        }

    def as_evidence(self) -> dict[str, float]:
        return {"warning": self.warning, "critical": self.critical}


def risk_summary(model_name: str, probability: float, band: str, *, not_recorded: int = 0) -> str:
    """The finding's one line (a CDS Hooks card summary, under 140 characters): "Model: 23% medium risk",
    with how many inputs were not recorded and stood in for."""
    more = f" ({not_recorded} input{'s' if not_recorded > 1 else ''} not recorded)" if not_recorded else ""
    return f"{model_name}: {probability:.0%} {band} risk{more}"[:139]
