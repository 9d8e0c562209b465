"""A hospital's declarative ONNX model through the real pipeline (FHIR POST, de-identification, the inference
stage): results with their explanation, one patient's NaN failing that run only, the sealed record of each
run, refusals listed beside working models, and ``manage.py model_check``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from clinical_ai.audit.models import AuditEvent, Outcome
from clinical_ai.core.crypto import DecryptionError
from clinical_ai.core.sealing import canonical_json
from clinical_ai.inference.engine.features.extract import features_extract
from clinical_ai.inference.engine.manifest import manifest_load
from clinical_ai.inference.models import InferenceRun, RunRecord
from clinical_ai.inference.registry import catalogue, catalogue_refusals
from clinical_ai.inference.services import patient_context_load, run_record_open
from clinical_ai.review.models import Suggestion
from clinical_ai.review.services import suggestion_payload
from tests.pipeline import bundle_process
from tests.unit.inference.declarative_models import (
    FEATURES,
    HEART_RATE,
    manifest_write,
    write_gbm_model,
    write_onnx_sqrt_model,
)

ROOT = Path(__file__).resolve().parents[3]
MODEL = "test-hr-risk"


def _patient(index: int, heart_rates: list[float]) -> list[dict[str, Any]]:
    patient_url = f"urn:uuid:7a1e0000-0000-4000-8000-00000000000{index}"
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": patient_url,
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": f"MRN-77{index}"}],
                "name": [{"family": f"Testperson{index}", "given": ["Alex"]}],
                "gender": "female",
                "birthDate": "1950-06-01",
            },
            "request": {"method": "POST", "url": "Patient"},
        }
    ]
    for n, value in enumerate(heart_rates):
        entries.append(
            {
                "fullUrl": f"urn:uuid:7a1e0000-0000-4000-8000-0000000{index}{n:04d}",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "category": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                    "code": "vital-signs",
                                }
                            ]
                        }
                    ],
                    "code": {"coding": [{"system": "http://loinc.org", "code": HEART_RATE.split("|")[1]}]},
                    "subject": {"reference": patient_url},
                    "effectiveDateTime": f"2026-03-01T{8 + n:02d}:00:00Z",
                    "valueQuantity": {
                        "value": value,
                        "unit": "beats/minute",
                        "system": "http://unitsofmeasure.org",
                        "code": "/min",
                    },
                },
                "request": {"method": "POST", "url": "Observation"},
            }
        )
    return entries


def three_patients() -> dict[str, Any]:
    """Patient 1 scores (heart rate 90, 110), patient 2 makes the model return NaN (30), patient 3 has no
    heart rate at all (the feature refuses to score)."""
    entries = [*_patient(1, [90.0, 110.0]), *_patient(2, [30.0])]
    entries.extend(_patient(3, []))
    entries.append(
        {
            "fullUrl": "urn:uuid:7a1e0000-0000-4000-8000-0000000399ff",
            "resource": {
                "resourceType": "Encounter",
                "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": "urn:uuid:7a1e0000-0000-4000-8000-000000000003"},
                "period": {"start": "2026-03-01T09:00:00Z"},
            },
            "request": {"method": "POST", "url": "Encounter"},
        }
    )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


@pytest.fixture
def model_dir(tmp_path: Path, settings: Any) -> Iterator[Path]:
    folder = tmp_path / "models"
    write_onnx_sqrt_model(folder / MODEL)
    settings.INFERENCE_MODEL_DIRS = [ROOT / "fixtures" / "models", folder]
    catalogue.cache_clear()
    yield folder
    catalogue.cache_clear()


def _runs() -> dict[str, InferenceRun]:
    runs = InferenceRun.objects.filter(model_id=MODEL).order_by("pk")
    return {run.patient_pseudonym: run for run in runs}


@pytest.mark.django_db
def test_results_explanations_and_a_nan_patient_failing_alone(
    client: Any, ehr_client: Any, model_dir: Path
) -> None:
    bundle_process(client, ehr_client, three_patients())
    runs = list(InferenceRun.objects.filter(model_id=MODEL))
    assert len(runs) == 3
    by_status: dict[str, list[InferenceRun]] = {}
    for run in runs:
        by_status.setdefault(run.status, []).append(run)
    assert len(by_status["failed"]) == 1 and len(by_status["succeeded"]) == 2
    failed = by_status["failed"][0]
    assert "no number" in failed.error
    audit = AuditEvent.objects.get(action="inference.run", object_id=str(failed.external_id))
    assert audit.outcome == Outcome.FAILURE and audit.detail["status"] == "failed"
    assert "no number" in audit.detail["error"]
    suggestions = {s.run.patient_pseudonym: s for s in Suggestion.objects.filter(run__model_id=MODEL)}
    assert failed.patient_pseudonym not in suggestions and len(suggestions) == 2
    payloads = [suggestion_payload(s) for s in suggestions.values()]
    scored = next(p for p in payloads if p["evidence"].get("explanation"))
    not_scored = next(p for p in payloads if not p["evidence"].get("explanation"))
    evidence = scored["evidence"]
    assert evidence["probability"] == pytest.approx(
        1 / (1 + 2.718281828 ** -((100 - 40) ** 0.5 - 5)), rel=1e-4
    )
    heart = next(p for p in evidence["parameters"] if p["name"] == "hr_mean_24h")
    assert (
        heart["value"] == pytest.approx(100.0) and heart["window"] == "last 24 h" and len(heart["refs"]) == 2
    )
    explanation = evidence["explanation"]
    assert explanation["method"] == "shapley_exact"
    contributions = {c["name"]: c["contribution"] for c in explanation["contributions"]}
    assert contributions["age"] == pytest.approx(0.0, abs=1e-9)  # the graph never reads age
    assert explanation["base_value"] + sum(contributions.values()) == pytest.approx(
        explanation["output_value"]
    )
    assert not_scored["evidence"]["completeness"] == "not_scored"
    assert not_scored["evidence"]["missing"] == ["hr_mean_24h"]
    assert "mean heart rate, last 24 h" in not_scored["summary"]


@pytest.mark.django_db
def test_each_run_keeps_a_sealed_record_that_reproduces_its_features(
    client: Any, ehr_client: Any, model_dir: Path
) -> None:
    bundle_process(client, ehr_client, three_patients())
    run = next(
        r
        for r in InferenceRun.objects.filter(model_id=MODEL, status="succeeded")
        if r.features.get("probability")
    )
    record = run_record_open(run)
    assert record is not None
    audit = AuditEvent.objects.get(action="inference.run", object_id=str(run.external_id))
    assert audit.detail["record_sha256"] == hashlib.sha256(canonical_json(record)).hexdigest()
    assert record["model"]["manifest_sha256"] == run.manifest_sha256
    # The same de-identified rows give the same vector: the result can be reproduced from the record.
    manifest = manifest_load(model_dir / MODEL / "manifest.json")
    assert manifest.features is not None
    vector = features_extract(manifest.features, patient_context_load(run, manifest))
    assert vector.row == record["row"]
    assert [f["refs"] for f in record["features"]] == [list(v.refs) for v in vector.values]
    # A record moved to another run does not open: it is bound to its run.
    other = next(
        r for r in InferenceRun.objects.filter(model_id=MODEL) if r.pk != run.pk and hasattr(r, "record")
    )
    mine, theirs = RunRecord.objects.get(run=run), RunRecord.objects.get(run=other)
    mine.ciphertext, mine.nonce = bytes(theirs.ciphertext), bytes(theirs.nonce)
    mine.save()
    with pytest.raises(DecryptionError):
        run_record_open(run)


def test_refused_manifests_are_listed_and_the_others_run(tmp_path: Path, settings: Any) -> None:
    folder = tmp_path / "models"
    write_onnx_sqrt_model(folder / "two-inputs", model_id="two-inputs", inputs=2)
    write_onnx_sqrt_model(folder / "too-wide", model_id="too-wide", width=3)
    bad_hash = write_onnx_sqrt_model(folder / "bad-hash", model_id="bad-hash")
    (bad_hash.parent / "model.onnx").write_bytes((bad_hash.parent / "model.onnx").read_bytes() + b"\0")
    unknown = folder / "unknown-system"
    unknown.mkdir(parents=True)
    (unknown / "model.onnx").write_bytes((folder / "two-inputs" / "model.onnx").read_bytes())
    manifest_write(
        unknown,
        model_id="unknown-system",
        features=[
            {**f, "codes": ["http://example.org/my-codes|1"]} if f["name"] == "hr_mean_24h" else f
            for f in FEATURES
        ],
    )
    write_onnx_sqrt_model(folder / MODEL)
    settings.INFERENCE_MODEL_DIRS = [folder]
    catalogue.cache_clear()
    try:
        refusals = catalogue_refusals()
        text = "\n".join(refusals)
        assert len(refusals) == 4, text
        assert "unknown code system" in text
        assert "sha256" in text
        assert "two-inputs" in text and "too-wide" in text
        assert MODEL in catalogue().models and MODEL not in text
    finally:
        catalogue.cache_clear()


def test_model_check_prints_features_result_and_what_drove_it(tmp_path: Path) -> None:
    manifest = write_gbm_model(tmp_path / "gbm")
    bundle = tmp_path / "patients.json"
    bundle.write_text(json.dumps(three_patients()), encoding="utf-8")
    out = StringIO()
    call_command("model_check", str(manifest), str(bundle), stdout=out)  # trees give no NaN: exit status 0
    text = out.getvalue()
    assert "manifest ok: test-hr-gbm 1.0.0 (onnx)" in text
    assert "mean heart rate, last 24 h: 100.0" in text
    assert "tree_shap_interventional" in text
    assert "cannot be scored" in text
    assert "3 patient(s): 3 answered, 0 failed" in text


def test_model_check_refuses_a_bad_manifest_and_flags_a_failing_patient(tmp_path: Path) -> None:
    manifest = write_onnx_sqrt_model(tmp_path / "sqrt")
    bundle = tmp_path / "patients.json"
    bundle.write_text(json.dumps(three_patients()), encoding="utf-8")
    out = StringIO()
    with pytest.raises(CommandError) as failing:
        call_command("model_check", str(manifest), str(bundle), stdout=out)
    assert failing.value.returncode == 3 and "FAILED" in out.getvalue()
    manifest_write(tmp_path / "sqrt", model_id=MODEL, background={"features": ["age"], "rows": [[50.0]]})
    with pytest.raises(CommandError, match=r"refused: .*reference rows"):
        call_command("model_check", str(manifest), stdout=StringIO())
