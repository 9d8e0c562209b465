"""The audit console: search, one event, verify the chain, one patient's timeline, NDJSON export.

For auditors and admins (``user_can_audit``); anyone else signed in gets a 403 (itself on record), and
nobody signed in is sent to the login page. Every page shown and every export is recorded as an audit
event; those rows record which filters were used, never the values typed into them (an auditor may search
for anything, a patient's name included, and the log must not keep it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from clinical_ai.accounts.selectors import user_can_audit
from clinical_ai.audit.actors import actor_names
from clinical_ai.audit.balp import audit_event_resource, event_codes, outcome_code
from clinical_ai.audit.filters import AuditFilters
from clinical_ai.audit.forms import AuditFilterForm
from clinical_ai.audit.models import AuditEvent, Outcome
from clinical_ai.audit.selectors import (
    audit_event_get,
    audit_events_filter,
    audit_events_page,
    audit_filters_by_actor,
    audit_patient_known,
    audit_patient_timeline,
)
from clinical_ai.audit.services import Actor, audit_record, audit_verify
from clinical_ai.core.middleware import request_id_of

CONSOLE_VIEW = "audit.console.view"
NDJSON = "application/fhir+ndjson"

_View = Callable[..., HttpResponseBase]


def console_page(page: str) -> Callable[[_View], _View]:
    """Let only auditors and admins in; others get the login page (anonymous) or a recorded 403."""

    def decorate(view: _View) -> _View:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not user_can_audit(request.user):
                _record(request, page=page, outcome=Outcome.FAILURE, detail={"status": 403})
                return render(request, "audit/forbidden.html", status=403)
            return view(request, *args, **kwargs)

        return never_cache(wrapper)

    return decorate


def _record(
    request: HttpRequest,
    *,
    page: str,
    action: str = CONSOLE_VIEW,
    outcome: str = Outcome.SUCCESS,
    object_type: str = "",
    object_id: str = "",
    patient_pseudonym: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    return audit_record(
        actor=_actor(request),
        action=action,
        outcome=outcome,
        object_type=object_type,
        object_id=object_id,
        patient_pseudonym=patient_pseudonym,
        request_id=request_id_of(request),
        detail={"page": page, **(detail or {})},
    )


def _actor(request: HttpRequest) -> Actor:
    return Actor.user(str(request.user.pk))


def _seq_param(request: HttpRequest, name: str) -> int | None:
    raw = request.GET.get(name, "")
    return int(raw) if raw.isdigit() and len(raw) <= 19 else None


def _filter_query(request: HttpRequest) -> str:
    """The query string of the filters alone (paging removed), for paging and export links."""
    query = request.GET.copy()
    for name in ("before", "after"):
        query.pop(name, None)
    return query.urlencode()


def _observer(request: HttpRequest) -> str:
    return settings.PUBLIC_BASE_URL or request.build_absolute_uri("/").rstrip("/")


def _filters(form: AuditFilterForm) -> AuditFilters | None:
    """The search the form describes, "Who" turned into actors; None (the form then says why) when the form
    is invalid or "Who" names nobody: an empty list would read as "nobody did anything"."""
    if form.is_bound and not form.is_valid():
        return None
    who = form.actor_text()
    filters = audit_filters_by_actor(form.filters(), who=who)
    if filters is None:
        form.add_error(
            "actor_id",
            f"No such user: “{who}”. No person, EHR system or recorded id goes by this name; "
            "check the spelling.",
        )
    return filters


@console_page("list")
@require_GET
def event_list(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    bad_paging = any(request.GET.get(n) and _seq_param(request, n) is None for n in ("before", "after"))
    filters = _filters(form)
    if filters is None or bad_paging:
        return render(
            request,
            "audit/event_list.html",
            {"form": form, "page": None, "bad_paging": bad_paging, "filter_query": ""},
            status=400,
        )
    page = audit_events_page(
        filters, before=_seq_param(request, "before"), after=_seq_param(request, "after")
    )
    _record(request, page="list", detail={"filters": filters.used(), "shown": len(page.events)})
    return render(
        request,
        "audit/event_list.html",
        {
            "form": form,
            "page": page,
            "actors": actor_names(page.events),
            "filter_query": _filter_query(request),
        },
    )


@console_page("event")
@require_GET
def event_detail(request: HttpRequest, seq: int) -> HttpResponse:
    found = audit_event_get(seq=seq)
    if found is None:
        raise Http404("no audit event with this sequence number")
    event = found.event
    codes = event_codes(event.action)
    _record(request, page="event", object_type="AuditEvent", object_id=str(seq))
    return render(
        request,
        "audit/event_detail.html",
        {
            "found": found,
            "event": event,
            "detail_items": sorted(event.detail.items()),
            "actors": actor_names([event]),
            "fhir_type": codes.type,
            "fhir_action": codes.action,
            "fhir_outcome": outcome_code(event.action, event.outcome),
        },
    )


@console_page("verify")
@require_POST
def chain_verify(request: HttpRequest) -> HttpResponse:
    result = audit_verify(actor=_actor(request), request_id=request_id_of(request))
    return render(request, "audit/verify_result.html", {"result": result, "verified_at": timezone.now()})


@console_page("patient_timeline")
@require_GET
def patient_timeline(request: HttpRequest, pseudonym: str) -> HttpResponse:
    timeline = audit_patient_timeline(patient_pseudonym=pseudonym)
    known = timeline.event_count > 0 or audit_patient_known(patient_pseudonym=pseudonym)
    # The pseudonym goes on record only when the log knows it: what was typed into the URL might be anything.
    _record(
        request,
        page="patient_timeline",
        object_type="Patient",
        patient_pseudonym=pseudonym if known else "",
        detail={"known": known, "shown": timeline.event_count},
    )
    events = [event for group in timeline.groups for event in group.events]
    return render(
        request,
        "audit/patient_timeline.html",
        {"timeline": timeline, "known": known, "actors": actor_names(events)},
    )


@console_page("export")
@require_GET
def export_ndjson(request: HttpRequest) -> HttpResponseBase:
    """The matching events as FHIR R4 AuditEvent resources, one JSON object per line, oldest first; up to
    the export's own audit event, which is not included."""
    form = AuditFilterForm(request.GET or None)
    filters = _filters(form)
    if filters is None:
        return HttpResponse(
            json.dumps(form.errors.get_json_data()), status=400, content_type="application/json"
        )
    export_event = _record(
        request,
        page="export",
        action="audit.export",
        detail={"filters": filters.used(), "format": "fhir-r4-auditevent-ndjson"},
    )
    response = StreamingHttpResponse(
        _ndjson_lines(filters, before_seq=export_event.seq, observer=_observer(request)), content_type=NDJSON
    )
    stamp = export_event.occurred_at.strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="audit-{stamp}-to-{export_event.seq - 1}.ndjson"'
    return response


def _ndjson_lines(filters: AuditFilters, *, before_seq: int, observer: str) -> Iterator[bytes]:
    events = audit_events_filter(filters).filter(seq__lt=before_seq).order_by("seq")
    for event in events.iterator(chunk_size=500):
        resource = audit_event_resource(event, observer=observer)
        yield json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
