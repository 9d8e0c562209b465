"""Who may do what, by role, and where a user stands with the second factor. Reads only; imports nothing
from the stages or the audit app."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.base import SessionBase
from django.utils.crypto import constant_time_compare
from django_otp import user_has_device
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinical_ai.accounts.models import Membership, Role

AUDIT_ROLES = (Role.AUDITOR, Role.ADMIN)

# Set on ``request.user`` by accounts.sso.middleware for a session that the hospital's identity provider
# signed in: that sign-in did its own multi-factor check, so our TOTP code is not asked as well.
SECOND_FACTOR_BY_PROVIDER_ATTRIBUTE = "second_factor_by_provider"

# Where the sign-in that waits for its second factor is kept, and for how long it may wait.
OTP_PENDING_SESSION_KEY = "accounts_otp_pending"
OTP_PENDING_MAX_AGE_SECONDS = 300


def user_can_audit(user: Any) -> bool:
    """Whether ``user`` may use the audit console: a superuser, or an auditor or admin at any site."""
    if not (getattr(user, "is_authenticated", False) and user.is_active):
        return False
    if user.is_superuser:
        return True
    return Membership.objects.filter(user=user, role__in=AUDIT_ROLES).exists()


def user_is_admin(user: Any) -> bool:
    """Whether ``user`` may switch models and change configuration: a superuser or an admin at any site."""
    if not (getattr(user, "is_authenticated", False) and user.is_active):
        return False
    if user.is_superuser:
        return True
    return Membership.objects.filter(user=user, role=Role.ADMIN).exists()


@dataclass(frozen=True)
class Workplace:
    """A page where a role does its work (a URL name, reversed by the view that links to it)."""

    label: str
    url_name: str


# Each role's work, in the order that decides where someone with several roles lands first.
ROLE_WORKPLACES = (
    (Role.CLINICIAN, Workplace("Review queue", "review:queue")),
    (Role.AUDITOR, Workplace("Audit console", "audit:list")),
    (Role.ADMIN, Workplace("Models", "inference:model_list")),
    (Role.ADMIN, Workplace("EHR sources", "bulk:source_list")),
)


def user_workplaces(user: Any) -> list[Workplace]:
    """Where ``user``'s roles do their work, the first being where they land after signing in: the review
    queue for a clinician, the audit console for an auditor, the models page for an admin. A superuser
    without a role at any site has the audit console and the administration site."""
    if not (getattr(user, "is_authenticated", False) and user.is_active):
        return []
    roles = set(Membership.objects.filter(user=user).values_list("role", flat=True))
    places = [place for role, place in ROLE_WORKPLACES if role in roles]
    if user.is_superuser:
        for extra in (Workplace("Audit console", "audit:list"), Workplace("Administration", "admin:index")):
            if extra not in places:
                places.append(extra)
    return places


def user_has_second_factor(user: Any) -> bool:
    """Whether ``user`` has a confirmed OTP device (an unconfirmed one is only an enrolment under way)."""
    return bool(getattr(user, "is_authenticated", False)) and bool(user_has_device(user, confirmed=True))


def user_second_factor_ok(user: Any) -> bool:
    """Whether a request by ``user`` (``request.user``) may go ahead as far as the second factor goes: the
    user has no confirmed device, or this session has verified one (``user.is_verified()``, installed by
    django-otp's middleware). A view that requires it sends the user to ``accounts:otp_verify`` otherwise.

    Sign-ins through ``accounts:login`` are verified before the session is authenticated at all; this
    catches the sessions that started before the user enrolled a device. A single sign-on session passes:
    the identity provider did the second factor (``SECOND_FACTOR_BY_PROVIDER_ATTRIBUTE``)."""
    if getattr(user, SECOND_FACTOR_BY_PROVIDER_ATTRIBUTE, False):
        return True
    is_verified = getattr(user, "is_verified", None)
    if callable(is_verified) and is_verified():
        return True
    return not user_has_second_factor(user)


def user_otp_required(user: Any) -> bool:
    """Whether ``user`` must enrol a second factor before going on: they hold a role named in the
    ``OTP_REQUIRED_ROLES`` setting (default none: the second factor is optional) and have no device."""
    roles = tuple(getattr(settings, "OTP_REQUIRED_ROLES", ()))
    if not roles or not getattr(user, "is_authenticated", False):
        return False
    if not Membership.objects.filter(user=user, role__in=roles).exists():
        return False
    return not user_has_second_factor(user)


def otp_pending_user(session: SessionBase) -> Any | None:
    """The user whose password was right and whose second factor is awaited in this session, or None
    (nothing pending, waited too long, the account was disabled or its password changed meanwhile)."""
    pending = session.get(OTP_PENDING_SESSION_KEY)
    if not isinstance(pending, dict):
        return None
    started, user_id = pending.get("started"), pending.get("user_id")
    if not isinstance(started, int) or time.time() - started > OTP_PENDING_MAX_AGE_SECONDS:
        return None
    if not isinstance(user_id, str):
        return None
    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None or not constant_time_compare(user.get_session_auth_hash(), str(pending.get("auth_hash"))):
        return None
    return user


def user_totp_devices(user: Any) -> list[Any]:
    """The user's confirmed TOTP devices, oldest first (for the page that manages them)."""
    return list(TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk"))
