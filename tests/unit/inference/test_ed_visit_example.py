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
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import onnxruntime
import pytest

from clinical_ai.inference.engine.features.extract import context_as_of, features_extract
from clinical_ai.inference.engine.manifest import (
    CLINICAL_SUMMARY_MAX,
    ModelManifest,
    file_sha256,
    manifest_load,
)

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
    """Rows computed by the service's own extraction, at the time the service would use (the newest entry)
    and at each visit's start, all score to a probability."""
    assert manifest.features is not None
    session = onnxruntime.InferenceSession(str(MODEL_DIR / "model.onnx"), providers=["CPUExecutionProvider"])
    paths = script.patient_bundle_paths(SYNTHEA)
    assert len(paths) == 11
    for i, path in enumerate(paths):
        patient = script.patient_load(
            path, label=f"patient {i + 1}", resource_types=manifest.features.resource_types
        )
        moments = [
            context_as_of(patient.context),
            *(s - script.BEFORE_VISIT for s in patient.encounter_starts),
        ]
        rows = [features_extract(manifest.features, patient.context, as_of=moment).row for moment in moments]
        (probabilities,) = session.run(["probabilities"], {"input": np.asarray(rows, dtype=np.float32)})
        positive = np.asarray(probabilities)[:, 1]
        assert np.isfinite(positive).all() and ((positive > 0) & (positive < 1)).all(), patient.label


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
