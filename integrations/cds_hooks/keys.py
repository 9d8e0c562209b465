"""An issuer's public keys: the inline JWK Set, the set at its configured ``jwks_url``, or the set at the
JWT's ``jku`` when that URL is on the issuer's allowlist. Fetched sets are cached per URL in process memory
(integrations.smart.jwks: refetched on an unknown kid at most every few seconds, fail closed)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings

from integrations.cds_hooks.models import CdsIssuer
from integrations.smart.jwks import JwksCache, JwksUnavailable

JWKS_CACHE = JwksCache()

__all__ = ["JWKS_CACHE", "JwksUnavailable", "KeySourceRefused", "issuer_jwks"]


class KeySourceRefused(Exception):
    """The JWT points at keys the issuer did not register (a jku that is not allowlisted)."""


def issuer_jwks(
    issuer: CdsIssuer, *, jku: str | None, refresh: bool = False
) -> tuple[Mapping[str, Any], bool]:
    """The key set to verify with, and whether it came from a URL (so a kid miss may mean rotation)."""
    url: str
    if jku is not None:
        if jku not in (issuer.allowed_jku or []):
            raise KeySourceRefused("the jku header names a URL that is not allowlisted for this issuer")
        url = jku
    elif issuer.jwks is not None:
        jwks: Mapping[str, Any] = issuer.jwks
        return jwks, False
    elif issuer.jwks_url:
        url = issuer.jwks_url
    else:
        raise KeySourceRefused("the issuer has no key set configured and the JWT names no jku")
    fetched = JWKS_CACHE.get(
        url,
        ttl_seconds=settings.CDS_HOOKS_JWKS_CACHE_SECONDS,
        timeout_seconds=settings.CDS_HOOKS_JWKS_FETCH_TIMEOUT_SECONDS,
        refresh=refresh,
    )
    return fetched, True
