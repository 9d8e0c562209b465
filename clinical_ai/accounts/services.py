"""Signing people in and out, each audited in the same transaction as the change to the session.

These are the only ways in and out: the login and logout views (and the admin site's, which are pointed at
them) call them. Django's ``user_logged_in`` and ``user_login_failed`` signals still fire, but nothing here
relies on them: the audit row is written explicitly, with the outcome the caller saw.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate, get_user_model, login, logout
from django.db import transaction
from django.http import HttpRequest
from django.utils.crypto import salted_hmac

from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record

_USERNAME_HMAC_SALT = "clinical_ai.accounts.login_failed.username"


def username_hmac(username: str) -> str:
    """A keyed hash of an attempted username (keyed by SECRET_KEY): repeated attempts at the same unknown
    name can be correlated in the log without the name, which might be a patient's, ever being stored."""
    return salted_hmac(_USERNAME_HMAC_SALT, username, algorithm="sha256").hexdigest()[:32]


def user_log_in(*, request: HttpRequest, username: str, password: str, request_id: str) -> Any | None:
    """Authenticate and start a session, or refuse; either way one audit row, in the same transaction.

    Success: ``auth.login`` with the user as actor. Failure: ``auth.login_failed``, actor anonymous (the
    caller proved nothing); when the username names an account, the account is the event's object (its id),
    otherwise the detail holds only a keyed hash of what was typed.
    """
    with transaction.atomic():
        user = authenticate(request, username=username, password=password)
        if user is None:
            user_model = get_user_model()
            target = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).only("pk").first()
            detail: dict[str, str | bool] = {"user_known": target is not None}
            if target is None:
                detail["username_hmac"] = username_hmac(username)
            audit_record(
                actor=Actor.anonymous(),
                action="auth.login_failed",
                outcome=Outcome.FAILURE,
                object_type="User" if target is not None else "",
                object_id=str(target.pk) if target is not None else "",
                request_id=request_id,
                detail=detail,
            )
            return None
        login(request, user)
        audit_record(
            actor=Actor.user(user.pk),
            action="auth.login",
            object_type="User",
            object_id=str(user.pk),
            request_id=request_id,
            detail={"backend": str(getattr(user, "backend", ""))[:128]},
        )
    return user


def user_log_out(*, request: HttpRequest, request_id: str) -> bool:
    """End the session of the signed-in user, audited as ``auth.logout``. False (and no row) when nobody
    was signed in."""
    user = request.user
    if not user.is_authenticated:
        return False
    with transaction.atomic():
        audit_record(
            actor=Actor.user(user.pk),
            action="auth.logout",
            object_type="User",
            object_id=str(user.pk),
            request_id=request_id,
        )
        logout(request)
    return True
