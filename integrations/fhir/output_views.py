"""``GET [base]/{type}/{id}`` and ``GET [base]/{type}?...`` for the resources this gateway produced
(GuidanceResponse, RiskAssessment, DetectedIssue, RequestGroup, Provenance, Condition, Device).

SMART Backend Services bearer token (a bare 401 without a valid one) with ``system/<type>.read`` (v1; or
``.r`` / ``.s`` in v2, or ``system/*``) else a 403 OperationOutcome. The client sees its own organization's
resources only: another organization's id is a 404. Everything else is ``integrations.fhir.outputs``.

Other methods on ``[base]/{type}`` keep their meaning: POST is intake, handed to the intake endpoint.
"""

from __future__ import annotations

import json

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.middleware import request_id_of
from clinical_ai.fhir.outcome import Issue, operation_outcome
from integrations.fhir import views as fhir_views
from integrations.fhir.outputs import READ_ACTION, SEARCH_ACTION, output_read, output_search
from integrations.fhir.services import FhirResponse
from integrations.smart.decorators import smart_principal_of, smart_protected


def _response(request: HttpRequest, answer: FhirResponse) -> HttpResponse:
    content = b"" if answer.body is None else json.dumps(answer.body, ensure_ascii=False).encode("utf-8")
    response = HttpResponse(content, status=answer.status, content_type=fhir_views.FHIR_JSON)
    for name, value in answer.headers.items():
        response[name] = value
    if request.method == "HEAD":
        response.content = b""
    return response


def _refused_read(request: HttpRequest) -> None:
    audit_record(
        actor=Actor.anonymous(),
        action=READ_ACTION,
        outcome=Outcome.FAILURE,
        request_id=request_id_of(request),
        detail={"status": 401, "reason": "invalid_token"},
    )


def _refused_search(request: HttpRequest) -> None:
    audit_record(
        actor=Actor.anonymous(),
        action=SEARCH_ACTION,
        outcome=Outcome.FAILURE,
        request_id=request_id_of(request),
        detail={"status": 401, "reason": "invalid_token"},
    )


def _lenient(request: HttpRequest) -> bool:
    """``Prefer: handling=lenient`` (RFC 7240 preferences, comma or semicolon separated)."""
    prefer = (request.headers.get("Prefer") or "").replace(" ", "").lower()
    return "handling=lenient" in prefer.replace(";", ",").split(",")


@csrf_exempt
def output_type(request: HttpRequest, resource_type: str) -> HttpResponse:
    """``[base]/{type}``: search on GET; any other method is the intake endpoint's business."""
    if request.method in ("GET", "HEAD"):
        return _search(request, resource_type)
    return fhir_views.with_search_allowed(fhir_views.type_endpoint(request, resource_type))


@smart_protected(on_refused=_refused_search)
def _search(request: HttpRequest, resource_type: str) -> HttpResponse:
    answer = output_search(
        principal=smart_principal_of(request),
        resource_type=resource_type,
        params={name: request.GET.getlist(name) for name in request.GET},
        lenient=_lenient(request),
        request_id=request_id_of(request),
        base_url=f"{fhir_views.public_base_url(request)}/fhir",
    )
    return _response(request, answer)


@csrf_exempt
def output_instance(request: HttpRequest, resource_type: str, resource_id: str) -> HttpResponse:
    """``[base]/{type}/{id}``: read only; the EHR cannot update or delete what this gateway produced."""
    if request.method not in ("GET", "HEAD"):
        body = operation_outcome(
            [Issue(code="not-supported", diagnostics=f"{request.method} is not supported here; use GET")]
        )
        response = _response(request, FhirResponse(405, body))
        response["Allow"] = "GET, HEAD"
        return response
    return _read(request, resource_type, resource_id)


@smart_protected(on_refused=_refused_read)
def _read(request: HttpRequest, resource_type: str, resource_id: str) -> HttpResponse:
    answer = output_read(
        principal=smart_principal_of(request),
        resource_type=resource_type,
        resource_id=resource_id,
        request_id=request_id_of(request),
    )
    return _response(request, answer)
