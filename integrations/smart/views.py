"""The token endpoint and the SMART configuration document. Thin: parse, call one service, format."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

from clinical_ai.core.middleware import request_id_of
from integrations.smart.errors import OAuthError, OAuthErrorCode
from integrations.smart.jwk import SIGNING_ALGORITHMS
from integrations.smart.scopes import SCOPES_SUPPORTED
from integrations.smart.services import access_token_issue, access_token_refuse

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def public_base_url(request: HttpRequest) -> str:
    """This service's origin as clients see it: PUBLIC_BASE_URL, else derived from the request."""
    configured: str = settings.PUBLIC_BASE_URL
    return configured or request.build_absolute_uri("/").rstrip("/")


def token_endpoint_url(request: HttpRequest) -> str:
    """The absolute token endpoint URL: what client assertions must carry as ``aud``."""
    return public_base_url(request) + reverse("smart:token")


def _no_store(data: dict[str, Any], status: int) -> JsonResponse:
    response = JsonResponse(data, status=status)
    # RFC 6749 5.1: responses carrying tokens (and their errors) must not be cached.
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def _refused(error: OAuthError) -> JsonResponse:
    return _no_store(error.as_json(), status=error.http_status)


@csrf_exempt
@require_POST
def token(request: HttpRequest) -> HttpResponse:
    request_id = request_id_of(request)
    if request.content_type != FORM_CONTENT_TYPE:
        error = OAuthError(OAuthErrorCode.INVALID_REQUEST, f"the request body must be {FORM_CONTENT_TYPE}")
        access_token_refuse(error=error, request_id=request_id)
        return _refused(error)
    repeated = sorted(name for name, values in request.POST.lists() if len(values) > 1)
    if repeated:
        # RFC 6749 3.2: request parameters must not be included more than once.
        error = OAuthError(OAuthErrorCode.INVALID_REQUEST, f"repeated parameter: {', '.join(repeated)[:100]}")
        access_token_refuse(error=error, request_id=request_id)
        return _refused(error)
    form = {name: value for name, value in request.POST.items() if isinstance(value, str)}
    try:
        issued = access_token_issue(
            form=form, token_endpoint_url=token_endpoint_url(request), request_id=request_id
        )
    except OAuthError as error:
        return _refused(error)
    return _no_store(dict(issued.as_json()), status=200)


@csrf_exempt  # public, read-only, no cookies: other methods get require_safe's 405, not CSRF's HTML 403
@require_safe
def smart_configuration(request: HttpRequest) -> HttpResponse:
    """SMART App Launch 2.x discovery document for backend services (public)."""
    document = {
        "token_endpoint": token_endpoint_url(request),
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": list(SCOPES_SUPPORTED),
        "capabilities": ["client-confidential-asymmetric"],
    }
    response = JsonResponse(document)
    response["Cache-Control"] = "public, max-age=300"
    return response
