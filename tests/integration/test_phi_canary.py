"""The privacy boundary, end to end through a real worker: planted identifiers go in through the FHIR API
and must not appear in the worker's log, the broker's messages (deid and inference), the audit rows, the job
rows, the de-identified copy, what the models were given, the runs, the suggestions or the FHIR outputs.
Only the sealed raw store and the sealed vault hold them."""

from __future__ import annotations

import base64
import json
from typing import Any

from django.test import Client

from clinical_ai.audit.models import AuditEvent
from clinical_ai.core.sealing import open_json
from clinical_ai.deid.models import DeidentifiedResource, PseudonymVaultEntry
from clinical_ai.inference.models import InferenceRun
from clinical_ai.inference.registry import catalogue
from clinical_ai.inference.services import patient_context_load
from clinical_ai.intake.models import IngestJob
from clinical_ai.review.models import OutputResource, Suggestion
from clinical_ai.review.services import output_resource_body, suggestion_payload
from tests.factories import make_ehr_client, make_organization, obtain_token, post_fhir, sample_bundle
from tests.integration.conftest import WorkerFactory, redis_client, wait_for

CANARIES = {
    "name": "Zebulon Quillfeather",
    "family": "Quillfeather",
    "mrn": "MRN-88213377",
    "phone": "0151 496 0732",
    "street": "41 Marigold Crescent",
    "email": "zebulon.q@example.org",
}


def _planted_bundle() -> dict[str, Any]:
    bundle = sample_bundle()
    patient = bundle["entry"][0]["resource"]
    patient["name"] = [{"family": CANARIES["family"], "given": ["Zebulon"]}]
    patient["identifier"][0]["value"] = CANARIES["mrn"]
    patient["telecom"] = [
        {"system": "phone", "value": CANARIES["phone"]},
        {"system": "email", "value": CANARIES["email"]},
    ]
    patient["address"][0]["line"] = [CANARIES["street"]]
    note = (
        f"Seen on ward 7. {CANARIES['name']} ({CANARIES['mrn']}) reports chest pain since yesterday. "
        f"Lives at {CANARIES['street']}; contact {CANARIES['phone']} or {CANARIES['email']}. "
        "ECG shows sinus tachycardia. Plan: troponin, CT pulmonary angiogram."
    )
    document = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference"
    )
    document["content"][0]["attachment"]["data"] = base64.b64encode(note.encode()).decode()
    bundle["identifier"]["value"] = "urn:uuid:0d9f3a55-1111-4c4c-9d9d-canary000001"
    return bundle


def _assert_clean(text: str, where: str) -> None:
    for label, value in CANARIES.items():
        assert value not in text, f"canary {label} ({value!r}) found in {where}"
        assert value.lower() not in text.lower(), f"canary {label} found (case-folded) in {where}"


class _BrokerTap:
    """Every message published to the deid queue, read from Redis before a worker takes it."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def drain_copy(self, queue: str = "deid") -> None:
        self.messages.extend(redis_client().lrange(queue, 0, -1))


def test_planted_identifiers_stay_inside_the_sealed_stores(client: Client, workers: WorkerFactory) -> None:
    token = obtain_token(client, make_ehr_client(make_organization()))
    tap = _BrokerTap()
    response = post_fhir(client, token, _planted_bundle())  # published on commit, no worker running yet
    assert response.status_code == 200
    tap.drain_copy()
    assert tap.messages, "the job id was queued"
    for raw in tap.messages:
        envelope = json.loads(raw)
        _assert_clean(json.dumps(envelope), "a broker message envelope")
        _assert_clean(base64.b64decode(envelope["body"]).decode(), "a broker message body")

    worker = workers.start()
    job = IngestJob.objects.get()

    def finished() -> bool:
        job.refresh_from_db()
        return job.status in (IngestJob.Status.SUCCEEDED, IngestJob.Status.FAILED)

    wait_for(finished, timeout=120, what="the de-identification of the planted bundle")
    assert job.status == IngestJob.Status.SUCCEEDED, job.error
    _assert_clean(worker.log(), "the worker's log")
    _assert_clean(json.dumps([job.response_body, job.error, job.request_id]), "the job row")
    for event in AuditEvent.objects.all():
        _assert_clean(
            json.dumps(
                [event.actor_id, event.object_id, event.request_id, event.patient_pseudonym, event.detail]
            ),
            f"audit event {event.seq} ({event.action})",
        )
    rows = DeidentifiedResource.objects.filter(job=job)
    assert rows.count() == job.resource_count
    for row in rows:
        resource = open_json(row.sealed, associated_data=row.associated_data)
        text = json.dumps(resource)
        for attachment in resource.get("content", []):
            data = attachment.get("attachment", {}).get("data")
            if data:
                text += base64.b64decode(data).decode("utf-8", "replace")
        _assert_clean(text, f"the de-identified {row.resource_type}")
        for needle in CANARIES.values():
            assert needle.encode() not in bytes(row.ciphertext)
    # The vault holds what re-identification needs, sealed: never in clear.
    assert PseudonymVaultEntry.objects.filter(organization=job.organization).exists()
    for entry in PseudonymVaultEntry.objects.all():
        for needle in CANARIES.values():
            assert needle.encode() not in bytes(entry.sealed_original)

    # The inference stage: the runs' messages, what each model was given, the runs and their outputs.
    def runs_finished() -> bool:
        runs = InferenceRun.objects.filter(ingest_job=job)
        return runs.exists() and not runs.filter(status__in=["queued", "running"]).exists()

    wait_for(runs_finished, timeout=180, what="the inference runs")
    for run in InferenceRun.objects.filter(ingest_job=job):
        assert run.status == InferenceRun.Status.SUCCEEDED, run.error
        manifest = catalogue().manifest(run.model_id, run.model_version)
        assert manifest is not None
        context = patient_context_load(run, manifest)
        model_input = json.dumps([r.resource for r in context.resources])
        for source in context.resources:
            for attachment in source.resource.get("content", []):
                data = attachment.get("attachment", {}).get("data")
                if data:
                    model_input += base64.b64decode(data).decode("utf-8", "replace")
        _assert_clean(model_input, f"the input of {run.model_id}")
        _assert_clean(
            json.dumps([run.features, run.messages, run.guidance_response, run.error]), f"run {run.pk}"
        )
    suggestions = Suggestion.objects.filter(run__ingest_job=job)
    assert suggestions.exists()
    for suggestion in suggestions:
        _assert_clean(json.dumps(suggestion_payload(suggestion)), f"suggestion {suggestion.finding_key}")
    for output in OutputResource.objects.filter(organization=job.organization):
        _assert_clean(json.dumps(output_resource_body(output)), f"output {output.resource_type}")
    _assert_clean(worker.log(), "the worker's log after inference")
    for event in AuditEvent.objects.filter(action="inference.run"):
        _assert_clean(json.dumps([event.object_id, event.detail]), f"audit event {event.seq}")
