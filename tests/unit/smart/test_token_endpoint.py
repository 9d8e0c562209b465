"""POST /auth/token end to end through the Django test client, with real keys and the real database."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone

from clinical_ai.audit.models import AuditEvent
from integrations.smart.models import AccessToken, EhrClient, UsedAssertion
from integrations.smart.services import TOKEN_ISSUE_ACTION, used_assertions_purge
from tests.unit.smart.keys import claims_for, ec_key, rsa_key, sign, token_form

pytestmark = pytest.mark.django_db


def post(http: Client, form: dict[str, Any], content_type: str = "application/x-www-form-urlencoded") -> Any:
    if content_type == "application/x-www-form-urlencoded":
        return http.post("/auth/token", urlencode(form, doseq=True), content_type=content_type)
    return http.post("/auth/token", form, content_type=content_type)


def audit_rows() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=TOKEN_ISSUE_ACTION).order_by("seq"))


def assert_error(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert body["error_description"]
    assert response["Cache-Control"] == "no-store"
    return body


@pytest.mark.parametrize("fixture", ["rsa_client", "ec_client"])
def test_token_is_issued_for_a_valid_assertion(client: Client, request: Any, fixture: str) -> None:
    ehr: EhrClient = request.getfixturevalue(fixture)
    key = rsa_key() if fixture == "rsa_client" else ec_key()
    assertion = sign(key, claims_for(ehr.client_id))

    response = post(client, token_form(assertion, scope="system/Observation.read system/Observation.c"))

    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    assert response["Pragma"] == "no-cache"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 300
    assert body["scope"] == "system/Observation.read system/Observation.c"

    token = body["access_token"]
    row = AccessToken.objects.get()
    assert row.token_sha256 == hashlib.sha256(token.encode()).hexdigest()
    assert row.client == ehr
    assert row.expires_at - row.issued_at == timedelta(seconds=300)
    # Never stored in clear, anywhere in the token row.
    assert all(token not in str(value) for value in AccessToken.objects.values().get().values())

    [event] = audit_rows()
    assert event.outcome == "success"
    assert (event.actor_type, event.actor_id) == ("ehr_client", ehr.client_id)
    assert event.organization == "smart-site"
    assert event.object_id == str(row.external_id)
    assert event.detail["scopes"] == ["system/Observation.read", "system/Observation.c"]
    assert event.request_id == response["X-Request-Id"]
    assert token not in str(event.detail) and assertion not in str(event.detail)


def test_requested_scopes_are_narrowed_to_the_allowed(client: Client, rsa_client: EhrClient) -> None:
    assertion = sign(rsa_key(), claims_for(rsa_client.client_id))
    response = post(client, token_form(assertion, scope="system/*.read system/*.write system/Patient.c"))
    assert response.status_code == 200
    assert response.json()["scope"] == "system/*.read"
    assert AccessToken.objects.get().scopes == "system/*.read"


def test_nothing_allowed_is_invalid_scope(client: Client, rsa_client: EhrClient) -> None:
    assertion = sign(rsa_key(), claims_for(rsa_client.client_id))
    body = assert_error(post(client, token_form(assertion, scope="system/*.write")), 400, "invalid_scope")
    assert "none of the requested scopes" in body["error_description"]
    assert not AccessToken.objects.exists()
    # The refused request did not burn the assertion: nothing but the audit row was written.
    assert not UsedAssertion.objects.exists()
    [event] = audit_rows()
    assert event.outcome == "failure"
    assert event.detail["error"] == "invalid_scope"
    assert event.detail["requested_scopes"] == ["system/*.write"]
    assert event.actor_id == rsa_client.client_id


@pytest.mark.parametrize("scope", ["patient/*.read", "user/Observation.rs", "system/Observation"])
def test_malformed_or_non_system_scope_is_invalid_scope(
    client: Client, rsa_client: EhrClient, scope: str
) -> None:
    assertion = sign(rsa_key(), claims_for(rsa_client.client_id))
    assert_error(post(client, token_form(assertion, scope=scope)), 400, "invalid_scope")


def test_replayed_assertion_is_refused(client: Client, ec_client: EhrClient) -> None:
    assertion = sign(ec_key(), claims_for(ec_client.client_id))
    assert post(client, token_form(assertion)).status_code == 200
    body = assert_error(post(client, token_form(assertion)), 401, "invalid_client")
    assert "used already" in body["error_description"]
    assert AccessToken.objects.count() == 1
    assert [event.outcome for event in audit_rows()] == ["success", "failure"]


def test_a_jti_is_forgotten_once_its_assertion_has_expired(client: Client, ec_client: EhrClient) -> None:
    UsedAssertion.objects.create(
        client=ec_client, jti="reused", expires_at=timezone.now() - timedelta(seconds=1)
    )
    UsedAssertion.objects.create(
        client=ec_client, jti="live", expires_at=timezone.now() + timedelta(seconds=60)
    )
    assertion = sign(ec_key(), claims_for(ec_client.client_id, jti="reused"))
    assert post(client, token_form(assertion)).status_code == 200
    assert set(UsedAssertion.objects.values_list("jti", flat=True)) == {"reused", "live"}
    stored = UsedAssertion.objects.get(jti="reused")
    assert stored.expires_at > timezone.now() + timedelta(seconds=200)  # exp + skew
    assert used_assertions_purge(now=timezone.now() + timedelta(hours=1)) == 2


@pytest.mark.parametrize(
    ("claims", "headers_alg", "words"),
    [
        ({"aud": "https://elsewhere.example/auth/token"}, None, "aud"),
        ({"lifetime": -120}, None, "expired"),
        ({"lifetime": 3600}, None, "future"),
        ({"jti": None}, None, "jti"),
        ({"sub": "ehr-other"}, None, "sub"),
        ({}, "RS256", "RS256"),
    ],
)
def test_invalid_assertions_are_invalid_client(
    client: Client, rsa_client: EhrClient, claims: dict[str, Any], headers_alg: str | None, words: str
) -> None:
    assertion = sign(rsa_key(), claims_for(rsa_client.client_id, **claims), alg=headers_alg)
    body = assert_error(post(client, token_form(assertion)), 401, "invalid_client")
    assert words in body["error_description"]
    [event] = audit_rows()
    assert event.outcome == "failure"
    # Not authenticated: the claimed client goes into the detail, not into the actor.
    assert event.actor_type == "anonymous"
    assert event.detail["client_id"] == rsa_client.client_id
    assert event.detail["client_authenticated"] is False
    assert assertion not in str(event.detail)


def test_bad_signature_is_invalid_client(client: Client, rsa_client: EhrClient) -> None:
    impostor = rsa_key(7, kid="rsa-0")
    assert_error(
        post(client, token_form(sign(impostor, claims_for(rsa_client.client_id)))), 401, "invalid_client"
    )


def test_unknown_client_is_invalid_client(client: Client, smart_org: Any) -> None:
    assertion = sign(ec_key(), claims_for("ehr-nobody"))
    body = assert_error(post(client, token_form(assertion)), 401, "invalid_client")
    assert body["error_description"] == "unknown client"
    [event] = audit_rows()
    assert (event.actor_type, event.detail["client_id"], event.detail["client_known"]) == (
        "anonymous",
        "ehr-nobody",
        False,
    )


def test_inactive_client_is_invalid_client(client: Client, ec_client: EhrClient) -> None:
    EhrClient.objects.filter(pk=ec_client.pk).update(is_active=False)
    assertion = sign(ec_key(), claims_for(ec_client.client_id))
    assert_error(post(client, token_form(assertion)), 401, "invalid_client")
    assert audit_rows()[0].object_id == str(ec_client.external_id)


@pytest.mark.parametrize(
    ("overrides", "status", "error"),
    [
        ({"grant_type": "authorization_code"}, 400, "unsupported_grant_type"),
        ({"grant_type": None}, 400, "invalid_request"),
        ({"client_assertion_type": "urn:other"}, 400, "invalid_request"),
        ({"client_assertion": None}, 400, "invalid_request"),
        ({"scope": None}, 400, "invalid_request"),
        ({"client_secret": "s3cret"}, 400, "invalid_request"),
        ({"client_assertion": "not-a-jwt"}, 401, "invalid_client"),
        ({"client_id": "ehr-someone-else"}, 401, "invalid_client"),
    ],
)
def test_malformed_requests(
    client: Client, rsa_client: EhrClient, overrides: dict[str, str | None], status: int, error: str
) -> None:
    assertion = sign(rsa_key(), claims_for(rsa_client.client_id))
    assert_error(post(client, token_form(assertion, **overrides)), status, error)
    [event] = audit_rows()
    assert event.detail["error"] == error
    assert "s3cret" not in str(event.detail)


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data; boundary=BoUnDaRyStRiNg"])
def test_other_bodies_are_refused_and_audited(
    client: Client, rsa_client: EhrClient, content_type: str
) -> None:
    form = token_form(sign(rsa_key(), claims_for(rsa_client.client_id)))
    assert_error(post(client, form, content_type=content_type), 400, "invalid_request")
    assert audit_rows()[0].detail["error"] == "invalid_request"


def test_repeated_parameter_is_refused(client: Client, rsa_client: EhrClient) -> None:
    form: dict[str, Any] = token_form(sign(rsa_key(), claims_for(rsa_client.client_id)))
    form["scope"] = ["system/*.read", "system/*.write"]
    body = assert_error(post(client, form), 400, "invalid_request")
    assert "scope" in body["error_description"]


def test_get_is_not_allowed(client: Client, db: None) -> None:
    assert client.get("/auth/token").status_code == 405


def test_csrf_does_not_apply(rsa_client: EhrClient) -> None:
    http = Client(enforce_csrf_checks=True)
    assertion = sign(rsa_key(), claims_for(rsa_client.client_id))
    assert post(http, token_form(assertion)).status_code == 200


def test_audience_follows_public_base_url(client: Client, rsa_client: EhrClient, settings: Any) -> None:
    settings.PUBLIC_BASE_URL = "https://cds.example.org"
    derived = sign(rsa_key(), claims_for(rsa_client.client_id))
    assert_error(post(client, token_form(derived)), 401, "invalid_client")
    public = sign(rsa_key(), claims_for(rsa_client.client_id, aud="https://cds.example.org/auth/token"))
    assert post(client, token_form(public)).status_code == 200


def test_no_audit_row_holds_a_token_or_an_assertion(client: Client, ec_client: EhrClient) -> None:
    assertions = [sign(ec_key(), claims_for(ec_client.client_id)) for _ in range(2)]
    tokens = [post(client, token_form(a)).json()["access_token"] for a in assertions]
    post(client, token_form(assertions[0]))  # a replay, refused
    rows = list(AuditEvent.objects.values())
    assert len(rows) >= 4  # the registration, two issues, one refusal
    dump = repr(rows)
    for secret in [*tokens, *assertions, *(a.split(".")[2] for a in assertions)]:
        assert secret not in dump
