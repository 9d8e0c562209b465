"""Keys published at a JWKS URL: a real HTTP server on 127.0.0.1, caching and key rotation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.services import Actor
from integrations.smart import jwks as jwks_module
from integrations.smart.jwks import JwksCache, JwksUnavailable, JwksUrlError, jwks_fetch, jwks_url_check
from integrations.smart.models import EhrClient
from integrations.smart.services import EhrClientRegistrationError, ehr_client_register
from tests.stand_in import loopback_server
from tests.unit.smart.keys import KeyPair, claims_for, ec_key, rsa_key, sign, token_form


@dataclass
class KeyServer:
    url: str
    jwks: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    location: str = ""
    hits: int = 0


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    state = KeyServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits += 1
            body = json.dumps(state.jwks).encode()
            self.send_response(state.status)
            if state.location:
                self.send_header("Location", state.location)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with loopback_server(Handler) as base_url:
        state.url = f"{base_url}/jwks.json"
        yield state


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(jwks_module, "JWKS_CACHE", JwksCache(clock=fake))
    return fake


@pytest.fixture
def url_client(smart_org: Organization, key_server: KeyServer) -> EhrClient:
    return ehr_client_register(
        name="EHR publishing its keys",
        organization=smart_org,
        scopes="system/*.read",
        jwks_url=key_server.url,
        actor=Actor.system("tests"),
    )


def request_token(http: Client, ehr: EhrClient, key: KeyPair) -> Any:
    form = token_form(sign(key, claims_for(ehr.client_id)))
    return http.post("/auth/token", urlencode(form), content_type="application/x-www-form-urlencoded")


@pytest.mark.django_db
def test_keys_are_fetched_cached_and_rotated(
    client: Client, url_client: EhrClient, key_server: KeyServer, clock: FakeClock
) -> None:
    old, new = rsa_key(0), ec_key(0, kid="rotated")
    key_server.jwks = old.jwks

    assert request_token(client, url_client, old).status_code == 200
    assert request_token(client, url_client, old).status_code == 200
    assert key_server.hits == 1  # cached

    # The client rotates to a new key; an assertion with the new kid triggers one refetch...
    key_server.jwks = {"keys": [new.public_jwk]}
    clock.now += 11
    assert request_token(client, url_client, new).status_code == 200
    assert key_server.hits == 2

    # ...but kid misses right after a fetch do not reach the key server again.
    ghost = ec_key(1, kid="ghost")
    response = request_token(client, url_client, ghost)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert key_server.hits == 2

    # The cached set expires after SMART_JWKS_CACHE_SECONDS.
    clock.now += 301
    assert request_token(client, url_client, new).status_code == 200
    assert key_server.hits == 3


@pytest.mark.django_db
def test_kid_miss_within_the_refetch_interval_is_refused(
    client: Client, url_client: EhrClient, key_server: KeyServer, clock: FakeClock
) -> None:
    old, new = rsa_key(0), ec_key(0, kid="rotated")
    key_server.jwks = old.jwks
    assert request_token(client, url_client, old).status_code == 200
    key_server.jwks = {"keys": [new.public_jwk]}
    clock.now += 5
    assert request_token(client, url_client, new).status_code == 401
    clock.now += 6
    assert request_token(client, url_client, new).status_code == 200
    assert key_server.hits == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "jwks", "words"),
    [
        (500, {"keys": []}, "HTTP 500"),
        (200, {"keys": [dict(rsa_key().public_jwk, d="AQAB")]}, "private"),
        (200, {"not": "a jwks"}, "JWK Set"),
    ],
)
def test_unusable_key_server_fails_closed(
    client: Client,
    url_client: EhrClient,
    key_server: KeyServer,
    status: int,
    jwks: dict[str, Any],
    words: str,
) -> None:
    key_server.status, key_server.jwks = status, jwks
    response = request_token(client, url_client, rsa_key())
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert words in response.json()["error_description"]


def test_redirects_are_not_followed(key_server: KeyServer) -> None:
    key_server.status, key_server.location, key_server.jwks = 302, key_server.url, rsa_key().jwks
    with pytest.raises(JwksUnavailable, match="302"):
        jwks_fetch(key_server.url, timeout_seconds=2)
    assert key_server.hits == 1


def test_unreachable_key_server(key_server: KeyServer) -> None:
    with pytest.raises(JwksUnavailable, match="cannot be reached"):
        jwks_fetch("http://127.0.0.1:1/jwks.json", timeout_seconds=2)


@pytest.mark.parametrize(
    "url",
    [
        "https://keys.example.org/jwks.json",
        "http://127.0.0.1:8080/j",
        "http://localhost/j",
        "http://[::1]:9/j",
    ],
)
def test_allowed_jwks_urls(url: str) -> None:
    jwks_url_check(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://keys.example.org/jwks.json",
        "http://127.0.0.2/jwks.json",
        "ftp://keys.example.org/jwks.json",
        "https://user:pw@keys.example.org/jwks.json",
        "file:///etc/passwd",
        "https:///jwks.json",
        "not a url",
    ],
)
def test_refused_jwks_urls(url: str) -> None:
    with pytest.raises(JwksUrlError):
        jwks_url_check(url)


@pytest.mark.django_db
def test_registration_refuses_plain_http_to_remote_hosts(smart_org: Organization) -> None:
    with pytest.raises(EhrClientRegistrationError, match="https"):
        ehr_client_register(
            name="EHR",
            organization=smart_org,
            scopes="system/*.read",
            jwks_url="http://keys.example.org/jwks.json",
            actor=Actor.system("tests"),
        )
