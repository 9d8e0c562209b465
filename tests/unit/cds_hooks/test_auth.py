"""Every CDS Hooks endpoint, discovery included, wants a valid JWT from a registered issuer; anything else
is a bare 401, on record."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client

from clinical_ai.audit.models import AuditEvent
from integrations.cds_hooks.models import CdsIssuer
from tests.unit.cds_hooks.conftest import BASE, ISS, KeyPair, Signer, call, hook_body, make_key, sign_jwt

pytestmark = pytest.mark.django_db


def discovery(http: Client, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return http.get("/cds-services", headers=headers)


def assert_bare_401(response: Any) -> None:
    assert response.status_code == 401
    assert response.content == b""


def test_discovery_with_a_signed_jwt(client: Client, issuer: CdsIssuer, sign: Signer) -> None:
    response = discovery(client, sign(""))
    assert response.status_code == 200
    services = response.json()["services"]
    assert {s["hook"] for s in services} >= {"patient-view", "order-sign"}
    for service in services:
        assert {"id", "hook", "title", "description", "prefetch", "usageRequirements"} <= service.keys()
    assert AuditEvent.objects.filter(action="cds.discovery", outcome="success").count() == 1


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_both_algorithms_are_accepted(
    client: Client, issuer: CdsIssuer, rs_key: KeyPair, es_key: KeyPair, alg: str
) -> None:
    key = rs_key if alg == "RS384" else es_key
    assert discovery(client, sign_jwt(key, aud=BASE)).status_code == 200


def test_no_token(client: Client, issuer: CdsIssuer) -> None:
    assert_bare_401(discovery(client, None))
    assert_bare_401(call(client, "/clinical-ai-patient-view", hook_body(), None))
    assert AuditEvent.objects.filter(action="cds.auth.refuse", outcome="failure").count() == 2


@pytest.mark.parametrize(
    "case",
    ["wrong-aud", "expired", "future-iat", "bad-signature", "unknown-iss", "too-long-lived", "no-jti"],
)
def test_bad_tokens_are_refused(client: Client, issuer: CdsIssuer, es_key: KeyPair, case: str) -> None:
    token = {
        "wrong-aud": lambda: sign_jwt(es_key, aud=BASE + "/clinical-ai-order-sign"),
        "expired": lambda: sign_jwt(es_key, aud=BASE, lifetime=-300),
        "future-iat": lambda: sign_jwt(es_key, aud=BASE, iat_offset=900),
        "bad-signature": lambda: sign_jwt(make_key("ES384", kid=es_key.kid), aud=BASE),
        "unknown-iss": lambda: sign_jwt(es_key, aud=BASE, iss="https://stranger.example"),
        "too-long-lived": lambda: sign_jwt(es_key, aud=BASE, lifetime=3600),
        "no-jti": lambda: sign_jwt(es_key, aud=BASE, drop=("jti",)),
    }[case]()
    assert_bare_401(discovery(client, token))
    refusal = AuditEvent.objects.get(action="cds.auth.refuse")
    assert refusal.actor_type == "anonymous"


def test_a_replayed_jti_is_refused(client: Client, issuer: CdsIssuer, sign: Signer) -> None:
    token = sign("")
    assert discovery(client, token).status_code == 200
    assert_bare_401(discovery(client, token))
    assert "replayed" in AuditEvent.objects.get(action="cds.auth.refuse").detail["reason"]


def test_alg_none_and_hs256_are_refused(client: Client, issuer: CdsIssuer, es_key: KeyPair) -> None:
    import base64
    import time

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"iss": ISS, "sub": "x", "aud": BASE, "iat": now, "exp": now + 60, "jti": "j-none"}
    unsigned = f"{b64({'alg': 'none', 'kid': es_key.kid})}.{b64(claims)}."
    assert_bare_401(discovery(client, unsigned))
    import jwt as pyjwt

    hs256 = pyjwt.encode({**claims, "jti": "j-hs"}, "a-shared-secret-of-enough-length-32b", algorithm="HS256")
    assert_bare_401(discovery(client, hs256))


def test_a_disabled_issuer_is_refused(client: Client, issuer: CdsIssuer, sign: Signer) -> None:
    CdsIssuer.objects.filter(pk=issuer.pk).update(is_active=False)
    assert_bare_401(discovery(client, sign("")))


def test_the_service_endpoint_wants_its_own_aud(client: Client, issuer: CdsIssuer, sign: Signer) -> None:
    body = hook_body()
    assert_bare_401(call(client, "/clinical-ai-patient-view", body, sign("")))  # the discovery URL
    assert (
        call(client, "/clinical-ai-patient-view", body, sign("/clinical-ai-patient-view")).status_code == 200
    )


# --- keys from URLs: jku allowlist and rotation -------------------------------------------------------


class KeyServer:
    """A JWK Set served over http on 127.0.0.1 (loopback only), whose keys a test can rotate."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                body = json.dumps(outer.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    server = KeyServer()
    yield server
    server.close()


