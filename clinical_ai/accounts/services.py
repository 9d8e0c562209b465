"""Signing people in and out, and their TOTP second factor, each audited in the same transaction as the
change to the session or the device.

These are the only ways in and out: the login and logout views (and the admin site's, which are pointed at
them) call them. Django's ``user_logged_in`` and ``user_login_failed`` signals still fire, but nothing here
relies on them: the audit row is written explicitly, with the outcome the caller saw.

A user with a confirmed TOTP device signs in in two steps. The right password only records, in the session,
who is waiting for their code (``OTP_PENDING_SESSION_KEY``); the session is authenticated, and ``auth.login``
written, once the code is right, together with ``django_otp.login`` so that ``user.is_verified()`` holds for
the rest of the session. Nothing is signed in on the password alone.
"""

from __future__ import annotations

import enum
import secrets
import time
from binascii import unhexlify
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model, login, logout
from django.db import transaction
from django.http import HttpRequest
from django.utils.crypto import salted_hmac
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp import login as otp_login
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinical_ai.accounts.lockout import (
    Scope,
    client_address,
    lockout_failure_record,
    lockout_reset,
    lockout_until,
    username_key,
)
from clinical_ai.accounts.selectors import (
    OTP_PENDING_SESSION_KEY,
    otp_pending_user,
    user_has_second_factor,
    user_second_factor_ok,
)
from clinical_ai.accounts.sessions import session_started
from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record

_USERNAME_HMAC_SALT = "clinical_ai.accounts.login_failed.username"
# A sign-in waiting for its code is dropped after this many wrong codes: the password must be typed again.
OTP_PENDING_MAX_FAILURES = 5
# The secret of an enrolment under way, kept in the session (not the database) until a code confirms it.
OTP_ENROL_SESSION_KEY = "accounts_otp_enrol"
TOTP_DEVICE_NAME = "Authenticator app"


class LoginStep(enum.Enum):
    REFUSED = "refused"  # wrong username or password, or a disabled account
    LOCKED = "locked"  # too many wrong passwords: refused without checking this one (accounts.lockout)
    SIGNED_IN = "signed_in"
    SECOND_FACTOR = "second_factor"  # the password was right; the session waits for the TOTP code


class SecondFactorOutcome(enum.Enum):
    VERIFIED = "verified"
    WRONG_CODE = "wrong_code"
    THROTTLED = "throttled"  # too many wrong codes in a row: django-otp makes the device wait
    NOTHING_PENDING = "nothing_pending"  # no sign-in waiting (expired, too many tries) or no device to check


def username_hmac(username: str) -> str:
    """A keyed hash of an attempted username (keyed by SECRET_KEY): repeated attempts at the same unknown
    name can be correlated in the log without the name, which might be a patient's, ever being stored."""
    return salted_hmac(_USERNAME_HMAC_SALT, username, algorithm="sha256").hexdigest()[:32]


def user_log_in(
    *, request: HttpRequest, username: str, password: str, request_id: str, now: datetime | None = None
) -> LoginStep:
    """Authenticate and start a session, or refuse, or (for a user with a confirmed TOTP device) wait for
    the code. One audit row when the attempt ends here, in the same transaction; none while it waits.

    Success: ``auth.login`` with the user as actor. Failure: ``auth.login_failed``, actor anonymous (the
    caller proved nothing); when the username names an account, the account is the event's object (its id),
    otherwise the detail holds only a keyed hash of what was typed. Each failure counts towards the
    username's lockout (and the client address's, when that is on); while locked, every attempt is refused
    without the password being checked (``LoginStep.LOCKED``, ``auth.login_failed`` with reason
    ``locked-out``), known and unknown usernames alike.
    """
    request.session.pop(OTP_PENDING_SESSION_KEY, None)  # a new attempt replaces one left waiting
    counted = [(Scope.LOGIN_USER, username_key(username)), (Scope.LOGIN_IP, client_address(request))]
    with transaction.atomic():
        locked = [scope for scope, key in counted if lockout_until(scope=scope, key=key, now=now)]
        user = None if locked else authenticate(request, username=username, password=password)
        if user is None:
            user_model = get_user_model()
            target = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).only("pk").first()
            detail: dict[str, str | bool | int] = {"user_known": target is not None}
            if target is None:
                detail["username_hmac"] = username_hmac(username)
            if locked:
                detail["reason"] = "locked-out"
                detail["locked"] = ",".join(str(scope) for scope in locked)
            else:
                counts = [
                    lockout_failure_record(scope=scope, key=key, user=target, request_id=request_id, now=now)
                    for scope, key in counted
                ]
                detail["failures"] = counts[0].failures
            audit_record(
                actor=Actor.anonymous(),
                action="auth.login_failed",
                outcome=Outcome.FAILURE,
                object_type="User" if target is not None else "",
                object_id=str(target.pk) if target is not None else "",
                request_id=request_id,
                detail=detail,
            )
            return LoginStep.LOCKED if locked else LoginStep.REFUSED
        # The password was right: the username's count starts again. The address's is left to expire, or
        # one valid account would let its holder reset the count of guesses at others.
        lockout_reset(scope=Scope.LOGIN_USER, key=counted[0][1])
        if user_has_second_factor(user):
            # A fresh session key, so that a session id planted before the password cannot be the one
            # that the code then signs in.
            request.session.cycle_key()
            request.session[OTP_PENDING_SESSION_KEY] = {
                "user_id": str(user.pk),
                "backend": str(getattr(user, "backend", "")),
                "auth_hash": user.get_session_auth_hash(),
                "started": int(time.time()),
                "failures": 0,
            }
            return LoginStep.SECOND_FACTOR
        _session_start(request=request, user=user, device=None, request_id=request_id)
    return LoginStep.SIGNED_IN


