"""The optional TOTP second factor, through the real views: enrolment with a code computed here from the
shown secret, the two-step sign-in, wrong and replayed codes, throttling, removal, required roles."""

from __future__ import annotations

import re
import time
from base64 import b32decode
from typing import Any

import pytest
from django.contrib.auth import authenticate
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinical_ai.accounts.selectors import OTP_PENDING_SESSION_KEY, user_second_factor_ok
from clinical_ai.accounts.services import OTP_ENROL_SESSION_KEY, OTP_PENDING_MAX_FAILURES
from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.selectors import audit_chain_verify
from tests.unit.audit.personas import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
OTP = "/accounts/otp/"
VERIFY = "/accounts/otp/verify/"


@pytest.fixture
def no_throttle(settings: Any) -> None:
    """django-otp makes a device wait 1, 2, 4... s after each wrong code; tests that follow a wrong code
    with a right one at once switch that off (``test_wrong_codes_are_throttled`` keeps it)."""
    settings.OTP_TOTP_THROTTLE_FACTOR = 0


def _code(key: bytes, steps_ahead: int = 0) -> str:
    return f"{totp(key, drift=steps_ahead):06d}"


def _wrong_code(key: bytes) -> str:
    """A code that no time step within the tolerance window (and one beyond) accepts."""
    near = {_code(key, offset) for offset in range(-2, 3)}
    return next(c for c in (f"{n:06d}" for n in range(0, 1_000_000, 7919)) if c not in near)


def _rows(since: int = 0) -> list[tuple[str, str]]:
    return [(r.action, r.outcome) for r in AuditEvent.objects.filter(seq__gt=since).order_by("seq")]


def _last_seq() -> int:
    row = AuditEvent.objects.order_by("-seq").first()
    return row.seq if row is not None else 0


def _device(user: Any) -> Any:
    return TOTPDevice.objects.create(user=user, name="phone", confirmed=True)


def _password_step(client: Client, username: str, next_url: str = "") -> Any:
    suffix = f"?next={next_url}" if next_url else ""
    return client.post(LOGIN + suffix, {"username": username, "password": PASSWORD})


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


# Enrolment -------------------------------------------------------------------------------------------


def test_enrol_page_needs_a_signed_in_user(client: Client) -> None:
    response = client.get(OTP)
    assert response.status_code == 302 and response["Location"] == f"{LOGIN}?next={OTP}"


def test_enrol_page_shows_an_inline_qr_code_and_the_base32_secret_and_stores_nothing(
    client: Client, clinician: Any
) -> None:
    client.force_login(clinician)
    response = client.get(OTP)
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")  # the secret is on it
    html = response.content.decode()
    assert "<svg" in html and 'role="img"' in html
    assert "<img" not in html and "https://" not in html.split("<main", 1)[1]  # no external request
    shown = re.search(r'id="otp-secret">([A-Z2-7 ]+)<', html)
    assert shown is not None
    key_hex = client.session[OTP_ENROL_SESSION_KEY]["key"]
    assert b32decode(shown.group(1).replace(" ", "")).hex() == key_hex
    assert client.get(OTP).content.decode().count(shown.group(1)) == 1  # same secret on a reload
    assert not TOTPDevice.objects.exists()
    assert not AuditEvent.objects.exists()


def test_enrol_with_a_current_code_confirms_the_device_and_verifies_the_session(
    client: Client, clinician: Any
) -> None:
    client.force_login(clinician)
    html = client.get(OTP).content.decode()
    shown = re.search(r'id="otp-secret">([A-Z2-7 ]+)<', html)
    assert shown is not None
    key = b32decode(shown.group(1).replace(" ", ""))  # what someone typing the key into an app has
    response = client.post(OTP, {"token": _code(key)}, headers={"X-Request-Id": "enrol-1"})
    assert response.status_code == 302 and response["Location"] == OTP
    device = TOTPDevice.objects.get(user=clinician)
    assert device.confirmed and device.bin_key == key and device.last_t >= 0
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    assert OTP_ENROL_SESSION_KEY not in client.session
    [row] = AuditEvent.objects.all()
    assert (row.action, row.outcome, row.actor_id, row.object_id) == (
        "auth.otp.enroll",
        "success",
        str(clinician.pk),
        str(clinician.pk),
    )
    assert row.request_id == "enrol-1" and row.detail == {"device_id": str(device.pk), "kind": "totp"}
    assert key.hex() not in str(row.detail) and shown.group(1) not in str(row.detail)
    page = client.get(OTP)
    assert "accounts/otp_manage.html" in [t.name for t in page.templates]
    assert user_second_factor_ok(page.wsgi_request.user)


