"""Idle and absolute time-outs of signed-in sessions, per role.

A session records when its person signed in and when they last did something (``SESSION_STAMPS_KEY``). On
each request of a signed-in session the strictest limits over the person's roles apply
(``SESSION_IDLE_SECONDS`` and ``SESSION_ABSOLUTE_SECONDS``, a mapping role -> seconds with a ``default`` for
accounts without a role; a superuser counts as an admin). Past either limit the session ends, on record as
``auth.session.expired`` (the user as actor, ``detail.reason`` idle or absolute and ``after_seconds`` the
limit passed), and the person is sent to the sign-in page, which says why.

The review queue refreshes itself every 30 seconds: that request is not activity (a ward PC left on the
queue must still idle out), but it does end a session that is past its limits, so the screen leaves the
patients' list at once. The FHIR, CDS Hooks and SMART endpoints authenticate by token and send no session
cookie: they never reach the checks here.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import REDIRECT_FIELD_NAME, SESSION_KEY, logout
from django.contrib.sessions.backends.base import SessionBase
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_htmx.middleware import HtmxDetails

from clinical_ai.accounts.models import Membership, Role
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.middleware import request_id_of

# {"signed_in_at": epoch seconds, "last_activity_at": epoch seconds}
SESSION_STAMPS_KEY = "accounts_session"
# Why the last session of this browser ended, for the sign-in page: {"reason", "after_seconds"}.
SIGNED_OUT_NOTICE_KEY = "accounts_signed_out"
DEFAULT_LIMIT_KEY = "default"
# Activity is written to the session at most this often: every request would be a database write, and a
# time-out a few seconds late changes nothing.
ACTIVITY_WRITE_SECONDS = 15
# The element whose automatic refresh (clinical_ai/review/static/review/queue-refresh.js) is not activity:
# htmx names the element that triggered a request in the HX-Trigger header, and the queue's results are
# refreshed by triggering ``queue-refresh`` on #queue-results (review/_queue_results.html).
BACKGROUND_REFRESH_ELEMENTS = frozenset({"queue-results"})


def clock() -> int:
    """Now, in whole epoch seconds (tests replace it rather than wait)."""
    return int(time.time())


@dataclass(frozen=True)
class SessionLimits:
    idle_seconds: int
    absolute_seconds: int


def _limit(mapping: Mapping[str, int], roles: set[str]) -> int:
    keys = roles or {DEFAULT_LIMIT_KEY}
    values = [int(mapping[key]) for key in keys if key in mapping]
    return min(values) if values else int(mapping[DEFAULT_LIMIT_KEY])


def session_limits(user: Any) -> SessionLimits:
    """The strictest idle and absolute limits over ``user``'s roles at every site (a superuser counts as
    an admin; no role at all, the ``default`` limits)."""
    roles = set(Membership.objects.filter(user=user).values_list("role", flat=True).distinct())
    if getattr(user, "is_superuser", False):
        roles.add(Role.ADMIN.value)
    roles = {str(role) for role in roles}
    return SessionLimits(
        idle_seconds=_limit(settings.SESSION_IDLE_SECONDS, roles),
        absolute_seconds=_limit(settings.SESSION_ABSOLUTE_SECONDS, roles),
    )


def session_started(request: HttpRequest) -> None:
    """Stamp a session that has just been signed in: call it right after ``django.contrib.auth.login`` in
    every sign-in (password, single sign-on, EHR launch). Its absolute limit counts from here."""
    now = clock()
    request.session[SESSION_STAMPS_KEY] = {"signed_in_at": now, "last_activity_at": now}


def session_logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """``user_logged_in`` receiver (connected in AccountsConfig.ready): stamps the session of every
    sign-in, also those whose code does not call ``session_started`` itself."""
    if request is not None and hasattr(request, "session"):
        session_started(request)


def _stamps(session: SessionBase) -> tuple[int, int] | None:
    stamps = session.get(SESSION_STAMPS_KEY)
    if not isinstance(stamps, dict):
        return None
    started, last = stamps.get("signed_in_at"), stamps.get("last_activity_at")
    if not isinstance(started, int) or not isinstance(last, int):
        return None
    return started, last


def _duration_text(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour{'s' if hours != 1 else ''}"
    minutes = max(1, round(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


def signed_out_notice_pop(session: SessionBase) -> str:
    """The sentence for the sign-in page when this browser's last session timed out ("" otherwise); shown
    once."""
    notice = session.pop(SIGNED_OUT_NOTICE_KEY, None)
    if not isinstance(notice, dict) or not isinstance(notice.get("after_seconds"), int):
        return ""
    after = int(notice["after_seconds"])
    if notice.get("reason") == "absolute":
        if after % 3600 == 0:
            return f"You were signed out at the end of your {after // 3600}-hour session. Sign in again to go on."
        return f"You were signed out at the end of your session ({_duration_text(after)}). Sign in again to go on."
    return f"You were signed out after {_duration_text(after)} without activity. Sign in again to go on."


def _is_background_refresh(request: HttpRequest, htmx: HtmxDetails) -> bool:
    return bool(htmx) and (htmx.trigger or "") in BACKGROUND_REFRESH_ELEMENTS


def _return_path(request: HttpRequest, htmx: HtmxDetails) -> str:
    """The page to go back to after signing in again: for an htmx request the page it was made from (not
    the fragment it asked for); for a form sent with POST its page, as a GET (what was sent is not kept)."""
    if htmx:
        current = htmx.current_url_abs_path or ""
        if current.startswith("/") and url_has_allowed_host_and_scheme(current, allowed_hosts=None):
            return current
        return ""
    return request.get_full_path() if request.method in ("GET", "HEAD") else request.path


def expired_answer(request: HttpRequest, htmx: HtmxDetails) -> HttpResponse:
    login_url = reverse("accounts:login")
    back = _return_path(request, htmx)
    if back:
        login_url = f"{login_url}?{urlencode({REDIRECT_FIELD_NAME: back})}"
    if htmx:
        # A redirect would be followed by the browser's XMLHttpRequest and the sign-in form swapped into
        # the page; this header makes htmx load the sign-in page as the whole page instead.
        response = HttpResponse("Signed out: sign in again.", content_type="text/plain; charset=utf-8")
        response["HX-Redirect"] = login_url
        return response
    return HttpResponseRedirect(login_url)


def session_expire(*, request: HttpRequest, reason: str, after_seconds: int, elapsed_seconds: int) -> None:
    """End the signed-in session of ``request`` that has passed a time-out, on record as
    ``auth.session.expired`` in the same transaction, and leave the reason for the sign-in page."""
    user = request.user
    with transaction.atomic():
        audit_record(
            actor=Actor.user(user.pk or ""),
            action="auth.session.expired",
            object_type="User",
            object_id=str(user.pk),
            request_id=request_id_of(request),
            detail={"reason": reason, "after_seconds": after_seconds, "elapsed_seconds": elapsed_seconds},
        )
        logout(request)
    request.session[SIGNED_OUT_NOTICE_KEY] = {"reason": reason, "after_seconds": after_seconds}


class SessionTimeoutMiddleware:
    """Ends signed-in sessions past their idle or absolute limit; see the module's description. Place it
    after AuthenticationMiddleware and OTPMiddleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # No session cookie (the token-authenticated FHIR, CDS Hooks and SMART endpoints, or a first visit):
        # nothing to time out, and the session is not even read, so those answers stay as they were.
        if settings.SESSION_COOKIE_NAME not in request.COOKIES or SESSION_KEY not in request.session:
            return self.get_response(request)
        user = request.user
        if not user.is_authenticated:  # a disabled account or a changed password: Django has it signed out
            return self.get_response(request)
        htmx = HtmxDetails(request)
        now = clock()
        stamps = _stamps(request.session)
        if stamps is None:
            # A session signed in before the time-outs existed, or by a path that did not stamp it: its
            # limits count from now.
            session_started(request)
            return self.get_response(request)
        started, last = stamps
        # Within the shortest limits of any role nothing can have expired: the roles need not be read.
        if now - last < min(settings.SESSION_IDLE_SECONDS.values()) and now - started < min(
            settings.SESSION_ABSOLUTE_SECONDS.values()
        ):
            self._activity(request, htmx, started=started, last=last, now=now)
            return self.get_response(request)
        limits = session_limits(user)
        idle_deadline = last + limits.idle_seconds
        absolute_deadline = started + limits.absolute_seconds
        if now >= min(idle_deadline, absolute_deadline):
            # Whichever limit was passed first is the reason the session ended.
            if idle_deadline <= absolute_deadline:
                session_expire(
                    request=request,
                    reason="idle",
                    after_seconds=limits.idle_seconds,
                    elapsed_seconds=now - last,
                )
            else:
                session_expire(
                    request=request,
                    reason="absolute",
                    after_seconds=limits.absolute_seconds,
                    elapsed_seconds=now - started,
                )
            return expired_answer(request, htmx)
        self._activity(request, htmx, started=started, last=last, now=now)
        return self.get_response(request)

    @staticmethod
    def _activity(request: HttpRequest, htmx: HtmxDetails, *, started: int, last: int, now: int) -> None:
        if not _is_background_refresh(request, htmx) and now - last >= ACTIVITY_WRITE_SECONDS:
            request.session[SESSION_STAMPS_KEY] = {"signed_in_at": started, "last_activity_at": now}
