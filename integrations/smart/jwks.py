"""A client's public keys: its inline JWK Set, or the JWK Set it publishes at ``jwks_url``, fetched through
clinical_ai.core.http (no redirects, bounded time and size) and cached in process memory.

A fetched set is kept for ``SMART_JWKS_CACHE_SECONDS``. When an assertion names a kid the cached set lacks,
the client may have rotated its keys, so the set is fetched again, but at most once per
``MIN_REFETCH_INTERVAL_SECONDS`` per URL: a stream of assertions with made-up kids must not turn this
server into a load generator against the client's key server. A failed fetch fails closed (no stale keys).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from clinical_ai.core.http import LOOPBACK_HOSTS, HttpFailure, http_request, url_check, url_host
from integrations.smart.jwk import JwkError, jwks_keys
from integrations.smart.models import EhrClient

MIN_REFETCH_INTERVAL_SECONDS = 10.0
MAX_JWKS_BYTES = 64 * 1024

__all__ = ["LOOPBACK_HOSTS", "JwksCache", "JwksUnavailable", "JwksUrlError", "jwks_fetch", "jwks_url_check"]


class JwksUrlError(ValueError):
    """A JWKS URL that keys must not be fetched from."""


class JwksUnavailable(Exception):
    """The JWK Set could not be fetched or is not a usable JWK Set."""


def jwks_url_check(url: str) -> None:
    """Keys come over https, or over http from a loopback host only, from the registered URL itself."""
    try:
        url_check(url, allowed_hosts={url_host(url)}, what="the JWKS URL")
    except HttpFailure as exc:
        raise JwksUrlError(str(exc)) from None


def jwks_fetch(url: str, *, timeout_seconds: float) -> dict[str, Any]:
    """GET the JWK Set at ``url`` and check its shape (no private keys). Raises ``JwksUnavailable``."""
    try:
        jwks_url_check(url)
    except JwksUrlError as exc:
        raise JwksUnavailable(str(exc)) from None
    try:
        # A redirect could lead from https to http or to another host: the registered URL is the only source.
        reply = http_request(
            "GET",
            url,
            allowed_hosts={url_host(url)},
            timeout_seconds=timeout_seconds,
            max_response_bytes=MAX_JWKS_BYTES,
            headers={"Accept": "application/jwk-set+json, application/json", "User-Agent": "clinical-ai"},
        )
    except HttpFailure as exc:
        raise JwksUnavailable(f"the JWKS URL: {exc}") from None
    if not reply.ok:
        raise JwksUnavailable(f"the JWKS URL answered HTTP {reply.status}")
    try:
        document = json.loads(reply.body)
        jwks_keys(document)
    except (ValueError, JwkError) as exc:
        # json.JSONDecodeError is a ValueError; its message quotes no content beyond a position.
        raise JwksUnavailable(f"the JWKS URL did not return a usable JWK Set: {str(exc)[:120]}") from None
    if not isinstance(document, dict):  # jwks_keys accepted it, so it is a JSON object; this narrows the type
        raise JwksUnavailable("the JWKS URL did not return a JSON object")
    return document


@dataclass(frozen=True)
class _Entry:
    jwks: dict[str, Any]
    fetched_at: float


class JwksCache:
    """Fetched JWK Sets by URL, shared by the threads of one process."""

    def __init__(
        self,
        *,
        fetch: Callable[..., dict[str, Any]] = jwks_fetch,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def get(
        self, url: str, *, ttl_seconds: float, timeout_seconds: float, refresh: bool = False
    ) -> dict[str, Any]:
        """The set for ``url``; ``refresh`` asks for a new copy (after a kid miss), granted at most once
        per ``MIN_REFETCH_INTERVAL_SECONDS``."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(url)
        if entry is not None:
            age = now - entry.fetched_at
            if (not refresh and age < ttl_seconds) or (refresh and age < MIN_REFETCH_INTERVAL_SECONDS):
                return entry.jwks
        jwks = self._fetch(url, timeout_seconds=timeout_seconds)
        with self._lock:
            self._entries[url] = _Entry(jwks=jwks, fetched_at=self._clock())
        return jwks

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


JWKS_CACHE = JwksCache()


def ehr_client_jwks(client: EhrClient, *, refresh: bool = False) -> Mapping[str, Any]:
    """The client's public keys: the inline set, else the (cached) set at its jwks_url."""
    if client.jwks is not None:
        jwks: Mapping[str, Any] = client.jwks
        return jwks
    return JWKS_CACHE.get(
        client.jwks_url,
        ttl_seconds=settings.SMART_JWKS_CACHE_SECONDS,
        timeout_seconds=settings.SMART_JWKS_FETCH_TIMEOUT_SECONDS,
        refresh=refresh,
    )
