"""A hospital's own model declared by its manifest alone: features from FHIR, a model file, an explanation.

Kinds ``onnx`` and ``torch_export`` compute the manifest's ``features`` for each patient (engine/features),
score the rows in one batch with the runner the registry loaded, and explain every result against the
manifest's reference rows (TreeSHAP for a tree ensemble, exact for a linear model, Shapley values otherwise).
Kind ``text_classifier`` reads the patient's notes (``text``), scores them with a transformers sequence
classifier and weighs each sentence. Each patient's result carries:

- one risk finding: the probability, its band against ``thresholds``, the inputs with their values, windows
  and source resources, and "what drove this score"; or "cannot be scored" naming the inputs a refusing
  missing rule needs; or a failure when the model gave no number (NaN) for that patient alone;
- the sealed record of the run: the feature vector exactly as the model received it, with the prediction
  time, each value's window and sources, and the explanation, so the result can be reproduced.

docs/models.md shows the manifest; benchmarks/ed_visit_model.py trains and exports the worked example.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from clinical_ai.fhir.dates import fhir_datetime_or_none
from clinical_ai.inference.builtin.bands import Bands, risk_summary
from clinical_ai.inference.builtin.problem_list.notes import Note, notes_read
from clinical_ai.inference.engine.explain.links import expit
from clinical_ai.inference.engine.explain.text import sentence_occlusion
from clinical_ai.inference.engine.explain.types import METHOD_TEXT, Explanation
from clinical_ai.inference.engine.features.extract import context_as_of, features_extract
from clinical_ai.inference.engine.features.types import FeatureSet, FeatureSpec, FeatureValue, FeatureVector
from clinical_ai.inference.engine.manifest import ManifestError, ModelManifest, ModelSpec, TextInput
from clinical_ai.inference.engine.observations import concept_codes
from clinical_ai.inference.engine.runners.base import FloatArray, TabularExplainer, TabularRunner
from clinical_ai.inference.engine.types import (
    ClinicalModel,
    Finding,
    ModelResult,
    PatientContext,
)

NAN_FAILURE = "the model gave no number for this patient (NaN or infinite)"
EXPLAIN_FAILURE = "the explanation of this result could not be computed"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _feature_evidence(item: FeatureValue) -> dict[str, Any]:
    """One input as the review page shows it: value, unit, window, newest source time and the sources."""
    spec = item.spec
    status = {"observed": "scored", "imputed": "imputed", "missing": "missing"}[item.status]
    row: dict[str, Any] = {
        "name": spec.name,
        "label": spec.label,
        "source": spec.source,
        "status": status,
        "value": _finite(item.observed) if item.status == "observed" else None,
        "unit": _unit(spec),
        "window": spec.window_text,
        "aggregate": spec.aggregate or spec.source,
        "effective": _iso(item.last_time),
        "ref": item.refs[0] if item.refs else None,
        "refs": list(item.refs),
        "resourceType": spec.resource_type or "Patient",
        "required": spec.missing.policy == "refuse",
    }
    if item.status == "imputed":
        row["imputed"] = item.value
    return row


def _unit(spec: FeatureSpec) -> str:
    """The value's UCUM unit: "a" for age, the time unit for time since, "<unit>/<time unit>" for a slope."""
    if spec.source == "age":
        return "a"
    if spec.aggregate == "time_since":
        return spec.time_unit
    if spec.aggregate == "slope":
        return f"{spec.unit or '1'}/{spec.time_unit}"
    return spec.unit


def _record_feature(item: FeatureValue) -> dict[str, Any]:
    return {
        "name": item.spec.name,
        "value": item.value,
        "observed": _finite(item.observed),
        "status": item.status,
        "window_start": _iso(item.window_start),
        "window_end": _iso(item.window_end),
        "last_time": _iso(item.last_time),
        "refs": list(item.refs),
    }


