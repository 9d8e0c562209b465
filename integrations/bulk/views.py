"""The EHR sources page (admins of the source's organization: each source, its last pull in words, recent
pulls and batches, a Pull now button) and each source's public JWK Set (public: it holds public keys only,
and the EHR fetches it without signing in to verify this gateway's client assertions).

Nobody signed in is sent to the login page; a signed-in user who is not an admin gets a 403 that is on
record. Every page shown and every Pull now (done or refused) is an audit event.
"""

from __future__ import annotations

import copy
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from clinical_ai.accounts.selectors import user_is_admin
from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.middleware import request_id_of
from integrations.bulk.forms import CancelForm, PullForm
from integrations.bulk.models import BulkExport, EhrSource
from integrations.bulk.selectors import source_for_admin, sources_page
from integrations.bulk.services import (
    EXPORT_CANCEL_ACTION,
    EXPORT_REQUEST_ACTION,
    ExportBusy,
    export_cancel,
    export_request,
    source_jwks,
)
from integrations.bulk.uploads import (
    CSRF,
    NO_FILE,
    NOT_ADMIN,
    UPLOAD_ACTION,
    NdjsonUploadHandler,
    UploadResult,
    upload_limit_words,
    upload_record,
    upload_words,
)

SOURCE_VIEW_ACTION = "bulk.source.view"
JWKS_CACHE_SECONDS = 300


def _record(
    request: HttpRequest,
    *,
    action: str = SOURCE_VIEW_ACTION,
    outcome: str = Outcome.SUCCESS,
    source: EhrSource | None = None,
    detail: dict[str, Any],
) -> None:
    audit_record(
        actor=Actor.user(str(request.user.pk)),
        action=action,
        outcome=outcome,
        object_type="bulk.EhrSource" if source is not None else "",
        object_id=str(source.external_id) if source is not None else "",
        organization=source.organization.slug if source is not None else "",
        request_id=request_id_of(request),
        detail=detail,
    )


def _forbidden(request: HttpRequest, *, action: str, page: str) -> HttpResponse:
    _record(request, action=action, outcome=Outcome.FAILURE, detail={"page": page, "status": 403})
    return render(request, "bulk/forbidden.html", {}, status=403)