def _session_start(*, request: HttpRequest, user: Any, device: Any | None, request_id: str) -> None:
    login(request, user, backend=getattr(user, "backend", None))
    session_started(request)  # the idle and absolute time-outs count from here
    if device is not None:
        otp_login(request, device)
    audit_record(
        actor=Actor.user(user.pk),
        action="auth.login",
        object_type="User",
        object_id=str(user.pk),
        request_id=request_id,
        detail={
            "backend": str(getattr(user, "backend", ""))[:128],
            "second_factor": "totp" if device is not None else "none",
        },
    )


def _totp_check(*, user: Any, token: str) -> tuple[SecondFactorOutcome, Any | None]:
    """Check ``token`` against the user's confirmed TOTP devices, locked for the check (django-otp then
    refuses a code at or before the last accepted time step, and counts failures towards its throttle).
    Call inside a transaction that commits on a wrong code too, or the failure count is lost."""
    devices = list(TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).order_by("pk"))
    if not devices:
        return SecondFactorOutcome.NOTHING_PENDING, None
    allowed = [device for device in devices if device.verify_is_allowed()[0]]
    if not allowed:
        return SecondFactorOutcome.THROTTLED, None
    for device in allowed:
        if device.verify_token(token):
            return SecondFactorOutcome.VERIFIED, device
    return SecondFactorOutcome.WRONG_CODE, None


def _verify_failed_record(
    *, actor: Actor, user: Any, stage: str, outcome: SecondFactorOutcome, request_id: str, **extra: Any
) -> None:
    audit_record(
        actor=actor,
        action="auth.otp.verify_failed",
        outcome=Outcome.FAILURE,
        object_type="User",
        object_id=str(user.pk),
        request_id=request_id,
        detail={"stage": stage, "reason": outcome.value.replace("_", " "), **extra},
    )


def _verified_record(*, user: Any, device: Any, stage: str, request_id: str) -> None:
    audit_record(
        actor=Actor.user(user.pk),
        action="auth.otp.verify",
        object_type="User",
        object_id=str(user.pk),
        request_id=request_id,
        detail={"stage": stage, "device_id": str(device.pk)},
    )


def user_second_factor_log_in(*, request: HttpRequest, token: str, request_id: str) -> SecondFactorOutcome:
    """The second step of signing in: a right code for the user waiting in this session starts the session
    (``auth.otp.verify`` then ``auth.login``, one transaction). A wrong one is refused and recorded as
    ``auth.otp.verify_failed`` (actor anonymous: the session is not signed in); after
    ``OTP_PENDING_MAX_FAILURES`` of them the waiting sign-in is dropped."""
    user = otp_pending_user(request.session)
    if user is None:
        request.session.pop(OTP_PENDING_SESSION_KEY, None)
        return SecondFactorOutcome.NOTHING_PENDING
    pending = dict(request.session[OTP_PENDING_SESSION_KEY])
    with transaction.atomic():
        outcome, device = _totp_check(user=user, token=token)
        if outcome is SecondFactorOutcome.NOTHING_PENDING:
            request.session.pop(OTP_PENDING_SESSION_KEY, None)
            return outcome
        if device is None:
            failures = int(pending.get("failures", 0)) + 1
            dropped = failures >= OTP_PENDING_MAX_FAILURES
            _verify_failed_record(
                actor=Actor.anonymous(),
                user=user,
                stage="login",
                outcome=outcome,
                request_id=request_id,
                failures=failures,
                sign_in_dropped=dropped,
            )
            if dropped:
                request.session.pop(OTP_PENDING_SESSION_KEY, None)
            else:
                request.session[OTP_PENDING_SESSION_KEY] = {**pending, "failures": failures}
            return outcome
        request.session.pop(OTP_PENDING_SESSION_KEY, None)
        _verified_record(user=user, device=device, stage="login", request_id=request_id)
        user.backend = pending.get("backend") or None
        _session_start(request=request, user=user, device=device, request_id=request_id)
    return SecondFactorOutcome.VERIFIED


