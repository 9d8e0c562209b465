"""The periodic re-check of single sign-on sessions (see ``services.sso_session_recheck``)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.http import HttpRequest, HttpResponse
from django_htmx.middleware import HtmxDetails

from clinical_ai.accounts import sessions
from clinical_ai.accounts.selectors import SECOND_FACTOR_BY_PROVIDER_ATTRIBUTE
from clinical_ai.accounts.sso.client import OidcProvider
from clinical_ai.accounts.sso.config import staff_provider
from clinical_ai.accounts.sso.services import SSO_SESSION_KEY, sso_session, sso_session_recheck
from clinical_ai.core.middleware import request_id_of


class SsoRecheckMiddleware:
    """For sessions signed in through the hospital's provider, re-reads the person's groups every
    ``OIDC_RECHECK_SECONDS``; a session that the re-check ends is sent to the sign-in page, which says why.
    Place it after SessionTimeoutMiddleware: a session that timed out is not worth asking the provider
    about."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # No session cookie (token-authenticated endpoints, a first visit): the session is not even read.
        if settings.SESSION_COOKIE_NAME not in request.COOKIES or SESSION_KEY not in request.session:
            return self.get_response(request)
        if SSO_SESSION_KEY not in request.session or not request.user.is_authenticated:
            return self.get_response(request)
        result = sso_session_recheck(request=request, now=sessions.clock(), request_id=request_id_of(request))
        if result.ended:
            return sessions.expired_answer(request, HtmxDetails(request))
        if sso_session(request.session) is None:
            return self.get_response(request)
        setattr(request.user, SECOND_FACTOR_BY_PROVIDER_ATTRIBUTE, True)
        response = self.get_response(request)
        provider = staff_provider()
        if provider is not None and str(response.get("Content-Type", "")).startswith("text/html"):
            provider_form_action_allow(response, provider=provider)
        return response


def provider_form_action_allow(response: HttpResponse, *, provider: OidcProvider) -> None:
    """Give ``response`` the site's Content-Security-Policy with the provider's origin added to
    ``form-action``. Browsers apply form-action to where a form's answer redirects, and on the pages of a
    single sign-on session the "Sign out" form's answer is a redirect to the provider's sign-out page: with
    ``form-action 'self'`` alone Chromium stops it halfway. Only that origin is added. A response that
    already has a policy of its own keeps it."""
    policy = str(getattr(settings, "CONTENT_SECURITY_POLICY", ""))
    if "form-action" not in policy or "Content-Security-Policy" in response:
        return
    parts = urlsplit(provider.issuer)
    origin = f"{parts.scheme}://{parts.netloc}"
    response["Content-Security-Policy"] = "; ".join(
        f"{directive} {origin}" if directive.startswith("form-action") else directive
        for directive in (piece.strip() for piece in policy.split(";"))
        if directive
    )
