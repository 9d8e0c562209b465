"""Signing in with the hospital's identity provider: the button's address sends the person there, and the
callback takes them back and signs them in. Thin: the protocol is ``client``'s, the rules ``services``'."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from clinical_ai.accounts.sso.client import (
    OidcProvider,
    SsoRefused,
    authorization_complete,
    authorization_redirect,
)
from clinical_ai.accounts.sso.config import staff_provider
from clinical_ai.accounts.sso.services import sso_log_in, sso_login_failed_record
from clinical_ai.accounts.views import landing_url, safe_next, with_next
from clinical_ai.core.middleware import request_id_of

LOGIN_PURPOSE = "login"
# The provider could not be asked or did not answer: a wait may help, starting again at once will not.
_UNAVAILABLE_REASONS = frozenset({"unreachable", "metadata"})


def _configured() -> OidcProvider:
    provider = staff_provider()
    if provider is None:
        raise Http404("Single sign-on is not set up here.")
    return provider


def _callback_uri(request: HttpRequest) -> str:
    return request.build_absolute_uri(reverse("accounts:sso_callback"))


def _refused_page(request: HttpRequest, *, reason: str, next_url: str = "") -> HttpResponse:
    """The page a person sees when signing in through the provider did not work, in words for them and a
    short reference for the IT service desk."""
    if reason in ("no-role", "disabled"):
        kind, status = reason, 403
    elif reason in _UNAVAILABLE_REASONS:
        kind, status = "unavailable", 503
    elif reason == "idp-error":
        kind, status = "idp-error", 400
    else:
        kind, status = "restart", 400
    return render(
        request,
        "accounts/sso_refused.html",
        {
            "kind": kind,
            "reason": reason,
            "provider_label": settings.OIDC_PROVIDER_LABEL,
            "start_url": with_next(reverse("accounts:sso_login"), next_url),
            "login_url": with_next(reverse("accounts:login"), next_url),
        },
        status=status,
    )


@never_cache
@require_safe
def sso_login_view(request: HttpRequest) -> HttpResponse:
    """``/accounts/sso/login/?next=``: off to the provider's sign-in page, to come back to ``next`` (checked
    to be on this site) or the person's work."""
    provider = _configured()
    next_url = safe_next(request)
    try:
        return authorization_redirect(
            request,
            provider=provider,
            redirect_uri=_callback_uri(request),
            purpose=LOGIN_PURPOSE,
            context={"next": next_url},
        )
    except SsoRefused as refused:
        sso_login_failed_record(provider=provider, refused=refused, request_id=request_id_of(request))
        return _refused_page(request, reason=refused.reason, next_url=next_url)


@never_cache
@require_safe
def sso_callback_view(request: HttpRequest) -> HttpResponse:
    """``/accounts/sso/callback/``: the provider's answer (state, code), verified and turned into a
    session; a refusal is a page saying what to do, on record, with nothing changed."""
    provider = _configured()
    request_id = request_id_of(request)
    try:
        completed = authorization_complete(request, provider=provider, redirect_uri=_callback_uri(request))
        if completed.purpose != LOGIN_PURPOSE:
            raise SsoRefused("state", "the answer was for another purpose than signing in")
        result = sso_log_in(request=request, completed=completed, provider=provider, request_id=request_id)
    except SsoRefused as refused:
        sso_login_failed_record(provider=provider, refused=refused, request_id=request_id)
        return _refused_page(request, reason=refused.reason)
    next_url = str(completed.context.get("next", ""))
    if result.user is None:
        return _refused_page(request, reason=result.refused, next_url=next_url)
    return HttpResponseRedirect(next_url or landing_url(result.user))
