"""A hospital's own risk model as TorchScript over the latest vital signs and labs: no Python to write.

The manifest names each input (an Observation by its codes), and ``parameters.features`` says, in the
order the module expects them, which input feeds each column, the unit to convert to (or "" to take the
value as sent), and the value to use when the input is missing (reported as imputed, never hidden). An
input the manifest marks ``required`` is never imputed: without it the finding "cannot be scored: not
enough observations" says what is missing, with no probability and no band. The
module maps a (batch, features) float tensor to a (batch,) or (batch, 1) tensor of probabilities (or
logits with ``parameters.apply_sigmoid``). ``thresholds.warning`` and ``thresholds.critical`` turn the
probability into the suggestion's urgency. docs/models.md builds and registers one end to end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from clinical_ai.inference.builtin.bands import Bands, risk_summary
from clinical_ai.inference.engine.manifest import ManifestError, ModelManifest, ModelSpec
from clinical_ai.inference.engine.observations import CONVERTERS, convert, latest_reading, readings
from clinical_ai.inference.engine.types import (
    NOT_SCORED_TEXT,
    Finding,
    ModelResult,
    PatientContext,
)


@dataclass(frozen=True)
class Feature:
    input: str
    codes: tuple[str, ...]
    unit: str
    missing_value: float
    required: bool = False


def _features(manifest: ModelManifest) -> list[Feature]:
    inputs = {item.name: item for item in manifest.inputs}
    declared = manifest.parameters.get("features")
    if not isinstance(declared, list) or not declared:
        raise ManifestError(f"{manifest.id}: parameters.features must list the module's input columns")
    features = []
    for i, item in enumerate(declared):
        name = item.get("input") if isinstance(item, dict) else None
        if name not in inputs:
            raise ManifestError(f"{manifest.id}: parameters.features[{i}] names no declared input")
        unit = str(item.get("unit", ""))
        if unit and unit not in CONVERTERS:
            raise ManifestError(f"{manifest.id}: unit {unit!r} is not one of {', '.join(CONVERTERS)}")
        try:
            missing_value = float(item["missing_value"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestError(
                f"{manifest.id}: parameters.features[{i}] needs a numeric missing_value"
            ) from exc
        declared_input = inputs[str(name)]
        features.append(
            Feature(str(name), declared_input.codes, unit, missing_value, declared_input.required)
        )
    return features


class TabularModel:
    def __init__(self, spec: ModelSpec) -> None:
        if spec.module is None:
            raise ManifestError(f"{spec.manifest.id}: a tabular model needs a TorchScript module")
        self.manifest = spec.manifest
        self.module = spec.module
        self.device = spec.device
        self.features = _features(spec.manifest)
        self.apply_sigmoid = bool(spec.manifest.parameters.get("apply_sigmoid", False))
        self.outcome = str(spec.manifest.outputs.get("outcome", "the outcome the model predicts"))
        self.bands = Bands(spec.manifest)

    def _row(self, context: PatientContext) -> tuple[list[float], list[dict[str, Any]]]:
        observations = context.of_type("Observation")
        values: list[float] = []
        used: list[dict[str, Any]] = []
        for feature in self.features:
            reading = latest_reading(readings(observations, feature.codes))
            quantity = reading.quantity if reading is not None else None
            value = None
            if quantity is not None:
                value = convert(quantity, feature.unit) if feature.unit else quantity.value
            if reading is None or value is None:
                values.append(feature.missing_value)
                used.append(
                    {"name": feature.input, "status": "missing", "required": feature.required}
                    | ({} if feature.required else {"imputed": feature.missing_value})
                )
                continue
            values.append(float(value))
            used.append(
                {
                    "name": feature.input,
                    "status": "scored",
                    "value": value,
                    "unit": feature.unit or (quantity.unit_label if quantity else None),
                    "effective": reading.effective.isoformat() if reading.effective else None,
                    "ref": reading.ref,
                    "resourceType": "Observation",
                }
            )
        return values, used

    def predict(self, contexts: Sequence[PatientContext]) -> list[ModelResult]:
        if not contexts:
            return []
        rows = [self._row(context) for context in contexts]
        batch = torch.tensor([values for values, _ in rows], dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            output = self.module(batch)
        scores = output.reshape(len(contexts), -1)[:, 0].float()
        if self.apply_sigmoid:
            scores = torch.sigmoid(scores)
        results = []
        for context, (values, used), probability in zip(contexts, rows, scores.cpu().tolist(), strict=True):
            results.append(self._result(context, values, used, float(probability)))
        return results

    def _result(
        self, context: PatientContext, values: list[float], used: list[dict[str, Any]], probability: float
    ) -> ModelResult:
        features: Mapping[str, Any] = {item["name"]: item.get("value") for item in used}
        missing = [item["name"] for item in used if item["status"] == "missing"]
        if len(missing) == len(used):
            return ModelResult(
                context.patient_pseudonym, (), features, ("none of the model's inputs recorded",)
            )
        required_missing = [item["name"] for item in used if item["status"] == "missing" and item["required"]]
        if required_missing:
            return ModelResult(
                context.patient_pseudonym,
                (self._not_scored(used, missing, required_missing),),
                features,
                (f"required input(s) missing: {', '.join(required_missing)}",),
            )
        urgency, band, _ = self.bands.of(probability)
        summary = risk_summary(self.manifest.name, probability, band, not_recorded=len(missing))
        finding = Finding(
            key="risk",
            kind="risk",
            urgency=urgency,
            summary=summary,
            score=probability,
            evidence={
                "parameters": used,
                "missing": missing,
                "stale": [],
                "complete": not missing,
                "probability": probability,
                "band": band,
                "thresholds": self.bands.as_evidence(),
            },
            risk=self.bands.risk(probability, self.outcome),
            missing_inputs=tuple(_words(name) for name in missing),
        )
        return ModelResult(context.patient_pseudonym, (finding,), {**features, "probability": probability})

    def _not_scored(
        self, used: list[dict[str, Any]], missing: list[str], required_missing: list[str]
    ) -> Finding:
        """A required input is missing: no probability from guessed values, no band, what to record."""
        names = ", ".join(_words(name) for name in required_missing)
        return Finding(
            key="risk",
            kind="risk",
            urgency="info",
            summary=f"{self.manifest.name} {NOT_SCORED_TEXT} (missing {names})"[:139],
            evidence={
                "parameters": used,
                "missing": missing,
                "stale": [],
                "complete": False,
                "completeness": "not_scored",
                "clinical_response": (
                    f"Not enough observations for this model ({names} not recorded): this is not a "
                    "low risk. Record them; meanwhile assess the patient as usual."
                ),
            },
            risk={"outcome": self.outcome},
            completeness="not_scored",
            missing_inputs=tuple(_words(name) for name in missing),
        )


def _words(name: str) -> str:
    """An input's name as words ("heart_rate" -> "heart rate"): the manifest names inputs, not labels."""
    return name.replace("_", " ")


def build(spec: ModelSpec) -> TabularModel:
    return TabularModel(spec)
