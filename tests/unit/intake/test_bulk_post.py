"""An EHR client POSTs NDJSON (``application/fhir+ndjson``) to the FHIR base: read into one bulk batch, split
per patient, 202 with the batch id; SMART scopes per line as for a Bundle's entries; refusals audited."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client, override_settings

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.models import AuditEvent
from clinical_ai.fhir.outcome import FhirError
from clinical_ai.intake.models import BulkBatch, IngestJob, RawResource
from integrations.fhir.ndjson_intake import ndjson_post_ingest
from integrations.smart.principal import SmartPrincipal
from integrations.smart.scopes import parse_scopes
from tests.bulk_data import ndjson_bytes, patient_bundle_paths, resources_by_type
from tests.factories import EhrIdentity, make_ehr_client, obtain_token

pytestmark = pytest.mark.django_db

NDJSON = "application/fhir+ndjson"


@pytest.fixture(scope="module")
def one_patient() -> bytes:
    smallest = min(patient_bundle_paths(), key=lambda path: path.stat().st_size)
    grouped = resources_by_type([smallest])
    return b"".join(ndjson_bytes(resources) for resources in grouped.values())


def _post(client: Client, token: str | None, body: bytes, **extra: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/fhir", data=body, content_type=NDJSON, headers=headers, **extra)


def test_an_ehr_client_posts_a_population_and_gets_the_batch(
    client: Client, ehr_client: EhrIdentity, ehr_token: str, one_patient: bytes
) -> None:
    response = _post(client, ehr_token, one_patient)
    assert response.status_code == 202, response.content
    batch = BulkBatch.objects.get()
    assert response["X-Batch-Id"] == str(batch.external_id)
    assert response["Content-Type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    summary = outcome["issue"][0]["diagnostics"]
    assert summary.startswith(f"Batch {batch.external_id}: {len(one_patient.splitlines())} lines read")
    assert (batch.origin, batch.status, batch.lines_refused) == ("post", "processing", 0)
    job = IngestJob.objects.get(batch=batch)
    assert (job.status, job.kind, job.client_id) == ("queued", "bulk", None)
    actions = list(
        AuditEvent.objects.filter(object_id=str(batch.external_id))
        .order_by("pk")
        .values_list("action", "actor_id")
    )
    assert actions == [
        ("intake.batch.open", ehr_client.client_id),
        ("intake.batch.finish", ehr_client.client_id),
    ]

    again = _post(client, ehr_token, one_patient)  # the same population again: nothing new
    assert again.status_code == 202
    second = BulkBatch.objects.exclude(pk=batch.pk).get()
    assert second.status == "succeeded" and second.resources_staged == 0
    assert IngestJob.objects.count() == 1


def test_bad_lines_are_listed_by_number_and_the_rest_goes_in(client: Client, ehr_token: str) -> None:
    body = (
        ndjson_bytes([{"resourceType": "Patient", "id": "p1", "gender": "female"}])
        + b"{not json\n"
        + b'{"resourceType": "Patient", "id": "p2", "gender": "often"}\n'
    )
    response = _post(client, ehr_token, body)
    assert response.status_code == 202
    issues = response.json()["issue"]
    assert [(i["severity"], i["diagnostics"]) for i in issues[1:]] == [
        ("error", "line 2: not_json"),
        ("error", "line 3: invalid"),
    ]
    assert "often" not in response.content.decode()
    assert IngestJob.objects.get().resource_count == 1


def test_a_line_the_scopes_do_not_allow_refuses_the_request(
    client: Client, organization: Organization, one_patient: bytes
) -> None:
    narrow = make_ehr_client(organization, scopes="system/Patient.write")
    token = obtain_token(client, narrow, scope="system/Patient.write")
    response = _post(client, token, one_patient)
    assert response.status_code == 403
    issues = response.json()["issue"]
    assert issues and {i["code"] for i in issues} == {"forbidden"}
    assert issues[0]["diagnostics"].startswith("line ")
    batch = BulkBatch.objects.get()
    assert batch.status == "cancelled"
    assert RawResource.objects.count() == 0
    assert set(IngestJob.objects.values_list("status", flat=True)) <= {"failed"}
    refusal = AuditEvent.objects.filter(action="fhir.intake.refuse").get()
    assert refusal.detail["status"] == 403 and refusal.actor_id == narrow.client_id

    # with a token that may write Patient only, a Patient-only body goes in
    patients = b"".join(
        line + b"\n" for line in one_patient.splitlines() if b'"resourceType":"Patient"' in line
    )
    assert _post(client, token, patients).status_code == 202


def test_without_a_token_nothing_is_read(client: Client, one_patient: bytes) -> None:
    response = _post(client, None, one_patient)
    assert response.status_code == 401
    assert BulkBatch.objects.count() == 0


def test_bodies_this_endpoint_does_not_take(client: Client, ehr_token: str, one_patient: bytes) -> None:
    empty = _post(
        client, ehr_token, b"", CONTENT_TYPE=NDJSON, CONTENT_LENGTH="0"
    )  # as a real client sends it
    assert empty.status_code == 400 and empty.json()["issue"][0]["code"] == "required"
    with override_settings(BULK_MAX_FILE_BYTES=1000):
        response = _post(client, ehr_token, one_patient)
    assert response.status_code == 413 and response.json()["issue"][0]["code"] == "too-costly"
    assert BulkBatch.objects.count() == 0
    statuses = sorted(e.detail["status"] for e in AuditEvent.objects.filter(action="fhir.intake.refuse"))
    assert statuses == [400, 413]


def test_a_body_cut_short_is_dropped(ehr_client: EhrIdentity, one_patient: bytes) -> None:
    """The client goes away mid-body: fewer bytes arrive than it declared; the batch is cancelled and nothing
    of it is processed (the WSGI server hands the view a short stream; here the stream is the service's)."""
    principal = SmartPrincipal(
        client_id=ehr_client.client_id,
        client_pk=ehr_client.client.pk,
        organization_id=ehr_client.client.organization_id,
        organization_slug=ehr_client.client.organization.slug,
        scopes=parse_scopes("system/*.write"),
    )
    half = one_patient[: len(one_patient) // 2]
    with pytest.raises(FhirError) as refused:
        ndjson_post_ingest(
            principal=principal,
            chunks=iter([half[:1000], half[1000:]]),
            declared_length=len(one_patient),
            request_id="r-1",
        )
    assert refused.value.status == 400 and refused.value.issues[0].code == "incomplete"
    batch = BulkBatch.objects.get()
    assert batch.status == "cancelled" and batch.lines_read > 0
    assert RawResource.objects.count() == 0
    assert set(IngestJob.objects.values_list("status", flat=True)) == {"failed"}


def test_a_json_bundle_still_goes_the_bundle_way(client: Client, ehr_token: str) -> None:
    """Only application/fhir+ndjson takes this path; a JSON body is still one Bundle."""
    response = client.post(
        "/fhir",
        data=json.dumps({"resourceType": "Patient", "id": "p"}),
        content_type="application/fhir+json",
        headers={"Authorization": f"Bearer {ehr_token}"},
    )
    assert response.status_code == 422
    assert BulkBatch.objects.count() == 0
