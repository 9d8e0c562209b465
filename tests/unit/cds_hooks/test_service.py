"""Hook calls: cards from the patient's suggestions (pending and signed off, labelled), the request checks,
412 without the patient, the examples of the specification, new data ingested with a bounded wait, and
data fetched from the EHR's FHIR server with the token it handed over."""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from clinical_ai.audit.models import AuditEvent
from clinical_ai.intake.models import IngestJob
from clinical_ai.pipeline.web import suggestion_sign_off
from clinical_ai.review.models import Suggestion
from clinical_ai.review.signoff import PasswordSignature, SignOff
from integrations.cds_hooks.hooks import SERVICES
from integrations.cds_hooks.models import CdsIssuer, IssuedCard
from tests.unit.cds_hooks.conftest import PATIENT, PATIENT_ID, Signer, call, hook_body
from tests.unit.cds_hooks.invariants import check_outcome, check_response
from tests.unit.review.conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db

PATIENT_VIEW = "/clinical-ai-patient-view"
SERVICE_BY_HOOK = {service.hook: service.id for service in SERVICES}


def patient_view(http: Client, sign: Signer, body: dict[str, Any] | None = None) -> Any:
    return call(http, PATIENT_VIEW, body or hook_body(), sign(PATIENT_VIEW))


def test_cards_for_pending_suggestions(
    client: Client,
    issuer: CdsIssuer,
    sign: Signer,
    risk_suggestion: Suggestion,
    problem_suggestion: Suggestion,
) -> None:
    response = patient_view(client, sign)
    assert response.status_code == 200, response.content
    cards = check_response(response.json())
    assert len(cards) == 2
    risk, problem = cards  # the most urgent first
    assert risk["indicator"] == risk_suggestion.urgency and risk["indicator"] in ("critical", "warning")
    for card in cards:
        assert card["summary"].startswith("Pending review:")
        assert "Pending clinician review" in card["detail"]
        assert card["selectionBehavior"] == "at-most-one"
        assert {r["code"] for r in card["overrideReasons"]} >= {"not-clinically-relevant", "other"}
        # A smart link the EHR launches (clinical-ai signs the clinician in from the EHR, on this
        # suggestion), then the page itself for EHRs without SMART launch.
        smart, absolute = card["links"]
        suggestion_id = absolute["url"].split("/")[-2]
        assert absolute["type"] == "absolute"
        assert absolute["url"] == f"http://testserver/review/suggestions/{suggestion_id}/"
        assert smart == {
            "label": "Open in clinical-ai review",
            "url": "http://testserver/launch",
            "type": "smart",
            "appContext": f"suggestion={suggestion_id}",
        }
        assert suggestion_id in (str(risk_suggestion.external_id), str(problem_suggestion.external_id))
        assert card["source"]["url"].startswith("http://testserver/models/")
        assert card["source"]["topic"]["code"] in (risk_suggestion.model_id, problem_suggestion.model_id)
    # The basis: inputs with values, what was missing, the model and its version.
    assert "Inputs used" in risk["detail"] and "Missing" in risk["detail"]
    assert risk_suggestion.model_version in risk["detail"]
    # A problem-list gap offers to create the Condition, for the EHR's own patient id.
    (action,) = problem["suggestions"][0]["actions"]
    assert action["type"] == "create"
    condition = action["resource"]
    assert condition["resourceType"] == "Condition"
    assert condition["subject"] == {"reference": f"Patient/{PATIENT_ID}"}
    assert condition["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert any(s["code"] == "AIAST" for s in condition["meta"]["security"])
    # Cards are remembered for feedback, and the call is on record with the patient's pseudonym.
    assert IssuedCard.objects.filter(issuer=issuer).count() == 2
    event = AuditEvent.objects.get(action="cds.service.call", outcome="success")
    assert event.patient_pseudonym == risk_suggestion.patient_pseudonym
    assert event.detail["cards"] == 2 and event.actor_type == "ehr_client"


def test_card_uuids_are_stable(
    client: Client, issuer: CdsIssuer, sign: Signer, risk_suggestion: Suggestion
) -> None:
    first = patient_view(client, sign).json()["cards"]
    second = patient_view(client, sign).json()["cards"]
    assert [c["uuid"] for c in first] == [c["uuid"] for c in second]
    assert IssuedCard.objects.count() == 1


def test_signed_off_results_are_labelled(
    client: Client, issuer: CdsIssuer, sign: Signer, organization: Any, problem_suggestion: Suggestion
) -> None:
    from clinical_ai.accounts.models import Role

    clinician = make_user("dr-ward", organization, Role.CLINICIAN, first_name="Wanda", last_name="Ward")
    suggestion_sign_off(
        suggestion=problem_suggestion,
        user=clinician,
        signature=PasswordSignature(PASSWORD),
        sign_off=SignOff(outcome="accepted"),
        request_id="r-1",
    )
    (card,) = check_response(patient_view(client, sign).json())
    assert card["summary"].startswith("Signed off:")
    assert "Signed off** by Wanda Ward on" in card["detail"]
    assert "suggestions" not in card  # nothing left to accept


def test_other_patients_and_sites_are_not_shown(
    client: Client, issuer: CdsIssuer, sign: Signer, risk_suggestion: Suggestion
) -> None:
    body = hook_body()
    body["context"]["patientId"] = "someone-else"
    body["prefetch"]["patient"] = {**PATIENT, "id": "someone-else"}
    assert check_response(patient_view(client, sign, body).json()) == []


def test_order_sign_shows_only_warnings(
    client: Client,
    issuer: CdsIssuer,
    sign: Signer,
    risk_suggestion: Suggestion,
    problem_suggestion: Suggestion,
) -> None:
    path = "/clinical-ai-order-sign"
    response = call(client, path, hook_body("order-sign"), sign(path))
    cards = check_response(response.json())
    assert [c["indicator"] for c in cards] == [risk_suggestion.urgency]


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"hook": "order-sign"}, "hook"),
        ({"hookInstance": None}, "hookInstance"),
        ({"context": {"userId": "Practitioner/1"}}, "context.patientId"),
        (
            {"fhirServer": None, "fhirAuthorization": {"access_token": "t", "token_type": "Bearer"}},
            "fhirServer",
        ),
        ({"prefetch": ["not", "an", "object"]}, "prefetch"),
    ],
)
def test_malformed_requests_get_an_operation_outcome(
    client: Client, issuer: CdsIssuer, sign: Signer, change: dict[str, Any], where: str
) -> None:
    body = {**hook_body(), **change}
    body = {k: v for k, v in body.items() if v is not None}
    response = patient_view(client, sign, body)
    assert response.status_code == 400
    check_outcome(response.json())
    assert response.json()["issue"][0]["expression"] == [where]
    assert not IngestJob.objects.exists()


