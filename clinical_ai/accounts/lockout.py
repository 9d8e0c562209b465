"""Lockout after repeated wrong secrets: sign-in passwords (per username, and optionally per client address)
and e-signature passwords (per user).

The counts live in the database (``LoginThrottle``), one row per scope and key, updated under a row lock,
so every gunicorn process and every machine sees the same count. After ``max_failures`` wrong attempts
within ``window`` seconds the key is locked for ``lockout`` seconds: attempts are refused without the
password being checked, so the right password does not help either. A right password (while not locked)
clears the count. The first failure after a lock has expired starts a new count.

Unknown usernames are counted like known ones, under a keyed hash of what was typed: an attacker sees the
same refusals, counts and lock whether or not the account exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import salted_hmac

from clinical_ai.accounts.models import LoginThrottle
from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record

Scope = LoginThrottle.Scope
_KEY_HMAC_SALT = "clinical_ai.accounts.lockout.key"


@dataclass(frozen=True)
class Limits:
    max_failures: int  # 0: this scope is not throttled
    window: timedelta
    lockout: timedelta


def limits_for(scope: str) -> Limits:
    if scope == Scope.SIGNATURE:
        return Limits(
            settings.SIGNATURE_MAX_FAILURES,
            timedelta(seconds=settings.SIGNATURE_FAILURE_WINDOW_SECONDS),
            timedelta(seconds=settings.SIGNATURE_LOCKOUT_SECONDS),
        )
    return Limits(
        settings.LOGIN_IP_MAX_FAILURES if scope == Scope.LOGIN_IP else settings.LOGIN_MAX_FAILURES,
        timedelta(seconds=settings.LOGIN_FAILURE_WINDOW_SECONDS),
        timedelta(seconds=settings.LOGIN_LOCKOUT_SECONDS),
    )


def username_key(username: str) -> str:
    """The key of a typed username: a keyed hash (SECRET_KEY) of its case-folded form, so that the name,
    which might be anything a person typed, is never stored, and case variants share one count."""
    return salted_hmac(_KEY_HMAC_SALT, username.strip().casefold(), algorithm="sha256").hexdigest()[:40]


def client_address(request: HttpRequest) -> str:
    """The address a sign-in came from, as the WSGI server saw it. Behind a reverse proxy that is the proxy
    for everyone: leave ``LOGIN_IP_MAX_FAILURES`` at 0 there, or one attacker locks the whole hospital out."""
    return str(request.META.get("REMOTE_ADDR") or "")[:128]


def lockout_until(*, scope: str, key: str, now: datetime | None = None) -> datetime | None:
    """When the lock on ``key`` ends, or None when it is not locked."""
    if limits_for(scope).max_failures <= 0 or not key:
        return None
    now = now or timezone.now()
    until = (
        LoginThrottle.objects.filter(scope=scope, key=key, locked_until__gt=now)
        .values_list("locked_until", flat=True)
        .first()
    )
    return until


@dataclass(frozen=True)
class FailureCount:
    failures: int
    locked_until: datetime | None  # set when this failure started a lock


def lockout_failure_record(
    *, scope: str, key: str, user: Any | None = None, request_id: str = "", now: datetime | None = None
) -> FailureCount:
    """Count one wrong attempt at ``key``; at the limit, lock it and record ``auth.lockout``. Runs in its
    own (or the caller's) transaction, the row locked: two processes failing at once both count."""
    limits = limits_for(scope)
    if limits.max_failures <= 0 or not key:
        return FailureCount(0, None)
    now = now or timezone.now()
    user_id = getattr(user, "pk", None)
    with transaction.atomic():
        # Insert the row when it is missing, without failing when another process inserts it first; then
        # lock it, so that the read-modify-write below is serialized across processes.
        LoginThrottle.objects.bulk_create(
            [LoginThrottle(scope=scope, key=key, user_id=user_id)], ignore_conflicts=True
        )
        row = LoginThrottle.objects.select_for_update().get(scope=scope, key=key)
        expired_lock = row.locked_until is not None and row.locked_until <= now
        stale = row.window_started_at is None or row.window_started_at + limits.window <= now
        if expired_lock or stale:
            row.failures, row.window_started_at, row.locked_until = 0, now, None
        row.failures += 1
        row.last_failure_at = now
        row.user_id = row.user_id or user_id
        locked = None
        if row.failures >= limits.max_failures and row.locked_until is None:
            locked = row.locked_until = now + limits.lockout
        row.save()
        if locked is not None:
            audit_record(
                actor=Actor.system("lockout"),
                action="auth.lockout",
                outcome=Outcome.FAILURE,
                object_type="User" if row.user_id is not None else "",
                object_id=str(row.user_id) if row.user_id is not None else "",
                request_id=request_id,
                detail={
                    "scope": scope,
                    "failures": row.failures,
                    "locked_seconds": int(limits.lockout.total_seconds()),
                    # A keyed hash, never the name or address: enough to tie the lock to its attempts.
                    "key_hmac": key[:16] if scope == Scope.LOGIN_USER else _hashed(key),
                },
            )
    return FailureCount(row.failures, locked)


def _hashed(value: str) -> str:
    return salted_hmac(_KEY_HMAC_SALT, value, algorithm="sha256").hexdigest()[:16]


def lockout_reset(*, scope: str, key: str) -> None:
    """A right secret: the count starts again (not audited; the successful sign-in or signature is)."""
    if key:
        LoginThrottle.objects.filter(scope=scope, key=key).delete()


def lockout_clear(*, throttle_ids: list[int], actor: Actor, request_id: str = "") -> int:
    """An administrator lifts locks and counts, each one on record as ``auth.lockout.clear``."""
    cleared = 0
    with transaction.atomic():
        for row in LoginThrottle.objects.select_for_update().filter(pk__in=throttle_ids).order_by("pk"):
            audit_record(
                actor=actor,
                action="auth.lockout.clear",
                object_type="User" if row.user_id is not None else "",
                object_id=str(row.user_id) if row.user_id is not None else "",
                request_id=request_id,
                detail={
                    "scope": row.scope,
                    "failures": row.failures,
                    "was_locked": row.locked_until is not None and row.locked_until > timezone.now(),
                },
            )
            row.delete()
            cleared += 1
    return cleared


def lockout_clear_username(*, username: str, actor: Actor, request_id: str = "") -> int:
    """Lift every lock on one username: its sign-in count and, when it names an account, that account's
    e-signature count. Works for names that match no account too (their count is kept all the same)."""
    user_model = get_user_model()
    user = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).only("pk").first()
    keys = Q(scope=Scope.LOGIN_USER, key=username_key(username))
    if user is not None:
        keys |= Q(scope=Scope.SIGNATURE, key=str(user.pk))
    ids = list(LoginThrottle.objects.filter(keys).values_list("pk", flat=True))
    return lockout_clear(throttle_ids=ids, actor=actor, request_id=request_id)


def lockout_clear_address(*, address: str, actor: Actor, request_id: str = "") -> int:
    ids = list(LoginThrottle.objects.filter(scope=Scope.LOGIN_IP, key=address).values_list("pk", flat=True))
    return lockout_clear(throttle_ids=ids, actor=actor, request_id=request_id)
