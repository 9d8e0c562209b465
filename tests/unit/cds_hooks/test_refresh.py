"""A patient refresh during a hook call for a patient the gateway has not seen: ``Patient/{id}/$everything``
where the EHR offers it, else a search per resource type, paged, on the call's read budget; ingested with
the prefetch, audited as ``cds.patient.refresh``. Against the EHR stand-in (tests/ehr_standin.py) loaded
with a shared Synthea patient, over real HTTP."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from clinical_ai.audit.models import AuditEvent
from clinical_ai.intake.models import IngestJob
from integrations.bulk.protocol import BulkEndpoint, access_token_get
from integrations.cds_hooks import refresh
from integrations.cds_hooks.fetch import Deadline, FetchLimits
from integrations.cds_hooks.models import CdsIssuer
from integrations.cds_hooks.refresh import patient_refresh_fetch, refresh_resource_types
from tests.bulk_data import patient_bundle_paths, resources_by_type
from tests.ehr_standin import EhrStandIn, client_key_pair
from tests.unit.cds_hooks.conftest import Signer, call, hook_body, patient_seen

CLIENT_ID = "clinical-ai-gateway"
KID = "gw-1"
LINKS = ("subject", "patient", "beneficiary")


@pytest.fixture(scope="module")
def synthea() -> dict[str, list[dict[str, Any]]]:
    smallest = min(patient_bundle_paths(), key=lambda p: p.stat().st_size)
    return resources_by_type([smallest])


@pytest.fixture
def ehr(synthea: dict[str, list[dict[str, Any]]]) -> Iterator[EhrStandIn]:
    pem, jwks = client_key_pair("ES384", kid=KID)
    with EhrStandIn(synthea, client_id=CLIENT_ID, client_jwks=jwks) as stand_in:
        stand_in.client_pem = pem  # type: ignore[attr-defined]
        yield stand_in


def _token(ehr: EhrStandIn) -> str:
    return access_token_get(
        BulkEndpoint(base_url=ehr.base_url, timeout_seconds=5.0),
        token_url=ehr.token_url,
        client_id=CLIENT_ID,
        private_key_pem=ehr.client_pem,  # type: ignore[attr-defined]
        key_id=KID,
        scopes="system/*.read",
    ).value


def _patient(synthea: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return synthea["Patient"][0]


def _linked_to(resource: dict[str, Any], patient_id: str) -> bool:
    for link in LINKS:
        value = resource.get(link)
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            return bool(value["reference"] == f"Patient/{patient_id}")
    return False


def _expected_records(synthea: dict[str, list[dict[str, Any]]]) -> int:
    """The patient's records of the types a refresh reads, the Patient included."""
    patient_id = _patient(synthea)["id"]
    types = refresh_resource_types()
    return 1 + sum(
        1
        for resource_type, resources in synthea.items()
        if resource_type in types
        for resource in resources
        if _linked_to(resource, patient_id)
    )


