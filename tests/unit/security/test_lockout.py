"""Lockout after repeated wrong passwords, at sign-in and at the e-signature.

After ``LOGIN_MAX_FAILURES`` wrong sign-ins for a username (known or not) within the window, that username
is refused for ``LOGIN_LOCKOUT_SECONDS`` even with the right password; the same per client address when
``LOGIN_IP_MAX_FAILURES`` is set, and for a clinician's signing password. The counts are rows in the
database: two connections (threads) and two processes share them. A right password resets the count; an
expired window or lock starts a new one; an admin lifts a lock, on record.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from clinical_ai.accounts.lockout import (
    Scope,
    lockout_failure_record,
    lockout_until,
    username_key,
)
from clinical_ai.accounts.models import LoginThrottle
from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.selectors import audit_chain_verify
from clinical_ai.review.models import Decision, Suggestion
from tests.unit.security.conftest import PASSWORD, World

pytestmark = pytest.mark.django_db

LOCKED_TEXT = "Too many failed sign-ins"


@pytest.fixture(autouse=True)
def _limits(settings: Any) -> None:
    settings.LOGIN_MAX_FAILURES = 3
    settings.LOGIN_FAILURE_WINDOW_SECONDS = 600
    settings.LOGIN_LOCKOUT_SECONDS = 900
    settings.LOGIN_IP_MAX_FAILURES = 0
    settings.SIGNATURE_MAX_FAILURES = 3
    settings.SIGNATURE_FAILURE_WINDOW_SECONDS = 600
    settings.SIGNATURE_LOCKOUT_SECONDS = 900


def log_in(username: str, password: str, address: str = "10.0.0.1") -> Any:
    return Client(REMOTE_ADDR=address).post("/accounts/login/", {"username": username, "password": password})


def signed_in(response: Any) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.client.session


def actions(name: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=name).order_by("seq"))


# --- sign-in ----------------------------------------------------------------------------------------------


def test_after_n_wrong_passwords_the_right_one_is_refused_with_a_clear_message(clinician: Any) -> None:
    for _ in range(3):
        assert log_in("dr-ward", "wrong password").status_code == 200
    locked = log_in("dr-ward", PASSWORD)
    assert locked.status_code == 429 and not signed_in(locked)
    assert LOCKED_TEXT in locked.content.decode()
    assert "ask an administrator" in locked.content.decode()
    # On record: three failures counted, the lock (once), and the refusal that did not check the password.
    failed = actions("auth.login_failed")
    assert [e.detail.get("failures") for e in failed[:3]] == [1, 2, 3]
    assert failed[3].detail["reason"] == "locked-out" and "failures" not in failed[3].detail
    lock = actions("auth.lockout")
    assert len(lock) == 1 and lock[0].outcome == "failure"
    assert (lock[0].object_type, lock[0].object_id) == ("User", str(clinician.pk))
    assert lock[0].detail["scope"] == "login-user" and lock[0].detail["locked_seconds"] == 900
    assert "dr-ward" not in str(lock[0].detail)
    assert not actions("auth.login")
    assert audit_chain_verify().ok


def test_unknown_usernames_are_throttled_alike_and_reveal_nothing(clinician: Any) -> None:
    """The same statuses and the same page text, attempt by attempt, for an account and for a name that
    matches none; the unknown name is never stored."""

    def attempts(username: str) -> list[tuple[int, str]]:
        out = []
        for password in ["wrong 1", "wrong 2", "wrong 3", "wrong 4", PASSWORD]:
            response = log_in(username, password)
            page = response.content.decode().replace(username, "NAME")
            notices = [line.strip() for line in page.splitlines() if "notice" in line or "paused" in line]
            out.append((response.status_code, "\n".join(notices)))
        return out

    known, unknown = attempts("dr-ward"), attempts("nobody-here")
    assert known == unknown
    assert [status for status, _ in known] == [200, 200, 200, 429, 429]
    assert LoginThrottle.objects.get(key=username_key("nobody-here")).user_id is None
    assert not LoginThrottle.objects.filter(key__icontains="nobody").exists()
    assert len(actions("auth.lockout")) == 2


def test_case_variants_of_a_username_share_one_count(clinician: Any) -> None:
    for name in ("dr-ward", "DR-WARD", "Dr-Ward"):
        log_in(name, "wrong")
    assert log_in("dr-ward", PASSWORD).status_code == 429


def test_a_right_password_resets_the_count(clinician: Any) -> None:
    for _ in range(2):
        log_in("dr-ward", "wrong")
    assert signed_in(log_in("dr-ward", PASSWORD))
    assert not LoginThrottle.objects.exists()
    for _ in range(2):
        log_in("dr-ward", "wrong")
    assert signed_in(log_in("dr-ward", PASSWORD))  # 2 + 2 wrong, not 4 in a row
    assert not actions("auth.lockout")


def test_failures_outside_the_window_start_a_new_count(clinician: Any) -> None:
    key = username_key("dr-ward")
    start = timezone.now() - timedelta(hours=1)
    for minutes in (0, 1):  # two failures an hour ago
        lockout_failure_record(scope=Scope.LOGIN_USER, key=key, now=start + timedelta(minutes=minutes))
    assert log_in("dr-ward", "wrong").status_code == 200  # the third, but the first of a new window
    assert LoginThrottle.objects.get(key=key).failures == 1
    assert signed_in(log_in("dr-ward", PASSWORD))


def test_the_lock_ends_after_the_lockout_period(clinician: Any) -> None:
    for _ in range(3):
        log_in("dr-ward", "wrong")
    key = username_key("dr-ward")
    until = lockout_until(scope=Scope.LOGIN_USER, key=key)
    assert until is not None
    assert lockout_until(scope=Scope.LOGIN_USER, key=key, now=until - timedelta(seconds=1)) == until
    assert lockout_until(scope=Scope.LOGIN_USER, key=key, now=until) is None
    # Time passes: the lock's end moved to the past, as a clock 15 minutes later would see it.
    LoginThrottle.objects.filter(key=key).update(locked_until=timezone.now() - timedelta(seconds=1))
    assert signed_in(log_in("dr-ward", PASSWORD))
    assert not LoginThrottle.objects.exists()


def test_the_first_failure_after_an_expired_lock_starts_a_new_count(clinician: Any) -> None:
    key = username_key("dr-ward")
    start = timezone.now() - timedelta(hours=2)
    for seconds in (0, 1, 2):
        lockout_failure_record(scope=Scope.LOGIN_USER, key=key, now=start + timedelta(seconds=seconds))
    assert lockout_until(scope=Scope.LOGIN_USER, key=key) is None  # that lock ended long ago
    assert log_in("dr-ward", "wrong").status_code == 200
    row = LoginThrottle.objects.get(key=key)
    assert (row.failures, row.locked_until) == (1, None)


def test_per_address_limit_catches_a_spray_across_usernames(settings: Any, clinician: Any) -> None:
    settings.LOGIN_IP_MAX_FAILURES = 3
    for name in ("alice", "bob", "carol"):
        assert log_in(name, "wrong", address="198.51.100.7").status_code == 200
    assert log_in("dr-ward", PASSWORD, address="198.51.100.7").status_code == 429
    assert signed_in(log_in("dr-ward", PASSWORD, address="10.0.0.2"))  # another address is not locked
    lock = actions("auth.lockout")
    assert [e.detail["scope"] for e in lock] == ["login-ip"]
    assert "198.51.100.7" not in str(lock[0].detail)


def test_the_admin_sign_in_page_is_throttled_too(clinician: Any, admin: Any) -> None:
    for _ in range(3):
        Client().post("/admin/login/", {"username": "admin-abe", "password": "wrong"})
    response = Client().post("/admin/login/", {"username": "admin-abe", "password": PASSWORD})
    assert response.status_code == 429


# --- lifting a lock ---------------------------------------------------------------------------------------


def test_an_admin_lifts_a_lock_in_the_django_admin_on_record(clinician: Any, superuser: Any) -> None:
    for _ in range(3):
        log_in("dr-ward", "wrong")
    row = LoginThrottle.objects.get()
    http = Client()
    http.force_login(superuser)
    listing = http.get("/admin/accounts/loginthrottle/")
    assert (
        listing.status_code == 200 and "dr-ward" in listing.content.decode()
    )  # the account, for a known name
    response = http.post(
        "/admin/accounts/loginthrottle/",
        {"action": "clear_lockouts", "_selected_action": [str(row.pk)]},
    )
    assert response.status_code == 302
    assert not LoginThrottle.objects.exists()
    cleared = actions("auth.lockout.clear")
    assert len(cleared) == 1 and cleared[0].actor_id == str(superuser.pk)
    assert cleared[0].detail == {"scope": "login-user", "failures": 3, "was_locked": True}
    assert signed_in(log_in("dr-ward", PASSWORD))
    # Read-only otherwise: a row cannot be edited or deleted without the record.
    assert http.get(f"/admin/accounts/loginthrottle/{row.pk}/delete/").status_code in (302, 403)


def test_lockout_clear_command_lifts_a_username_even_an_unknown_one(clinician: Any) -> None:
    for name in ("dr-ward", "nobody-here"):
        for _ in range(3):
            log_in(name, "wrong")
    call_command("lockout_clear", username="nobody-here")
    assert lockout_until(scope=Scope.LOGIN_USER, key=username_key("nobody-here")) is None
    assert lockout_until(scope=Scope.LOGIN_USER, key=username_key("dr-ward")) is not None
    call_command("lockout_clear", username="dr-ward")
    assert signed_in(log_in("dr-ward", PASSWORD))
    assert [e.actor_id for e in actions("auth.lockout.clear")] == ["manage.py lockout_clear"] * 2


# --- the e-signature ----------------------------------------------------------------------------------------


def sign(http: Client, suggestion: Suggestion, password: str) -> Any:
    return http.post(
        f"/review/suggestions/{suggestion.external_id}/sign/", {"outcome": "accepted", "password": password}
    )


def test_wrong_signing_passwords_pause_signing_even_with_the_right_one(clinician: Any, world: World) -> None:
    http = Client()
    http.force_login(clinician)
    for _ in range(3):
        assert sign(http, world.suggestion, "wrong").status_code == 400
    locked = sign(http, world.suggestion, PASSWORD)
    assert locked.status_code == 429
    assert "Signing is paused after too many wrong passwords" in locked.content.decode()
    world.suggestion.refresh_from_db()
    assert world.suggestion.status == Suggestion.Status.PENDING and not Decision.objects.exists()
    refusals = [e.detail["refused"] for e in actions("review.decision.sign")]
    assert refusals == ["wrong-password"] * 3 + ["signature-locked"]
    lock = actions("auth.lockout")
    assert len(lock) == 1 and lock[0].detail["scope"] == "signature"
    assert lock[0].object_id == str(clinician.pk)
    # Signing in is a different secret's count: not locked.
    assert signed_in(log_in("dr-ward", PASSWORD))


def test_a_right_signature_resets_the_count_and_the_lock_ends(clinician: Any, world: World) -> None:
    http = Client()
    http.force_login(clinician)
    for _ in range(3):
        sign(http, world.suggestion, "wrong")
    LoginThrottle.objects.filter(scope=Scope.SIGNATURE).update(
        locked_until=timezone.now() - timedelta(seconds=1)
    )
    assert sign(http, world.suggestion, PASSWORD).status_code == 302
    assert Decision.objects.count() == 1
    assert not LoginThrottle.objects.filter(scope=Scope.SIGNATURE).exists()