def explanation_evidence(explanation: Explanation, inputs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A tabular explanation for the review page: every input with its contribution, largest first."""
    contributions = [
        {**item, "contribution": float(value)}
        for item, value in zip(inputs, explanation.contributions, strict=True)
    ]
    contributions.sort(key=lambda item: abs(item["contribution"]), reverse=True)
    base_probability = (
        float(expit(explanation.base_value))
        if explanation.output_space == "log-odds"
        else explanation.base_value
    )
    return {
        "method": explanation.method,
        "method_text": METHOD_TEXT.get(explanation.method, explanation.method),
        "output_space": explanation.output_space,
        "base_value": explanation.base_value,
        "output_value": explanation.output_value,
        "base_probability": base_probability,
        "references": explanation.references,
        "contributions": contributions,
    }


def background_load(
    path: Path, features: FeatureSet, *, model_id: str
) -> tuple[FloatArray, FloatArray | None]:
    """The reference rows explanations are computed against: ``{"features": [...], "rows": [[...]],
    "weights": [...]}``, its feature names equal to the manifest's, in order."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(
            f"{model_id}: the explanation's reference rows ({path.name}) do not read: {exc}"
        ) from exc
    if not isinstance(data, dict) or data.get("features") != list(features.names):
        raise ManifestError(
            f"{model_id}: the reference rows ({path.name}) name features other than the manifest's, "
            "or in another order"
        )
    try:
        rows = np.asarray(data.get("rows"), dtype=np.float64)
        weights = None if data.get("weights") is None else np.asarray(data["weights"], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ManifestError(f"{model_id}: the reference rows ({path.name}) are not numbers") from exc
    if rows.ndim != 2 or rows.shape[0] < 1 or rows.shape[1] != len(features):
        raise ManifestError(
            f"{model_id}: the reference rows ({path.name}) must be a list of rows of {len(features)} numbers"
        )
    if weights is not None and (
        weights.shape != (rows.shape[0],) or (weights < 0).any() or weights.sum() <= 0
    ):
        raise ManifestError(
            f"{model_id}: the reference weights ({path.name}) must be one non-negative number per row"
        )
    if not np.isfinite(rows).all():
        raise ManifestError(f"{model_id}: the reference rows ({path.name}) hold a missing or infinite value")
    return rows, weights


def readable(context: PatientContext, manifest: ModelManifest) -> PatientContext:
    """The patient's resources of the types the model reads (``ModelManifest.resource_types``), as the
    service loads them: a whole bundle offline gives the same prediction time and result as in service."""
    types = manifest.resource_types
    kept = tuple(source for source in context.resources if source.resource_type in types)
    return context if len(kept) == len(context.resources) else PatientContext(context.patient_pseudonym, kept)


class DeclarativeTabularModel:
    """Kinds onnx and torch_export: declarative features, one batched call, an explanation per patient."""

    def __init__(self, spec: ModelSpec) -> None:
        manifest = spec.manifest
        runner: TabularRunner | None = spec.extras.get("runner")
        if manifest.features is None or runner is None:
            raise ManifestError(
                f"{manifest.id}: a {manifest.kind} model needs features and a loaded model file"
            )
        self.manifest = manifest
        self.features: FeatureSet = manifest.features
        self.runner = runner
        width = runner.input_width
        if width is not None and width != len(self.features):
            raise ManifestError(
                f"{manifest.id}: the model file takes rows of {width} values; the manifest declares "
                f"{len(self.features)} features"
            )
        background_name = manifest.explanation.get("background")
        if not background_name:
            raise ManifestError(
                f"{manifest.id}: explanation.background must name the artifact of reference rows that "
                "explanations are computed against"
            )
        rows, weights = background_load(
            spec.artifacts[str(background_name)], self.features, model_id=manifest.id
        )
        self.explainer: TabularExplainer = runner.explainer(rows, weights)
        self.bands = Bands(manifest)
        self.outcome = str(manifest.outputs.get("outcome", "the outcome the model predicts"))

    def predict(self, contexts: Sequence[PatientContext]) -> list[ModelResult]:
        vectors = [features_extract(self.features, readable(context, self.manifest)) for context in contexts]
        scorable = [i for i, vector in enumerate(vectors) if not vector.refused]
        probabilities: dict[int, float] = {}
        explanations: dict[int, Explanation | None] = {}
        if scorable:
            rows = np.asarray([vectors[i].row for i in scorable], dtype=np.float64)
            scores = self.runner.predict(rows)
            finite = [k for k, score in enumerate(scores) if math.isfinite(float(score))]
            for k in finite:
                probabilities[scorable[k]] = float(scores[k])
            if finite:
                explained = self._explain(rows[finite])
                for k, explanation in zip(finite, explained, strict=True):
                    explanations[scorable[k]] = explanation
        results = []
        for index, (context, vector) in enumerate(zip(contexts, vectors, strict=True)):
            if vector.refused:
                results.append(self._not_scored(context, vector))
            elif index not in probabilities:
                results.append(self._failed(context, vector, NAN_FAILURE))
            else:
                results.append(self._scored(context, vector, probabilities[index], explanations[index]))
        return results

    def _explain(self, rows: FloatArray) -> list[Explanation | None]:
        try:
            explained: list[Explanation | None] = list(self.explainer.explain(rows))
        except (ValueError, FloatingPointError, ArithmeticError):
            return [None] * len(rows)
        return [
            e if e is not None and all(math.isfinite(c) for c in e.contributions) else None for e in explained
        ]

    def _inputs(self, vector: FeatureVector) -> list[dict[str, Any]]:
        return [_feature_evidence(item) for item in vector.values]

    def _record(self, vector: FeatureVector, **more: Any) -> dict[str, Any]:
        return {
            "model": {
                "id": self.manifest.id,
                "version": self.manifest.version,
                "manifest_sha256": self.manifest.sha256,
            },
            "as_of": _iso(vector.as_of),
            "features": [_record_feature(item) for item in vector.values],
            **more,
        }

    def _monitored(self, vector: FeatureVector) -> dict[str, Any]:
        """What drift monitoring compares: each feature's observed value (None when not recorded)."""
        return {item.spec.name: _finite(item.observed) for item in vector.values}

    def _failed(self, context: PatientContext, vector: FeatureVector, failure: str) -> ModelResult:
        return ModelResult(
            context.patient_pseudonym,
            (),
            self._monitored(vector),
            failure=failure,
            record=self._record(vector, row=vector.row, failure=failure),
        )

    def _scored(
        self,
        context: PatientContext,
        vector: FeatureVector,
        probability: float,
        explanation: Explanation | None,
    ) -> ModelResult:
        if not 0.0 <= probability <= 1.0:
            return self._failed(context, vector, f"the model gave {probability:.3g}, not a probability")
        if explanation is None:
            return self._failed(context, vector, EXPLAIN_FAILURE)
        inputs = self._inputs(vector)
        imputed = [item for item in inputs if item["status"] == "imputed"]
        urgency, band, _ = self.bands.of(probability)
        summary = risk_summary(self.manifest.name, probability, band, not_recorded=len(imputed))
        explained = explanation_evidence(explanation, inputs)
        finding = Finding(
            key="risk",
            kind="risk",
            urgency=urgency,
            summary=summary,
            score=probability,
            evidence={
                "parameters": inputs,
                "missing": [],  # nothing refused; imputed inputs are marked so in "parameters"
                "imputed": [item["name"] for item in imputed],
                "stale": [],
                "complete": not imputed,
                "probability": probability,
                "band": band,
                "thresholds": self.bands.as_evidence(),
                "as_of": _iso(vector.as_of),
                "explanation": explained,
            },
            risk=self.bands.risk(probability, self.outcome),
            missing_inputs=tuple(item["label"] for item in imputed),
        )
        record = self._record(
            vector,
            row=vector.row,
            probability=probability,
            explanation={
                "method": explanation.method,
                "output_space": explanation.output_space,
                "base_value": explanation.base_value,
                "output_value": explanation.output_value,
                "contributions": list(explanation.contributions),
                "references": explanation.references,
            },
        )
        return ModelResult(
            context.patient_pseudonym,
            (finding,),
            {**self._monitored(vector), "probability": probability},
            record=record,
        )

    def _not_scored(self, context: PatientContext, vector: FeatureVector) -> ModelResult:
        inputs = self._inputs(vector)
        labels = [item.spec.label for item in vector.refused]
        names = ", ".join(labels)
        finding = Finding(
            key="risk",
            kind="risk",
            urgency="info",
            summary=f"{self.manifest.name} cannot be scored: {names} not recorded"[:139],
            evidence={
                "parameters": inputs,
                "missing": [item.spec.name for item in vector.refused],
                "stale": [],
                "complete": False,
                "completeness": "not_scored",
                "as_of": _iso(vector.as_of),
                "clinical_response": (
                    f"Not enough recorded for this model ({names}): this is not a low risk. "
                    "Assess the patient as usual."
                ),
            },
            risk={"outcome": self.outcome},
            completeness="not_scored",
            missing_inputs=tuple(labels),
        )
        return ModelResult(
            context.patient_pseudonym,
            (finding,),
            self._monitored(vector),
            (f"cannot be scored, not recorded: {names}",),
            record=self._record(vector, refused=[item.spec.name for item in vector.refused]),
        )


# --- text classifiers ---------------------------------------------------------------------------------


def _note_codes(source: Mapping[str, Any]) -> set[str]:
    field = "type" if source.get("resourceType") == "DocumentReference" else "code"
    return set(concept_codes(source.get(field)))


def notes_for(context: PatientContext, text: TextInput, as_of: datetime | None) -> list[Note]:
    """The notes the manifest names, dated inside the window before the prediction time, newest first."""
    by_ref = {source.ref: source.resource for source in context.resources}
    start = as_of - text.lookback if as_of is not None and text.lookback is not None else None
    chosen: list[tuple[datetime | None, Note]] = []
    for note in notes_read(context).notes:
        if note.resource_type not in text.resource_types:
            continue
        if text.codes and not (_note_codes(by_ref.get(note.ref, {})) & text.codes):
            continue
        when = fhir_datetime_or_none(note.date) if note.date else None
        if as_of is not None and when is not None and when > as_of:
            continue
        if start is not None and (when is None or when <= start):
            continue
        chosen.append((when, note))
    chosen.sort(key=lambda pair: (pair[0] is not None, pair[0] or datetime.min), reverse=True)
    notes = [note for _, note in chosen]
    return notes[:1] if text.select == "latest" else notes


class DeclarativeTextModel:
    """Kind text_classifier: the probability from a sequence classifier over the patient's notes, with the
    sentences that weigh most."""

    def __init__(self, spec: ModelSpec) -> None:
        manifest = spec.manifest
        classifier = spec.extras.get("classifier")
        if manifest.text is None or classifier is None:
            raise ManifestError(f"{manifest.id}: a text_classifier needs 'text' and a loaded classifier")
        self.manifest = manifest
        self.text: TextInput = manifest.text
        self.classifier = classifier
        self.bands = Bands(manifest)
        self.outcome = str(manifest.outputs.get("outcome", "the outcome the model predicts"))
        self.max_sentences = int(manifest.parameters.get("max_sentences", 40))

    def _document(self, notes: list[Note]) -> tuple[str, list[tuple[int, int, Note]]]:
        """The text the classifier reads: the notes joined (newest first), cut at max_chars, with each
        note's span so a sentence can be traced to its note."""
        parts: list[str] = []
        spans: list[tuple[int, int, Note]] = []
        length = 0
        for note in notes:
            piece = note.text.strip()[: max(0, self.text.max_chars - length)]
            if not piece:
                break
            spans.append((length, length + len(piece), note))
            parts.append(piece)
            length += len(piece) + 2
        return "\n\n".join(parts), spans

    def predict(self, contexts: Sequence[PatientContext]) -> list[ModelResult]:
        documents = []
        for context in contexts:
            context = readable(context, self.manifest)
            as_of = context_as_of(context)
            documents.append((as_of, *self._document(notes_for(context, self.text, as_of))))
        texts = [text for _, text, _ in documents if text]
        scores = iter(self.classifier.predict_texts(texts) if texts else [])
        results = []
        for context, (as_of, text, spans) in zip(contexts, documents, strict=True):
            if not text:
                results.append(self._not_scored(context, as_of))
                continue
            probability = float(next(scores))
            record = {
                "model": {
                    "id": self.manifest.id,
                    "version": self.manifest.version,
                    "manifest_sha256": self.manifest.sha256,
                },
                "as_of": _iso(as_of),
                "notes": [{"ref": note.ref, "start": start, "end": end} for start, end, note in spans],
            }
            if not math.isfinite(probability) or not 0 <= probability <= 1:
                results.append(
                    ModelResult(context.patient_pseudonym, (), {}, failure=NAN_FAILURE, record=record)
                )
                continue
            explanation = sentence_occlusion(self.classifier, text, max_sentences=self.max_sentences)
            results.append(self._scored(context, as_of, text, spans, probability, explanation, record))
        return results

    def _scored(
        self,
        context: PatientContext,
        as_of: datetime | None,
        text: str,
        spans: list[tuple[int, int, Note]],
        probability: float,
        explanation: Explanation,
        record: dict[str, Any],
    ) -> ModelResult:
        def note_of(offset: int) -> Note | None:
            return next((note for start, end, note in spans if start <= offset < end), None)

        sentences = []
        for start, end, weight in explanation.sentence_weights:
            note = note_of(start)
            sentences.append(
                {
                    "ref": note.ref if note else None,
                    "effective": note.date if note else None,
                    "text": text[start:end],
                    "weight": weight,
                }
            )
        urgency, band, _ = self.bands.of(probability)
        finding = Finding(
            key="risk",
            kind="risk",
            urgency=urgency,
            summary=risk_summary(self.manifest.name, probability, band),
            score=probability,
            evidence={
                "parameters": [],
                "missing": [],
                "stale": [],
                "complete": True,
                "probability": probability,
                "band": band,
                "thresholds": self.bands.as_evidence(),
                "as_of": _iso(as_of),
                "notes": [{"ref": note.ref, "effective": note.date} for _, _, note in spans],
                "explanation": {
                    "method": explanation.method,
                    "method_text": METHOD_TEXT.get(explanation.method, explanation.method),
                    "output_space": explanation.output_space,
                    "base_value": explanation.base_value,
                    "output_value": explanation.output_value,
                    "sentences": sentences,
                },
            },
            risk=self.bands.risk(probability, self.outcome),
        )
        record["probability"] = probability
        record["sentence_weights"] = [list(item) for item in explanation.sentence_weights]
        return ModelResult(
            context.patient_pseudonym,
            (finding,),
            {"notes_read": len(spans), "characters": len(text), "probability": probability},
            record=record,
        )

    def _not_scored(self, context: PatientContext, as_of: datetime | None) -> ModelResult:
        finding = Finding(
            key="risk",
            kind="risk",
            urgency="info",
            summary=f"{self.manifest.name} cannot be scored: no clinical note in its window"[:139],
            evidence={
                "parameters": [],
                "missing": ["clinical note"],
                "stale": [],
                "complete": False,
                "completeness": "not_scored",
                "as_of": _iso(as_of),
                "clinical_response": "No note this model reads was recorded: this is not a low risk.",
            },
            risk={"outcome": self.outcome},
            completeness="not_scored",
            missing_inputs=("clinical note",),
        )
        return ModelResult(
            context.patient_pseudonym,
            (finding,),
            {"notes_read": 0, "characters": 0},
            ("cannot be scored: no clinical note in the window",),
            record={"as_of": _iso(as_of), "notes": []},
        )


def build(spec: ModelSpec) -> ClinicalModel:
    if spec.manifest.kind == "text_classifier":
        return DeclarativeTextModel(spec)
    return DeclarativeTabularModel(spec)