def test_not_json(client: Client, issuer: CdsIssuer, sign: Signer) -> None:
    response = client.post(
        f"/cds-services{PATIENT_VIEW}",
        data=b"{not json",
        content_type="application/json",
        headers={"Authorization": f"Bearer {sign(PATIENT_VIEW)}"},
    )
    assert response.status_code == 400


def test_412_without_the_patient(client: Client, issuer: CdsIssuer, sign: Signer) -> None:
    body = hook_body(prefetch={})
    response = patient_view(client, sign, body)
    assert response.status_code == 412
    check_outcome(response.json())
    # A fhirServer that is not registered for this EHR is not called, token or not.
    body = hook_body(
        prefetch={"patient": None},
        fhirAuthorization={
            "access_token": "opaque-token-value",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read",
            "subject": "cds-service",
        },
    )
    assert patient_view(client, sign, body).status_code == 412
    assert AuditEvent.objects.filter(action="cds.service.call", outcome="failure").count() == 2


def test_an_unknown_service_is_404(client: Client, issuer: CdsIssuer, sign: Signer) -> None:
    response = call(client, "/no-such-service", hook_body(), sign("/no-such-service"))
    assert response.status_code == 404
    check_outcome(response.json())


def test_get_on_a_service_is_not_allowed(client: Client, issuer: CdsIssuer) -> None:
    assert client.get(f"/cds-services{PATIENT_VIEW}").status_code == 405


