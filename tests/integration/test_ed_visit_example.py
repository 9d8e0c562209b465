"""The worked example of a hospital's own model, end to end: a Synthea patient POSTed over FHIR, de-identified
and scored by the ONNX ``ed-visit-90d`` model in real worker processes (PostgreSQL, Redis), its sealed record
kept, and its features and "what drove this score" on the review page a clinician opens."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from clinical_ai.accounts.models import Membership, Role
from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.selectors import audit_chain_verify
from clinical_ai.audit.services import Actor
from clinical_ai.inference.models import InferenceRun, RunRecord
from clinical_ai.inference.switches import model_configure
from clinical_ai.intake.models import IngestJob
from clinical_ai.review.models import Suggestion
from clinical_ai.review.services import suggestion_payload
from tests.factories import make_ehr_client, make_organization, obtain_token, post_fhir
from tests.integration.conftest import WorkerFactory, wait_for

pytestmark = pytest.mark.shared_data

MODEL = "ed-visit-90d"
PATIENT = "Carolee951_Sanford861"


def _batch(bundle: dict[str, Any]) -> dict[str, Any]:
    for entry in bundle["entry"]:
        entry.setdefault("request", {"method": "POST", "url": entry["resource"]["resourceType"]})
    bundle["type"] = "transaction"
    bundle["identifier"] = {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{os.urandom(8).hex()}"}
    return bundle


def _finished(job: IngestJob) -> bool:
    runs = InferenceRun.objects.filter(ingest_job=job)
    return runs.exists() and not runs.filter(status__in=["queued", "running"]).exists()


def test_the_worked_example_scores_a_synthea_patient_and_shows_what_drove_it(
    client: Client, workers: WorkerFactory, shared_data: Path
) -> None:
    organization = make_organization()
    model_configure(actor=Actor.system("tests"), model_id=MODEL, enabled=True, reason="worked example")
    workers.start(concurrency=1)
    path = next((shared_data / "synthea_r4_ms_anonymizer_samples").glob(f"{PATIENT}_*.json"))
    bundle = _batch(json.loads(path.read_text(encoding="utf-8-sig")))
    token = obtain_token(client, make_ehr_client(organization))
    response = post_fhir(client, token, bundle)
    assert response.status_code == 200, response.content[:500]
    job = IngestJob.objects.get(request_id=response["X-Request-Id"])
    wait_for(lambda: _finished(job), timeout=240, what="the inference runs to finish")

    run = InferenceRun.objects.get(ingest_job=job, model_id=MODEL)
    assert run.status == InferenceRun.Status.SUCCEEDED, run.error
    assert run.claimed_by.startswith("it-")
    record = RunRecord.objects.get(run=run)
    event = AuditEvent.objects.get(action="inference.run", object_id=str(run.external_id))
    assert event.detail["record_sha256"] == record.sha256
    suggestion = Suggestion.objects.get(run=run)
    evidence = suggestion_payload(suggestion)["evidence"]
    explanation = evidence["explanation"]
    assert explanation["method"] == "tree_shap_interventional"
    total = explanation["base_value"] + sum(c["contribution"] for c in explanation["contributions"])
    assert total == pytest.approx(explanation["output_value"], abs=1e-6)
    assert audit_chain_verify().ok

    clinician = get_user_model().objects.create_user(username="dr-example", password="x-Example-pass-1")
    Membership.objects.create(user=clinician, organization=organization, role=Role.CLINICIAN)
    client.force_login(clinician)
    page = client.get(f"/review/suggestions/{suggestion.external_id}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "What drove this score" in body
    top = max(explanation["contributions"], key=lambda c: abs(c["contribution"]))
    assert top["label"] in body
    assert "ed_visits_12m" not in body  # feature ids stay out of the clinician's page
