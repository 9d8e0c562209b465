"""``GET [base]/AuditEvent``: the audit log as FHIR R4 AuditEvent resources, for auditors' tools.

SMART Backend Services bearer token with ``system/AuditEvent.read`` (or ``.rs``, ``system/*.read``); the
client sees the events of its own organization only. Answers a ``searchset`` Bundle, newest first, with a
``next`` link while there are more; unknown or unreadable parameters get a 400 OperationOutcome. Every
search, and every refusal, is itself an audit event (``fhir.auditevent.search``) that names the parameters
used, not their values.

Other methods on ``[base]/AuditEvent`` keep their meaning: POST is intake of an AuditEvent resource like any
other type, handed to the intake endpoint unchanged.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from clinical_ai.audit.balp import audit_event_resource
from clinical_ai.audit.fhir_search import SEARCH_PARAMETERS, parse_audit_event_search
from clinical_ai.audit.models import Outcome
from clinical_ai.audit.selectors import audit_events_page
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.middleware import request_id_of
from clinical_ai.fhir.outcome import Issue, operation_outcome
from clinical_ai.fhir.search import SearchParameterError
from integrations.fhir import views as fhir_views
from integrations.smart.decorators import smart_principal_of, smart_protected

SEARCH_ACTION = "fhir.auditevent.search"


def _fhir_response(status: int, body: dict[str, Any]) -> HttpResponse:
    return HttpResponse(
        json.dumps(body, ensure_ascii=False).encode("utf-8"), status=status, content_type=fhir_views.FHIR_JSON
    )


def _audit_refused_token(request: HttpRequest) -> None:
    audit_record(
        actor=Actor.anonymous(),
        action=SEARCH_ACTION,
        outcome=Outcome.FAILURE,
        request_id=request_id_of(request),
        detail={"status": 401, "reason": "invalid_token"},
    )


@csrf_exempt
def audit_event_type(request: HttpRequest) -> HttpResponse:
    """``[base]/AuditEvent``: search on GET; any other method is the intake endpoint's business."""
    if request.method in ("GET", "HEAD"):
        return _search(request)
    return fhir_views.with_search_allowed(fhir_views.type_endpoint(request, "AuditEvent"))


@smart_protected(on_refused=_audit_refused_token)
def _search(request: HttpRequest) -> HttpResponse:
    principal = smart_principal_of(request)
    request_id = request_id_of(request)
    # Parameter names go on record only when they are ours: an unknown name could be any text at all.
    names = sorted(name for name in request.GET if name in SEARCH_PARAMETERS)
    unknown = sum(1 for name in request.GET if name not in SEARCH_PARAMETERS)

    def refuse(status: int, code: str, text: str, expression: str | None = None) -> HttpResponse:
        audit_record(
            actor=Actor.ehr_client(principal.client_id),
            action=SEARCH_ACTION,
            outcome=Outcome.FAILURE,
            organization=principal.organization_slug,
            request_id=request_id,
            detail={"status": status, "issue_code": code, "params": names, "unknown_params": unknown},
        )
        issue = Issue(code=code, diagnostics=text, expression=(expression,) if expression else ())
        return _fhir_response(status, operation_outcome([issue]))

    if not principal.can("AuditEvent", "search"):
        return refuse(403, "forbidden", "The access token's scopes do not allow search of AuditEvent")
    try:
        search = parse_audit_event_search(
            {name: request.GET.getlist(name) for name in request.GET},
            organization=principal.organization_slug,
        )
    except SearchParameterError as exc:
        return refuse(
            400, "not-supported" if "not supported" in str(exc) else "value", str(exc), exc.parameter
        )

    page = audit_events_page(search.filters, before=search.cursor, size=search.count)
    base = f"{fhir_views.public_base_url(request)}/fhir"
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": [{"relation": "self", "url": request.build_absolute_uri()}],
        "entry": [
            {
                "fullUrl": f"{base}/AuditEvent/{event.seq}",
                "resource": audit_event_resource(event, observer=fhir_views.public_base_url(request)),
                "search": {"mode": "match"},
            }
            for event in page.events
        ],
    }
    if page.older_than is not None:
        query = [(k, v) for k in request.GET for v in request.GET.getlist(k) if k != "_cursor"]
        query.append(("_cursor", str(page.older_than)))
        bundle["link"].append({"relation": "next", "url": f"{base}/AuditEvent?{urlencode(query)}"})
    audit_record(
        actor=Actor.ehr_client(principal.client_id),
        action=SEARCH_ACTION,
        organization=principal.organization_slug,
        request_id=request_id,
        detail={"status": 200, "params": names, "returned": len(page.events)},
    )
    return _fhir_response(200, bundle)
