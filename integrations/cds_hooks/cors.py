"""CORS for browser-based CDS Clients (the CDS Hooks sandbox, SMART apps): calls carry a JWT in the
Authorization header and never cookies, so credentials are not allowed and any configured origin may call."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

ALLOWED_HEADERS = "Authorization, Content-Type, X-Request-Id"
MAX_AGE_SECONDS = "600"


def _allowed_origin(origin: str | None) -> str | None:
    allowed: list[str] = settings.CDS_HOOKS_CORS_ALLOWED_ORIGINS
    if "*" in allowed:
        return "*"
    return origin if origin and origin in allowed else None


def cors_headers(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    origin = _allowed_origin(request.headers.get("Origin"))
    if origin is not None:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Expose-Headers"] = "X-Request-Id"
        if origin != "*":
            response["Vary"] = "Origin"
    return response


View = Callable[..., HttpResponse]


def cors(*, methods: str) -> Callable[[View], View]:
    """Answer a preflight (OPTIONS) without authentication; add the CORS headers to every answer.
    ``methods`` (e.g. ``"POST, OPTIONS"``) are the ones the endpoint takes: what Allow advertises."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method == "OPTIONS":
                response = HttpResponse(status=204)
                if _allowed_origin(request.headers.get("Origin")) is not None:
                    response["Access-Control-Allow-Methods"] = methods
                    response["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
                    response["Access-Control-Max-Age"] = MAX_AGE_SECONDS
                response["Allow"] = methods
                return cors_headers(request, response)
            return cors_headers(request, view(request, *args, **kwargs))

        return wrapper

    return decorate
