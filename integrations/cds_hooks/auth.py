"""Authenticating a CDS Client: the JWT in ``Authorization: Bearer`` on every call, discovery included.

The issuer must be registered and active; its keys come from ``keys.issuer_jwks``; a kid the cached set
lacks refetches the set once (rotation); the ``jti`` is stored until the token expires so that a replay is
refused. Any failure is one answer, a bare 401, and one audit row saying why (never the token)."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.utils import timezone

from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from integrations.cds_hooks.jwt import JwtRejected, UnknownKeyId, VerifiedJwt, cds_jwt_verify, jwt_unverified
from integrations.cds_hooks.keys import JwksUnavailable, KeySourceRefused, issuer_jwks
from integrations.cds_hooks.models import CdsIssuer, UsedJwt
from integrations.cds_hooks.selectors import issuer_by_iss

logger = logging.getLogger(__name__)

AUTH_REFUSE_ACTION = "cds.auth.refuse"
_BEARER = re.compile(r"^Bearer +([A-Za-z0-9\-_.]{16,16384}) *$")
# Expired jtis are deleted by about one call in this many (a range delete on an index, kept off most calls).
PURGE_ONE_IN = 20


@dataclass(frozen=True)
class CdsCaller:
    """An authenticated CDS Client: the registered issuer and what its JWT said."""

    issuer: CdsIssuer
    token: VerifiedJwt

    @property
    def actor(self) -> Actor:
        return Actor.ehr_client(self.issuer.ehr_client.client_id)


def service_base_url(issuer: CdsIssuer | None, *, default_base_url: str) -> str:
    """The discovery URL (…/cds-services) the issuer's JWTs are addressed to."""
    configured = (issuer.service_base_url if issuer else "") or settings.CDS_HOOKS_BASE_URL
    return (configured or default_base_url).rstrip("/")


def used_jwts_purge(*, now: datetime | None = None) -> int:
    deleted, _ = UsedJwt.objects.filter(expires_at__lte=now or timezone.now()).delete()
    return deleted


def _verify(
    issuer: CdsIssuer, token: str, jku: str | None, audiences: set[str], now: datetime
) -> VerifiedJwt:
    def attempt(refresh: bool) -> VerifiedJwt:
        jwks, _ = issuer_jwks(issuer, jku=jku, refresh=refresh)
        return cds_jwt_verify(
            token=token,
            jwks=jwks,
            issuer=issuer.iss,
            audiences=audiences,
            now=now,
            max_lifetime_seconds=settings.CDS_HOOKS_JWT_MAX_LIFETIME_SECONDS,
            clock_skew_seconds=settings.CDS_HOOKS_CLOCK_SKEW_SECONDS,
        )

    try:
        return attempt(refresh=False)
    except UnknownKeyId:
        if jku is None and issuer.jwks is not None:
            raise
        return attempt(refresh=True)  # keys published at a URL may have rotated since they were cached


def _remember_jti(issuer: CdsIssuer, verified: VerifiedJwt, now: datetime) -> None:
    if secrets.randbelow(PURGE_ONE_IN) == 0:
        try:
            with transaction.atomic():
                used_jwts_purge(now=now)
        except DatabaseError:  # two purges racing over the same rows: the next one cleans up
            logger.info("jti purge skipped (concurrent purge)")
    expires = datetime.fromtimestamp(verified.expires_at, tz=now.tzinfo) + timedelta(
        seconds=settings.CDS_HOOKS_CLOCK_SKEW_SECONDS
    )
    try:
        with transaction.atomic():
            UsedJwt.objects.create(issuer=issuer, jti=verified.jti, expires_at=expires)
    except IntegrityError:
        raise JwtRejected("this JWT was used already (jti replayed)") from None


def cds_caller_authenticate(
    *,
    authorization_header: str | None,
    endpoint_paths: Iterable[str],
    default_base_url: str,
    request_id: str,
) -> CdsCaller | None:
    """The caller behind the JWT, or None (audited) when it does not authenticate. ``endpoint_paths``:
    what may follow the service base URL in ``aud`` for this endpoint ("" for discovery, "/<id>" …)."""
    issuer: CdsIssuer | None = None
    try:
        match = _BEARER.match(authorization_header or "")
        if match is None:
            raise JwtRejected("no Bearer JWT in the Authorization header")
        token = match.group(1)
        unverified = jwt_unverified(token)
        issuer = issuer_by_iss(unverified.iss)
        if issuer is None or not issuer.is_active:
            raise JwtRejected("the iss is not a registered, active CDS Client")
        base = service_base_url(issuer, default_base_url=default_base_url)
        audiences = {base + path for path in endpoint_paths}
        now = timezone.now()
        verified = _verify(issuer, token, unverified.jku, audiences, now)
        _remember_jti(issuer, verified, now)
    except (JwtRejected, KeySourceRefused, JwksUnavailable) as exc:
        audit_record(
            actor=Actor.anonymous(),
            action=AUTH_REFUSE_ACTION,
            outcome=Outcome.FAILURE,
            object_type="cds.issuer" if issuer else "",
            object_id=str(issuer.external_id) if issuer else "",
            organization=issuer.organization.slug if issuer else "",
            request_id=request_id,
            detail={"reason": str(exc)[:200], "issuer_known": issuer is not None},
        )
        return None
    return CdsCaller(issuer=issuer, token=verified)
