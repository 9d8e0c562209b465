"""The signing loop a ward can trust (issue 15): a decision typed while the session ended is kept through
signing in again (the second factor included); the sign URL never answers 405; a decision that came too
late is on record and says who decided and when; a signed decision goes on to the next one waiting; each
role lands on its work after signing in; the signature password is never filled in by the browser."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinical_ai.accounts.models import Membership, Role
from clinical_ai.audit.models import AuditEvent
from clinical_ai.review.drafts import DRAFTS_SESSION_KEY
from clinical_ai.review.models import Decision, Suggestion
from tests.unit.review.conftest import PASSWORD, QueueRows, make_user, store_finding
from tests.unit.review.findings import news2_finding, news2_manifest

pytestmark = pytest.mark.django_db

KEPT_NOTE = "Your decision was kept while you signed in again: check it and sign."
COMMENT = "Observations taken during a nebuliser; repeat set ordered."


def page_url(suggestion: Suggestion) -> str:
    return f"/review/suggestions/{suggestion.external_id}/"


def sign_url(suggestion: Suggestion) -> str:
    return f"{page_url(suggestion)}sign/"


def form_token(client: Client, suggestion: Suggestion) -> str:
    """The page as the clinician had it open: the token its form carries."""
    html = client.get(page_url(suggestion)).content.decode()
    found = re.search(r'name="drafted_for" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def rejection(token: str, **extra: str) -> dict[str, str]:
    return {
        "outcome": "rejected",
        "reason_code": "other",
        "comment": COMMENT,
        "password": PASSWORD,
        "drafted_for": token,
        **extra,
    }


def session_ends(client: Client) -> None:
    """The session cookie is gone (expired, or the browser dropped it): the next request is anonymous."""
    client.cookies.pop(settings.SESSION_COOKIE_NAME)


def assert_rejection_filled_in(html: str) -> None:
    assert re.search(r'value="rejected"[^>]*checked', html)
    assert re.search(r'<option value="other" selected>', html)
    assert COMMENT in html
    assert re.search(r'<input type="password" name="password"(?![^>]*value=)', html)  # never kept


# --- point 5: the sign URL and the decision kept ---------------------------------------------------


def test_get_on_the_sign_url_keeps_the_queue_it_came_from(
    client: Client, clinician: Any, risk_suggestion: Suggestion
) -> None:
    client.force_login(clinician)
    response = client.get(sign_url(risk_suggestion), {"queue": "urgency=critical"})
    assert response.status_code == 302
    assert response["Location"] == f"{page_url(risk_suggestion)}?queue=urgency%3Dcritical"
    anonymous = Client().get(sign_url(risk_suggestion))
    assert anonymous.status_code == 302 and anonymous["Location"] == page_url(risk_suggestion)


def test_a_decision_sent_after_the_session_ended_is_kept_through_signing_in_again(
    client: Client, clinician: Any, risk_suggestion: Suggestion
) -> None:
    client.force_login(clinician)
    token = form_token(client, risk_suggestion)
    session_ends(client)
    response = client.post(sign_url(risk_suggestion), rejection(token))
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={page_url(risk_suggestion)}"
    assert not Decision.objects.exists()
    kept = str(dict(client.session.items()))
    assert PASSWORD not in kept  # the password is never kept
    assert "nebuliser" not in kept and "rejected" not in kept  # the rest is sealed, not in clear

    signed_in = client.post(response["Location"], {"username": "dr-ward", "password": PASSWORD})
    assert signed_in["Location"] == page_url(risk_suggestion)
    html = client.get(page_url(risk_suggestion)).content.decode()
    assert KEPT_NOTE in html
    assert_rejection_filled_in(html)
    assert KEPT_NOTE not in client.get(page_url(risk_suggestion)).content.decode()  # said once

    assert client.post(sign_url(risk_suggestion), rejection(token)).status_code == 302
    assert Decision.objects.get().outcome == "rejected"
    assert not client.session.get(DRAFTS_SESSION_KEY)  # signed: the draft is gone


def test_the_draft_survives_the_second_factor_step(
    client: Client, clinician: Any, risk_suggestion: Suggestion
) -> None:
    device = TOTPDevice.objects.create(user=clinician, name="phone", confirmed=True)
    client.force_login(clinician)
    session = client.session
    session["otp_device_id"] = device.persistent_id
    session.save()
    token = form_token(client, risk_suggestion)
    session_ends(client)
    to_login = client.post(sign_url(risk_suggestion), rejection(token))
    to_code = client.post(to_login["Location"], {"username": "dr-ward", "password": PASSWORD})
    assert to_code["Location"].startswith("/accounts/otp/verify/")
    verified = client.post(to_code["Location"], {"token": f"{totp(device.bin_key):06d}"})
    assert verified["Location"] == page_url(risk_suggestion)
    html = client.get(page_url(risk_suggestion)).content.decode()
    assert KEPT_NOTE in html
    assert_rejection_filled_in(html)


def test_someone_else_signing_in_does_not_see_the_draft(
    client: Client, clinician: Any, organization: Any, risk_suggestion: Suggestion
) -> None:
    make_user("dr-night", organization, Role.CLINICIAN)
    client.force_login(clinician)
    token = form_token(client, risk_suggestion)
    session_ends(client)
    client.post(sign_url(risk_suggestion), rejection(token))
    client.post("/accounts/login/", {"username": "dr-night", "password": PASSWORD})
    html = client.get(page_url(risk_suggestion)).content.decode()
    assert KEPT_NOTE not in html and COMMENT not in html
    assert not client.session.get(DRAFTS_SESSION_KEY)


def test_a_form_without_a_valid_token_keeps_no_draft(client: Client, risk_suggestion: Suggestion) -> None:
    response = client.post(sign_url(risk_suggestion), rejection("forged"))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert not client.session.get(DRAFTS_SESSION_KEY)


def test_a_refused_form_is_kept_so_a_reload_finds_it(
    client: Client, clinician: Any, risk_suggestion: Suggestion
) -> None:
    client.force_login(clinician)
    token = form_token(client, risk_suggestion)
    refused = client.post(sign_url(risk_suggestion), rejection(token, password="not it"))
    assert refused.status_code == 400
    reload = client.get(sign_url(risk_suggestion), follow=True)  # what a reload of the address asks
    assert reload.status_code == 200
    html = reload.content.decode()
    assert_rejection_filled_in(html)
    assert KEPT_NOTE not in html  # the session did not end: nothing to explain


# --- point 6: too late, on record, with who and when ----------------------------------------------


def test_a_decision_too_late_is_on_record_and_names_who_decided_and_when(
    client: Client, clinician: Any, organization: Any, risk_suggestion: Suggestion
) -> None:
    colleague = make_user("dr-second", organization, Role.CLINICIAN)
    client.force_login(colleague)
    stale_token = form_token(client, risk_suggestion)  # the colleague's tab, opened while pending
    first = Client()
    first.force_login(clinician)
    assert (
        first.post(sign_url(risk_suggestion), rejection(form_token(first, risk_suggestion))).status_code
        == 302
    )
    decision = Decision.objects.get()

    response = client.post(
        sign_url(risk_suggestion), {"outcome": "accepted", "password": "x", "drafted_for": stale_token}
    )
    assert response.status_code == 409
    html = response.content.decode()
    when = decision.signed_at.astimezone(organization.zone).strftime("%Y-%m-%d %H:%M %Z")  # the site's zone
    assert f"Not signed: this suggestion was already rejected by Wanda Ward at {when}." in html
    assert '<a href="#decision-heading">See the decision</a>' in html
    assert 'id="decision-heading"' in html
    refused = AuditEvent.objects.get(action="review.decision.sign", outcome="failure")
    assert refused.actor_id == str(colleague.pk)
    assert refused.detail["refused"] == "already-decided"
    assert refused.detail["outcome"] == "accepted"
    assert refused.object_id == str(risk_suggestion.external_id)
    assert Decision.objects.count() == 1


# --- point 9: on to the next one waiting ----------------------------------------------------------


def test_after_signing_the_next_pending_of_the_same_urgency_then_any_then_the_queue(
    client: Client, clinician: Any, organization: Any, other_organization: Any
) -> None:
    older = store_finding(organization, news2_finding("pt-a"), news2_manifest(), pseudonym="pt-a")
    newer = store_finding(organization, news2_finding("pt-b"), news2_manifest(), pseudonym="pt-b")
    lesser = store_finding(organization, news2_finding("pt-c"), news2_manifest(), pseudonym="pt-c")
    Suggestion.objects.filter(pk=lesser.pk).update(urgency="info", urgency_rank=2)
    lesser.refresh_from_db()
    store_finding(other_organization, news2_finding("pt-x"), news2_manifest(), pseudonym="pt-x")
    Suggestion.objects.filter(pk=older.pk).update(created_at=timezone.now() - timedelta(hours=2))
    Suggestion.objects.filter(pk=lesser.pk).update(created_at=timezone.now() - timedelta(hours=3))
    assert older.urgency == newer.urgency == "critical" and lesser.urgency == "info"
    client.force_login(clinician)

    first = client.post(
        sign_url(older), {"outcome": "accepted", "password": PASSWORD, "queue": "model=news2"}
    )
    assert first["Location"] == f"{page_url(newer)}?queue=model%3Dnews2"
    html = client.get(first["Location"]).content.decode()
    assert "Signed: accepted (critical, news2). Here is the next critical suggestion waiting." in html
    assert 'href="/review/?model=news2">← Review queue' in html

    second = client.post(sign_url(newer), {"outcome": "accepted", "password": PASSWORD})
    assert second["Location"] == page_url(lesser)
    assert (
        "No critical suggestions are left: here is the next one waiting (info)."
        in client.get(second["Location"]).content.decode()
    )

    third = client.post(sign_url(lesser), {"outcome": "accepted", "password": PASSWORD})
    assert third["Location"] == "/review/"  # the other site's is not this clinician's to decide
    assert "Nothing else is waiting for your review." in client.get("/review/").content.decode()


def test_the_queue_links_carry_its_filters_and_marks_new_critical_items(
    client: Client, clinician: Any, organization: Any, queue_rows: QueueRows
) -> None:
    [old] = queue_rows(organization, 1, urgency="critical", prefix="Old", age=timedelta(minutes=10))
    client.force_login(clinician)
    first = client.get("/review/", {"urgency": "critical"}).content.decode()
    assert f'/review/suggestions/{old.external_id}/?queue=urgency%3Dcritical">' in first
    refresh = refresh_query(first)
    assert refresh["urgency"] == "critical" and refresh["page"] == "1" and refresh["since"]
    assert 'hx-trigger="queue-refresh"' in first
    assert "New</strong>" not in first
    queue_rows(organization, 1, urgency="critical", prefix="Arrived")
    queue_rows(organization, 1, urgency="warning", prefix="Warning")
    refreshed = client.get("/review/", refresh, headers={"HX-Request": "true"}).content.decode()
    rows = re.findall(r"<tr>.*?</tr>", refreshed, flags=re.S)
    marked = [row for row in rows if "New</strong>" in row]
    assert len(marked) == 1 and "Arrived 0" in marked[0]


def refresh_query(page: str) -> dict[str, str]:
    """The query of the queue's own refresh, as the results part names it for htmx."""
    found = re.search(r'<div id="queue-results" hx-get="([^"]+)"', page)
    assert found is not None, "the results part names no refresh"
    return dict(parse_qsl(urlsplit(html.unescape(found.group(1))).query))


