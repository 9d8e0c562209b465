"""The test identity provider itself, over real HTTP: what the SSO tests rely on it to do."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.sso_harness import (
    CLIENT_ID,
    CLIENT_SECRET,
    DEFAULT_BASE_URL,
    SSO_CALLBACK,
    USER_PASSWORD,
    OidcProviderProcess,
    page_forms,
)

REDIRECT_URI = f"{DEFAULT_BASE_URL}{SSO_CALLBACK}"


def _authorize_url(idp: OidcProviderProcess, verifier: str, **extra: str) -> str:
    params = {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile email groups",
        "state": "the-state",
        "nonce": "the-nonce",
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
        **extra,
    }
    return f"{idp.metadata()['authorization_endpoint']}?{urlencode(params)}"


def _token(idp: OidcProviderProcess, **form: str) -> dict[str, Any]:
    response = requests.post(
        idp.metadata()["token_endpoint"], data=form, auth=(CLIENT_ID, CLIENT_SECRET), timeout=5
    )
    body: dict[str, Any] = response.json()
    body["status"] = response.status_code
    return body


def _claims(idp: OidcProviderProcess, id_token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(requests.get(idp.metadata()["jwks_uri"], timeout=5).json())
    token = jwt.decode(id_token, keys, algorithms=["RS256"])
    claims: dict[str, Any] = token.claims
    return claims


def test_code_flow_with_pkce_groups_in_the_id_token_and_refreshed(oidc_provider: OidcProviderProcess) -> None:
    idp = oidc_provider
    idp.set_user("nurse-1", name="Nia Okoro", email="nia@hospital.example", groups=["ward-7-nurses"])
    metadata = idp.metadata()
    assert metadata["issuer"] == idp.issuer
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert metadata["end_session_endpoint"].startswith(idp.issuer)

    # PKCE is required: without a challenge the provider sends the browser back with an error.
    no_pkce = _authorize_url(idp, "x" * 43, code_challenge="", code_challenge_method="")
    assert "error=invalid_request" in idp.authorize(no_pkce)

    # A wrong password keeps the sign-in page and says so.
    verifier = secrets.token_urlsafe(48)
    page = idp.sign_in_page(_authorize_url(idp, verifier))
    [form] = page_forms(page.text)
    wrong = idp.user_agent.post(
        f"{idp.issuer}{form['action']}", data={"username": "nurse-1", "password": "nope"}, timeout=5
    )
    assert wrong.status_code == 200 and "Wrong username or password" in wrong.text

    back = idp.authorize(_authorize_url(idp, verifier), username="nurse-1", password=USER_PASSWORD)
    query = parse_qs(urlsplit(back).query)
    assert back.startswith(REDIRECT_URI) and query["state"] == ["the-state"] and query["iss"] == [idp.issuer]
    tokens = _token(
        idp,
        grant_type="authorization_code",
        code=query["code"][0],
        redirect_uri=REDIRECT_URI,
        code_verifier=verifier,
    )
    assert tokens["status"] == 200, tokens
    claims = _claims(idp, tokens["id_token"])
    assert claims["iss"] == idp.issuer and claims["aud"] == CLIENT_ID and claims["nonce"] == "the-nonce"
    assert (
        claims["sub"] == "nurse-1" and claims["groups"] == ["ward-7-nurses"] and claims["name"] == "Nia Okoro"
    )
    assert isinstance(claims["auth_time"], int)

    # Still signed in at the provider: no password asked, unless the client says prompt=login.
    assert idp.sign_in_page(_authorize_url(idp, verifier)).is_redirect
    assert "Sign in" in idp.sign_in_page(_authorize_url(idp, verifier, prompt="login")).text
    assert "Sign in" in idp.sign_in_page(_authorize_url(idp, verifier, max_age="0")).text

    # A group removed at the provider shows in the next refreshed id_token; a removed user is refused.
    idp.set_groups("nurse-1", [])
    refreshed = _token(idp, grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refreshed["status"] == 200, refreshed
    assert _claims(idp, refreshed["id_token"])["groups"] == []
    idp.remove_user("nurse-1")
    refused = _token(idp, grant_type="refresh_token", refresh_token=refreshed["refresh_token"])
    assert (refused["status"], refused["error"]) == (400, "invalid_grant")
    userinfo = requests.get(
        metadata["userinfo_endpoint"],
        headers={"Authorization": f"Bearer {refreshed['access_token']}"},
        timeout=5,
    )
    assert userinfo.status_code == 401
