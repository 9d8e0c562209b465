"""Signing in and out, through the real views: each produces exactly its audit row, and nothing else."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.selectors import audit_chain_verify
from tests.unit.audit.personas import PASSWORD

pytestmark = pytest.mark.django_db


def _rows() -> list[AuditEvent]:
    return list(AuditEvent.objects.order_by("seq"))


def test_login_page_renders_with_the_base_template(client: Client) -> None:
    response = client.get("/accounts/login/")
    assert response.status_code == 200
    html = response.content.decode()
    assert '<html lang="en">' in html and 'id="main"' in html
    assert 'autocomplete="current-password"' in html
    assert response["Cache-Control"].startswith("max-age=0")
    assert not AuditEvent.objects.exists()  # looking at the form is not an event


def test_login_success_is_one_auth_login_row(client: Client, clinician: Any) -> None:
    before = AuditEvent.objects.count()
    response = client.post(
        "/accounts/login/",
        {"username": "dr-ward", "password": PASSWORD},
        headers={"X-Request-Id": "login-req-1"},
    )
    assert response.status_code == 302
    assert response["Location"] == "/review/"  # a clinician lands on the review queue
    assert client.session["_auth_user_id"] == str(clinician.pk)
    rows = _rows()[before:]
    assert [(r.action, r.outcome) for r in rows] == [("auth.login", "success")]
    login = rows[0]
    assert (login.actor_type, login.actor_id) == ("user", str(clinician.pk))
    assert (login.object_type, login.object_id) == ("User", str(clinician.pk))
    assert login.request_id == "login-req-1"
    assert audit_chain_verify().ok


def test_login_redirects_to_a_safe_next_only(client: Client, clinician: Any) -> None:
    ok = client.post("/accounts/login/?next=/audit/", {"username": "dr-ward", "password": PASSWORD})
    assert ok["Location"] == "/audit/"
    client.logout()
    evil = client.post(
        "/accounts/login/", {"username": "dr-ward", "password": PASSWORD, "next": "https://evil.example/"}
    )
    assert evil["Location"] == "/review/"


def test_wrong_password_is_one_failed_row_naming_the_account_not_the_actor(
    client: Client, clinician: Any
) -> None:
    response = client.post("/accounts/login/", {"username": "dr-ward", "password": "wrong"})
    assert response.status_code == 200
    assert "not right" in response.content.decode()
    assert "_auth_user_id" not in client.session
    rows = _rows()
    assert [(r.action, r.outcome) for r in rows] == [("auth.login_failed", "failure")]
    failed = rows[0]
    assert failed.actor_type == "anonymous"  # the caller proved nothing
    assert (failed.object_type, failed.object_id) == ("User", str(clinician.pk))
    assert failed.detail == {"user_known": True, "failures": 1}  # one towards the lockout


def test_unknown_username_is_kept_only_as_a_keyed_hash(client: Client) -> None:
    typed = "Margaret Okafor"  # a patient's name typed into the username box
    client.post("/accounts/login/", {"username": typed, "password": "x"})
    client.post("/accounts/login/", {"username": typed, "password": "y"})
    rows = _rows()
    assert [r.action for r in rows] == ["auth.login_failed", "auth.login_failed"]
    assert rows[0].detail["user_known"] is False
    assert rows[0].detail["username_hmac"] == rows[1].detail["username_hmac"]  # attempts correlate
    assert rows[0].object_id == ""
    for row in rows:
        text = json.dumps([row.actor_id, row.object_id, row.request_id, row.detail])
        assert "Margaret" not in text and "Okafor" not in text


def test_inactive_user_cannot_sign_in(client: Client, clinician: Any) -> None:
    clinician.is_active = False
    clinician.save(update_fields=["is_active"])
    client.post("/accounts/login/", {"username": "dr-ward", "password": PASSWORD})
    assert "_auth_user_id" not in client.session
    assert [r.action for r in _rows()] == ["auth.login_failed"]


def test_logout_is_post_only_and_one_auth_logout_row(client: Client, clinician: Any) -> None:
    client.force_login(clinician)
    assert client.get("/accounts/logout/").status_code == 405
    assert "_auth_user_id" in client.session
    response = client.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert "_auth_user_id" not in client.session
    rows = _rows()
    assert [(r.action, r.actor_id) for r in rows] == [("auth.logout", str(clinician.pk))]


def test_logout_when_nobody_is_signed_in_writes_nothing(client: Client) -> None:
    assert client.post("/accounts/logout/").status_code == 302
    assert not AuditEvent.objects.exists()


def test_login_and_logout_need_csrf(clinician: Any) -> None:
    strict = Client(enforce_csrf_checks=True)
    assert strict.post("/accounts/login/", {"username": "dr-ward", "password": PASSWORD}).status_code == 403
    assert not AuditEvent.objects.exists()


def test_admin_login_goes_through_the_audited_view(client: Client, admin: Any) -> None:
    response = client.get("/admin/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert "accounts/login.html" in [t.name for t in page.templates]
    signed_in = client.post("/admin/login/?next=/admin/", {"username": "admin-abe", "password": PASSWORD})
    assert signed_in.status_code == 302 and signed_in["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    out = client.post("/admin/logout/")
    assert out.status_code == 302
    assert [r.action for r in _rows()] == ["auth.login", "auth.logout"]


def test_signed_in_user_without_permission_is_not_redirected_in_a_loop(
    client: Client, clinician: Any
) -> None:
    client.force_login(clinician)  # not staff: the admin sends them to its login page
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 200
    assert "signed in as" in response.content.decode()