# --- new data: ingested like intake, waited for within the budget ------------------------------------


def _vitals_bundle() -> dict[str, Any]:
    def observation(oid: str, code: str, value: float, unit: str) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "id": oid,
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
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "effectiveDateTime": "2026-11-20T08:15:00+00:00",
            "valueQuantity": {
                "value": value,
                "unit": unit,
                "system": "http://unitsofmeasure.org",
                "code": unit,
            },
        }

    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"resource": observation("rr-1", "9279-1", 24, "/min")},
            {"resource": observation("hr-1", "8867-4", 112, "/min")},
            # Another patient's record in the answer must never be filed under this one.
            {
                "resource": {
                    **observation("x-1", "8867-4", 80, "/min"),
                    "subject": {"reference": "Patient/other"},
                }
            },
        ],
    }


def test_new_data_is_ingested_and_an_info_card_says_it_is_in_progress(
    client: Client, issuer: CdsIssuer, sign: Signer, risk_suggestion: Suggestion
) -> None:
    body = hook_body()
    body["prefetch"]["vitals"] = _vitals_bundle()
    response = patient_view(client, sign, body)
    assert response.status_code == 200
    cards = check_response(response.json())
    assert cards[-1]["summary"] == "Analysis of the new data is in progress"
    assert cards[-1]["indicator"] == "info"
    assert cards[0]["summary"].startswith("Pending review:")  # what is ready is shown meanwhile
    job = IngestJob.objects.get()
    assert job.client_id == issuer.ehr_client_id and job.status == IngestJob.Status.QUEUED
    assert job.resource_count == 3  # the patient and their two observations; not the other patient's
    create = AuditEvent.objects.get(action="intake.job.create")
    assert create.object_id == str(job.external_id) and create.actor_id == issuer.ehr_client.client_id
    call_event = AuditEvent.objects.get(action="cds.service.call", outcome="success")
    assert call_event.detail["settled"] is False and call_event.detail["dropped_resources"] == 1

    # The same data again is the same job, not a second one.
    body["hookInstance"] = "another-instance"
    patient_view(client, sign, body)
    assert IngestJob.objects.count() == 1


def test_invalid_prefetch_resources_are_not_ingested(client: Client, issuer: CdsIssuer, sign: Signer) -> None:
    body = hook_body()
    broken = _vitals_bundle()
    for entry in broken["entry"]:
        entry["resource"]["status"] = {"not": "a code"}
    body["prefetch"]["vitals"] = broken
    response = patient_view(client, sign, body)
    assert response.status_code == 200
    assert not IngestJob.objects.exists()


def test_an_invalid_prefetched_patient_is_412(client: Client, issuer: CdsIssuer, sign: Signer) -> None:
    body = hook_body()
    body["prefetch"]["patient"] = {**PATIENT, "gender": {"not": "a code"}}
    assert patient_view(client, sign, body).status_code == 412


# --- fetching from the EHR's FHIR server --------------------------------------------------------------


class FhirServer:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.seen.append((self.path, self.headers.get("Authorization", "")))
                body: dict[str, Any]
                if self.path.startswith(f"/fhir/Patient/{PATIENT_ID}"):
                    status, body = 200, PATIENT
                elif self.path.startswith("/fhir/Observation"):
                    status, body = 200, _vitals_bundle()
                else:
                    status, body = 404, {"resourceType": "OperationOutcome", "issue": []}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/fhir"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fhir_server() -> Iterator[FhirServer]:
    server = FhirServer()
    yield server
    server.close()


