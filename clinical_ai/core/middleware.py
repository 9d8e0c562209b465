from __future__ import annotations

import json
import logging
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse

from clinical_ai.core.request_id import request_id_from_header

logger = logging.getLogger(__name__)


class RequestIdMiddleware:
    """Give every request an id (the caller's X-Request-Id when well formed) and echo it back."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from_header(request.headers.get("X-Request-Id"))
        request.request_id = request_id  # type: ignore[attr-defined]
        response = self.get_response(request)
        response["X-Request-Id"] = request_id
        return response


def request_id_of(request: HttpRequest) -> str:
    return str(getattr(request, "request_id", "")) or request_id_from_header(None)


class ContentSecurityPolicyMiddleware:
    """Send ``settings.CONTENT_SECURITY_POLICY`` on HTML responses (Django 5.2 has no CSP of its own).

    The UI loads scripts from our static files only (htmx) and has no inline script or event handler, so
    ``script-src 'self'`` holds; its stylesheets are inline ``<style>`` blocks, hence ``style-src 'self'
    'unsafe-inline'``. A response that already carries a policy keeps it; an empty setting sends none.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        policy = str(getattr(settings, "CONTENT_SECURITY_POLICY", ""))
        content_type = str(response.get("Content-Type", ""))
        if policy and content_type.startswith("text/html") and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = policy
        return response


# Paths whose clients are machines reading FHIR or CDS Hooks JSON, not people reading pages.
_JSON_PREFIXES = ("/fhir", "/cds-services", "/auth/", "/.well-known/")
RETRY_AFTER_SECONDS = 5


class DatabaseUnavailableMiddleware:
    """A view that loses the database (a restart or failover of PostgreSQL, a lock timeout) answers
    503 with ``Retry-After`` instead of a 500: the fault is transient, and the write in progress, one
    transaction in a service, did not commit. Machine clients get an OperationOutcome with the
    ``transient`` issue type and may send the request again (intake is idempotent on its key); people get
    a short page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, OperationalError | InterfaceError):
            return None
        # The exception's text may quote SQL parameters: only its type is logged.
        logger.warning("database unavailable during %s %s: %s", request.method, request.path,
                       type(exception).__name__)  # fmt: skip
        if request.path.startswith(_JSON_PREFIXES):
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [
                    {
                        "severity": "error",
                        "code": "transient",
                        "diagnostics": "The database is unavailable for a moment. Retry the request.",
                    }
                ],
            }
            content_type = (
                "application/json" if request.path.startswith("/cds-services") else ("application/fhir+json")
            )
            response: HttpResponse = HttpResponse(json.dumps(outcome), status=503, content_type=content_type)
        else:
            response = HttpResponse(
                "<!doctype html><title>Unavailable</title><h1>Unavailable for a moment</h1>"
                "<p>The service lost its database for a moment. Try again shortly.</p>",
                status=503,
                content_type="text/html; charset=utf-8",
            )
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