def test_a_refresh_of_an_unchanged_queue_sends_nothing_and_opens_no_one_again(
    client: Client, clinician: Any, organization: Any, queue_rows: QueueRows
) -> None:
    """Every open queue asks again every 30 s: while nothing changed, the answer is 204 (htmx leaves the
    page as it is), with no patient re-identified and nothing put on record; a change gets the results."""
    queue_rows(organization, 2, urgency="warning", prefix="Waiting")
    client.force_login(clinician)
    refresh = refresh_query(client.get("/review/").content.decode())
    rows_before = AuditEvent.objects.count()
    unchanged = client.get("/review/", refresh, headers={"HX-Request": "true"})
    assert unchanged.status_code == 204 and unchanged.content == b""
    assert AuditEvent.objects.count() == rows_before
    queue_rows(organization, 1, urgency="critical", prefix="Arrived")
    changed = client.get("/review/", refresh, headers={"HX-Request": "true"})
    assert changed.status_code == 200 and "Arrived 0" in changed.content.decode()
    assert AuditEvent.objects.filter(action="review.queue.view").count() == 2
    # A full page load (no htmx) always answers, whatever it is sent.
    assert client.get("/review/", refresh).status_code == 200


# --- point 7: each role lands on its work --------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "landing"),
    [("dr-ward", "/review/"), ("auditor-ann", "/audit/"), ("admin-abe", "/models/")],
)
def test_signing_in_without_next_lands_on_the_roles_work(
    client: Client, clinician: Any, auditor: Any, admin: Any, username: str, landing: str
) -> None:
    response = client.post("/accounts/login/", {"username": username, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == landing
    assert client.get(landing).status_code == 200


def test_several_roles_land_on_the_first_with_links_to_the_others(
    client: Client, clinician: Any, organization: Any
) -> None:
    Membership.objects.create(user=clinician, organization=organization, role=Role.AUDITOR)
    response = client.post("/accounts/login/", {"username": "dr-ward", "password": PASSWORD})
    assert response["Location"] == "/review/"
    queue = client.get("/review/").content.decode()
    assert 'href="/audit/"' in queue
    again = client.get("/accounts/login/").content.decode()
    assert 'href="/review/">Review queue' in again and 'href="/audit/">Audit console' in again


def test_the_sign_in_page_offers_to_continue_or_sign_in_as_someone_else(
    client: Client, clinician: Any
) -> None:
    client.force_login(clinician)
    html = client.get("/accounts/login/").content.decode()
    assert re.search(r'<a href="/review/"[^>]*>Continue as Wanda Ward</a>', html)
    assert "Sign in as someone else" in html
    assert 'name="username"' not in html  # no form to fill while someone is signed in
    out = client.post("/accounts/logout/", {"next": "/audit/"})
    assert out["Location"] == "/accounts/login/?next=%2Faudit%2F"
    assert "_auth_user_id" not in client.session
    assert 'name="username"' in client.get(out["Location"]).content.decode()


# --- point 10: the signature is typed -------------------------------------------------------------


def test_the_signature_password_field_is_not_one_the_browser_fills(
    client: Client, clinician: Any, risk_suggestion: Suggestion
) -> None:
    client.force_login(clinician)
    html = client.get(page_url(risk_suggestion)).content.decode()
    [field] = re.findall(r'<input type="password" name="password"[^>]*>', html)
    assert 'autocomplete="one-time-code"' in field
    assert "current-password" not in field
