"""Verifying the JWT a CDS Client sends with every call (CDS Hooks 2.0 "Trusting CDS Clients"), as plain
Python.

Header: ``alg`` RS384 or ES384 only (``none``, HMAC and everything else are refused before any key is
looked at), ``kid`` naming the key, optionally ``jku`` (the caller checks it against the issuer's
allowlist before fetching keys from it). Claims: ``iss`` (the issuer the keys belong to), ``sub`` (the
CDS Client's id), ``aud`` (the endpoint called), ``exp`` and ``iat`` (a short lifetime), ``jti`` (unique;
the caller refuses a replay). The key rules are SMART's: integrations.smart.jwk.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt

from integrations.smart.jwk import JwkError, UnknownKid, jwk_load, jwk_select, jws_algorithm, jws_verify

MAX_TOKEN_LENGTH = 16 * 1024
MAX_JTI_LENGTH = 255
MAX_ISS_LENGTH = 255


class JwtRejected(Exception):
    """The JWT does not authenticate the caller. The message is for the audit row, never the answer."""


class UnknownKeyId(JwtRejected):
    """No key of the set fits the JWT's kid and algorithm; keys fetched from a URL may have rotated since
    they were cached, so the caller may refetch once and verify again."""


@dataclass(frozen=True)
class UnverifiedJwt:
    """What the token says before verification: only for finding the issuer and its keys."""

    header: Mapping[str, Any]
    iss: str
    jku: str | None


@dataclass(frozen=True)
class VerifiedJwt:
    iss: str
    sub: str
    jti: str
    expires_at: int  # exp, seconds since the epoch
    algorithm: str
    key_id: str | None
    tenant: str | None


def jwt_unverified(token: str) -> UnverifiedJwt:
    """Header and ``iss`` of a compact JWS, unverified; ``JwtRejected`` when it is not one."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise JwtRejected("no token, or a token longer than the limit")
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise JwtRejected("not a signed JWT (JWS compact serialization)") from None
    issuer = claims.get("iss")
    # NUL: PostgreSQL text cannot hold it, so looking the issuer up would fail with a DataError (a 500).
    if not isinstance(issuer, str) or not issuer or len(issuer) > MAX_ISS_LENGTH or "\x00" in issuer:
        raise JwtRejected("no usable iss claim")
    jku = header.get("jku")
    if jku is not None and not isinstance(jku, str):
        raise JwtRejected("the jku header is not a string")
    return UnverifiedJwt(header=header, iss=issuer, jku=jku)


def cds_jwt_verify(
    *,
    token: str,
    jwks: Mapping[str, Any],
    issuer: str,
    audiences: Collection[str],
    now: datetime,
    max_lifetime_seconds: int,
    clock_skew_seconds: int,
) -> VerifiedJwt:
    """Verify the signature with ``jwks`` and every claim; raise ``JwtRejected`` on the first failure.
    ``audiences``: the URLs that count as this endpoint. ``now`` (timezone-aware) is the instant the lifetime
    rule is measured from; PyJWT holds exp, nbf and iat to the system clock, the same instant in practice."""
    unverified = jwt_unverified(token)
    header = unverified.header
    algorithm = jws_algorithm(header, JwtRejected)
    try:
        key = jwk_load(jwk_select(jwks, kid=header.get("kid"), algorithm=algorithm), algorithm)
    except UnknownKid as exc:
        raise UnknownKeyId(str(exc)) from None
    except JwkError as exc:
        raise JwtRejected(f"the issuer's key cannot be used: {exc}") from None
    claims = jws_verify(
        token,
        key.key,
        algorithm,
        rejected=JwtRejected,
        what="the token",
        audience=sorted(audiences),
        issuer=issuer,
        subject=None,
        leeway_seconds=clock_skew_seconds,
        required=("iss", "sub", "aud", "exp", "iat", "jti"),
    )
    subject = claims["sub"]  # present and a string: jws_verify checked it
    if not subject or "\x00" in subject:  # NUL: audit rows cannot hold it
        raise JwtRejected("the sub claim (the CDS Client's id) is required")

    # Our own rule on top: CDS Hooks JWTs are short-lived, by what they say (exp - iat) and from now.
    expires, issued_at = float(claims["exp"]), float(claims["iat"])
    if (
        expires - issued_at > max_lifetime_seconds
        or expires - now.timestamp() > max_lifetime_seconds + clock_skew_seconds
    ):
        raise JwtRejected(f"the token lives longer than {max_lifetime_seconds} seconds")

    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH or "\x00" in jti:
        raise JwtRejected("the jti claim is required (at most 255 characters)")
    tenant = claims.get("tenant")
    if isinstance(tenant, str) and "\x00" in tenant:
        raise JwtRejected("the tenant claim contains a NUL character")
    kid = header.get("kid")
    return VerifiedJwt(
        iss=issuer,
        sub=subject[:255],
        jti=jti,
        expires_at=math.ceil(expires),
        algorithm=algorithm,
        key_id=kid if isinstance(kid, str) else None,
        tenant=tenant[:255] if isinstance(tenant, str) else None,
    )