@never_cache
@require_GET
def source_list_view(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not user_is_admin(request.user):
        return _forbidden(request, action=SOURCE_VIEW_ACTION, page="sources")
    page = sources_page(request.user)
    _record(request, detail={"page": "sources", "shown": len(page.sources)})
    sources = [(view, _jwks_url(request, view.source)) for view in page.sources]
    return render(
        request,
        "bulk/source_list.html",
        {"page": page, "sources": sources, "upload_limit": upload_limit_words()},
    )


def _jwks_url(request: HttpRequest, source: EhrSource) -> str:
    path = reverse("bulk:source_jwks", kwargs={"source_id": source.external_id})
    return (
        f"{settings.PUBLIC_BASE_URL}{path}" if settings.PUBLIC_BASE_URL else request.build_absolute_uri(path)
    )


@never_cache
@require_POST
def source_pull_view(request: HttpRequest, source_id: str) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(reverse("bulk:source_list"))
    if not user_is_admin(request.user):
        return _forbidden(request, action=EXPORT_REQUEST_ACTION, page="pull")
    source = source_for_admin(request.user, str(source_id))
    if source is None:
        raise Http404("no such source among those you administer")
    form = PullForm(request.POST)
    if not form.is_valid():
        _record(
            request,
            action=EXPORT_REQUEST_ACTION,
            outcome=Outcome.FAILURE,
            source=source,
            detail={"page": "pull", "status": 400, "invalid": sorted(form.errors)},
        )
        return HttpResponse("Choose what to pull.", status=400, content_type="text/plain; charset=utf-8")
    if not source.enabled:
        messages.error(request, f"{source.name} is switched off; nothing was pulled.")
        return redirect("bulk:source_list")
    try:
        export_request(
            source=source,
            actor=Actor.user(str(request.user.pk)),
            full=form.full,
            requested_by=request.user.get_username(),
            request_id=request_id_of(request),
        )
    except ExportBusy as busy:
        _record(
            request,
            action=EXPORT_REQUEST_ACTION,
            outcome=Outcome.FAILURE,
            source=source,
            detail={"page": "pull", "refused": "already running"},
        )
        messages.error(
            request,
            f"A pull from {source.name} is already under way (started "
            f"{busy.export.created_at:%Y-%m-%d %H:%M %Z}); wait for it to finish.",
        )
        return redirect("bulk:source_list")
    messages.success(request, f"Pull from {source.name} asked for; its progress shows below.")
    return redirect("bulk:source_list")


@never_cache
@require_POST
def source_cancel_view(request: HttpRequest, source_id: str) -> HttpResponse:
    """Stop the source's pull under way (queued or running); the EHR is told it may delete the job."""
    if not request.user.is_authenticated:
        return redirect_to_login(reverse("bulk:source_list"))
    if not user_is_admin(request.user):
        return _forbidden(request, action=EXPORT_CANCEL_ACTION, page="cancel")
    source = source_for_admin(request.user, str(source_id))
    if source is None:
        raise Http404("no such source among those you administer")
    form = CancelForm(request.POST)
    if not form.is_valid():
        _record(
            request,
            action=EXPORT_CANCEL_ACTION,
            outcome=Outcome.FAILURE,
            source=source,
            detail={"page": "cancel", "status": 400, "invalid": sorted(form.errors)},
        )
        return HttpResponse(
            "Say why the pull is stopped.", status=400, content_type="text/plain; charset=utf-8"
        )
    running = BulkExport.objects.filter(
        source=source, status__in=(BulkExport.Status.QUEUED, BulkExport.Status.RUNNING)
    ).first()
    cancelled = running is not None and export_cancel(
        export=running,
        actor=Actor.user(str(request.user.pk)),
        reason=form.cleaned_data["reason"],
        request_id=request_id_of(request),
    )
    if cancelled:
        messages.success(request, f"The pull from {source.name} was stopped; what it had stored is dropped.")
    else:
        messages.error(request, f"No pull from {source.name} is under way; nothing was stopped.")
    return redirect("bulk:source_list")


@csrf_exempt  # a public, read-only machine endpoint: no session, so any other method is a bare 405
@require_GET
def source_jwks_view(request: HttpRequest, source_id: str) -> JsonResponse:
    """Public: the EHR fetches it to verify our client assertions. Unknown or switched-off sources: 404."""
    source = EhrSource.objects.filter(external_id=source_id, enabled=True).first()
    if source is None:
        raise Http404("no such source")
    response = JsonResponse(source_jwks(source), content_type="application/jwk-set+json")
    response["Cache-Control"] = f"public, max-age={JWKS_CACHE_SECONDS}"
    return response


def _no_response(request: HttpRequest) -> HttpResponse:
    return HttpResponse(status=204)


def _csrf_token_sent(request: HttpRequest, fields: QueryDict) -> bool:
    """Whether the form fields sent before the file carry the request's CSRF token: the very check
    csrf_protect makes once the whole body is read, made here before any byte of the file is stored."""
    probe = copy.copy(request)
    probe.POST = fields  # type: ignore[assignment]
    return CsrfViewMiddleware(_no_response).process_view(probe, _no_response, (), {}) is None


@csrf_exempt  # checked below, once the upload handler is in place (Django's documented pattern)
@never_cache
@require_POST
def upload_view(request: HttpRequest) -> HttpResponse:
    """An admin sends an NDJSON file for one of their sites; it is streamed into a batch (see uploads.py)."""
    if not request.user.is_authenticated:
        return redirect_to_login(reverse("bulk:source_list"))
    if not user_is_admin(request.user):
        return _forbidden(request, action=UPLOAD_ACTION, page="upload")
    handler = NdjsonUploadHandler(
        request,
        user=request.user,
        request_id=request_id_of(request),
        token_valid=lambda fields: _csrf_token_sent(request, fields),
    )
    request.upload_handlers = [handler]
    answered: list[bool] = []

    @csrf_protect
    def checked(request: HttpRequest) -> HttpResponse:
        answered.append(True)
        # The body is read here if the CSRF check did not read it already (a check that finds the header's
        # token, or a test client's); the handler streams the file as it goes.
        request.POST  # noqa: B018
        result = handler.result or UploadResult(refused=NO_FILE)
        upload_record(user=request.user, result=result, request_id=request_id_of(request))
        if result.refused in (NOT_ADMIN, CSRF):
            return render(request, "bulk/forbidden.html", {}, status=403)
        if result.refused:
            messages.error(request, upload_words(result))
        else:
            messages.success(request, upload_words(result))
        return redirect("bulk:source_list")

    response = checked(request)
    if not answered:  # refused by csrf_protect; the handler stored nothing either
        upload_record(
            user=request.user,
            result=handler.result or UploadResult(refused=CSRF),
            request_id=request_id_of(request),
        )
    return response
