"""The declarative kinds a hospital writes no Python for, built from a manifest as the registry does: a
fine-tuned text classifier over the patient's notes (with its sentences weighed), a torch.export program over
declared features, and the refusals of a checkpoint folder with an unpinned file or an unknown label."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from clinical_ai.inference.engine.manifest import ManifestError, manifest_load
from clinical_ai.inference.engine.types import PatientContext, SourceResource
from clinical_ai.inference.registry import model_build
from tests.unit.inference.declarative_models import CARD, FEATURES, manifest_write
from tests.unit.inference.runners.test_sequence_classifier import LABELS, tiny_classifier


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _note(ref: str, text: str, when: str) -> SourceResource:
    return SourceResource(
        ref,
        {
            "resourceType": "DocumentReference",
            "status": "current",
            "type": {"coding": [{"system": "http://loinc.org", "code": "34117-2"}]},
            "date": when,
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain",
                        "data": base64.b64encode(text.encode()).decode(),
                    }
                }
            ],
        },
    )


def text_manifest(folder: Path, *, extra_file: bool = False, positive_label: str = "sepsis") -> Path:
    checkpoint = tiny_classifier(folder / "checkpoint", LABELS)
    if extra_file:
        (checkpoint / "unpinned.json").write_text("{}", encoding="utf-8")
    files = sorted(p for p in checkpoint.rglob("*") if p.is_file() and p.name != "unpinned.json")
    artifacts = [
        {
            "name": "weights" if p.name == "model.safetensors" else p.stem.replace(".", "-"),
            "path": str(p.relative_to(folder)),
            "sha256": _sha256(p),
        }
        for p in files
    ]
    manifest = {
        "id": "test-note-classifier",
        "version": "1.0.0",
        "name": "Test note classifier",
        "kind": "text_classifier",
        "artifacts": artifacts,
        "inputs": [{"name": "notes", "resourceType": "DocumentReference"}],
        "text": {"resourceTypes": ["DocumentReference"], "window": "P30D", "select": "all"},
        "parameters": {"positive_label": positive_label, "max_length": 64},
        "outputs": {"outcome": "a made-up outcome"},
        "thresholds": {"warning": 0.3, "critical": 0.9},
        "card": {**CARD, "explanation_method": "The drop in probability when each sentence is left out."},
    }
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return path


def test_a_text_classifier_scores_notes_in_its_window_and_weighs_sentences(tmp_path: Path) -> None:
    model = model_build(manifest_load(text_manifest(tmp_path)), device="cpu")
    with_notes = PatientContext(
        "p1",
        (
            _note("n1", "Patient has fever and cough. Denies chest pain.", "2026-03-01T10:00:00Z"),
            _note("n2", "History of pneumonia. Discharged home today.", "2026-02-20T10:00:00Z"),
            _note("old", "Sepsis.", "2025-01-01T10:00:00Z"),  # outside the 30-day window
        ),
    )
    without = PatientContext("p2", (SourceResource("pt", {"resourceType": "Patient", "gender": "male"}),))
    scored, not_scored = model.predict([with_notes, without])
    (finding,) = scored.findings
    evidence = finding.evidence
    assert 0 <= evidence["probability"] <= 1 and finding.score == evidence["probability"]
    assert [note["ref"] for note in evidence["notes"]] == ["n1", "n2"]
    sentences = evidence["explanation"]["sentences"]
    assert evidence["explanation"]["method"] == "sentence_occlusion"
    assert {s["text"] for s in sentences} == {
        "Patient has fever and cough.",
        "Denies chest pain.",
        "History of pneumonia.",
        "Discharged home today.",
    }
    assert {s["ref"] for s in sentences} == {"n1", "n2"}
    weights = [s["weight"] for s in sentences]
    assert weights == sorted(weights, reverse=True)
    assert scored.record is not None and scored.record["probability"] == evidence["probability"]
    assert not_scored.findings[0].completeness == "not_scored"
    assert not_scored.findings[0].missing_inputs == ("clinical note",)


def test_a_checkpoint_file_without_a_sha256_or_an_unknown_label_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match=r"without a sha256.*unpinned\.json"):
        model_build(manifest_load(text_manifest(tmp_path / "a", extra_file=True)), device="cpu")
    with pytest.raises(ManifestError, match="sepsis-ish"):
        model_build(manifest_load(text_manifest(tmp_path / "b", positive_label="sepsis-ish")), device="cpu")


class _HeartRateRisk(torch.nn.Module):
    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid((rows[:, 0] - 90.0) / 10.0 + 0.0 * rows[:, 1])


def _export(path: Path) -> None:
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(_HeartRateRisk(), (torch.zeros(2, 2),), dynamic_shapes={"rows": {0: batch}})
    torch.export.save(program, str(path))


def _heart_rate_patient(value: float) -> PatientContext:
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "effectiveDateTime": "2026-03-01T10:00:00Z",
        "valueQuantity": {"value": value, "unit": "/min", "code": "/min"},
    }
    patient = {"resourceType": "Patient", "birthDate": "1950-01-01", "gender": "female"}
    return PatientContext("p", (SourceResource("o1", observation), SourceResource("pt", patient)))


def test_a_torch_export_program_over_declared_features(tmp_path: Path) -> None:
    _export(tmp_path / "model.pt2")
    path = manifest_write(tmp_path, model_id="test-pt2", kind="torch_export", model_file="model.pt2")
    model = model_build(manifest_load(path), device="cpu")
    (result,) = model.predict([_heart_rate_patient(110.0)])
    (finding,) = result.findings
    assert finding.score == pytest.approx(float(torch.sigmoid(torch.tensor(2.0))), rel=1e-5)
    explanation = finding.evidence["explanation"]
    assert explanation["method"] == "shapley_exact"
    by_name = {c["name"]: c for c in explanation["contributions"]}
    assert by_name["hr_mean_24h"]["contribution"] > 0 and by_name["age"]["contribution"] == pytest.approx(0.0)
    assert by_name["age"]["value"] == 76.0 and by_name["age"]["unit"] == "a"


def test_a_torch_export_program_of_another_width_is_refused(tmp_path: Path) -> None:
    _export(tmp_path / "model.pt2")
    features = [*FEATURES, {"name": "female", "label": "female sex", "source": "sex", "equals": "female"}]
    background = {"features": ["hr_mean_24h", "age", "female"], "rows": [[80.0, 60.0, 1.0]]}
    path = manifest_write(
        tmp_path, model_id="test-pt2", kind="torch_export", model_file="model.pt2", features=features,
        background=background,
    )  # fmt: skip
    with pytest.raises(ManifestError, match="test-pt2"):
        model_build(manifest_load(path), device="cpu")