def test_jku_must_be_allowlisted(client: Client, issuer: CdsIssuer, key_server: KeyServer) -> None:
    key = make_key("ES384")
    key_server.jwks = {"keys": [key.jwk]}
    token = sign_jwt(key, aud=BASE, headers={"jku": key_server.url})
    assert_bare_401(discovery(client, token))
    assert key_server.requests == 0  # never fetched from a URL the issuer did not register

    CdsIssuer.objects.filter(pk=issuer.pk).update(allowed_jku=[key_server.url])
    assert discovery(client, sign_jwt(key, aud=BASE, headers={"jku": key_server.url})).status_code == 200
    assert key_server.requests == 1


def test_keys_at_a_jwks_url_are_cached_and_refetched_on_rotation(
    client: Client, issuer: CdsIssuer, key_server: KeyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A refetch on an unknown kid is rate-limited per URL; the test does not wait out the interval.
    monkeypatch.setattr("integrations.smart.jwks.MIN_REFETCH_INTERVAL_SECONDS", 0.0)
    first, second = make_key("RS384"), make_key("ES384")
    key_server.jwks = {"keys": [first.jwk]}
    CdsIssuer.objects.filter(pk=issuer.pk).update(jwks=None, jwks_url=key_server.url)
    assert discovery(client, sign_jwt(first, aud=BASE)).status_code == 200
    assert discovery(client, sign_jwt(first, aud=BASE)).status_code == 200
    assert key_server.requests == 1  # cached

    key_server.jwks = {"keys": [second.jwk]}  # the EHR rotated its key
    assert discovery(client, sign_jwt(second, aud=BASE)).status_code == 200
    assert key_server.requests == 2
    assert_bare_401(discovery(client, sign_jwt(first, aud=BASE)))  # the old key is gone


# --- CORS ---------------------------------------------------------------------------------------------


def test_cors_preflight_needs_no_token(client: Client, issuer: CdsIssuer) -> None:
    response = client.options(
        "/cds-services/clinical-ai-patient-view",
        headers={
            "Origin": "https://sandbox.cds-hooks.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response["Access-Control-Allow-Methods"]
    assert "Authorization" in response["Access-Control-Allow-Headers"]


def test_cors_headers_on_discovery_and_on_a_refusal(client: Client, issuer: CdsIssuer, sign: Signer) -> None:
    origin = {"Origin": "https://sandbox.cds-hooks.org"}
    ok = client.get("/cds-services", headers={"Authorization": f"Bearer {sign('')}", **origin})
    assert ok.status_code == 200 and ok["Access-Control-Allow-Origin"] == "*"
    refused = client.get("/cds-services", headers=origin)
    assert refused.status_code == 401 and refused["Access-Control-Allow-Origin"] == "*"


def test_cors_can_be_limited_to_listed_origins(
    client: Client, issuer: CdsIssuer, sign: Signer, settings: Any
) -> None:
    settings.CDS_HOOKS_CORS_ALLOWED_ORIGINS = ["https://ehr.example.org"]
    listed = client.get(
        "/cds-services", headers={"Authorization": f"Bearer {sign('')}", "Origin": "https://ehr.example.org"}
    )
    assert listed["Access-Control-Allow-Origin"] == "https://ehr.example.org"
    other = client.get(
        "/cds-services", headers={"Authorization": f"Bearer {sign('')}", "Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in other