def test_enrol_with_a_wrong_code_is_refused_and_audited(client: Client, clinician: Any) -> None:
    client.force_login(clinician)
    client.get(OTP)
    key = bytes.fromhex(client.session[OTP_ENROL_SESSION_KEY]["key"])
    response = client.post(OTP, {"token": _wrong_code(key)})
    assert response.status_code == 200 and "not right" in response.content.decode()
    assert not TOTPDevice.objects.exists()
    assert _rows() == [("auth.otp.enroll", "failure")]
    assert client.post(OTP, {"token": "12ab56"}).status_code == 200  # not digits: the form refuses it
    assert _rows() == [("auth.otp.enroll", "failure")]


# Signing in ------------------------------------------------------------------------------------------


def test_login_without_a_device_is_one_step_and_one_auth_login_row(client: Client, clinician: Any) -> None:
    response = _password_step(client, "dr-ward")
    assert response.status_code == 302 and response["Location"] == "/review/"
    assert _signed_in(client) and OTP_PENDING_SESSION_KEY not in client.session
    assert _rows() == [("auth.login", "success")]
    assert AuditEvent.objects.get().detail["second_factor"] == "none"


def test_login_with_a_device_waits_for_the_code_before_signing_in(client: Client, admin: Any) -> None:
    device = _device(admin)
    response = _password_step(client, "admin-abe", next_url="/admin/")
    assert response.status_code == 302 and response["Location"] == f"{VERIFY}?next=%2Fadmin%2F"
    assert not _signed_in(client)  # the password alone signs nobody in
    assert not AuditEvent.objects.exists()
    assert client.get("/admin/").status_code == 302  # the admin is not open to a password alone
    page = client.get(response["Location"])
    assert page.status_code == 200 and "admin-abe" in page.content.decode()
    assert 'autocomplete="one-time-code"' in page.content.decode()

    done = client.post(
        VERIFY, {"token": _code(device.bin_key), "next": "/admin/"}, headers={"X-Request-Id": "otp-1"}
    )
    assert done.status_code == 302 and done["Location"] == "/admin/"
    assert client.session["_auth_user_id"] == str(admin.pk)
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    assert OTP_PENDING_SESSION_KEY not in client.session
    assert _rows() == [("auth.otp.verify", "success"), ("auth.login", "success")]  # one login row
    verify, login = AuditEvent.objects.order_by("seq")
    assert (verify.actor_id, login.actor_id, login.request_id) == (str(admin.pk), str(admin.pk), "otp-1")
    assert login.detail["second_factor"] == "totp"
    later = client.get("/admin/")
    assert later.status_code == 200
    assert later.wsgi_request.user.is_verified()  # type: ignore[union-attr]
    assert audit_chain_verify().ok


def test_wrong_code_is_refused_and_audited(client: Client, clinician: Any, no_throttle: None) -> None:
    device = _device(clinician)
    _password_step(client, "dr-ward")
    response = client.post(VERIFY, {"token": _wrong_code(device.bin_key)})
    assert response.status_code == 200 and "not right" in response.content.decode()
    assert not _signed_in(client)
    [row] = AuditEvent.objects.all()
    assert (row.action, row.outcome) == ("auth.otp.verify_failed", "failure")
    assert row.actor_type == "anonymous"  # the session is not signed in
    assert (row.object_type, row.object_id) == ("User", str(clinician.pk))
    assert row.detail == {"stage": "login", "reason": "wrong code", "failures": 1, "sign_in_dropped": False}
    ok = client.post(VERIFY, {"token": _code(device.bin_key)})
    assert ok.status_code == 302 and _signed_in(client)
    assert _rows(row.seq) == [("auth.otp.verify", "success"), ("auth.login", "success")]


def test_wrong_codes_are_throttled(client: Client, clinician: Any) -> None:
    device = _device(clinician)
    _password_step(client, "dr-ward")
    client.post(VERIFY, {"token": _wrong_code(device.bin_key)})
    # Straight after a wrong code even the right one is refused: django-otp makes the device wait.
    response = client.post(VERIFY, {"token": _code(device.bin_key)})
    assert "wait a few seconds" in response.content.decode()
    assert not _signed_in(client)
    assert AuditEvent.objects.order_by("-seq").first().detail["reason"] == "throttled"  # type: ignore[union-attr]
    assert TOTPDevice.objects.get().throttling_failure_count == 1


