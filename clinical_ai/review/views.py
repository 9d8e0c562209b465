"""The clinician review UI: the queue, one suggestion with its basis, and the signed decision.

Anyone not signed in is sent to the login page. A member of a suggestion's organization may see it in any
role; only a clinician of that organization may decide (a same-site auditor or admin gets a recorded 403,
another site's clinician a 404, as if it did not exist). Each view parses, calls one service, renders.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_POST
from django_htmx.middleware import HtmxDetails

from clinical_ai.accounts.selectors import user_second_factor_ok
from clinical_ai.core.middleware import request_id_of
from clinical_ai.pipeline.web import suggestion_sign_off
from clinical_ai.review.forms import QueueFilterForm, SignOffForm
from clinical_ai.review.models import Suggestion
from clinical_ai.review.selectors.access import ReviewAccess, review_access, suggestion_visible
from clinical_ai.review.selectors.queue import queue_model_ids
from clinical_ai.review.selectors.suggestion import ProposedCondition, suggestion_proposal
from clinical_ai.review.selectors.vocabulary import condition_vocabulary
from clinical_ai.review.services import (
    ReviewPage,
    review_queue_refused,
    review_queue_view,
    suggestion_review_open,
)
from clinical_ai.review.signoff import (
    AlreadyDecided,
    SignatureLocked,
    SignatureRefused,
    SignOffInvalid,
    SignOffNotAllowed,
    sign_off_refused,
)

_View = Callable[..., HttpResponseBase]


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails  # set by django-htmx's middleware


def signed_in(view: _View) -> _View:
    """Anonymous users go to the login page, a session whose second factor is still to be verified to
    the code page; nothing here is ever cached."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not user_second_factor_ok(request.user):
            return redirect_to_login(request.get_full_path(), login_url=reverse("accounts:otp_verify"))
        return view(request, *args, **kwargs)

    return never_cache(wrapper)


def _filter_query(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


@signed_in
@require_GET
def review_queue_page(request: HtmxHttpRequest) -> HttpResponse:
    access = review_access(request.user)
    if not access.read:
        review_queue_refused(user=request.user, request_id=request_id_of(request))
        return render(request, "review/forbidden.html", status=403)
    form = QueueFilterForm(request.GET or None, model_ids=queue_model_ids(access))
    partial = bool(request.htmx) and not request.htmx.history_restore_request
    template = "review/_queue_results.html" if partial else "review/queue.html"
    if form.is_bound and not form.is_valid():
        return render(request, template, {"form": form, "queue": None}, status=400)
    queue = review_queue_view(
        user=request.user,
        access=access,
        filters=form.filters(),
        page_number=request.GET.get("page") or 1,
        request_id=request_id_of(request),
    )
    return render(request, template, {"form": form, "queue": queue, "filter_query": _filter_query(request)})


def _visible_or_404(access: ReviewAccess, external_id: UUID) -> Suggestion:
    suggestion = suggestion_visible(access=access, external_id=external_id)
    if suggestion is None:
        raise Http404("no such suggestion")
    return suggestion


def _sign_off_form(
    suggestion: Suggestion, proposal: ProposedCondition | None, data: Any = None
) -> SignOffForm:
    return SignOffForm(
        data,
        kind=suggestion.kind,
        proposal=proposal,
        vocabulary=condition_vocabulary() if suggestion.kind == "problem" else (),
    )


def _render_suggestion(
    request: HttpRequest,
    page: ReviewPage,
    *,
    form: SignOffForm | None,
    status: int = 200,
    refusal: str = "",
) -> HttpResponse:
    return render(
        request,
        "review/suggestion.html",
        {"page": page, "review": page.review, "patient": page.patient, "form": form, "refusal": refusal},
        status=status,
    )


@signed_in
@require_GET
def suggestion_page(request: HttpRequest, external_id: UUID) -> HttpResponse:
    access = review_access(request.user)
    suggestion = _visible_or_404(access, external_id)
    page = suggestion_review_open(
        user=request.user, access=access, suggestion=suggestion, request_id=request_id_of(request)
    )
    pending = page.may_decide and suggestion.status == Suggestion.Status.PENDING
    form = _sign_off_form(suggestion, page.review.proposal) if pending else None
    return _render_suggestion(request, page, form=form)


@sensitive_post_parameters("password", "comment")
@signed_in
@require_POST
def suggestion_sign_off_view(request: HttpRequest, external_id: UUID) -> HttpResponse:
    """The signed decision. The page (and the patient's re-identification) is opened again only when it
    has to be shown again: on a refusal; a decision signed goes back to the page with a fresh GET."""
    access = review_access(request.user)
    suggestion = _visible_or_404(access, external_id)
    request_id = request_id_of(request)
    if not access.may_decide(suggestion.organization_id):
        sign_off_refused(
            user=request.user, suggestion=suggestion, reason="not-allowed", request_id=request_id
        )
        return render(request, "review/forbidden.html", status=403)

    def again(form: SignOffForm | None, status: int, refusal: str = "") -> HttpResponse:
        page = suggestion_review_open(
            user=request.user, access=access, suggestion=suggestion, request_id=request_id
        )
        return _render_suggestion(request, page, form=form, status=status, refusal=refusal)

    if suggestion.status != Suggestion.Status.PENDING:  # decided before this form was sent
        return again(None, 409, "Not signed: this suggestion is no longer pending review.")
    form = _sign_off_form(suggestion, suggestion_proposal(suggestion), request.POST)
    if not form.is_valid():
        return again(form, 400)
    try:
        decision = suggestion_sign_off(
            suggestion=suggestion,
            user=request.user,
            password=form.cleaned_data["password"],
            sign_off=form.sign_off(),
            request_id=request_id,
        )
    except SignatureLocked:
        minutes = max(1, settings.SIGNATURE_LOCKOUT_SECONDS // 60)
        form.add_error(
            "password",
            f"Signing is paused after too many wrong passwords: try again in up to {minutes} minute"
            f"{'s' if minutes != 1 else ''}, or ask an administrator to lift the lock. Nothing was signed.",
        )
        return again(form, 429)
    except SignatureRefused:
        form.add_error("password", "That is not your password. Nothing was signed.")
        return again(form, 400)
    except SignOffInvalid as exc:
        form.add_error(None, f"This decision cannot be recorded: {exc}.")
        return again(form, 400)
    except AlreadyDecided as exc:
        suggestion.refresh_from_db()
        return again(None, 409, f"Not signed: this suggestion was {exc}.")
    except SignOffNotAllowed:
        return render(request, "review/forbidden.html", status=403)
    messages.success(request, f"Signed: {decision.get_outcome_display().lower()}.")
    return HttpResponseRedirect(reverse("review:suggestion", args=[suggestion.external_id]))
