"""Idle and absolute session time-outs per role, through the real sign-in view, middleware and pages. Time
is moved by replacing ``clinical_ai.accounts.sessions.clock`` rather than by waiting."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from clinical_ai.accounts import sessions
from clinical_ai.accounts.models import Membership, Role
from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.selectors import audit_chain_verify
from tests.unit.audit.personas import PASSWORD

pytestmark = pytest.mark.django_db

T0 = 1_800_000_000
# The queue's automatic refresh, as htmx sends it (queue-refresh.js triggers it on #queue-results).
QUEUE_REFRESH_HEADERS = {
    "HX-Request": "true",
    "HX-Trigger": "queue-results",
    "HX-Target": "queue-results",
    "HX-Current-URL": "http://testserver/review/?urgency=critical",
}


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = T0
        monkeypatch.setattr(sessions, "clock", lambda: self.now)

    def advance(self, seconds: int) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture(autouse=True)
def _limits(settings: Any) -> None:
    settings.SESSION_IDLE_SECONDS = {"clinician": 1800, "auditor": 900, "admin": 600, "default": 900}
    settings.SESSION_ABSOLUTE_SECONDS = {
        "clinician": 12 * 3600,
        "auditor": 8 * 3600,
        "admin": 4 * 3600,
        "default": 3600,
    }


def _sign_in(client: Client, username: str) -> None:
    response = client.post("/accounts/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302, response.content


def _expired_rows() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="auth.session.expired").order_by("seq"))


def test_sign_in_stamps_the_session(client: Client, clock: Clock, clinician: Any) -> None:
    _sign_in(client, "dr-ward")
    assert client.session[sessions.SESSION_STAMPS_KEY] == {"signed_in_at": T0, "last_activity_at": T0}
    # Any other way into django.contrib.auth.login stamps it too (user_logged_in).
    other = Client()
    clock.advance(5)
    other.force_login(clinician)
    assert other.session[sessions.SESSION_STAMPS_KEY] == {"signed_in_at": T0 + 5, "last_activity_at": T0 + 5}


def test_activity_keeps_the_session_and_idling_ends_it(client: Client, clock: Clock, clinician: Any) -> None:
    _sign_in(client, "dr-ward")
    for _ in range(3):  # 3 x 25 minutes, each with a page opened: never 30 minutes idle
        clock.advance(25 * 60)
        assert client.get("/review/").status_code == 200
    assert client.session[sessions.SESSION_STAMPS_KEY]["last_activity_at"] == T0 + 75 * 60
    clock.advance(30 * 60)
    response = client.get("/review/?urgency=critical")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=%2Freview%2F%3Furgency%3Dcritical"
    assert "_auth_user_id" not in client.session
    [row] = _expired_rows()
    assert (row.actor_type, row.actor_id) == ("user", str(clinician.pk))
    assert (row.object_type, row.object_id) == ("User", str(clinician.pk))
    assert row.detail == {"reason": "idle", "after_seconds": 1800, "elapsed_seconds": 1800}
    assert audit_chain_verify().ok
    # The sign-in page says why, once, in plain words.
    page = client.get(response["Location"]).content.decode()
    assert "You were signed out after 30 minutes without activity. Sign in again to go on." in page
    assert "without activity" not in client.get("/accounts/login/").content.decode()
    # Signing in again starts a new session with new stamps.
    _sign_in(client, "dr-ward")
    assert client.get("/review/").status_code == 200
    assert len(_expired_rows()) == 1


def test_the_absolute_limit_ends_an_active_session(client: Client, clock: Clock, clinician: Any) -> None:
    _sign_in(client, "dr-ward")
    for _ in range(12 * 60 // 20 - 1):  # active every 20 minutes for almost 12 hours
        clock.advance(20 * 60)
        assert client.get("/review/").status_code == 200, clock.now - T0
    clock.advance(20 * 60)
    response = client.get("/review/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    [row] = _expired_rows()
    assert row.detail == {"reason": "absolute", "after_seconds": 12 * 3600, "elapsed_seconds": 12 * 3600}
    page = client.get("/accounts/login/").content.decode()
    assert "You were signed out at the end of your 12-hour session. Sign in again to go on." in page


def test_the_strictest_limit_over_the_roles_applies(
    client: Client, clock: Clock, clinician: Any, organization: Any, other_organization: Any
) -> None:
    # A clinician here who is an admin at another site: the admin's 10 idle minutes apply.
    Membership.objects.create(user=clinician, organization=other_organization, role=Role.ADMIN)
    limits = sessions.session_limits(clinician)
    assert (limits.idle_seconds, limits.absolute_seconds) == (600, 4 * 3600)
    _sign_in(client, "dr-ward")
    clock.advance(599)
    assert client.get("/review/").status_code == 200
    clock.advance(600)
    assert client.get("/review/").status_code == 302
    assert _expired_rows()[0].detail["after_seconds"] == 600


def test_limits_for_no_role_and_for_a_superuser(superuser: Any, db: None) -> None:
    from tests.unit.audit.personas import make_user

    nobody = make_user("no-role", None, None)
    assert sessions.session_limits(nobody) == sessions.SessionLimits(900, 3600)
    assert sessions.session_limits(superuser) == sessions.SessionLimits(600, 4 * 3600)


def test_the_queue_refresh_is_not_activity_but_ends_an_expired_session(
    client: Client, clock: Clock, clinician: Any
) -> None:
    _sign_in(client, "dr-ward")
    # The ward PC is left on the queue: it refreshes every 30 seconds for 29 minutes.
    for _ in range(29 * 2):
        clock.advance(30)
        response = client.get("/review/?urgency=critical&seen=x", headers=QUEUE_REFRESH_HEADERS)
        assert response.status_code in (200, 204)
    assert client.session[sessions.SESSION_STAMPS_KEY]["last_activity_at"] == T0
    clock.advance(60)  # 30 minutes after the last click: the next refresh ends the session
    response = client.get("/review/?urgency=critical&seen=x", headers=QUEUE_REFRESH_HEADERS)
    # htmx loads the sign-in page as the whole page (a redirect would be swapped into the queue).
    assert response.status_code == 200
    assert response["HX-Redirect"] == "/accounts/login/?next=%2Freview%2F%3Furgency%3Dcritical"
    assert "_auth_user_id" not in client.session
    [row] = _expired_rows()
    assert row.detail["reason"] == "idle"


def test_other_htmx_requests_are_activity(client: Client, clock: Clock, clinician: Any) -> None:
    _sign_in(client, "dr-ward")
    clock.advance(20 * 60)
    # Changing a filter (the filter form, no id) is someone at the keyboard.
    response = client.get("/review/?urgency=critical", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert client.session[sessions.SESSION_STAMPS_KEY]["last_activity_at"] == T0 + 20 * 60


def test_a_form_sent_after_the_limit_goes_to_sign_in_and_changes_nothing(
    client: Client, clock: Clock, clinician: Any
) -> None:
    _sign_in(client, "dr-ward")
    before = AuditEvent.objects.count()
    clock.advance(31 * 60)
    response = client.post("/accounts/otp/", {"token": "123456"})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=%2Faccounts%2Fotp%2F"
    assert [row.action for row in AuditEvent.objects.order_by("seq")[before:]] == ["auth.session.expired"]


def test_a_session_without_stamps_counts_from_its_next_request(
    client: Client, clock: Clock, clinician: Any
) -> None:
    client.force_login(clinician)
    session = client.session
    del session[sessions.SESSION_STAMPS_KEY]  # as a session signed in before the time-outs existed
    session.save()
    clock.advance(3600)
    assert client.get("/review/").status_code == 200
    stamped = T0 + 3600
    assert client.session[sessions.SESSION_STAMPS_KEY] == {
        "signed_in_at": stamped,
        "last_activity_at": stamped,
    }


def test_token_endpoints_and_anonymous_pages_are_untouched(client: Client, clock: Clock) -> None:
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    assert "Set-Cookie" not in str(response.cookies) and "Cookie" not in response.get("Vary", "")
    assert client.get("/accounts/login/").status_code == 200
    assert not _expired_rows()


def test_signing_out_by_hand_writes_no_expiry(client: Client, clock: Clock, clinician: Any) -> None:
    _sign_in(client, "dr-ward")
    clock.advance(5 * 60)
    client.post("/accounts/logout/")
    clock.advance(60 * 60)
    assert client.get("/accounts/login/").status_code == 200
    assert not _expired_rows()


@pytest.mark.parametrize(
    ("seconds", "reason", "text"),
    [
        (900, "idle", "after 15 minutes without activity"),
        (3600, "idle", "after 1 hour without activity"),
        (5400, "idle", "after 90 minutes without activity"),
        (4 * 3600, "absolute", "at the end of your 4-hour session"),
        (5400, "absolute", "at the end of your session (90 minutes)"),
    ],
)
def test_notice_wording(client: Client, seconds: int, reason: str, text: str) -> None:
    session = client.session
    session[sessions.SIGNED_OUT_NOTICE_KEY] = {"reason": reason, "after_seconds": seconds}
    assert text in sessions.signed_out_notice_pop(session)
    assert sessions.signed_out_notice_pop(session) == ""


def test_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from clinical_ai.core.env import ConfigurationError, env_int_map

    default = {"clinician": 1800, "admin": 900, "default": 900}
    keys = ("clinician", "auditor", "admin", "default")
    monkeypatch.delenv("X_LIMITS", raising=False)
    assert env_int_map("X_LIMITS", default, keys=keys) == default
    monkeypatch.setenv("X_LIMITS", " clinician = 1200 , auditor=600,")
    assert env_int_map("X_LIMITS", default, keys=keys) == {**default, "clinician": 1200, "auditor": 600}
    for bad in ("surgeon=10", "clinician", "clinician=0", "clinician=ten", "admin=-5"):
        monkeypatch.setenv("X_LIMITS", bad)
        with pytest.raises(ConfigurationError, match="X_LIMITS"):
            env_int_map("X_LIMITS", default, keys=keys)
