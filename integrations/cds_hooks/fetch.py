"""Reading what a hook needs from the EHR's FHIR server (``fhirServer``) with the access token it handed
over (``fhirAuthorization``). Only from a base URL registered for the issuer and only to its host (no
request forgery towards other hosts), over https or loopback http, without redirects, with a short timeout
(clinical_ai.core.http). The token is sent and forgotten: never logged, stored or put into an error
message."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from clinical_ai.core.http import LOOPBACK_HOSTS, HttpFailure, http_request, url_host

MAX_RESPONSE_BYTES = 5 * 1024 * 1024


class FetchFailed(Exception):
    """The FHIR server could not give the resource (unreachable, refused, not FHIR)."""


def fhir_server_usable(fhir_server: str, *, allowed: Sequence[str]) -> bool:
    """Whether ``fhir_server`` is one of the registered base URLs and safe to call."""
    normalized = fhir_server.rstrip("/")
    if normalized not in {str(url).rstrip("/") for url in allowed}:
        return False
    try:
        parts = urlsplit(normalized)
    except ValueError:
        return False
    if parts.username or parts.password or not parts.hostname:
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS)


def fhir_get(
    *, fhir_server: str, path: str, access_token: str, timeout_seconds: float
) -> dict[str, Any] | None:
    """GET ``[fhirServer]/[path]``; the resource or Bundle, None for a 404/410, ``FetchFailed`` otherwise."""
    base = fhir_server.rstrip("/")
    try:
        reply = http_request(
            "GET",
            f"{base}/{path.lstrip('/')}",
            # The rendered path comes from the request's context: it must not lead off the server's host.
            allowed_hosts={url_host(base)},
            timeout_seconds=timeout_seconds,
            max_response_bytes=MAX_RESPONSE_BYTES,
            headers={
                "Accept": "application/fhir+json",
                "Authorization": f"Bearer {access_token}",
                "User-Agent": "clinical-ai-cds-hooks",
            },
        )
    except HttpFailure as failure:  # its message names no URL, header or body
        raise FetchFailed(f"the FHIR server: {failure}") from None
    if reply.status in (404, 410):
        return None
    if not reply.ok:
        raise FetchFailed(f"the FHIR server answered HTTP {reply.status}")
    try:
        document = json.loads(reply.body)
    except ValueError:
        raise FetchFailed("the FHIR server did not answer with JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
        raise FetchFailed("the FHIR server did not answer with a FHIR resource")
    return document