def test_replayed_code_is_refused(client: Client, clinician: Any, no_throttle: None) -> None:
    client.force_login(clinician)
    client.get(OTP)
    key = bytes.fromhex(client.session[OTP_ENROL_SESSION_KEY]["key"])
    enrol_code = _code(key)
    assert client.post(OTP, {"token": enrol_code}).status_code == 302
    client.post("/accounts/logout/")

    # The code that confirmed the enrolment cannot sign in: its time step is the device's last used one.
    _password_step(client, "dr-ward")
    assert "not right" in client.post(VERIFY, {"token": enrol_code}).content.decode()
    assert not _signed_in(client)
    next_code = _code(key, steps_ahead=1)  # the next time step's code is within the tolerance
    assert client.post(VERIFY, {"token": next_code}).status_code == 302 and _signed_in(client)
    client.post("/accounts/logout/")

    # Nor can a code that has signed in once sign in again.
    _password_step(client, "dr-ward")
    assert "not right" in client.post(VERIFY, {"token": next_code}).content.decode()
    assert not _signed_in(client)
    failures = AuditEvent.objects.filter(action="auth.otp.verify_failed")
    assert [r.detail["reason"] for r in failures] == ["wrong code", "wrong code"]


def test_totp_device_refuses_codes_at_or_before_its_last_time_step(clinician: Any, no_throttle: None) -> None:
    """django-otp's own rule that the replay test relies on: a code is accepted only at a time step later
    than the last accepted one (``last_t``)."""
    device = _device(clinician)
    now = _code(device.bin_key)
    assert device.verify_token(now)
    last_t = device.last_t
    assert not device.verify_token(now)
    assert not device.verify_token(_code(device.bin_key, steps_ahead=-1))
    assert device.verify_token(_code(device.bin_key, steps_ahead=1))
    assert device.last_t == last_t + 1


def test_too_many_wrong_codes_drop_the_waiting_sign_in(
    client: Client, clinician: Any, no_throttle: None
) -> None:
    device = _device(clinician)
    _password_step(client, "dr-ward")
    wrong = _wrong_code(device.bin_key)
    for _ in range(OTP_PENDING_MAX_FAILURES - 1):
        assert "not right" in client.post(VERIFY, {"token": wrong}).content.decode()
    last = client.post(VERIFY, {"token": wrong})
    assert "Sign in again" in last.content.decode()
    assert OTP_PENDING_SESSION_KEY not in client.session
    rows = list(AuditEvent.objects.order_by("seq"))
    assert [r.detail["failures"] for r in rows] == list(range(1, OTP_PENDING_MAX_FAILURES + 1))
    assert rows[-1].detail["sign_in_dropped"] is True
    # The right code now signs nobody in: the password must be typed again.
    after = client.post(VERIFY, {"token": _code(device.bin_key)})
    assert after.status_code == 302 and after["Location"] == LOGIN
    assert not _signed_in(client)


def test_waiting_sign_in_expires(client: Client, clinician: Any) -> None:
    device = _device(clinician)
    _password_step(client, "dr-ward")
    session = client.session
    session[OTP_PENDING_SESSION_KEY] = {**session[OTP_PENDING_SESSION_KEY], "started": int(time.time()) - 301}
    session.save()
    response = client.post(VERIFY, {"token": _code(device.bin_key)})
    assert response.status_code == 302 and response["Location"] == LOGIN
    assert not _signed_in(client) and not AuditEvent.objects.exists()


def test_password_changed_while_waiting_cancels_the_sign_in(client: Client, clinician: Any) -> None:
    device = _device(clinician)
    _password_step(client, "dr-ward")
    clinician.set_password("a different one entirely")
    clinician.save()
    client.post(VERIFY, {"token": _code(device.bin_key)})
    assert not _signed_in(client)


def test_verify_page_with_nothing_to_verify(client: Client, clinician: Any) -> None:
    response = client.get(f"{VERIFY}?next=/audit/")
    assert response.status_code == 302 and response["Location"] == f"{LOGIN}?next=%2Faudit%2F"
    client.force_login(clinician)  # no device: nothing to verify, straight on
    response = client.get(f"{VERIFY}?next=/audit/")
    assert response.status_code == 302 and response["Location"] == "/audit/"


def test_otp_views_need_csrf(clinician: Any) -> None:
    strict = Client(enforce_csrf_checks=True)
    assert strict.post(VERIFY, {"token": "123456"}).status_code == 403
    strict.force_login(clinician)
    assert strict.post(OTP, {"token": "123456"}).status_code == 403
    assert not AuditEvent.objects.exists()


# A session signed in before the device was enrolled ------------------------------------------------


