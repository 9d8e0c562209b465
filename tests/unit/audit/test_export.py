"""Exports as FHIR R4 AuditEvent (IHE BALP shapes): the mapping table, the console's NDJSON download and the
``GET /fhir/AuditEvent`` search for auditors' tools. Every resource is validated with fhir.resources R4B."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from fhir.resources.R4B.bundle import Bundle as FhirBundle

from clinical_ai.audit.balp import (
    ACTION_SYSTEM,
    BALP_ENTITY_TYPE,
    DCM,
    EVENT_CODES,
    PATIENT_PSEUDONYM_SYSTEM,
    audit_event_resource,
)
from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor, audit_record
from tests.factories import make_ehr_client, obtain_token
from tests.unit.audit.test_console import JOB, PATIENT, _seed_pipeline

pytestmark = pytest.mark.django_db


def _validate(resource: dict[str, Any]) -> FhirAuditEvent:
    return FhirAuditEvent.model_validate(resource)


def _by_code(resource: dict[str, Any], field: str) -> dict[str, Any]:
    return {
        item["type"]["coding"][0]["code"] if field == "agent" else item["type"]["code"]: item
        for item in resource[field]
    }


# --- The mapping ------------------------------------------------------------------------------------------


def _event(**fields: Any) -> AuditEvent:
    defaults: dict[str, Any] = {
        "seq": 42,
        "occurred_at": datetime(2026, 2, 1, 8, 30, 0, 123456, tzinfo=UTC),
        "actor_type": "ehr_client",
        "actor_id": "ehr-1",
        "action": "intake.job.create",
        "outcome": "success",
        "object_type": "IngestJob",
        "object_id": JOB,
        "organization": "st-elsewhere",
        "patient_pseudonym": "",
        "request_id": "req-1",
        "detail": {"kind": "transaction", "resource_count": 9, "resource_types": ["Observation", "Patient"]},
        "prev_hash": "a" * 64,
        "hash": "b" * 64,
    }
    return AuditEvent(**(defaults | fields))


@pytest.mark.parametrize("action", [*EVENT_CODES, "some.future.action"])
@pytest.mark.parametrize("actor_type", ["user", "ehr_client", "worker", "system", "anonymous"])
@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_every_mapped_action_validates_as_r4_audit_event(action: str, actor_type: str, outcome: str) -> None:
    resource = audit_event_resource(
        _event(action=action, actor_type=actor_type, outcome=outcome, patient_pseudonym=PATIENT),
        observer="https://cds.example.org",
    )
    parsed = _validate(resource)
    assert parsed.id == "42"
    assert resource["subtype"][-1] == {"system": ACTION_SYSTEM, "code": action, "display": action}
    assert sum(agent["requestor"] for agent in resource["agent"]) == 1
    assert resource["outcome"] == (
        "0" if outcome == "success" else EVENT_CODES.get(action, EVENT_CODES["auth.login"]).failure_outcome
    )


def test_intake_as_a_balp_create() -> None:
    resource = audit_event_resource(_event(), observer="https://cds.example.org")
    assert resource["type"]["code"] == "rest"
    assert {
        "system": "http://hl7.org/fhir/restful-interaction",
        "code": "create",
        "display": "create",
    } in resource["subtype"]
    assert resource["action"] == "C" and resource["outcome"] == "0"
    assert resource["recorded"] == "2026-02-01T08:30:00.123456+00:00"
    agents = _by_code(resource, "agent")
    assert agents["110153"]["who"]["identifier"]["value"] == "ehr-1" and agents["110153"]["requestor"] is True
    assert agents["110152"]["who"]["identifier"]["value"] == "https://cds.example.org"
    assert agents["110152"]["requestor"] is False
    assert resource["source"]["observer"]["identifier"]["value"] == "https://cds.example.org"
    assert resource["source"]["site"] == "st-elsewhere"
    entities = _by_code(resource, "entity")
    assert entities["XrequestId"]["type"]["system"] == BALP_ENTITY_TYPE
    assert entities["XrequestId"]["what"]["identifier"]["value"] == "req-1"
    data = entities["2"]
    assert data["role"]["code"] == "20"  # Job
    assert data["what"]["identifier"]["value"] == JOB
    assert {"type": "resource_types", "valueString": '["Observation","Patient"]'} in data["detail"]
    assert resource["extension"][0]["extension"][0] == {"url": "hash", "valueString": "b" * 64}


def test_login_and_patient_entity() -> None:
    login = audit_event_resource(
        _event(action="auth.login", actor_type="user", actor_id="7", request_id="", detail={}), observer="x"
    )
    assert login["type"] == {"system": DCM, "code": "110114", "display": "User Authentication"}
    assert login["subtype"][0]["code"] == "110122" and login["action"] == "E"
    user = login["agent"][0]
    assert user["requestor"] is True and user["who"]["identifier"] == {
        "system": "urn:clinical-ai:actor:user",
        "value": "7",
    }
    deid = audit_event_resource(
        _event(
            action="deid.resources.create", actor_type="worker", actor_id="w/t/1", patient_pseudonym=PATIENT
        ),
        observer="x",
    )
    patient = _by_code(deid, "entity")["1"]
    assert patient["role"]["code"] == "1"
    assert patient["what"]["identifier"] == {"system": PATIENT_PSEUDONYM_SYSTEM, "value": PATIENT}
    assert [a["type"]["coding"][0]["code"] for a in deid["agent"]] == ["110150"]  # the worker, an application


def test_failures_get_their_outcome_code_and_description() -> None:
    refused = audit_event_resource(
        _event(
            action="fhir.intake.refuse",
            actor_type="anonymous",
            outcome="failure",
            detail={"status": 401, "reason": "invalid_token"},
        ),
        observer="x",
    )
    assert refused["outcome"] == "4" and refused["outcomeDesc"] == "status 401; reason invalid_token"
    failed_job = audit_event_resource(
        _event(action="intake.job.process", outcome="failure", detail={}), observer="x"
    )
    assert failed_job["outcome"] == "8"


# --- NDJSON download --------------------------------------------------------------------------------------


def _ndjson(response: Any) -> list[dict[str, Any]]:
    body = b"".join(response.streaming_content).decode()
    return [json.loads(line) for line in body.splitlines()]


def test_ndjson_export_streams_valid_audit_events_and_is_recorded(client: Client, auditor: Any) -> None:
    _seed_pipeline()
    count = AuditEvent.objects.count()
    client.force_login(auditor)
    response = client.get("/audit/export.ndjson")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "application/fhir+ndjson"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-')
    resources = _ndjson(response)
    assert [int(r["id"]) for r in resources] == list(range(1, count + 1))  # oldest first, up to the export
    for resource in resources:
        _validate(resource)
    export = AuditEvent.objects.get(action="audit.export")
    assert export.seq == count + 1 and export.actor_id == str(auditor.pk)
    assert export.detail == {"page": "export", "filters": [], "format": "fhir-r4-auditevent-ndjson"}


def test_ndjson_export_takes_the_console_filters(client: Client, admin: Any) -> None:
    _seed_pipeline()
    client.force_login(admin)
    resources = _ndjson(client.get(f"/audit/export.ndjson?patient={PATIENT}"))
    assert [r["subtype"][-1]["code"] for r in resources] == [
        "deid.resources.create",
        "inference.run.finish",
        "review.suggestion.sign_off",
    ]
    assert AuditEvent.objects.get(action="audit.export").detail["filters"] == ["patient_pseudonym"]
    assert client.get("/audit/export.ndjson?outcome=maybe").status_code == 400


# --- GET /fhir/AuditEvent ---------------------------------------------------------------------------------


@pytest.fixture
def read_token(client: Client, ehr_client: Any) -> str:
    return obtain_token(client, ehr_client, scope="system/*.read")


def _search(client: Client, token: str, query: str = "") -> Any:
    return client.get(f"/fhir/AuditEvent{query}", headers={"Authorization": f"Bearer {token}"})


def _ids(bundle: dict[str, Any]) -> list[int]:
    return [int(entry["resource"]["id"]) for entry in bundle.get("entry", [])]


def test_search_answers_a_valid_searchset_of_the_clients_own_organization(
    client: Client, ehr_client: Any, read_token: str, other_organization: Any
) -> None:
    _seed_pipeline()
    audit_record(
        actor=Actor.ehr_client("other-ehr"), action="intake.job.create", organization="county-hospital"
    )
    response = _search(client, read_token)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/fhir+json")
    bundle = response.json()
    FhirBundle.model_validate(bundle)
    assert bundle["type"] == "searchset"
    resources = [entry["resource"] for entry in bundle["entry"]]
    for resource in resources:
        _validate(resource)
        assert resource["source"]["site"] == "st-elsewhere"
    seqs = _ids(bundle)
    assert seqs == sorted(seqs, reverse=True)
    assert bundle["entry"][0]["fullUrl"] == f"http://testserver/fhir/AuditEvent/{seqs[0]}"
    visible = set(AuditEvent.objects.filter(organization="st-elsewhere").values_list("seq", flat=True))
    assert set(seqs) <= visible
    assert not AuditEvent.objects.filter(seq__in=seqs, organization="county-hospital").exists()
    assert not AuditEvent.objects.filter(seq__in=seqs, organization="").exists()
    search = AuditEvent.objects.filter(action="fhir.auditevent.search").get()
    assert (search.actor_type, search.actor_id) == ("ehr_client", ehr_client.client_id)
    assert search.detail == {"status": 200, "params": [], "returned": len(seqs)}


@pytest.mark.parametrize(
    ("query", "expected_actions"),
    [
        (
            f"?patient={PATIENT}",
            ["review.suggestion.sign_off", "inference.run.finish", "deid.resources.create"],
        ),
        (
            f"?patient=Patient/{PATIENT}",
            ["review.suggestion.sign_off", "inference.run.finish", "deid.resources.create"],
        ),
        (
            f"?patient:identifier={PATIENT_PSEUDONYM_SYSTEM}|{PATIENT}",
            ["review.suggestion.sign_off", "inference.run.finish", "deid.resources.create"],
        ),
        ("?subtype=intake.job.create", ["intake.job.create"]),
        (f"?subtype={ACTION_SYSTEM}|intake.job.process", ["intake.job.process"]),
        ("?subtype=http://hl7.org/fhir/restful-interaction|create", ["intake.job.create"]),
        ("?type=rest", ["intake.job.create"]),
        (f"?type={DCM}|110107", ["intake.job.process"]),
        ("?type=110100", ["review.suggestion.sign_off", "inference.run.finish"]),  # unmapped actions
        ("?type=110114", ["smart.token.issue", "smart.token.issue"]),  # the seeded one and the fixture's
        ("?agent=ehr-st-elsewhere", ["intake.job.create", "smart.token.issue"]),
        ("?agent=urn:clinical-ai:actor:user|7", ["review.suggestion.sign_off"]),
        (
            f"?entity={JOB}",
            ["intake.job.process", "deid.resources.create", "deid.resources.create", "intake.job.create"],
        ),
        ("?entity=req-review", ["review.suggestion.sign_off"]),
        (
            f"?entity:identifier=urn:clinical-ai:object:IngestJob|{JOB}",
            ["intake.job.process", "deid.resources.create", "deid.resources.create", "intake.job.create"],
        ),
        ("?outcome=0&subtype=intake.job.create", ["intake.job.create"]),
        ("?outcome=8", []),
    ],
)
def test_search_parameters(client: Client, read_token: str, query: str, expected_actions: list[str]) -> None:
    _seed_pipeline()
    response = _search(client, read_token, query)
    assert response.status_code == 200, response.content
    actions = [e["resource"]["subtype"][-1]["code"] for e in response.json().get("entry", [])]
    assert actions == expected_actions


def test_search_by_date(client: Client, read_token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.utils import timezone

    for day in (1, 2, 3):
        moment = datetime(2026, 3, day, 12, 0, tzinfo=UTC)
        with monkeypatch.context() as patch:
            patch.setattr(timezone, "now", lambda moment=moment: moment)
            audit_record(actor=Actor.system("t"), action=f"test.day{day}", organization="st-elsewhere")

    def days(query: str) -> list[str]:
        response = _search(client, read_token, query)
        assert response.status_code == 200, response.content
        return [e["resource"]["subtype"][-1]["code"] for e in response.json().get("entry", [])]

    assert days("?date=2026-03-02") == ["test.day2"]
    assert days("?date=ge2026-03-02&date=lt2026-03-03") == ["test.day2"]
    assert days("?date=gt2026-03-01&date=le2026-03-03&subtype=test.day3") == ["test.day3"]
    assert days("?date=2026-03") == ["test.day3", "test.day2", "test.day1"]
    assert days("?date=lt2026-03-01T12:00:00Z") == []
    assert days("?date=le2026-03-01T12:00:00Z") == ["test.day1"]
    assert days("?date=ge2026-03-02T13:00:00%2B01:00&date=le2026-03-02") == ["test.day2"]


def test_search_pages_with_next_links(client: Client, read_token: str) -> None:
    for i in range(7):
        audit_record(
            actor=Actor.system("t"), action="test.bulk", object_id=str(i), organization="st-elsewhere"
        )
    first = _search(client, read_token, "?subtype=test.bulk&_count=3").json()
    seqs = _ids(first)
    assert len(seqs) == 3
    seen = list(seqs)
    bundle = first
    while any(link["relation"] == "next" for link in bundle["link"]):
        url = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
        parts = urlsplit(url)
        assert (
            parts.path == "/fhir/AuditEvent"
            and "subtype=test.bulk" in parts.query
            and "_count=3" in parts.query
        )
        bundle = _search(client, read_token, f"?{parts.query}").json()
        seen += _ids(bundle)
    assert len(seen) == 7 and seen == sorted(seen, reverse=True)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("?name=Okafor", "name"),
        ("?date=yesterday", "date"),
        ("?date=ne2026-01-01", "date"),
        ("?date=2026-13-01", "date"),
        ("?_count=0", "_count"),
        ("?_count=ten", "_count"),
        ("?outcome=5", "outcome"),
        ("?agent=a&agent=b", "agent"),
        ("?patient=a,b", "patient"),
        ("?agent=urn:other|x", "agent"),
        ("?_format=xml", "_format"),
        ("?_sort=date", "_sort"),
        ("?_cursor=abc", "_cursor"),
    ],
)
def test_bad_parameters_get_a_400_operation_outcome(
    client: Client, read_token: str, query: str, parameter: str
) -> None:
    response = _search(client, read_token, query)
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [parameter]
    refusal = AuditEvent.objects.get(action="fhir.auditevent.search")
    assert refusal.outcome == "failure" and refusal.detail["status"] == 400
    assert "Okafor" not in json.dumps(refusal.detail) and "name" not in refusal.detail["params"]


def test_search_needs_a_token_with_audit_event_read(client: Client, ehr_client: Any) -> None:
    missing = client.get("/fhir/AuditEvent")
    assert missing.status_code == 401 and missing.content == b""
    assert AuditEvent.objects.filter(action="fhir.auditevent.search", outcome="failure").count() == 1
    write_only = obtain_token(client, ehr_client, scope="system/*.write")
    forbidden = _search(client, write_only)
    assert forbidden.status_code == 403 and forbidden.json()["issue"][0]["code"] == "forbidden"
    narrow = make_ehr_client(ehr_client.client.organization, scopes="system/AuditEvent.rs")
    assert _search(client, obtain_token(client, narrow, scope="system/AuditEvent.rs")).status_code == 200


def test_post_to_audit_event_is_still_intake(client: Client, ehr_client: Any) -> None:
    token = obtain_token(client, ehr_client, scope="system/*.write")
    response = client.post(
        "/fhir/AuditEvent",
        data=b"{",
        content_type="application/fhir+json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400  # the intake endpoint's answer to malformed JSON
    assert AuditEvent.objects.filter(action="fhir.intake.refuse").exists()
