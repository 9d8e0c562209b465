"""The clinician review UI: the queue, one suggestion with its basis, and the signed decision.

Anyone not signed in is sent to the login page. A member of a suggestion's organization may see it in any
role; only a clinician of that organization may decide (a same-site auditor or admin gets a recorded 403,
another site's clinician a 404, as if it did not exist). Each view parses, calls one service, renders.

Signing: a local account types its password on the form. A single sign-on account
(``selectors.signing.step_up_provider``) is sent to the hospital's identity provider to sign in again
(``prompt=login``, ``max_age=0``), its decision kept as a draft meanwhile; the provider sends it back to
``signature_callback``, which signs with that fresh sign-in as the proof.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import wraps
from typing import Any
from urllib.parse import urlencode, urlsplit
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.http.response import HttpResponseBase
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.middleware import HtmxDetails

from clinical_ai.accounts.selectors import user_second_factor_ok
from clinical_ai.accounts.sso.client import (
    CompletedAuthorization,
    OidcProvider,
    SsoRefused,
    authorization_complete,
    authorization_redirect,
    provider_metadata,
)
from clinical_ai.accounts.sso.config import staff_provider
from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.middleware import request_id_of
from clinical_ai.pipeline.web import suggestion_sign_off
from clinical_ai.review.drafts import (
    draft_drop,
    draft_keep,
    draft_owner,
    draft_owner_token,
    draft_take,
    drafts_of_others_drop,
)
from clinical_ai.review.forms import QueueFilterForm, SignOffForm
from clinical_ai.review.models import Suggestion
from clinical_ai.review.selectors.access import ReviewAccess, review_access, suggestion_visible
from clinical_ai.review.selectors.next_pending import next_pending
from clinical_ai.review.selectors.queue import queue_fingerprint, queue_model_ids
from clinical_ai.review.selectors.signing import step_up_provider
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
    PasswordSignature,
    SignatureLocked,
    SignatureRefused,
    SignOffInvalid,
    SignOffNotAllowed,
    StepUpRefused,
    StepUpSignature,
    sign_off_refused,
    sign_off_too_late,
)
from clinical_ai.review.times import local_time_text

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


# Not filters: when the queue was first shown (for the "New" marks), where a suggestion was opened from, and
# the fingerprint of the results a refresh already holds.
_NOT_FILTERS = ("page", "since", "queue", "seen")
_MAX_QUEUE_QUERY = 1000


def _filters_only(query: QueryDict) -> str:
    """The filters chosen, re-encoded: the other parameters and the filters left empty are dropped."""
    kept = QueryDict(mutable=True)
    for name, values in query.lists():
        if name not in _NOT_FILTERS:
            kept.setlist(name, [value for value in values if value])
    return kept.urlencode()


def _filter_query(request: HttpRequest) -> str:
    return _filters_only(request.GET)


def _since(request: HttpRequest) -> datetime:
    """When this queue was first shown: its refreshes mark the critical suggestions that came in since."""
    try:
        since = datetime.fromisoformat(request.GET.get("since") or "")
    except ValueError:
        return timezone.now()
    return since if timezone.is_aware(since) and since <= timezone.now() else timezone.now()


def _queue_query(request: HttpRequest) -> str:
    """The queue's filters and page that a suggestion was opened from (``?queue=``), re-encoded so that it
    can only ever be a query string of the queue."""
    raw = request.POST.get("queue") if request.method == "POST" else request.GET.get("queue")
    query = QueryDict((raw or "")[:_MAX_QUEUE_QUERY])
    page = query.get("page", "")
    filters = _filters_only(query)
    if page.isdigit() and page != "1":
        filters = "&".join(part for part in (filters, f"page={page}") if part)
    return filters


def _queue_url(queue_query: str) -> str:
    url = reverse("review:queue")
    return f"{url}?{queue_query}" if queue_query else url


def _suggestion_url(external_id: Any, queue_query: str) -> str:
    url = reverse("review:suggestion", args=[external_id])
    return f"{url}?{urlencode({'queue': queue_query})}" if queue_query else url


@signed_in
@require_GET
def review_queue_page(request: HtmxHttpRequest) -> HttpResponse:
    access = review_access(request.user)
    if not access.read:
        review_queue_refused(user=request.user, request_id=request_id_of(request))
        return render(request, "review/forbidden.html", status=403)
    form = QueueFilterForm(
        request.GET or None, model_ids=queue_model_ids(access), by_identity=bool(access.decide)
    )
    partial = bool(request.htmx) and not request.htmx.history_restore_request
    template = "review/_queue_results.html" if partial else "review/queue.html"
    if form.is_bound and not form.is_valid():
        return render(request, template, {"form": form, "queue": None}, status=400)
    drafts_of_others_drop(session=request.session, user=request.user)
    queue = review_queue_view(
        user=request.user,
        access=access,
        filters=form.filters(),
        page_number=request.GET.get("page") or 1,
        request_id=request_id_of(request),
        seen=request.GET.get("seen", "")[:64] if partial else "",
    )
    if queue is None:  # the refresh holds these very results: no content, htmx leaves the page alone
        return HttpResponse(status=204)
    filter_query = _filter_query(request)
    since = _since(request)
    page_query = "&".join(part for part in (filter_query, f"page={queue.page.number}") if part)
    return render(
        request,
        template,
        {
            "form": form,
            "queue": queue,
            "filter_query": filter_query,
            # A suggestion opened from here links back to this page of these results.
            "back_query": page_query if queue.page.number > 1 else filter_query,
            "new_since": since,
            "refresh_url": f"{reverse('review:queue')}?{page_query}&"
            + urlencode({"since": since.isoformat(), "seen": queue_fingerprint(queue)}),
        },
    )


def _visible_or_404(access: ReviewAccess, external_id: UUID) -> Suggestion:
    suggestion = suggestion_visible(access=access, external_id=external_id)
    if suggestion is None:
        raise Http404("no such suggestion")
    return suggestion


def _sign_off_form(
    suggestion: Suggestion,
    proposal: ProposedCondition | None,
    data: Any = None,
    initial: dict[str, str] | None = None,
    *,
    step_up: bool = False,
) -> SignOffForm:
    return SignOffForm(
        data,
        initial=initial,
        kind=suggestion.kind,
        proposal=proposal,
        vocabulary=condition_vocabulary() if suggestion.kind == "problem" else (),
        step_up=step_up,
    )


def _step_up_provider(request: HttpRequest) -> OidcProvider | None:
    """The identity provider this user signs with (None: they type their password)."""
    return step_up_provider(user=request.user, session_sso=request.session.get("sso"))


def _render_suggestion(
    request: HttpRequest,
    page: ReviewPage,
    *,
    form: SignOffForm | None,
    status: int = 200,
    refusal: str = "",
    draft_kept: bool = False,
    queue_query: str | None = None,
) -> HttpResponse:
    suggestion = page.review.suggestion
    queue_query = _queue_query(request) if queue_query is None else queue_query
    step_up = form is not None and "password" not in form.fields
    # The page's times (created, signed) in the site's time zone; the patient's through ``page.review``.
    with timezone.override(page.zone):
        response = render(
            request,
            "review/suggestion.html",
            {
                "page": page,
                "review": page.review,
                "patient": page.patient,
                "form": form,
                "refusal": refusal,
                "refusal_decided": bool(refusal) and page.review.decision is not None,
                "draft_kept": draft_kept,
                "draft_token": draft_owner_token(user=request.user, suggestion=suggestion) if form else "",
                "queue_query": queue_query,
                "queue_url": _queue_url(queue_query),
                "sign_with": settings.OIDC_PROVIDER_LABEL if step_up else "",
            },
            status=status,
        )
    provider = staff_provider() if step_up else None
    if provider is not None:
        _form_may_go_to(response, provider)
    return response


def _form_may_go_to(response: HttpResponse, provider: OidcProvider) -> None:
    """The page's Content-Security-Policy with the provider's sign-in page added to ``form-action``:
    browsers apply form-action to where a form's answer redirects, and signing's answer is a redirect to
    the provider. Only this page, only that origin."""
    policy = str(getattr(settings, "CONTENT_SECURITY_POLICY", ""))
    if "form-action" not in policy:
        return
    try:
        endpoint = str(provider_metadata(provider).get("authorization_endpoint") or provider.issuer)
    except SsoRefused:
        endpoint = provider.issuer  # the sign itself will say the login cannot be reached
    parts = urlsplit(endpoint)
    origin = f"{parts.scheme}://{parts.netloc}"
    response["Content-Security-Policy"] = "; ".join(
        f"{directive.strip()} {origin}" if directive.strip().startswith("form-action") else directive.strip()
        for directive in policy.split(";")
        if directive.strip()
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
    draft = draft_take(session=request.session, external_id=external_id, user=request.user)
    if draft is not None and not pending:
        draft_drop(session=request.session, external_id=external_id)
        draft = None
    initial = dict(draft.values) if draft is not None else None
    form = (
        _sign_off_form(
            suggestion,
            page.review.proposal,
            initial=initial,
            step_up=_step_up_provider(request) is not None,
        )
        if pending
        else None
    )
    return _render_suggestion(
        request, page, form=form, draft_kept=draft is not None and draft.kept_while_signing_in
    )


def _too_late(refusal: AlreadyDecided, suggestion: Suggestion) -> str:
    """What a clinician whose decision came too late is told: who decided, and when (in the site's time
    zone, as the page shows times), where someone did."""
    decision = refusal.decision
    if decision is None or refusal.at is None:
        status = (
            Suggestion.Status(refusal.status).label.lower() if refusal.status in Suggestion.Status else ""
        )
        return f"Not signed: this suggestion is no longer pending review{f' ({status})' if status else ''}."
    when = local_time_text(refusal.at, suggestion.organization.zone)
    outcome = decision.get_outcome_display().lower()
    return f"Not signed: this suggestion was already {outcome} by {refusal.by} at {when}."


@sensitive_post_parameters("password", "comment")
@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def suggestion_sign_off_view(request: HttpRequest, external_id: UUID) -> HttpResponseBase:
    """The signed decision. Only the form posts here: a GET (the sign-in page sending someone back, a
    reload, a bookmark) goes to the suggestion. A form that arrives after the session ended is kept as a
    draft for the person it was shown to, who finds it filled in once signed in again."""
    back = _suggestion_url(external_id, _queue_query(request))
    if request.method != "POST":
        return HttpResponseRedirect(back)
    if not request.user.is_authenticated or not user_second_factor_ok(request.user):
        owner = draft_owner(token=request.POST.get("drafted_for", ""), external_id=external_id)
        if owner is not None and (not request.user.is_authenticated or str(request.user.pk) == owner):
            draft_keep(
                session=request.session,
                external_id=external_id,
                owner_id=owner,
                data=request.POST,
                kept_while_signing_in=True,
            )
        if request.user.is_authenticated:  # the second factor is still to be verified
            return redirect_to_login(back, login_url=reverse("accounts:otp_verify"))
        return redirect_to_login(back)
    return _sign_off(request, external_id)


def _decider_of(request: HttpRequest, external_id: UUID) -> tuple[ReviewAccess, Suggestion] | HttpResponse:
    """The suggestion a decision is sent for, with the sender's access: 404 where they may not see it, a
    403 page (the refusal on record) where they may see it but not decide."""
    access = review_access(request.user)
    suggestion = _visible_or_404(access, external_id)
    if not access.may_decide(suggestion.organization_id):
        sign_off_refused(
            user=request.user, suggestion=suggestion, reason="not-allowed", request_id=request_id_of(request)
        )
        return render(request, "review/forbidden.html", status=403)
    return access, suggestion


def _sign_off(request: HttpRequest, external_id: UUID) -> HttpResponse:
    """Signed in: sign, or refuse and show the page again (the page, and the patient's re-identification,
    are opened again only then). A signed decision goes on to the next suggestion waiting."""
    allowed = _decider_of(request, external_id)
    if isinstance(allowed, HttpResponse):
        return allowed
    access, suggestion = allowed
    request_id = request_id_of(request)

    def again(form: SignOffForm | None, status: int, refusal: str = "") -> HttpResponse:
        if form is None:
            draft_drop(session=request.session, external_id=external_id)
        else:  # kept, so that a reload or a later visit finds the decision as typed
            draft_keep(
                session=request.session,
                external_id=external_id,
                owner_id=str(request.user.pk),
                data=request.POST,
            )
        page = suggestion_review_open(
            user=request.user, access=access, suggestion=suggestion, request_id=request_id
        )
        return _render_suggestion(request, page, form=form, status=status, refusal=refusal)

    if suggestion.status != Suggestion.Status.PENDING:  # decided before this form was sent
        outcome = str(request.POST.get("outcome") or "")[:16]
        refusal = sign_off_too_late(
            user=request.user, suggestion=suggestion, outcome=outcome, request_id=request_id
        )
        suggestion.refresh_from_db()
        return again(None, 409, _too_late(refusal, suggestion))
    provider = _step_up_provider(request)
    form = _sign_off_form(
        suggestion, suggestion_proposal(suggestion), request.POST, step_up=provider is not None
    )
    if not form.is_valid():
        return again(form, 400)
    if provider is not None:
        return _step_up_start(request, provider, suggestion, form, again)
    try:
        decision = suggestion_sign_off(
            suggestion=suggestion,
            user=request.user,
            signature=PasswordSignature(form.cleaned_data["password"]),
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
        return again(None, 409, _too_late(exc, suggestion))
    except SignOffNotAllowed:
        return render(request, "review/forbidden.html", status=403)
    draft_drop(session=request.session, external_id=external_id)
    return HttpResponseRedirect(_after_signing(request, access, suggestion, decision))


def _after_signing(
    request: HttpRequest,
    access: ReviewAccess,
    signed: Suggestion,
    decision: Any,
    queue_query: str | None = None,
) -> str:
    """Straight on to the next suggestion waiting (of the same urgency while any is left), with a word on
    what was signed; the queue when nothing is left."""
    queue_query = _queue_query(request) if queue_query is None else queue_query
    done = f"Signed: {decision.get_outcome_display().lower()} ({signed.get_urgency_display().lower()}, {signed.model_id})."
    following = next_pending(access=access, after=signed)
    if following is None:
        messages.success(request, f"{done} Nothing else is waiting for your review.")
        return _queue_url(queue_query)
    urgency = following.get_urgency_display().lower()
    if following.urgency == signed.urgency:
        messages.success(request, f"{done} Here is the next {urgency} suggestion waiting.")
    else:
        messages.success(
            request,
            f"{done} No {signed.get_urgency_display().lower()} suggestions are left: here is the next one "
            f"waiting ({urgency}).",
        )
    return _suggestion_url(following.external_id, queue_query)


# --- signing with the hospital's identity provider (step-up) ---------------------------------------

STEP_UP_PURPOSE = "sign"
STEP_UP_FAILED_ACTION = "auth.stepup_failed"
# Which suggestion a step-up was started for: the page to go back to when the provider's answer cannot
# be taken at all (its state, and with it the context, is then unknown).
_STEP_UP_SESSION_KEY = "review_step_up"


def _signature_callback_url(request: HttpRequest) -> str:
    """Where the provider sends the person back: registered with the provider exactly as written here."""
    base = settings.PUBLIC_BASE_URL or request.build_absolute_uri("/").rstrip("/")
    return f"{base}{reverse('review:signature_callback')}"


def _step_up_words(reason: str) -> str:
    """What the clinician is told when a sign-in at the provider did not sign: plain words, what to do."""
    label = str(settings.OIDC_PROVIDER_LABEL)
    retry = f"press “Sign with {label}” to try again"
    if reason == "step-up-wrong-person":
        return (
            f"Not signed: {label} was signed in as someone else, not as you. Your decision is kept: "
            f"{retry}, and sign in as yourself."
        )
    why = {
        "step-up-stale": "the sign-in took too long to come back.",
        "step-up-not-fresh": "the sign-in was not a new one, made to sign this decision.",
        "state": "that sign-in had already been used, or took too long.",
        "idp-error": "the sign-in was cancelled or refused.",
        "unreachable": f"{label} could not be reached.",
        "metadata": f"{label} could not be reached.",
    }.get(reason, f"{label} did not confirm who you are.")
    return f"Not signed: {why} Your decision is kept: {retry}."


def _step_up_failed(request: HttpRequest, provider: OidcProvider, suggestion_id: str, reason: str) -> None:
    """On record: a sign-in at the provider, asked for to sign a decision, that signed nothing (never the
    provider's answer itself: it may hold a code or a token)."""
    audit_record(
        actor=Actor.user(str(request.user.pk)),
        action=STEP_UP_FAILED_ACTION,
        outcome=Outcome.FAILURE,
        object_type="Suggestion" if suggestion_id else "",
        object_id=suggestion_id,
        request_id=request_id_of(request),
        detail={"reason": reason, "issuer": provider.issuer, "purpose": STEP_UP_PURPOSE},
    )


def _step_up_start(
    request: HttpRequest,
    provider: OidcProvider,
    suggestion: Suggestion,
    form: SignOffForm,
    again: Callable[[SignOffForm | None, int], HttpResponse],
) -> HttpResponse:
    """The decision is valid: keep it as a draft and send the person to sign in again at the provider
    (``prompt=login``: the password is asked even inside a live provider session; ``max_age=0``: the
    id_token must say when). Nothing is signed until they come back."""
    queue_query = _queue_query(request)
    draft_keep(
        session=request.session,
        external_id=suggestion.external_id,
        owner_id=str(request.user.pk),
        data=request.POST,
    )
    sso = request.session.get("sso")
    hint = str(sso.get("username") or "") if isinstance(sso, dict) else ""
    params = {"prompt": "login", "max_age": "0", **({"login_hint": hint} if hint else {})}
    try:
        response = authorization_redirect(
            request,
            provider=provider,
            redirect_uri=_signature_callback_url(request),
            purpose=STEP_UP_PURPOSE,
            context={"suggestion": str(suggestion.external_id), "queue": queue_query},
            **params,
        )
    except SsoRefused as exc:
        _step_up_failed(request, provider, str(suggestion.external_id), exc.reason)
        form.add_error(None, _step_up_words(exc.reason))
        return again(form, 503)
    request.session[_STEP_UP_SESSION_KEY] = {"suggestion": str(suggestion.external_id), "queue": queue_query}
    return response


def _back_to(suggestion_id: str, queue_query: str, message: str, request: HttpRequest) -> HttpResponse:
    messages.error(request, message)
    try:  # at the decision box, where the message is, even on a phone where it is far down the page
        return HttpResponseRedirect(f"{_suggestion_url(UUID(suggestion_id), queue_query)}#decision")
    except ValueError:
        return HttpResponseRedirect(_queue_url(queue_query))


@signed_in
@require_GET
def signature_callback(request: HttpRequest) -> HttpResponse:
    """The person back from signing in again at the provider: sign their kept decision with that sign-in,
    as the password path would (the next suggestion opens; "already decided by" when someone was first),
    or go back to the suggestion with a plain message and the decision still kept."""
    started = request.session.pop(_STEP_UP_SESSION_KEY, None)
    started = started if isinstance(started, dict) else {}
    suggestion_id, queue_query = str(started.get("suggestion") or ""), str(started.get("queue") or "")
    provider = staff_provider()
    if provider is None:
        return _back_to(suggestion_id, queue_query, _step_up_words("metadata"), request)
    try:
        completed = authorization_complete(
            request, provider=provider, redirect_uri=_signature_callback_url(request)
        )
        if completed.purpose != STEP_UP_PURPOSE:
            raise SsoRefused("state", "the sign-in was not asked for to sign a decision")
    except SsoRefused as exc:
        _step_up_failed(request, provider, suggestion_id, exc.reason)
        return _back_to(suggestion_id, queue_query, _step_up_words(exc.reason), request)
    suggestion_id = completed.context.get("suggestion", "")
    queue_query = completed.context.get("queue", "")
    try:
        external_id = UUID(suggestion_id)
    except ValueError:
        raise Http404("no such suggestion") from None
    return _step_up_sign(request, _completed_signature(completed), external_id, queue_query)


def _completed_signature(completed: CompletedAuthorization) -> StepUpSignature | StepUpRefused:
    """The proof a completed sign-in gives, or why it gives none."""
    try:
        return StepUpSignature.from_claims(completed.claims, requested_at=completed.started_at)
    except StepUpRefused as exc:
        return exc


def _step_up_sign(
    request: HttpRequest,
    signature: StepUpSignature | StepUpRefused,
    external_id: UUID,
    queue_query: str,
) -> HttpResponse:
    allowed = _decider_of(request, external_id)
    if isinstance(allowed, HttpResponse):
        return allowed
    access, suggestion = allowed
    request_id = request_id_of(request)

    def shown(form: SignOffForm | None, status: int, refusal: str = "") -> HttpResponse:
        if form is None:
            draft_drop(session=request.session, external_id=external_id)
        page = suggestion_review_open(
            user=request.user, access=access, suggestion=suggestion, request_id=request_id
        )
        return _render_suggestion(
            request, page, form=form, status=status, refusal=refusal, queue_query=queue_query
        )

    draft = draft_take(session=request.session, external_id=external_id, user=request.user)
    outcome = str(draft.values.get("outcome") or "")[:16] if draft is not None else ""
    if suggestion.status != Suggestion.Status.PENDING:  # someone decided while this person signed in
        refusal = sign_off_too_late(
            user=request.user, suggestion=suggestion, outcome=outcome, request_id=request_id
        )
        suggestion.refresh_from_db()
        return shown(None, 409, _too_late(refusal, suggestion))
    if isinstance(signature, StepUpRefused):
        sign_off_refused(
            user=request.user,
            suggestion=suggestion,
            reason=signature.reason,
            request_id=request_id,
            outcome=outcome,
        )
        return _back_to(str(external_id), queue_query, _step_up_words(signature.reason), request)
    form = _sign_off_form(
        suggestion, suggestion_proposal(suggestion), dict(draft.values) if draft else {}, step_up=True
    )
    if draft is None or not form.is_valid():
        # The draft went with the session's end or a key change: nothing to sign, nothing signed.
        sign_off_refused(user=request.user, suggestion=suggestion, reason="no-draft", request_id=request_id)
        return _back_to(
            str(external_id),
            queue_query,
            "Not signed: your decision was not kept while you signed in. Please fill it in again and sign.",
            request,
        )
    try:
        decision = suggestion_sign_off(
            suggestion=suggestion,
            user=request.user,
            signature=signature,
            sign_off=form.sign_off(),
            request_id=request_id,
        )
    except StepUpRefused as exc:
        return _back_to(str(external_id), queue_query, _step_up_words(exc.reason), request)
    except SignOffInvalid as exc:
        form.add_error(None, f"This decision cannot be recorded: {exc}.")
        return shown(form, 400)
    except AlreadyDecided as exc:
        suggestion.refresh_from_db()
        return shown(None, 409, _too_late(exc, suggestion))
    except SignOffNotAllowed:
        return render(request, "review/forbidden.html", status=403)
    draft_drop(session=request.session, external_id=external_id)
    return HttpResponseRedirect(_after_signing(request, access, suggestion, decision, queue_query))