def test_unverified_session_is_sent_to_verify_and_verifies_without_a_new_login(
    client: Client, clinician: Any
) -> None:
    client.force_login(clinician)  # e.g. signed in on another machine before enrolling there
    device = _device(clinician)
    page = client.get(OTP)
    assert page.status_code == 302 and page["Location"] == f"{VERIFY}?next=%2Faccounts%2Fotp%2F"
    assert not user_second_factor_ok(page.wsgi_request.user)
    response = client.post(VERIFY, {"token": _code(device.bin_key), "next": OTP})
    assert response.status_code == 302 and response["Location"] == OTP
    assert _rows() == [("auth.otp.verify", "success")]  # no second auth.login: the session was signed in
    assert AuditEvent.objects.get().detail["stage"] == "session"
    assert user_second_factor_ok(client.get(OTP).wsgi_request.user)


def test_user_second_factor_ok(client: Client, clinician: Any) -> None:
    anonymous = client.get(LOGIN).wsgi_request.user
    assert user_second_factor_ok(anonymous)
    client.force_login(clinician)
    assert user_second_factor_ok(client.get(LOGIN).wsgi_request.user)  # no device
    _device(clinician)
    assert not user_second_factor_ok(client.get(LOGIN).wsgi_request.user)  # device, session not verified
    assert not user_second_factor_ok(clinician)  # a user object not from a request is never verified


# Removal -----------------------------------------------------------------------------------------------


def _verified_login(client: Client, username: str, device: Any) -> None:
    _password_step(client, username)
    assert client.post(VERIFY, {"token": _code(device.bin_key)}).status_code == 302


def test_removal_requires_the_password(client: Client, clinician: Any) -> None:
    device = _device(clinician)
    _verified_login(client, "dr-ward", device)
    page = client.get(OTP)
    assert page.status_code == 200 and "phone" in page.content.decode()
    since = _last_seq()
    refused = client.post(OTP, {"password": "wrong"})
    assert refused.status_code == 200 and "password is not right" in refused.content.decode()
    assert TOTPDevice.objects.filter(pk=device.pk).exists()
    assert client.post(OTP, {}).status_code == 200  # no password: the form refuses, nothing happens
    assert _rows(since) == [("auth.otp.remove", "failure")]
    assert AuditEvent.objects.get(seq=since + 1).detail == {"reason": "wrong password"}

    removed = client.post(OTP, {"password": PASSWORD})
    assert removed.status_code == 302 and removed["Location"] == OTP
    assert not TOTPDevice.objects.exists()
    assert DEVICE_ID_SESSION_KEY not in client.session
    assert _signed_in(client)
    assert _rows(since + 1) == [("auth.otp.remove", "success")]
    assert AuditEvent.objects.get(seq=since + 2).detail == {"removed": 1}
    assert "accounts/otp_enrol.html" in [t.name for t in client.get(OTP).templates]
    client.post("/accounts/logout/")
    assert _password_step(client, "dr-ward")["Location"] == "/review/"  # one step again


def test_password_re_entry_elsewhere_needs_no_code(client: Client, clinician: Any) -> None:
    """A password checked again (as the sign-off does) works for a user with a device and leaves the
    session signed in and verified."""
    device = _device(clinician)
    _verified_login(client, "dr-ward", device)
    request = client.get(LOGIN).wsgi_request
    assert authenticate(request, username="dr-ward", password=PASSWORD) == clinician
    assert client.get(LOGIN).wsgi_request.user.is_verified()  # type: ignore[union-attr]


# Required roles --------------------------------------------------------------------------------------


def test_required_role_without_a_device_is_sent_to_enrol(
    client: Client, admin: Any, clinician: Any, settings: Any
) -> None:
    settings.OTP_REQUIRED_ROLES = ("admin",)
    response = _password_step(client, "admin-abe", next_url="/admin/")
    assert response.status_code == 302 and response["Location"] == f"{OTP}?next=%2Fadmin%2F"
    page = client.get(response["Location"])
    assert "Your role needs a second factor" in page.content.decode()
    key = bytes.fromhex(client.session[OTP_ENROL_SESSION_KEY]["key"])
    done = client.post(OTP, {"token": _code(key), "next": "/admin/"})
    assert done.status_code == 302 and done["Location"] == "/admin/"
    client.post("/accounts/logout/")
    # A role not in the setting signs in as before.
    other = Client()
    assert _password_step(other, "dr-ward")["Location"] == "/review/"


def test_by_default_no_role_requires_a_second_factor(client: Client, admin: Any) -> None:
    assert _password_step(client, "admin-abe", next_url="/admin/")["Location"] == "/admin/"
