"""Manifests, artifact verification, the catalogue, the switches and a hospital's own TorchScript model."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from clinical_ai.inference.engine.manifest import (
    ArtifactMismatch,
    ManifestError,
    manifest_load,
    manifest_parse,
)
from clinical_ai.inference.engine.types import PatientContext, SourceResource
from clinical_ai.inference.models import ModelDeployment
from clinical_ai.inference.registry import catalogue, catalogue_scan, deployment_state, model_build
from clinical_ai.inference.switches import SwitchRefused, model_configure
from tests.unit.inference.hospital_model import write_hospital_model

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def hospital_dir(tmp_path: Path, settings: Any) -> Iterator[Path]:
    folder = tmp_path / "models"
    write_hospital_model(folder / "ward-deterioration")
    settings.INFERENCE_MODEL_DIRS = [ROOT / "fixtures" / "models", folder]
    catalogue.cache_clear()
    yield folder
    catalogue.cache_clear()


def _vital(ref: str, code: str, value: float, when: str = "2026-01-01T10:00:00Z") -> SourceResource:
    return SourceResource(
        ref,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "effectiveDateTime": when,
            "valueQuantity": {"value": value, "unit": "/min", "code": "/min"},
        },
    )


def test_shipped_manifests_load_and_verify() -> None:
    found = catalogue_scan([ROOT / "fixtures" / "models"])
    assert found.errors == []
    assert "news2" in found.models
    news2 = found.manifest("news2")
    assert news2 is not None and news2.kind == "rules" and len(news2.sha256) == 64


def test_a_changed_artifact_refuses_to_load(tmp_path: Path) -> None:
    path = write_hospital_model(tmp_path / "m")
    (tmp_path / "m" / "model.pt").write_bytes(b"tampered")
    with pytest.raises(ArtifactMismatch):
        model_build(manifest_load(path), device="cpu")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "Bad Id"}, "'id'"),
        ({"version": "1.0"}, "'version'"),
        ({"kind": "sklearn"}, "'kind'"),
        ({"entrypoint": "no-colon"}, "'entrypoint'"),
        ({"artifacts": [{"name": "x", "path": "x", "sha256": "nothex"}]}, "'sha256'"),
        ({"card": {"intended_use": "x"}}, "model card"),
    ],
)
def test_malformed_manifests_are_refused_with_the_reason(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = write_hospital_model(tmp_path / "m")
    data = {**json.loads(path.read_text()), **change}
    with pytest.raises(ManifestError, match=message):
        manifest_parse(data, source=path)


DEVELOPER_WORDS = r"\b(?:tests?|sha256|json|tokens?|per second|thresholds?|pipeline|manifest)\b|\w_\w|\.py\b"


@pytest.mark.parametrize("summary", [None, "", "   ", 42, "x" * 701])
def test_a_card_without_a_plain_words_summary_is_refused(tmp_path: Path, summary: object) -> None:
    """Clinicians read the card's clinical summary beside every suggestion: it must be there, as text of a
    readable length."""
    path = write_hospital_model(tmp_path / "m")
    data = json.loads(path.read_text())
    if summary is None:
        del data["card"]["clinical_summary"]
    else:
        data["card"]["clinical_summary"] = summary
    with pytest.raises(ManifestError, match="clinical_summary"):
        manifest_parse(data, source=path)


def test_the_built_in_cards_summaries_are_in_plain_words() -> None:
    """Two to four sentences, none of the developer's words the full card may use."""
    for model_id in ("news2", "problem-list-gaps"):
        manifest = catalogue().manifest(model_id)
        assert manifest is not None
        summary = manifest.card["clinical_summary"]
        sentences = [part for part in re.split(r"(?<=[.!?])\s+", summary.strip()) if part]
        assert 2 <= len(sentences) <= 4, (model_id, sentences)
        developer_words = re.findall(DEVELOPER_WORDS, summary, flags=re.IGNORECASE)
        assert developer_words == [], (model_id, developer_words)


def test_a_hospital_torchscript_model_runs_batched_from_its_manifest(hospital_dir: Path) -> None:
    manifest = catalogue().manifest("ward-deterioration")
    assert manifest is not None
    model = model_build(manifest, device="cpu")
    sick = PatientContext("p1", (_vital("a", "8867-4", 130), _vital("b", "9279-1", 30)))
    well = PatientContext("p2", (_vital("c", "8867-4", 78), _vital("d", "9279-1", 15)))
    nothing = PatientContext("p3", ())
    results = model.predict([sick, well, nothing])
    assert [r.patient_pseudonym for r in results] == ["p1", "p2", "p3"]
    assert results[0].findings[0].urgency == "critical"
    assert results[1].findings[0].urgency == "info"
    assert results[2].findings == () and results[2].messages
    evidence = results[0].findings[0].evidence
    assert {p["ref"] for p in evidence["parameters"]} == {"a", "b"}


@pytest.mark.django_db
def test_a_dropped_in_model_is_off_until_an_admin_enables_it(hospital_dir: Path) -> None:
    assert not deployment_state("ward-deterioration").enabled
    model_configure(
        actor=Actor.system("tests"), model_id="ward-deterioration", enabled=True, reason="go live"
    )
    assert deployment_state("ward-deterioration").enabled
    rows = AuditEvent.objects.filter(action="inference.model.configure", object_id="ward-deterioration")
    assert rows.count() == 1
    assert rows.get().detail["enabled"] is True and rows.get().detail["previous_enabled"] is False


@pytest.mark.django_db
def test_pinning_and_the_stop_switch(tmp_path: Path, settings: Any) -> None:
    folder = tmp_path / "models"
    write_hospital_model(folder / "v1", version="1.0.0", default_enabled=True)
    write_hospital_model(folder / "v2", version="1.1.0", default_enabled=True)
    settings.INFERENCE_MODEL_DIRS = [folder]
    catalogue.cache_clear()
    try:
        state = deployment_state("ward-deterioration")
        assert state.enabled and state.manifest is not None and state.manifest.version == "1.1.0"
        model_configure(
            actor=Actor.system("t"), model_id="ward-deterioration", enabled=True, pinned_version="1.0.0"
        )
        pinned = deployment_state("ward-deterioration").manifest
        assert pinned is not None and pinned.version == "1.0.0"
        with pytest.raises(SwitchRefused):
            model_configure(
                actor=Actor.system("t"), model_id="ward-deterioration", enabled=True, pinned_version="9.9.9"
            )
        with pytest.raises(SwitchRefused):
            model_configure(actor=Actor.system("t"), model_id="nope", enabled=False)
        model_configure(actor=Actor.system("t"), model_id="ward-deterioration", enabled=False)
        assert not deployment_state("ward-deterioration").enabled
        assert ModelDeployment.objects.get(model_id="ward-deterioration").pinned_version == ""
    finally:
        catalogue.cache_clear()
