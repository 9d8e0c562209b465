"""The OpenID Connect client's own guards, against a real HTTP server on the loopback interface playing a
misconfigured or hostile provider: a discovery document for another issuer, endpoints on another host, a
redirect where a document should be. Each is refused with its reason before anyone is sent anywhere.
(The whole flow against a certified provider is in test_sso_login.py.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory

from clinical_ai.accounts.sso.client import (
    OidcProvider,
    SsoRefused,
    authorization_complete,
    authorization_redirect,
    provider_metadata,
)
from tests.stand_in import loopback_server


class _Provider(BaseHTTPRequestHandler):
    """Answers the discovery document that the test puts in ``document`` (or a redirect)."""

    document: ClassVar[dict[str, Any]] = {}
    redirect: ClassVar[bool] = False

    def do_GET(self) -> None:
        if self.redirect:
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.end_headers()
            return
        body = json.dumps(self.document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def provider_url() -> Iterator[str]:
    _Provider.redirect = False
    with loopback_server(_Provider) as url:
        yield url


def _provider(issuer: str, key: str) -> OidcProvider:
    return OidcProvider(key=key, issuer=issuer, client_id="clinical-ai", client_secret="s3cret")


def _document(issuer: str, endpoint_base: str | None = None) -> dict[str, Any]:
    base = endpoint_base or issuer
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{base}/auth",
        "token_endpoint": f"{base}/token",
        "jwks_uri": f"{base}/jwks",
    }


def test_a_discovery_document_for_another_issuer_is_refused(provider_url: str) -> None:
    _Provider.document = _document("https://login.elsewhere.example")
    with pytest.raises(SsoRefused) as refused:
        provider_metadata(_provider(provider_url, "other-issuer"))
    assert refused.value.reason == "metadata"
    assert "another issuer" in str(refused.value)


def test_endpoints_on_a_host_not_allowed_are_refused(provider_url: str) -> None:
    _Provider.document = _document(provider_url, endpoint_base="https://attacker.example")
    with pytest.raises(SsoRefused) as refused:
        provider_metadata(_provider(provider_url, "other-host"))
    assert refused.value.reason == "metadata"


def test_a_redirect_instead_of_the_document_is_not_followed(provider_url: str) -> None:
    _Provider.redirect = True
    with pytest.raises(SsoRefused) as refused:
        provider_metadata(_provider(provider_url, "redirecting"))
    assert refused.value.reason == "metadata"
    assert "HTTPFailure" not in str(refused.value)


def _request_with_session(path: str) -> Any:
    request = RequestFactory().get(path)
    request.session = SessionStore()
    return request


def test_the_authorization_url_carries_pkce_state_and_nonce_and_the_state_is_kept(provider_url: str) -> None:
    _Provider.document = _document(provider_url)
    provider = _provider(provider_url, "good")
    request = _request_with_session("/accounts/sso/login/")
    response = authorization_redirect(
        request,
        provider=provider,
        redirect_uri="http://testserver/accounts/sso/callback/",
        purpose="login",
        context={"next": "/review/"},
        prompt="login",
    )
    location = response["Location"]
    assert location.startswith(f"{provider_url}/auth?")
    for part in ("code_challenge_method=S256", "code_challenge=", "state=", "nonce=", "prompt=login"):
        assert part in location
    kept = [key for key in request.session.keys() if key.startswith("_state_sso-good_")]  # noqa: SIM118 - no __iter__
    assert len(kept) == 1


def test_an_answer_with_an_unknown_or_replayed_state_is_refused(provider_url: str) -> None:
    _Provider.document = _document(provider_url)
    provider = _provider(provider_url, "replay")
    request = _request_with_session("/accounts/sso/login/")
    response = authorization_redirect(
        request, provider=provider, redirect_uri="http://testserver/cb/", purpose="login"
    )
    state = response["Location"].split("state=")[1].split("&")[0]
    answer = RequestFactory().get("/cb/", {"state": state, "error": "access_denied"})
    answer.session = request.session
    with pytest.raises(SsoRefused) as first:
        authorization_complete(answer, provider=provider, redirect_uri="http://testserver/cb/")
    assert first.value.reason == "idp-error"  # the state was known: the provider's refusal is what counts
    replay = RequestFactory().get("/cb/", {"state": state, "code": "abc"})
    replay.session = request.session
    with pytest.raises(SsoRefused) as second:
        authorization_complete(replay, provider=provider, redirect_uri="http://testserver/cb/")
    assert second.value.reason == "state"  # consumed by the first answer
