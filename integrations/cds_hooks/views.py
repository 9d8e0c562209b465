"""CDS Hooks endpoints: ``GET /cds-services`` (discovery), ``POST /cds-services/{id}`` (a hook call) and
``POST /cds-services/{id}/feedback``. Thin: authenticate the JWT (bare 401), call one service, format."""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from clinical_ai.core.middleware import request_id_of
from clinical_ai.fhir.outcome import Issue, operation_outcome
from integrations.cds_hooks.auth import CdsCaller, cds_caller_authenticate
from integrations.cds_hooks.cors import cors
from integrations.cds_hooks.services import (
    CdsResponse,
    cds_discovery,
    cds_feedback_record,
    cds_service_call,
    cds_service_lookup,
)
from integrations.smart.views import public_base_url


def _json(answer: CdsResponse) -> HttpResponse:
    content = b"" if answer.body is None else json.dumps(answer.body, ensure_ascii=False).encode("utf-8")
    response = HttpResponse(content, status=answer.status, content_type="application/json")
    for name, value in answer.headers.items():
        response[name] = value
    return response


def _unauthorized() -> HttpResponse:
    return HttpResponse(status=401)  # bare: nothing about why


def _method_not_allowed(allowed: str) -> HttpResponse:
    response = HttpResponse(status=405)
    response["Allow"] = allowed
    return response


def _authenticate(request: HttpRequest, *paths: str) -> CdsCaller | None:
    return cds_caller_authenticate(
        authorization_header=request.headers.get("Authorization"),
        endpoint_paths=paths,
        default_base_url=public_base_url(request) + reverse("cds_hooks:discovery"),
        request_id=request_id_of(request),
    )


def _not_found() -> HttpResponse:
    body = operation_outcome([Issue(code="not-found", diagnostics="No CDS service with this id")])
    return _json(CdsResponse(404, body))


DISCOVERY_METHODS = "GET, OPTIONS"
SERVICE_METHODS = "POST, OPTIONS"


@csrf_exempt
@cors(methods=DISCOVERY_METHODS)
def discovery_view(request: HttpRequest) -> HttpResponse:
    if request.method != "GET":
        return _method_not_allowed(DISCOVERY_METHODS)
    caller = _authenticate(request, "")
    if caller is None:
        return _unauthorized()
    return _json(cds_discovery(caller=caller, request_id=request_id_of(request)))


@csrf_exempt
@cors(methods=SERVICE_METHODS)
def service_view(request: HttpRequest, service_id: str) -> HttpResponse:
    if request.method != "POST":
        return _method_not_allowed(SERVICE_METHODS)
    caller = _authenticate(request, f"/{service_id}")
    if caller is None:
        return _unauthorized()
    service = cds_service_lookup(service_id)
    if service is None:
        return _not_found()
    return _json(
        cds_service_call(
            caller=caller,
            service=service,
            raw_body=request.body,
            content_type=request.content_type,
            request_id=request_id_of(request),
            site_base_url=public_base_url(request),
        )
    )


@csrf_exempt
@cors(methods=SERVICE_METHODS)
def feedback_view(request: HttpRequest, service_id: str) -> HttpResponse:
    if request.method != "POST":
        return _method_not_allowed(SERVICE_METHODS)
    # The JWT's aud is the feedback endpoint, or (as some clients send) the service endpoint itself.
    caller = _authenticate(request, f"/{service_id}/feedback", f"/{service_id}")
    if caller is None:
        return _unauthorized()
    service = cds_service_lookup(service_id)
    if service is None:
        return _not_found()
    return _json(
        cds_feedback_record(
            caller=caller,
            service=service,
            raw_body=request.body,
            content_type=request.content_type,
            request_id=request_id_of(request),
        )
    )


@csrf_exempt
def unknown_path(request: HttpRequest, path: str) -> HttpResponse:
    """Any other path under ``/cds-services/``: the JSON 404 a CDS Client can read, not Django's HTML one."""
    return _not_found()
