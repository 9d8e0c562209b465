"""The worked example of a hospital's own model (fixtures/models/ed-visit-90d): what ships is what the script
makes, the service can load it, and the model answers for every Synthea patient.

The retraining test reruns ``benchmarks/ed_visit_model.py`` into a temporary folder (about 10-15 s) and
expects the same validation figures and thresholds: every random step is seeded, so a different number
means the data, the feature extraction or the training changed, and the shipped card no longer tells the truth.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnxruntime
import pytest

from clinical_ai.inference.engine.features.extract import event_time, features_extract
from clinical_ai.inference.engine.manifest import (
    CLINICAL_SUMMARY_MAX,
    ModelManifest,
    file_sha256,
    manifest_load,
)
from clinical_ai.inference.engine.types import PatientContext
from clinical_ai.inference.registry import model_build

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "ed_visit_model.py"
MODEL_DIR = ROOT / "fixtures" / "models" / "ed-visit-90d"
MANIFEST = MODEL_DIR / "manifest.json"
CARD = ROOT / "docs" / "model-cards" / "ed-visit-90d.md"
SYNTHEA = ROOT.parent / "shared" / "data" / "synthea_r4_ms_anonymizer_samples"
needs_synthea = pytest.mark.skipif(
    not SYNTHEA.is_dir(), reason="../shared/data/synthea_r4_ms_anonymizer_samples is absent"
)
RETRAIN_BUDGET_S = 60


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ed_visit_model", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("ed_visit_model", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def manifest() -> ModelManifest:
    return manifest_load(MANIFEST)


@pytest.fixture(scope="module")
def raw_manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(MANIFEST.read_text(encoding="utf-8"))
    return data


def test_shipped_artifacts_match_their_sha256(manifest: ModelManifest) -> None:
    assert {a.name for a in manifest.artifacts} == {"model", "background"}
    for artifact in manifest.artifacts:
        assert file_sha256(MODEL_DIR / artifact.path) == artifact.sha256, artifact.name


def test_manifest_parses_as_a_declarative_onnx_model(
    manifest: ModelManifest, raw_manifest: dict[str, Any]
) -> None:
    assert (manifest.id, manifest.version, manifest.kind) == ("ed-visit-90d", "1.0.0", "onnx")
    assert manifest.default_enabled is False
    assert manifest.features is not None
    assert len(manifest.features) == len(raw_manifest["features"]) >= 10
    assert manifest.explanation == {"background": "background"}
    assert 0 < manifest.thresholds["warning"] < manifest.thresholds["critical"] < 1
    assert "emergency" in manifest.outputs["outcome"]
    card = manifest.card
    assert len(card["clinical_summary"]) <= CLINICAL_SUMMARY_MAX
    assert "11 synthetic" in card["clinical_summary"] and "Never use it for care" in card["clinical_summary"]
    assert "TreeSHAP" in card["explanation_method"] and "not causes" in card["explanation_method"]
    names = [figure["name"] for figure in card["validation"]["figures"]]
    assert any(name.startswith("AUROC (95 % CI") for name in names)
    assert {"Samples", "Prevalence of the outcome"} <= set(names)
    # Every input has words for the clinician and, where it can be absent, a rule for when it is.
    for spec in manifest.features.features:
        assert spec.label and "_" not in spec.label
        if spec.aggregate in ("latest", "mean", "time_since"):
            assert spec.missing.policy == "impute", spec.name


def test_script_features_are_the_shipped_ones(script: ModuleType, raw_manifest: dict[str, Any]) -> None:
    """The manifest is the script's output: a feature edited in one and not the other would train one model
    and serve another."""
    assert raw_manifest["features"] == script.FEATURES


def test_background_is_weighted_summaries_of_the_manifest_features(manifest: ModelManifest) -> None:
    background = json.loads((MODEL_DIR / "background.json").read_text(encoding="utf-8"))
    assert manifest.features is not None
    assert background["features"] == list(manifest.features.names)
    rows = np.asarray(background["rows"], dtype=np.float64)
    weights = np.asarray(background["weights"], dtype=np.float64)
    assert rows.shape == (len(weights), len(manifest.features)) and 1 <= len(weights) <= 16
    assert np.isfinite(rows).all() and (weights > 0).all()
    assert weights.sum() == pytest.approx(1.0)


def test_model_card_document_carries_the_manifest_figures(manifest: ModelManifest) -> None:
    text = CARD.read_text(encoding="utf-8")
    for figure in manifest.card["validation"]["figures"]:
        assert f"| {figure['name']} | {figure['value']} |" in text
    assert "benchmarks/ed_visit_model.py --out fixtures/models/ed-visit-90d" in text
    assert "| bin | samples |" in text


def test_onnx_model_declares_one_float_input_row(manifest: ModelManifest) -> None:
    session = onnxruntime.InferenceSession(str(MODEL_DIR / "model.onnx"), providers=["CPUExecutionProvider"])
    (only,) = session.get_inputs()
    assert only.name == "input" and only.type == "tensor(float)"
    assert manifest.features is not None and only.shape[1] == len(manifest.features)
    assert "probabilities" in [output.name for output in session.get_outputs()]


@pytest.mark.shared_data
@needs_synthea
def test_onnx_gives_finite_probabilities_for_every_synthea_patient(
    script: ModuleType, manifest: ModelManifest
) -> None:
    """Rows computed by the service's own extraction, for the whole record and at every training prediction
    time, all score to a probability."""
    assert manifest.features is not None
    session = onnxruntime.InferenceSession(str(MODEL_DIR / "model.onnx"), providers=["CPUExecutionProvider"])
    paths = script.patient_bundle_paths(SYNTHEA)
    assert len(paths) == 11
    for i, path in enumerate(paths):
        patient = script.patient_load(path, label=f"patient {i + 1}", resource_types=manifest.resource_types)
        samples = script.patient_samples(patient, manifest.features)
        assert samples, patient.label
        rows = [
            features_extract(manifest.features, patient.context).row,
            *(sample.vector.row for sample in samples),
        ]
        (probabilities,) = session.run(["probabilities"], {"input": np.asarray(rows, dtype=np.float32)})
        positive = np.asarray(probabilities)[:, 1]
        assert np.isfinite(positive).all() and ((positive > 0) & (positive < 1)).all(), patient.label


@pytest.mark.shared_data
@needs_synthea
def test_training_samples_are_indexed_as_the_service_scores(
    script: ModuleType, manifest: ModelManifest
) -> None:
    """Each sample's prediction time is the newest entry up to its encounter's end, the outcome lies after it,
    and an emergency visit under way at that time is a past visit (0 days since), not the outcome."""
    assert manifest.features is not None
    assert script.served_types(manifest.features) == manifest.resource_types
    path = script.patient_bundle_paths(SYNTHEA)[2]  # the patient with the most emergency visits
    patient = script.patient_load(path, label="patient 3", resource_types=manifest.resource_types)
    samples = script.patient_samples(patient, manifest.features)
    column = list(manifest.features.names).index("days_since_emergency")
    assert len({sample.as_of for sample in samples}) == len(samples)
    during_emergency = 0
    for sample in samples:
        assert sample.vector.as_of == sample.as_of <= sample.cut
        assert sample.label == int(
            any(sample.as_of < start <= sample.as_of + script.HORIZON for start in patient.emergency_starts)
        )
        past = [start for start in patient.emergency_starts if start <= sample.as_of]
        days = (sample.as_of - past[-1]) / timedelta(days=1) if past else script.NO_EMERGENCY_DAYS
        assert sample.vector.row[column] == pytest.approx(days), sample.cut
        during_emergency += bool(past) and days < 1
    # Every emergency visit is scored while under way, as the service would score it: days since 0, not outcome.
    assert during_emergency == len(patient.emergency_starts) >= 5


def _cut_at(whole: PatientContext, cut: datetime) -> PatientContext:
    """The whole raw bundle, every resource type, as it stood at ``cut``: nothing dated after it yet."""
    kept = []
    for source in whole.resources:
        moment = event_time(source.resource)
        if moment is None or moment <= cut:
            kept.append(source)
    return PatientContext(whole.patient_pseudonym, tuple(kept))


@pytest.mark.shared_data
@needs_synthea
def test_no_train_serve_skew_the_service_computes_the_training_row(
    script: ModuleType, manifest: ModelManifest
) -> None:
    """The row a patient's last training sample holds is the row the service records when it scores that
    patient's whole bundle (every resource type, the service's own filtering and prediction time) cut at the
    same encounter's end. Raw dates: the service sees shifted ones, and every feature is an interval."""
    assert manifest.features is not None
    model = model_build(manifest, device="cpu")
    paths = script.patient_bundle_paths(SYNTHEA)
    expected: list[Any] = []
    contexts: list[PatientContext] = []
    for index in (0, 2, 3, 9):  # emergency visits on record or none; long and short records
        patient = script.patient_load(
            paths[index], label=f"patient {index + 1}", resource_types=manifest.resource_types
        )
        last = script.patient_samples(patient, manifest.features)[-1]
        expected.append(last)
        contexts.append(_cut_at(script.bundle_context(paths[index], label=patient.label), last.cut))
    results = model.predict(contexts)
    assert len(results) == len(expected)
    for sample, result in zip(expected, results, strict=True):
        assert not result.failure and result.record is not None
        assert result.record["as_of"] == sample.as_of.isoformat()
        assert result.record["row"] == sample.vector.row
        assert 0 < result.record["probability"] < 1


@pytest.mark.shared_data
@needs_synthea
def test_retraining_reproduces_the_shipped_validation(tmp_path: Path, raw_manifest: dict[str, Any]) -> None:
    started = time.monotonic()
    completed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--data",
            str(SYNTHEA),
            "--out",
            str(tmp_path / "model"),
            "--card",
            str(tmp_path / "card.md"),
        ],
        capture_output=True,
        text=True,
        timeout=RETRAIN_BUDGET_S * 3,
        cwd=ROOT,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert completed.returncode == 0, completed.stderr[-2000:]
    if elapsed > RETRAIN_BUDGET_S:
        pytest.skip(f"retraining took {elapsed:.0f} s here (budget {RETRAIN_BUDGET_S} s)")
    retrained = json.loads((tmp_path / "model" / "manifest.json").read_text(encoding="utf-8"))
    shipped_figures = raw_manifest["card"]["validation"]["figures"]
    assert retrained["card"]["validation"]["figures"] == shipped_figures
    auroc = next(f["value"] for f in shipped_figures if f["name"].startswith("AUROC (95 % CI"))
    assert auroc in completed.stdout
    assert retrained["thresholds"] == raw_manifest["thresholds"]
    assert retrained["features"] == raw_manifest["features"]
