from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from clinical_ai.core.request_id import request_id_from_header


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
