"""Verifying a SMART Backend Services client assertion (a JWT signed with the client's private key,
RFC 7523 and SMART App Launch 2.x "client-confidential-asymmetric"), as plain Python.

Everything that can be refused without a key is refused before any signature work: the algorithm is
checked against RS384/ES384 first, so ``none``, HMAC with a public key as the secret and RS256 never reach
the verifier. Claims are checked only after the signature holds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt

from integrations.smart.errors import OAuthError, OAuthErrorCode
from integrations.smart.jwk import JwkError, UnknownKid, jwk_load, jwk_select, jws_algorithm, jws_verify

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_ASSERTION_LENGTH = 16 * 1024
MAX_JTI_LENGTH = 255
MAX_CLIENT_ID_LENGTH = 128


class AssertionRejected(OAuthError):
    """The client assertion does not authenticate the client (always ``invalid_client``, HTTP 401)."""

    def __init__(self, description: str) -> None:
        super().__init__(OAuthErrorCode.INVALID_CLIENT, description)


class UnknownKeyId(AssertionRejected):
    """No registered key fits the assertion's ``kid`` and algorithm. Keys fetched from a JWKS URL may
    have rotated since they were cached: the caller may refetch them once and verify again."""


@dataclass(frozen=True)
class VerifiedAssertion:
    client_id: str
    jti: str
    expires_at: int  # the exp claim, seconds since the epoch
    algorithm: str
    key_id: str | None


def _unverified_header(assertion: str) -> dict[str, Any]:
    if len(assertion) > MAX_ASSERTION_LENGTH:
        raise AssertionRejected(f"the client assertion is longer than {MAX_ASSERTION_LENGTH} characters")
    try:
        return jwt.get_unverified_header(assertion)
    except jwt.PyJWTError:
        raise AssertionRejected(
            "the client assertion is not a signed JWT (JWS compact serialization)"
        ) from None


def assertion_client_id(assertion: str) -> str:
    """The client id the assertion claims (``iss``), read without verification: only to find the client
    and its keys. Nothing else may be trusted before ``client_assertion_verify``."""
    _unverified_header(assertion)
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise AssertionRejected("the client assertion payload is not a JSON object") from None
    issuer = claims.get("iss")
    # NUL: PostgreSQL text cannot hold it, so looking the client up would fail with a DataError (a 500).
    if not isinstance(issuer, str) or not issuer or len(issuer) > MAX_CLIENT_ID_LENGTH or "\x00" in issuer:
        raise AssertionRejected("the client assertion has no usable iss claim")
    return issuer


def client_assertion_verify(
    *,
    assertion: str,
    jwks: Mapping[str, Any],
    client_id: str,
    audience: str,
    now: datetime,
    max_lifetime_seconds: int,
    clock_skew_seconds: int,
) -> VerifiedAssertion:
    """Verify a client assertion against the client's public keys; raise ``AssertionRejected`` if any
    rule fails. ``audience`` is the token endpoint URL. ``now`` (timezone-aware) is the instant the lifetime
    rule is measured from; PyJWT holds exp, nbf and iat to the system clock, the same instant in practice."""
    header = _unverified_header(assertion)
    algorithm = jws_algorithm(header, AssertionRejected)
    try:
        key = jwk_load(jwk_select(jwks, kid=header.get("kid"), algorithm=algorithm), algorithm)
    except UnknownKid as exc:
        raise UnknownKeyId(str(exc)) from None
    except JwkError as exc:
        raise AssertionRejected(f"the client's key cannot be used: {exc}") from None
    # RFC 7523: iss and sub are the client id, aud the token endpoint; exp is required, and PyJWT holds
    # exp, nbf and iat to the clock within the skew.
    claims = jws_verify(
        assertion,
        key.key,
        algorithm,
        rejected=AssertionRejected,
        what="the client assertion",
        audience=audience,
        issuer=client_id,
        subject=client_id,
        leeway_seconds=clock_skew_seconds,
        required=("iss", "sub", "aud", "exp", "jti"),
    )
    expires = float(claims["exp"])  # a finite JSON number: jws_verify checked it
    # Our own rule on top: an assertion is a one-time credential, so it may not live long.
    if expires - now.timestamp() > max_lifetime_seconds + clock_skew_seconds:
        raise AssertionRejected(f"exp is more than {max_lifetime_seconds} seconds in the future")

    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or "\x00" in jti:  # NUL: cannot be stored (PostgreSQL text)
        raise AssertionRejected("the jti claim is required")
    if len(jti) > MAX_JTI_LENGTH:
        raise AssertionRejected(f"the jti claim is longer than {MAX_JTI_LENGTH} characters")

    kid = header.get("kid")
    return VerifiedAssertion(
        client_id=client_id,
        jti=jti,
        expires_at=math.ceil(expires),
        algorithm=algorithm,
        key_id=kid if isinstance(kid, str) else None,
    )
