"""Bugs the bad-input proofs found, one test each (issue 8)."""

from __future__ import annotations

import base64
import gzip
import json
import time
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from django.test import Client

from integrations.cds_hooks.models import CdsIssuer
from tests.factories import EhrIdentity
from tests.unit.cds_hooks.conftest import BASE, ISS, sign_jwt

from .harness import assert_nothing_written, assert_operation_outcome, snapshot
from .strategies import seed_bundle
from .test_schemathesis import CDS_KEY
from .test_schemathesis import issuer as issuer


@pytest.fixture
def csrf_client() -> Client:
    """The test client skips CSRF checks unless told; a real EHR's requests get them."""
    return Client(enforce_csrf_checks=True)


@pytest.mark.django_db
def test_other_methods_on_fhir_metadata_are_a_405_operation_outcome_not_a_csrf_page(
    csrf_client: Client,
) -> None:
    response = csrf_client.post("/fhir/metadata", b"{}", content_type="application/fhir+json")
    assert response.status_code == 405 and response["Allow"] == "GET"
    assert_operation_outcome(response.content)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path",
    ["/healthz", "/readyz", "/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"],
)
def test_public_json_endpoints_answer_other_methods_with_405_not_a_csrf_page(
    csrf_client: Client, path: str
) -> None:
    response = csrf_client.post(path, b"{}", content_type="application/json")
    assert response.status_code == 405
    assert not response.content.startswith(b"<")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/fhir/Patient/123"),
        ("PUT", "/fhir/Patient/123"),
        ("DELETE", "/fhir/Observation/1"),
        ("GET", "/fhir/RiskAssessment/x/_history/1"),
        ("GET", "/fhir/Patient/a\nb"),
        ("POST", "/fhir/$export"),
    ],
)
def test_unknown_fhir_paths_are_a_404_operation_outcome(client: Client, method: str, path: str) -> None:
    before = snapshot()
    response = client.generic(method, path, b"{}", content_type="application/fhir+json")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/fhir+json")
    assert_operation_outcome(response.content)
    assert_nothing_written(before)


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/cds-services/", "/cds-services/a/b/c", "/cds-services/%C3%A9"])
def test_unknown_cds_paths_are_a_json_404(client: Client, path: str) -> None:
    response = client.post(path, b"{}", content_type="application/json")
    assert response.status_code == 404
    assert_operation_outcome(response.content)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/cds-services", "GET, OPTIONS"),
        ("/cds-services/clinical-ai-patient-view", "POST, OPTIONS"),
        ("/cds-services/clinical-ai-patient-view/feedback", "POST, OPTIONS"),
    ],
)
def test_cds_preflight_allows_what_the_endpoint_takes(client: Client, path: str, allow: str) -> None:
    response = client.options(path, headers={"Origin": "https://sandbox.cds-hooks.org"})
    assert response.status_code == 204
    assert response["Allow"] == allow == response["Access-Control-Allow-Methods"]


@pytest.mark.parametrize("path", ["/fhir/AuditEvent", "/fhir/RiskAssessment"])
def test_405_on_a_searchable_type_allows_get(client: Client, ehr_token: str, path: str) -> None:
    response = client.put(
        path, b"{}", content_type="application/fhir+json", headers={"Authorization": f"Bearer {ehr_token}"}
    )
    assert response.status_code == 405 and response["Allow"] == "GET, HEAD, POST"
    assert_operation_outcome(response.content)


