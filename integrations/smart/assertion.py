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
from integrations.smart.jwk import (
    JwkError,
    jwk_fits,
    jwk_load,
    jwks_keys,
    jws_algorithm,
    jws_claims,
    numeric_date,
)

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


def _select_key(header: Mapping[str, Any], jwks: Mapping[str, Any], algorithm: str) -> Mapping[str, Any]:
    try:
        candidates = [jwk for jwk in jwks_keys(jwks) if jwk_fits(jwk, algorithm)]
    except JwkError as exc:
        raise AssertionRejected(f"the client's registered key set is unusable: {exc}") from None
    kid = header.get("kid")
    if kid is not None:
        matching = [jwk for jwk in candidates if jwk.get("kid") == kid]
        if not matching:
            raise UnknownKeyId(f"no registered {algorithm} key has kid {str(kid)[:64]!r}")
        return matching[0]
    if not candidates:
        raise UnknownKeyId(f"no registered key fits {algorithm}")
    if len(candidates) > 1:
        raise AssertionRejected("the client has several keys: the assertion header must name one by kid")
    return candidates[0]


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
    rule fails. ``audience`` is the token endpoint URL; ``now`` must be timezone-aware."""
    header = _unverified_header(assertion)
    algorithm = jws_algorithm(header, AssertionRejected)
    try:
        key = jwk_load(_select_key(header, jwks, algorithm), algorithm)
    except JwkError as exc:
        raise AssertionRejected(f"the client's key cannot be used: {exc}") from None
    claims = jws_claims(
        assertion, key.key, algorithm, rejected=AssertionRejected, what="the client assertion"
    )

    issuer, subject = claims.get("iss"), claims.get("sub")
    if issuer != client_id:
        raise AssertionRejected("the iss claim is not this client's id")
    if subject != issuer:
        raise AssertionRejected("the sub claim must equal iss (the client id)")

    aud = claims.get("aud")
    if not (aud == audience or (isinstance(aud, list) and audience in aud)):
        raise AssertionRejected(f"the aud claim must be the token endpoint URL, {audience[:200]}")

    timestamp = now.timestamp()
    expires = numeric_date(claims, "exp", AssertionRejected)
    if expires is None:
        raise AssertionRejected("the exp claim is required")
    if expires + clock_skew_seconds <= timestamp:
        raise AssertionRejected("the client assertion has expired")
    if expires - timestamp > max_lifetime_seconds + clock_skew_seconds:
        raise AssertionRejected(f"exp is more than {max_lifetime_seconds} seconds in the future")
    not_before = numeric_date(claims, "nbf", AssertionRejected)
    if not_before is not None and not_before - clock_skew_seconds > timestamp:
        raise AssertionRejected("the client assertion is not valid yet (nbf)")
    issued_at = numeric_date(claims, "iat", AssertionRejected)
    if issued_at is not None and issued_at - clock_skew_seconds > timestamp:
        raise AssertionRejected("the client assertion was issued in the future (iat)")

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
