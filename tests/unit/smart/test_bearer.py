"""Bearer token authentication, the smart_protected decorator and the SMART configuration document."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone

from integrations.smart.models import AccessToken, EhrClient
from integrations.smart.services import access_token_authenticate
from tests.unit.smart import urls as test_urls
from tests.unit.smart.keys import claims_for, ec_key, sign, token_form

pytestmark = pytest.mark.django_db


def issue(http: Client, ehr: EhrClient, scope: str = "system/*.read system/Observation.c") -> str:
    form = token_form(sign(ec_key(), claims_for(ehr.client_id)), scope=scope)
    response = http.post("/auth/token", urlencode(form), content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200, response.content
    return str(response.json()["access_token"])


def test_valid_token_authenticates(client: Client, ec_client: EhrClient) -> None:
    token = issue(client, ec_client)
    principal = access_token_authenticate(authorization_header=f"Bearer {token}")
    assert principal is not None
    assert principal.client_id == ec_client.client_id
    assert principal.client_pk == ec_client.pk
    assert principal.organization_id == ec_client.organization_id
    assert principal.organization_slug == "smart-site"
    assert principal.can("Observation", "create") and principal.can("Patient", "search")
    assert not principal.can("Patient", "create")
    # The scheme is case-insensitive (RFC 7235).
    assert access_token_authenticate(authorization_header=f"bearer {token}") == principal


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-token-we-issued-at-all",
        "Bearer a b c",
    ],
)
def test_missing_or_garbage_headers_are_refused(ec_client: EhrClient, header: str | None) -> None:
    assert access_token_authenticate(authorization_header=header) is None


def test_expired_token_is_refused(client: Client, ec_client: EhrClient) -> None:
    token = issue(client, ec_client)
    AccessToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert access_token_authenticate(authorization_header=f"Bearer {token}") is None


def test_revoked_token_is_refused(client: Client, ec_client: EhrClient) -> None:
    token = issue(client, ec_client)
    AccessToken.objects.update(revoked_at=timezone.now())
    assert access_token_authenticate(authorization_header=f"Bearer {token}") is None


def test_token_of_a_disabled_client_is_refused(client: Client, ec_client: EhrClient) -> None:
    token = issue(client, ec_client)
    EhrClient.objects.update(is_active=False)
    assert access_token_authenticate(authorization_header=f"Bearer {token}") is None


def test_the_stored_hash_is_not_a_token(client: Client, ec_client: EhrClient) -> None:
    issue(client, ec_client)
    stored = AccessToken.objects.get().token_sha256
    assert access_token_authenticate(authorization_header=f"Bearer {stored}") is None


def test_protected_view_without_token_is_a_bare_401(client: Client, db: None) -> None:
    response = client.get("/test/whoami")
    assert response.status_code == 401
    assert response.content == b""
    assert response["WWW-Authenticate"] == 'Bearer realm="clinical-ai", error="invalid_token"'


def test_protected_view_with_token_sees_the_principal(client: Client, ec_client: EhrClient) -> None:
    token = issue(client, ec_client)
    response = client.get("/test/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {
        "client_id": ec_client.client_id,
        "organization": "smart-site",
        "can_create_observation": True,
    }


def test_refusal_hook_is_called_and_csrf_does_not_apply(ec_client: EhrClient) -> None:
    http = Client(enforce_csrf_checks=True)
    test_urls.REFUSED.clear()
    assert (
        http.post("/test/audited", headers={"Authorization": "Bearer nope-nope-nope-nope"}).status_code == 401
    )
    assert test_urls.REFUSED == ["/test/audited"]
    token = issue(http, ec_client)
    assert http.post("/test/audited", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert test_urls.REFUSED == ["/test/audited"]


@pytest.mark.parametrize(
    "path", ["/fhir/.well-known/smart-configuration", "/.well-known/smart-configuration"]
)
def test_smart_configuration(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200
    document = response.json()
    assert document["token_endpoint"] == "http://testserver/auth/token"
    assert document["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert document["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert document["grant_types_supported"] == ["client_credentials"]
    assert document["capabilities"] == ["client-confidential-asymmetric"]
    assert "system/*.rs" in document["scopes_supported"]


def test_smart_configuration_uses_public_base_url(client: Client, settings: Any) -> None:
    settings.PUBLIC_BASE_URL = "https://cds.example.org"
    document = client.get("/fhir/.well-known/smart-configuration").json()
    assert document["token_endpoint"] == "https://cds.example.org/auth/token"
