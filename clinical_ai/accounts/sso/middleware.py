"""The periodic re-check of single sign-on sessions (see ``services.sso_session_recheck``)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.http import HttpRequest, HttpResponse
from django_htmx.middleware import HtmxDetails

from clinical_ai.accounts import sessions
from clinical_ai.accounts.selectors import SECOND_FACTOR_BY_PROVIDER_ATTRIBUTE
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
        if sso_session(request.session) is not None:
            setattr(request.user, SECOND_FACTOR_BY_PROVIDER_ATTRIBUTE, True)
        return self.get_response(request)
