"""A small EHR-side client: SMART Backend Services token, then POST a FHIR document.

What a hospital integration engineer (and the demo, and the tests) use to talk to a running gateway exactly
as an EHR would, over HTTP with a signed client assertion.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from clinical_ai.core.http import HttpReply, http_request, url_host

TOKEN_ANSWER_MAX_BYTES = 64 * 1024
# The gateway answers a Bundle with an OperationOutcome or a transaction-response: small, but per entry.
FHIR_ANSWER_MAX_BYTES = 16 * 1024 * 1024


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
    """An answer as this client shows it: ``body`` is the parsed JSON, else the text, else None."""

    status: int
    headers: dict[str, str]
    body: Any


def _answer(reply: HttpReply) -> HttpAnswer:
    try:
        body = json.loads(reply.body) if reply.body else None
    except ValueError:
        body = reply.body.decode("utf-8", "replace")
    return HttpAnswer(reply.status, dict(reply.headers), body)


def token_request(
    *,
    token_url: str,
    client_id: str,
    private_key_pem: bytes,
    kid: str,
    scope: str,
    timeout: float,
    allow_plain_http: bool,
) -> HttpReply:
    """POST a SMART Backend Services client_credentials request with a fresh signed client assertion;
    the answer as it came (``access_token_of`` reads it). Raises ``HttpFailure``; the assertion is in the
    request body, which nothing logs."""
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
    return http_request(
        "POST",
        token_url,
        allowed_hosts={url_host(token_url)},
        allow_plain_http=allow_plain_http,
        timeout_seconds=timeout,
        max_response_bytes=TOKEN_ANSWER_MAX_BYTES,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
        body=form,
    )


def access_token_of(reply: HttpReply) -> str | None:
    """The access_token of a 200 token answer; None for any other answer."""
    if reply.status != 200:
        return None
    try:
        document = json.loads(reply.body)
    except ValueError:
        return None
    token = document.get("access_token") if isinstance(document, dict) else None
    return token if isinstance(token, str) else None


# The two calls below are the EHR's side, aimed by an operator at a gateway wherever it runs (a container
# name, another machine on a test network): plain http is allowed to any host, but only to the URL given.


def fetch_access_token(
    *, token_url: str, client_id: str, private_key_pem: bytes, kid: str, scope: str, timeout: float = 10
) -> str:
    reply = token_request(
        token_url=token_url,
        client_id=client_id,
        private_key_pem=private_key_pem,
        kid=kid,
        scope=scope,
        timeout=timeout,
        allow_plain_http=True,
    )
    token = access_token_of(reply)
    if token is None:
        answer = _answer(reply)
        raise ClientError(f"token request refused ({answer.status}): {answer.body}")
    return token


def post_fhir(
    *, url: str, access_token: str, body: bytes, request_id: str | None = None, timeout: float = 60
) -> HttpAnswer:
    """POST a FHIR document; the answer whatever its status. Raises ``HttpFailure`` (an ``OSError``) when
    there is none: no connection, a timeout, a redirect, an oversized answer."""
    headers = {
        "Content-Type": "application/fhir+json",
        "Accept": "application/fhir+json",
        "Authorization": f"Bearer {access_token}",
    }
    if request_id:
        headers["X-Request-Id"] = request_id
    reply = http_request(
        "POST",
        url,
        allowed_hosts={url_host(url)},
        allow_plain_http=True,
        timeout_seconds=timeout,
        max_response_bytes=FHIR_ANSWER_MAX_BYTES,
        headers=headers,
        body=body,
    )
    return _answer(reply)
