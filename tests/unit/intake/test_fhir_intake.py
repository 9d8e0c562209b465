"""FHIR R4 intake over HTTP, as the EHR client persona (and as nobody)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from django.test import Client, override_settings

from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.selectors import audit_chain_verify
from clinical_ai.intake.models import IngestJob, RawResource
from integrations.fhir.output_search import OUTPUT_TYPES
from tests.factories import make_ehr_client, obtain_token, post_fhir, sample_bundle

pytestmark = pytest.mark.django_db

PHI_NEEDLES = ["Okafor", "Margaret", "4471-2290", "Harbour View", "9261 4408", "1959-03-14"]


def _no_phi_in(value: Any) -> None:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    for needle in PHI_NEEDLES:
        assert needle not in text, f"{needle!r} leaked"


def test_capability_statement_is_public_and_truthful(client: Client) -> None:
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/fhir+json")
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    rest = statement["rest"][0]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch"}
    by_type = {r["type"]: r for r in rest["resource"]}
    assert "Patient" in by_type and "Observation" in by_type
    assert "MedicinalProduct" not in by_type
    served = ("AuditEvent", *OUTPUT_TYPES)  # also read and searched: what this gateway produced
    assert all(r["interaction"] == [{"code": "create"}] for t, r in by_type.items() if t not in served)
    assert {"code": "search-type"} in by_type["AuditEvent"]["interaction"]
    token_uri = rest["security"]["extension"][0]["extension"][0]["valueUri"]
    assert token_uri == "http://testserver/auth/token"


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic Zm9vOmJhcg==", "Bearer "])
def test_no_valid_token_gets_a_bare_401_and_is_audited(client: Client, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = client.post("/fhir", data=b"{}", content_type="application/fhir+json", headers=headers)
    assert response.status_code == 401
    assert response.content == b""
    assert response["WWW-Authenticate"].startswith("Bearer")
    refusal = AuditEvent.objects.get(action="fhir.intake.refuse")
    assert refusal.outcome == "failure" and refusal.detail["status"] == 401
    assert not IngestJob.objects.exists()


def test_transaction_bundle_is_stored_encrypted_queued_and_audited(
    client: Client, ehr_client: Any, ehr_token: str
) -> None:
    bundle = sample_bundle()
    response = post_fhir(client, ehr_token, bundle, headers={"X-Request-Id": "req-abc-1"})
    assert response.status_code == 200, response.content
    assert response["X-Request-Id"] == "req-abc-1"
    answer = response.json()
    assert answer["type"] == "transaction-response"
    assert len(answer["entry"]) == len(bundle["entry"])
    for sent, got in zip(bundle["entry"], answer["entry"], strict=True):
        assert got["response"]["status"] == "201 Created"
        assert got["response"]["location"].startswith(sent["resource"]["resourceType"] + "/")

    job = IngestJob.objects.get()
    assert job.status == IngestJob.Status.QUEUED
    assert job.kind == "transaction"
    assert job.client_id == ehr_client.client.pk
    assert job.organization.slug == "st-elsewhere"
    assert job.resource_count == 9 and job.request_id == "req-abc-1"
    rows = list(RawResource.objects.filter(job=job))
    assert len(rows) == 9
    for row in rows:
        for needle in PHI_NEEDLES:
            assert needle.encode() not in bytes(row.ciphertext)
        assert row.key_id == "test2"  # the active (first) key of the ring
    _no_phi_in(job.response_body)

    created = AuditEvent.objects.get(action="intake.job.create")
    assert created.actor_type == "ehr_client" and created.actor_id == ehr_client.client_id
    assert created.object_id == str(job.external_id)
    assert created.request_id == "req-abc-1"
    for event in AuditEvent.objects.all():
        _no_phi_in(event.detail)
        _no_phi_in(event.actor_id + event.object_id + event.request_id)
    assert audit_chain_verify().ok


def test_stored_entries_open_back_to_what_was_sent(client: Client, ehr_token: str) -> None:
    from clinical_ai.core.sealing import open_json

    bundle = sample_bundle()
    post_fhir(client, ehr_token, bundle)
    rows = RawResource.objects.order_by("entry_index")
    opened = [open_json(r.sealed, associated_data=r.associated_data) for r in rows]
    assert [o["resource"] for o in opened] == [e["resource"] for e in bundle["entry"]]
    assert opened[0]["fullUrl"] == bundle["entry"][0]["fullUrl"]


def test_invalid_transaction_changes_nothing(client: Client, ehr_token: str) -> None:
    bundle = sample_bundle()
    bundle["entry"][0]["resource"]["gender"] = "banana"
    response = post_fhir(client, ehr_token, bundle)
    assert response.status_code == 422
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    expressions = [e for issue in outcome["issue"] for e in issue.get("expression", [])]
    assert any(e.startswith("Bundle.entry[0].resource.gender") for e in expressions), expressions
    assert not IngestJob.objects.exists() and not RawResource.objects.exists()
    refusal = AuditEvent.objects.get(action="fhir.intake.refuse")
    assert refusal.detail["status"] == 422
    _no_phi_in(refusal.detail)


def test_batch_stores_valid_entries_and_reports_each_failure(client: Client, ehr_token: str) -> None:
    bundle = sample_bundle()
    bundle["type"] = "batch"
    # Batch entries stand alone: no urn:uuid references between them.
    for entry in bundle["entry"]:
        resource = entry["resource"]
        for key in ("subject", "encounter"):
            if key in resource:
                resource[key] = (
                    {"reference": "Patient/ehr-123"} if key == "subject" else {"reference": "Encounter/e-9"}
                )
        resource.get("context", {}).pop("encounter", None)
    bundle["entry"][2]["resource"]["status"] = "done"  # not an Observation.status code
    response = post_fhir(client, ehr_token, bundle)
    assert response.status_code == 200, response.content
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses[2].startswith("422")
    assert statuses.count("201 Created") == 8
    job = IngestJob.objects.get()
    assert job.kind == "batch" and job.resource_count == 8
    assert sorted(RawResource.objects.values_list("entry_index", flat=True)) == [0, 1, 3, 4, 5, 6, 7, 8]


def test_same_bundle_twice_is_stored_once_and_answered_the_same(client: Client, ehr_token: str) -> None:
    bundle = sample_bundle()
    first = post_fhir(client, ehr_token, bundle)
    second = post_fhir(client, ehr_token, bundle)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert IngestJob.objects.count() == 1
    assert AuditEvent.objects.filter(action="fhir.intake.replay").count() == 1


def test_reused_identifier_with_other_content_is_a_conflict(client: Client, ehr_token: str) -> None:
    bundle = sample_bundle()
    post_fhir(client, ehr_token, bundle)
    changed = copy.deepcopy(bundle)
    changed["entry"][2]["resource"]["valueQuantity"]["value"] = 30
    response = post_fhir(client, ehr_token, changed)
    assert response.status_code == 409
    assert response.json()["issue"][0]["code"] == "conflict"
    assert IngestJob.objects.count() == 1


def test_x_request_id_makes_a_bundle_without_identifier_idempotent(client: Client, ehr_token: str) -> None:
    bundle = sample_bundle()
    del bundle["identifier"]
    headers = {"X-Request-Id": "retry-42"}
    assert post_fhir(client, ehr_token, bundle, headers=headers).status_code == 200
    assert post_fhir(client, ehr_token, bundle, headers=headers).status_code == 200
    assert IngestJob.objects.count() == 1
    assert post_fhir(client, ehr_token, bundle, headers={"X-Request-Id": "retry-43"}).status_code == 200
    assert IngestJob.objects.count() == 2


def test_idempotency_keys_are_per_client(client: Client, organization: Any, ehr_token: str) -> None:
    other = make_ehr_client(organization)
    other_token = obtain_token(client, other)
    bundle = sample_bundle()
    post_fhir(client, ehr_token, bundle)
    post_fhir(client, other_token, bundle)
    assert IngestJob.objects.count() == 2


def test_single_resource_create(client: Client, ehr_token: str) -> None:
    patient = sample_bundle()["entry"][0]["resource"]
    response = post_fhir(
        client, ehr_token, patient, path="/fhir/Patient", headers={"If-None-Exist": "identifier=x|1"}
    )
    assert response.status_code == 201
    assert response["Location"].startswith("http://testserver/fhir/Patient/")
    assert response.json()["resourceType"] == "OperationOutcome"
    again = post_fhir(
        client, ehr_token, patient, path="/fhir/Patient", headers={"If-None-Exist": "identifier=x|1"}
    )
    assert again.status_code == 201 and again["Location"] == response["Location"]
    assert IngestJob.objects.get().kind == "resource"
    minimal = post_fhir(
        client, ehr_token, patient, path="/fhir/Patient", headers={"Prefer": "return=minimal"}
    )
    assert minimal.status_code == 201 and minimal.content == b""


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status"),
    [
        ("/fhir", b"{not json", "application/fhir+json", 400),
        ("/fhir", b"\xff\xfe{}", "application/fhir+json", 400),
        ("/fhir", b"[]", "application/fhir+json", 400),
        ("/fhir", b'{"resourceType": "Bundle"}', "text/plain", 415),
        ("/fhir", b'{"resourceType": "Bundle"}', "application/xml", 415),
        ("/fhir", b'{"resourceType": "Patient"}', "application/fhir+json", 422),
        ("/fhir", b'{"resourceType": "Bundle", "type": "collection", "entry": []}', "application/json", 422),
        ("/fhir/Foo", b'{"resourceType": "Foo"}', "application/fhir+json", 404),
        ("/fhir/MedicinalProduct", b'{"resourceType": "MedicinalProduct"}', "application/fhir+json", 404),
        ("/fhir/Patient", b'{"resourceType": "Observation"}', "application/fhir+json", 400),
        ("/fhir/Patient", b'{"resourceType": "Patient", "gender": 3}', "application/fhir+json", 422),
        ("/fhir/Patient", b'{"resourceType": "Patient", "unknownElement": 1}', "application/fhir+json", 422),
    ],
)
def test_bad_input_gets_an_operation_outcome_and_changes_nothing(
    client: Client, ehr_token: str, path: str, body: bytes, content_type: str, status: int
) -> None:
    response = post_fhir(client, ehr_token, body, path=path, content_type=content_type)
    assert response.status_code == status, response.content
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"] and all(i["severity"] in ("error", "fatal") for i in outcome["issue"])
    assert not IngestJob.objects.exists()
    assert AuditEvent.objects.filter(action="fhir.intake.refuse", detail__status=status).exists()


def test_deeply_nested_body_is_refused(client: Client, ehr_token: str) -> None:
    body = b'{"resourceType": "Patient", "extension": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    response = post_fhir(client, ehr_token, body, path="/fhir/Patient")
    assert response.status_code in (400, 413)
    assert response.json()["resourceType"] == "OperationOutcome"


@override_settings(FHIR_MAX_BODY_BYTES=1000)
def test_oversized_body_is_refused_with_413(client: Client, ehr_token: str) -> None:
    response = post_fhir(client, ehr_token, sample_bundle())
    assert response.status_code == 413
    assert response.json()["issue"][0]["code"] == "too-costly"
    assert not IngestJob.objects.exists()


@override_settings(FHIR_MAX_BUNDLE_ENTRIES=3)
def test_too_many_entries_is_refused_with_413(client: Client, ehr_token: str) -> None:
    assert post_fhir(client, ehr_token, sample_bundle()).status_code == 413


def test_wrong_method_is_405(client: Client, ehr_token: str) -> None:
    response = client.get("/fhir", headers={"Authorization": f"Bearer {ehr_token}"})
    assert response.status_code == 405
    assert response["Allow"] == "POST"


def test_scope_limits_what_a_client_may_write(client: Client, organization: Any) -> None:
    observations_only = make_ehr_client(organization, scopes="system/Observation.write")
    token = obtain_token(client, observations_only, scope="system/Observation.write")
    response = post_fhir(client, token, sample_bundle())
    assert response.status_code == 403
    assert response.json()["issue"][0]["code"] == "forbidden"
    assert not IngestJob.objects.exists()
    observation = sample_bundle()["entry"][2]["resource"]
    observation["subject"] = {"reference": "Patient/123"}
    observation.pop("encounter")
    assert post_fhir(client, token, observation, path="/fhir/Observation").status_code == 201


def test_read_only_token_cannot_write(client: Client, ehr_client: Any) -> None:
    token = obtain_token(client, ehr_client, scope="system/*.read")
    assert post_fhir(client, token, sample_bundle()).status_code == 403


def test_every_request_leaves_an_intact_chain(client: Client, ehr_token: str) -> None:
    post_fhir(client, ehr_token, sample_bundle())
    post_fhir(client, ehr_token, b"{", path="/fhir")
    client.post("/fhir", data=b"{}", content_type="application/fhir+json")
    assert audit_chain_verify().ok
    assert AuditEvent.objects.count() >= 4  # client register, token, job, two refusals
