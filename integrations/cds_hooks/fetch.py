"""Reading what a hook needs from the EHR's FHIR server (``fhirServer``) with the access token it handed
over (``fhirAuthorization``). Only from a base URL registered for the issuer (no request forgery towards
other hosts), over https or loopback http, without redirects, with a short timeout. The token is sent and
forgotten: never logged, stored or put into an error message."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from integrations.smart.jwks import LOOPBACK_HOSTS

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


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fhir_get(
    *, fhir_server: str, path: str, access_token: str, timeout_seconds: float
) -> dict[str, Any] | None:
    """GET ``[fhirServer]/[path]``; the resource or Bundle, None for a 404/410, ``FetchFailed`` otherwise."""
    url = f"{fhir_server.rstrip('/')}/{path.lstrip('/')}"
    request = urllib.request.Request(  # noqa: S310 - fhir_server_usable checked the scheme and host
        url,
        headers={
            "Accept": "application/fhir+json",
            "Authorization": f"Bearer {access_token}",
            "User-Agent": "clinical-ai-cds-hooks",
        },
    )
    opener = urllib.request.build_opener(_RefuseRedirects)
    try:
        with opener.open(request, timeout=timeout_seconds) as response:
            body = response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 410):
            return None
        raise FetchFailed(f"the FHIR server answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise FetchFailed(f"the FHIR server cannot be reached ({type(exc).__name__})") from None
    if len(body) > MAX_RESPONSE_BYTES:
        raise FetchFailed("the FHIR server's answer is too large")
    try:
        document = json.loads(body)
    except ValueError:
        raise FetchFailed("the FHIR server did not answer with JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
        raise FetchFailed("the FHIR server did not answer with a FHIR resource")
    return document
