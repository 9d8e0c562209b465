from __future__ import annotations

from collections.abc import Callable

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
