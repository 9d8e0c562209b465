"""A small EHR-side client: SMART Backend Services token, then POST a FHIR document.

What a hospital integration engineer (and the demo, and the tests) use to talk to a running gateway exactly
as an EHR would, over HTTP with a signed client assertion.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key


class ClientError(RuntimeError):
    pass


def signing_algorithm(private_key_pem: bytes) -> str:
    key = load_pem_private_key(private_key_pem, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        return "RS384"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        return "ES384"
    raise ClientError("the private key must be RSA (RS384) or EC P-384 (ES384)")


def client_assertion(
    *, client_id: str, token_url: str, private_key_pem: bytes, kid: str, lifetime_seconds: int = 240
) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "exp": now + lifetime_seconds,
        "iat": now,
        "jti": str(uuid.uuid4()),
    }
    return jwt.encode(
        claims,
        private_key_pem,
        algorithm=signing_algorithm(private_key_pem),
        headers={"kid": kid, "typ": "JWT"},
    )


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: Any


def _send(request: urllib.request.Request, timeout: float) -> HttpAnswer:
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (http(s) URLs only)
            raw = response.read()
            status, headers = response.status, dict(response.headers.items())
    except urllib.error.HTTPError as err:
        raw, status, headers = err.read(), err.code, dict(err.headers.items())
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return HttpAnswer(status, headers, body)


def _check_url(url: str) -> None:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ClientError(f"only http(s) URLs are supported: {url!r}")


def fetch_access_token(
    *, token_url: str, client_id: str, private_key_pem: bytes, kid: str, scope: str, timeout: float = 10
) -> str:
    _check_url(token_url)
    form = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client_assertion(
                client_id=client_id, token_url=token_url, private_key_pem=private_key_pem, kid=kid
            ),
        }
    ).encode("ascii")
    request = urllib.request.Request(  # noqa: S310
        token_url, data=form, method="POST", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    answer = _send(request, timeout)
    if answer.status != 200 or not isinstance(answer.body, dict) or "access_token" not in answer.body:
        raise ClientError(f"token request refused ({answer.status}): {answer.body}")
    return str(answer.body["access_token"])


def post_fhir(
    *, url: str, access_token: str, body: bytes, request_id: str | None = None, timeout: float = 60
) -> HttpAnswer:
    _check_url(url)
    headers = {
        "Content-Type": "application/fhir+json",
        "Accept": "application/fhir+json",
        "Authorization": f"Bearer {access_token}",
    }
    if request_id:
        headers["X-Request-Id"] = request_id
    return _send(urllib.request.Request(url, data=body, method="POST", headers=headers), timeout)  # noqa: S310
