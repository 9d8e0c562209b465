"""End to end, in process: a patient-view call brings new data, which goes through intake, the real
de-identification and the real models (run here as the workers run them); the next call shows the cards,
and accepting one signs the suggestion off."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from clinical_ai.intake.models import IngestJob
from clinical_ai.review.models import Decision
from integrations.cds_hooks.models import CdsIssuer
from tests.factories import sample_bundle
from tests.pipeline import jobs_process
from tests.unit.cds_hooks.conftest import PATIENT_ID, Signer, call, hook_body
from tests.unit.cds_hooks.invariants import check_response

pytestmark = pytest.mark.django_db

SERVICE = "/clinical-ai-patient-view"


def _prefetch_from_sample() -> dict[str, Any]:
    """The sample bundle as an EHR's prefetch: the patient by its EHR id, searchsets of its records."""
    resources = [entry["resource"] for entry in sample_bundle()["entry"]]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    patient = {**patient, "id": PATIENT_ID}
    by_key: dict[str, list[dict[str, Any]]] = {"vitals": [], "conditions": [], "notes": []}
    key_of = {"Observation": "vitals", "Condition": "conditions", "DocumentReference": "notes"}
    for index, resource in enumerate(resources):
        key = key_of.get(resource["resourceType"])
        if key is None:
            continue
        linked = {**resource, "id": f"{key}-{index}", "subject": {"reference": f"Patient/{PATIENT_ID}"}}
        linked.pop("encounter", None)
        by_key[key].append(linked)
    prefetch: dict[str, Any] = {"patient": patient}
    for key, items in by_key.items():
        prefetch[key] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [{"resource": r} for r in items],
        }
    return prefetch


def test_new_data_to_cards_to_sign_off(client: Client, issuer: CdsIssuer, sign: Signer) -> None:
    body = hook_body(prefetch=_prefetch_from_sample())
    first = check_response(call(client, SERVICE, body, sign(SERVICE)).json())
    assert [c["summary"] for c in first] == ["Analysis of the new data is in progress"]

    runs = jobs_process()  # what the deid and inference workers do with the job
    assert IngestJob.objects.get().status == IngestJob.Status.SUCCEEDED
    assert runs and all(run.status in ("succeeded", "skipped") for run in runs)

    body["hookInstance"] = "second-view"
    cards = check_response(call(client, SERVICE, body, sign(SERVICE)).json())
    assert cards and all(c["summary"].startswith("Pending review:") for c in cards)
    assert not any("in progress" in c["summary"] for c in cards)
    assert any(c["source"]["topic"]["code"] == "news2" for c in cards)
    # Nothing identifying in the cards: the name, MRN and address of the sample patient are not there.
    text = str(cards)
    for identifier in ("Okafor", "4471-2290", "Harbour View"):
        assert identifier not in text

    card = cards[0]
    feedback = {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
        "outcomeTimestamp": "2026-11-26T10:00:00Z",
    }
    path = SERVICE + "/feedback"
    assert call(client, path, {"feedback": [feedback]}, sign(path)).status_code == 200
    assert Decision.objects.get().outcome == "accepted"