def _hook_call(
    client: Client, issuer: CdsIssuer, sign: Signer, ehr: EhrStandIn, patient: dict[str, Any], token: str
) -> Any:
    """patient-view with the Patient prefetched (as most EHRs do) and the fhirServer for the rest."""
    CdsIssuer.objects.filter(pk=issuer.pk).update(fhir_servers=[ehr.base_url])
    body = hook_body(
        fhirServer=ehr.base_url,
        prefetch={"patient": patient},
        context={"userId": "Practitioner/example", "patientId": patient["id"]},
        fhirAuthorization={
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/*.read",
            "subject": "clinical-ai",
        },
    )
    response = call(client, "/clinical-ai-patient-view", body, sign("/clinical-ai-patient-view"))
    assert response.status_code == 200, response.content
    return response


def _refresh_event() -> AuditEvent:
    return AuditEvent.objects.get(action="cds.patient.refresh")


def test_an_unseen_patient_is_refreshed_with_everything_paged(
    client: Client,
    issuer: CdsIssuer,
    sign: Signer,
    ehr: EhrStandIn,
    synthea: dict[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(refresh, "EVERYTHING_PAGE_SIZE", 20)
    token = _token(ehr)
    _hook_call(client, issuer, sign, ehr, _patient(synthea), token)

    expected = _expected_records(synthea)
    assert expected > 60  # the smallest shared patient still spans several pages of 20
    assert IngestJob.objects.get().resource_count == expected
    everything = ehr.requests_of("everything")
    assert len(everything) == -(-(expected) // 20) and all(r.token and r.status == 200 for r in everything)
    event = _refresh_event()
    assert event.outcome == "success"
    assert event.detail["method"] == "everything" and event.detail["fallback"] == ""
    assert event.detail["pages"] == len(everything)
    assert event.detail["resources"] == expected and event.detail["truncated"] == []
    assert event.detail["ingest_job"] == str(IngestJob.objects.get().external_id)
    assert event.patient_pseudonym  # whose record, by pseudonym
    call_event = AuditEvent.objects.get(action="cds.service.call")
    assert call_event.detail["refreshed"] is True
    # The token went to the EHR only: never logged, never in an audit row.
    assert token not in caplog.text
    assert not AuditEvent.objects.filter(detail__icontains=token).exists()


def test_without_everything_the_refresh_searches_each_type_the_models_read(
    client: Client, issuer: CdsIssuer, sign: Signer, ehr: EhrStandIn, synthea: dict[str, list[dict[str, Any]]]
) -> None:
    ehr.everything_supported = False  # 404 with an OperationOutcome
    _hook_call(client, issuer, sign, ehr, _patient(synthea), _token(ehr))

    assert IngestJob.objects.get().resource_count == _expected_records(synthea)
    types = refresh_resource_types()
    searched = {
        r.path.rsplit("/", 1)[1] for r in ehr.requests_of("search") if r.query.get("_count") == ["100"]
    }
    assert searched == types - {"Patient"}
    assert any(r.path.endswith(f"/Patient/{_patient(synthea)['id']}") for r in ehr.requests_of("read"))
    event = _refresh_event()
    assert event.detail["method"] == "per-type"
    assert "not offer $everything" in event.detail["fallback"]
    assert event.detail["failed"] == [] and event.detail["truncated"] == []


@pytest.mark.parametrize("status", [400, 501])
def test_everything_refused_falls_back_to_searches(
    ehr: EhrStandIn, synthea: dict[str, list[dict[str, Any]]], status: int
) -> None:
    ehr.fail_next("everything", status)
    patient = _patient(synthea)
    read = patient_refresh_fetch(
        fhir_server=ehr.base_url,
        patient_id=patient["id"],
        access_token=_token(ehr),
        resource_types={"Observation", "Condition"},
        limits=FetchLimits(max_pages=10, max_resources=2000, request_timeout_seconds=5.0),
        deadline=Deadline(10),
    )
    assert read.method == "per-type"
    assert read.fallback == f"the FHIR server answered HTTP {status}"
    wanted = {("Observation", o["id"]) for o in synthea["Observation"] if _linked_to(o, patient["id"])}
    wanted |= {("Condition", c["id"]) for c in synthea["Condition"] if _linked_to(c, patient["id"])}
    wanted.add(("Patient", patient["id"]))
    assert {(r["resourceType"], r["id"]) for r in read.resources} == wanted


def test_a_known_patient_is_not_refreshed(
    client: Client,
    issuer: CdsIssuer,
    sign: Signer,
    ehr: EhrStandIn,
    synthea: dict[str, list[dict[str, Any]]],
) -> None:
    patient = _patient(synthea)
    patient_seen(issuer.organization, patient["id"])
    _hook_call(client, issuer, sign, ehr, patient, _token(ehr))

    assert ehr.requests_of("everything") == []
    assert not AuditEvent.objects.filter(action="cds.patient.refresh").exists()
    assert AuditEvent.objects.get(action="cds.service.call").detail["refreshed"] is False


def test_the_refresh_keeps_to_the_calls_read_budget(
    client: Client,
    issuer: CdsIssuer,
    sign: Signer,
    ehr: EhrStandIn,
    synthea: dict[str, list[dict[str, Any]]],
    settings: Any,
) -> None:
    settings.CDS_FETCH_MAX_SECONDS = 1
    ehr.delay_next("everything", 3.0)  # the EHR is slow to assemble the record
    started = time.monotonic()
    _hook_call(client, issuer, sign, ehr, _patient(synthea), _token(ehr))
    elapsed = time.monotonic() - started

    assert elapsed < 2.5  # the budget (1 s), plus the call's own work; never the EHR's 3 s
    event = _refresh_event()
    assert event.outcome == "failure"  # nothing read: said so
    assert event.detail["resources"] == 0
    assert all(item.endswith(":time-limit") for item in event.detail["truncated"])