def test_missing_prefetch_is_fetched_with_the_ehr_token(
    client: Client, issuer: CdsIssuer, sign: Signer, fhir_server: FhirServer
) -> None:
    CdsIssuer.objects.filter(pk=issuer.pk).update(fhir_servers=[fhir_server.base])
    body = hook_body(
        fhirServer=fhir_server.base,
        prefetch={},
        fhirAuthorization={
            "access_token": "ehr-access-token-123",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/Patient.read user/Observation.read",
            "subject": "clinical-ai",
        },
    )
    response = patient_view(client, sign, body)
    assert response.status_code == 200, response.content
    paths = [path for path, _ in fhir_server.seen]
    assert f"/fhir/Patient/{PATIENT_ID}" in paths
    assert any(p.startswith("/fhir/Observation?patient=1288992&category=vital-signs") for p in paths)
    assert {auth for _, auth in fhir_server.seen} == {"Bearer ehr-access-token-123"}
    event = AuditEvent.objects.get(action="cds.service.call", outcome="success")
    assert set(event.detail["fetched"]) == {"patient", "vitals"}
    assert set(event.detail["missing_prefetch"]) == {"conditions", "notes"}
    # The token is never kept: not in the audit rows, not in the job.
    assert not AuditEvent.objects.filter(detail__icontains="ehr-access-token-123").exists()
    assert IngestJob.objects.get().resource_count == 3


# --- the examples of the specification ----------------------------------------------------------------


def _example_requests(shared_data: Path) -> list[tuple[str, dict[str, Any]]]:
    folder = shared_data / "cds_hooks_examples"
    if not folder.is_dir():
        pytest.skip("../shared/data/cds_hooks_examples is not present")
    hooks: dict[str, str] = {}
    for manifest in folder.glob("manifest_*.csv"):
        with manifest.open(encoding="utf-8") as handle:
            hooks.update({row["file"]: row["hook"] for row in csv.DictReader(handle)})
    found = []
    for path in sorted(folder.glob("*request*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        hook = body.get("hook") or hooks.get(path.name, "")
        if hook in ("patient-view", "order-select", "order-sign"):
            found.append((path.name, body))
    return found


def _expected_status(body: dict[str, Any]) -> int:
    """An oracle written from the specification, apart from the service's own checks."""
    context = body.get("context") or {}
    required = {
        "patient-view": ("userId", "patientId"),
        "order-select": ("userId", "patientId", "selections", "draftOrders"),
        "order-sign": ("userId", "patientId", "draftOrders"),
    }[body["hook"]]
    if any(name not in context for name in required):
        return 400
    patient_id = context["patientId"]
    prefetched = [v for v in (body.get("prefetch") or {}).values() if isinstance(v, dict)]
    if not any(v.get("resourceType") == "Patient" and v.get("id") == patient_id for v in prefetched):
        return 412  # and no fhirServer registered for this EHR to fetch it from
    return 200


def test_every_example_request_gets_a_valid_answer(
    client: Client, issuer: CdsIssuer, sign: Signer, shared_data: Path, risk_suggestion: Suggestion
) -> None:
    examples = _example_requests(shared_data)
    assert len(examples) >= 5
    answered = {200: 0, 400: 0, 412: 0}
    for name, body in examples:
        path = "/" + SERVICE_BY_HOOK[body["hook"]]
        response = call(client, path, body, sign(path))
        assert response.status_code == _expected_status(body), (name, response.content)
        answered[response.status_code] += 1
        if response.status_code == 200:
            cards = check_response(response.json())
            if body["hook"] == "patient-view" and body["context"]["patientId"] == PATIENT_ID:
                assert cards, name  # our stored suggestion for patient 1288992 is shown
        else:
            check_outcome(response.json())
    assert answered[200] >= 3