def test_a_compressed_body_is_a_415_and_is_not_inflated(client: Client, ehr_token: str) -> None:
    body = gzip.compress(json.dumps(seed_bundle("transaction")).encode("utf-8"))
    before = snapshot()
    response = client.post(
        "/fhir",
        body,
        content_type="application/fhir+json",
        headers={"Authorization": f"Bearer {ehr_token}", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 415
    assert "Content-Encoding" in assert_operation_outcome(response.content)["issue"][0]["diagnostics"]
    assert_nothing_written(before)


# --- NUL characters: PostgreSQL text and jsonb cannot hold them; each of these was a 500 there -----------


def _unsigned_jwt(header: dict[str, Any], claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}.c2lnbmF0dXJl"


@pytest.mark.django_db
@pytest.mark.parametrize("claim", ["iss", "both"])
def test_nul_in_the_client_assertion_is_invalid_client(client: Client, claim: str) -> None:
    claims = {
        "iss": "ehr\x00",
        "sub": "ehr\x00",
        "aud": "http://testserver/auth/token",
        "exp": int(time.time()) + 60,
        "jti": "j",
    }
    form = {
        "grant_type": "client_credentials",
        "scope": "system/*.read",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": _unsigned_jwt(
            {"alg": "ES384", "kid": "k\x00" if claim == "both" else "k"}, claims
        ),
    }
    before = snapshot()
    response = client.post("/auth/token", urlencode(form), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert_nothing_written(before)


def test_nul_in_a_signed_assertion_jti_is_invalid_client(client: Client, writer: EhrIdentity) -> None:
    now = int(time.time())
    claims = {
        "iss": writer.client_id,
        "sub": writer.client_id,
        "aud": "http://testserver/auth/token",
        "exp": now + 60,
        "jti": "j\x00",
    }
    key: Any = serialization.load_pem_private_key(writer.private_pem, None)
    assertion = jwt.encode(
        claims,
        key,
        algorithm="ES384",
        headers={"kid": writer.kid},
    )
    form = {
        "grant_type": "client_credentials",
        "scope": "system/*.read",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    response = client.post("/auth/token", urlencode(form), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/fhir/RiskAssessment", "status=final%00"),
        ("/fhir/RiskAssessment", "_id=a%00"),
        ("/fhir/AuditEvent", "agent=a%00b"),
        ("/fhir/AuditEvent", "entity=a%00b"),
        ("/fhir/AuditEvent", "patient=a%00"),
        ("/fhir/AuditEvent", "subtype=%00"),
    ],
)
def test_nul_in_a_search_parameter_is_a_400(
    client: Client, auth: dict[str, str], path: str, query: str
) -> None:
    before = snapshot()
    response = client.get(f"{path}?{query}", headers=auth)
    assert response.status_code == 400
    assert_operation_outcome(response.content)
    assert_nothing_written(before)


def test_nul_in_a_cds_hooks_jwt_is_a_bare_401(client: Client, issuer: CdsIssuer) -> None:
    variants: list[dict[str, Any]] = [
        {"iss": ISS + "\x00"},
        {"sub": "ehr\x00"},
        {"jti": "j\x00"},
        {"tenant": "t\x00"},
    ]
    for claims in variants:
        token = sign_jwt(CDS_KEY, aud=BASE, **claims)
        before = snapshot()
        response = client.get("/cds-services", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401 and response.content == b"", claims
        assert_nothing_written(before)


@pytest.mark.parametrize("path", ["/fhir", "/fhir/Observation"])
def test_nul_anywhere_in_a_fhir_body_is_a_400(client: Client, auth: dict[str, str], path: str) -> None:
    """A batch kept the outcome of each refused entry in its job row, naming the element, so a key with a
    NUL failed the insert on PostgreSQL (jsonb); FHIR strings exclude control characters anyway."""
    document: Any = seed_bundle("batch") if path == "/fhir" else seed_bundle("batch")["entry"][1]["resource"]
    resource = document["entry"][1]["resource"] if path == "/fhir" else document
    resource["\x00"] = "x"
    before = snapshot()
    response = client.post(path, json.dumps(document), content_type="application/fhir+json", headers=auth)
    assert response.status_code == 400
    assert "NUL" in assert_operation_outcome(response.content)["issue"][0]["diagnostics"]
    assert_nothing_written(before)


def test_a_batch_job_row_names_fhir_elements_only(client: Client, auth: dict[str, str]) -> None:
    """The per-entry outcome stored with the job (and replayed) does not keep keys the sender made up."""
    document = seed_bundle("batch")
    document["entry"][1]["resource"]["Jane Doe"] = "x"
    response = client.post("/fhir", json.dumps(document), content_type="application/fhir+json", headers=auth)
    assert response.status_code == 200
    outcome = response.json()["entry"][1]["response"]["outcome"]
    assert "Jane" not in json.dumps(outcome)
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[1].resource.<unknown>"]


def test_nul_in_a_cds_hooks_body_is_a_400(client: Client, issuer: CdsIssuer) -> None:
    body = {"hook": "patient-view", "hookInstance": "a\x00", "context": {"userId": "u", "patientId": "p"}}
    token = sign_jwt(CDS_KEY, aud=BASE + "/clinical-ai-patient-view")
    before = snapshot()
    response = client.post(
        "/cds-services/clinical-ai-patient-view",
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    assert_operation_outcome(response.content)
    assert_nothing_written(before)


@pytest.mark.parametrize("name", ["agent", "entity", "patient"])
def test_auditevent_search_refuses_a_parameter_and_its_identifier_form_together(
    client: Client, auth: dict[str, str], name: str
) -> None:
    """Given both, the :identifier form used to be ignored without being read (an auditor's filter lost)."""
    response = client.get(f"/fhir/AuditEvent?{name}=a&{name}:identifier={'x' * 300}", headers=auth)
    assert response.status_code == 400
    assert assert_operation_outcome(response.content)["issue"][0]["expression"] == [f"{name}:identifier"]