def session_second_factor_verify(*, request: HttpRequest, token: str, request_id: str) -> SecondFactorOutcome:
    """Verify the second factor of a session already signed in but not verified (one that began before the
    user enrolled a device): ``auth.otp.verify`` or ``auth.otp.verify_failed``, the user as actor."""
    user = request.user
    if not user.is_authenticated:
        return SecondFactorOutcome.NOTHING_PENDING
    with transaction.atomic():
        outcome, device = _totp_check(user=user, token=token)
        if outcome is SecondFactorOutcome.NOTHING_PENDING:
            return outcome
        if device is None:
            _verify_failed_record(
                actor=Actor.user(user.pk), user=user, stage="session", outcome=outcome, request_id=request_id
            )
            return outcome
        _verified_record(user=user, device=device, stage="session", request_id=request_id)
        otp_login(request, device)
    return SecondFactorOutcome.VERIFIED


def totp_enrolment_key(*, request: HttpRequest) -> str:
    """The hex secret of the signed-in user's enrolment under way, made on first use and kept in the
    session until a code confirms it: showing the QR code writes nothing to the database."""
    user_id = str(request.user.pk)
    kept = request.session.get(OTP_ENROL_SESSION_KEY)
    if isinstance(kept, dict) and kept.get("user_id") == user_id and isinstance(kept.get("key"), str):
        return str(kept["key"])
    key = secrets.token_hex(20)  # 160 bits, RFC 4226's recommended length for HMAC-SHA1
    request.session[OTP_ENROL_SESSION_KEY] = {"user_id": user_id, "key": key}
    return key


def totp_device_unsaved(*, user: Any, key: str) -> Any:
    """The device an enrolment would create (for its ``config_url``), not saved."""
    return TOTPDevice(user=user, key=key, name=TOTP_DEVICE_NAME, confirmed=False)


def totp_device_enrol(*, request: HttpRequest, token: str, request_id: str) -> Any | None:
    """Confirm the enrolment under way with a current code and store the device, confirmed, as the
    session's verified device; ``auth.otp.enroll`` either way. The code's time step becomes the device's
    last used one, so the same code cannot then sign anyone in. None when the code is wrong, no enrolment
    is under way, or the user already has a device."""
    user = request.user
    kept = request.session.get(OTP_ENROL_SESSION_KEY)
    if not user.is_authenticated or not isinstance(kept, dict) or kept.get("user_id") != str(user.pk):
        return None
    with transaction.atomic():
        # Lock the user's row: two confirmations at once would otherwise both add a device.
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        if user_has_second_factor(user):
            return None
        device = totp_device_unsaved(user=user, key=str(kept["key"]))
        totp = TOTP(unhexlify(device.key), device.step, device.t0, device.digits, device.drift)
        if not (token.isdigit() and totp.verify(int(token), tolerance=device.tolerance)):
            audit_record(
                actor=Actor.user(user.pk),
                action="auth.otp.enroll",
                outcome=Outcome.FAILURE,
                object_type="User",
                object_id=str(user.pk),
                request_id=request_id,
                detail={"reason": "wrong code"},
            )
            return None
        device.last_t = totp.t()
        if getattr(settings, "OTP_TOTP_SYNC", True):
            device.drift = totp.drift
        device.confirmed = True
        device.save()
        audit_record(
            actor=Actor.user(user.pk),
            action="auth.otp.enroll",
            object_type="User",
            object_id=str(user.pk),
            request_id=request_id,
            detail={"device_id": str(device.pk), "kind": "totp"},
        )
        request.session.pop(OTP_ENROL_SESSION_KEY, None)
        otp_login(request, device)
    return device


def totp_device_remove(*, request: HttpRequest, password: str, request_id: str) -> bool:
    """Remove the signed-in user's TOTP devices, on their password typed again and only from a session
    whose second factor is verified (a password alone must not undo the second factor); ``auth.otp.remove``
    either way."""
    user = request.user
    if not user.is_authenticated:
        return False
    with transaction.atomic():
        reason = ""
        if not user_second_factor_ok(user):
            reason = "session not verified"
        elif not user.check_password(password):
            reason = "wrong password"
        if reason:
            audit_record(
                actor=Actor.user(user.pk),
                action="auth.otp.remove",
                outcome=Outcome.FAILURE,
                object_type="User",
                object_id=str(user.pk),
                request_id=request_id,
                detail={"reason": reason},
            )
            return False
        removed, _ = TOTPDevice.objects.filter(user=user).delete()
        audit_record(
            actor=Actor.user(user.pk),
            action="auth.otp.remove",
            object_type="User",
            object_id=str(user.pk),
            request_id=request_id,
            detail={"removed": removed},
        )
        request.session.pop(DEVICE_ID_SESSION_KEY, None)
        request.session.pop(OTP_ENROL_SESSION_KEY, None)
    return True


def user_log_out(*, request: HttpRequest, request_id: str, idp_logout: bool = False) -> bool:
    """End the session of the signed-in user, audited as ``auth.logout`` (``idp_logout``: whether the person
    is sent on to end their identity provider's session too). False (and no row) when nobody was signed
    in."""
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
            detail={"idp_logout": idp_logout},
        )
        logout(request)
    return True
