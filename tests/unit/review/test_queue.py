"""The review queue by persona: who sees which suggestions, in which order, filtered and paged; the htmx
fragment; a fixed number of queries whatever the page holds; every view on record."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinical_ai.audit.models import AuditEvent
from clinical_ai.review.models import Suggestion
from tests.unit.review.conftest import QueueRows, make_user

pytestmark = pytest.mark.django_db

QUEUE = "/review/"


def summaries(response: Any) -> list[str]:
    # A row's link carries the queue's filters (?queue=...) when there are any, to come back to them.
    return re.findall(
        r'/review/suggestions/[0-9a-f-]+/(?:\?queue=[^"]*)?">([^<]*)</a>', response.content.decode()
    )


def test_anonymous_is_sent_to_the_login_page(client: Any) -> None:
    response = client.get(QUEUE)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=/review/")


def test_a_user_without_a_role_is_refused_on_record(client: Any, db: None) -> None:
    client.force_login(make_user("nobody", None, None))
    response = client.get(QUEUE)
    assert response.status_code == 403
    event = AuditEvent.objects.get(action="review.queue.view")
    assert event.outcome == "failure"


def test_a_clinician_sees_the_pending_suggestions_of_their_site_only(
    client: Any, clinician: Any, organization: Any, other_organization: Any, queue_rows: QueueRows
) -> None:
    queue_rows(organization, 2, prefix="Ours")
    queue_rows(organization, 1, prefix="Decided", status=Suggestion.Status.ACCEPTED)
    queue_rows(other_organization, 2, prefix="Theirs")
    client.force_login(clinician)
    response = client.get(QUEUE)
    assert response.status_code == 200
    assert summaries(response) == ["Ours 0", "Ours 1"]
    assert response["Cache-Control"].startswith("max-age=0")


def test_most_urgent_first_then_oldest_first(
    client: Any, clinician: Any, organization: Any, queue_rows: QueueRows
) -> None:
    queue_rows(organization, 1, urgency="info", prefix="Info", age=timedelta(days=3))
    queue_rows(organization, 1, urgency="warning", prefix="Newer warning", age=timedelta(hours=1))
    queue_rows(organization, 1, urgency="warning", prefix="Older warning", age=timedelta(hours=5))
    queue_rows(organization, 1, urgency="critical", prefix="Critical")
    client.force_login(clinician)
    assert summaries(client.get(QUEUE)) == ["Critical 0", "Older warning 0", "Newer warning 0", "Info 0"]


def test_counts_per_urgency_at_the_top(
    client: Any, clinician: Any, organization: Any, queue_rows: QueueRows
) -> None:
    queue_rows(organization, 3, urgency="critical")
    queue_rows(organization, 2, urgency="info")
    client.force_login(clinician)
    page = client.get(QUEUE, {"urgency": "info"}).content.decode()
    # The counts stay those of the other filters, so each says what choosing it would show.
    assert re.search(r"Critical</span>: 3", page)
    assert re.search(r"Warning</span>: 0", page)
    assert re.search(r"Info</span>: 2", page)


def test_filters(client: Any, clinician: Any, organization: Any, queue_rows: QueueRows) -> None:
    queue_rows(organization, 1, prefix="Patient A", pseudonym="aaaa1111" + "0" * 24)
    queue_rows(organization, 1, prefix="Other model", model_id="problem-list-gaps")
    queue_rows(organization, 1, prefix="Old", age=timedelta(days=9))
    queue_rows(organization, 1, prefix="Rejected", status=Suggestion.Status.REJECTED)
    queue_rows(organization, 1, prefix="Superseded", status=Suggestion.Status.SUPERSEDED)
    client.force_login(clinician)
    assert summaries(client.get(QUEUE, {"patient": "aaaa1111"})) == ["Patient A 0"]
    assert summaries(client.get(QUEUE, {"model": "problem-list-gaps"})) == ["Other model 0"]
    assert summaries(client.get(QUEUE, {"age": "older"})) == ["Old 0"]
    assert "Old 0" not in summaries(client.get(QUEUE, {"age": "7d"}))
    assert summaries(client.get(QUEUE, {"status": "decided"})) == ["Rejected 0"]
    assert summaries(client.get(QUEUE, {"status": "closed"})) == ["Superseded 0"]
    assert len(summaries(client.get(QUEUE, {"status": "all"}))) == 5


def test_a_bad_filter_is_a_400_with_the_error(client: Any, clinician: Any) -> None:
    client.force_login(clinician)
    response = client.get(QUEUE, {"patient": "<Margaret>", "urgency": "panic"})
    assert response.status_code == 400
    assert b"Select a valid choice" in response.content
    assert b"<Margaret>" not in response.content


def test_pages_of_25(client: Any, clinician: Any, organization: Any, queue_rows: QueueRows) -> None:
    queue_rows(organization, 30)
    client.force_login(clinician)
    first = client.get(QUEUE, {"urgency": "warning"})
    assert len(summaries(first)) == 25
    assert b'page=2" rel="next"' in first.content
    assert b"urgency=warning&amp;page=2" in first.content
    second = client.get(QUEUE, {"urgency": "warning", "page": "2"})
    assert summaries(second) == [f"Row {i}" for i in range(25, 30)]
    assert len(summaries(client.get(QUEUE, {"page": "not-a-number"}))) == 25


def test_the_query_count_does_not_grow_with_the_rows(
    client: Any, clinician: Any, organization: Any, other_organization: Any, queue_rows: QueueRows
) -> None:
    client.force_login(clinician)
    queue_rows(organization, 5)
    client.get(QUEUE)  # warm the caches (catalogue, session)
    with CaptureQueriesContext(connection) as five:
        assert len(summaries(client.get(QUEUE))) == 5
    queue_rows(organization, 25, urgency="critical")
    queue_rows(organization, 1, status=Suggestion.Status.ACCEPTED)
    with CaptureQueriesContext(connection) as thirty:
        assert len(summaries(client.get(QUEUE, {"status": "all"}))) == 25
    assert len(thirty.captured_queries) == len(five.captured_queries)
    # 7 of them re-identify the page's patients, all at once: the clinician check, the vault entries and
    # the one audit row (its savepoint, chain head, insert and update).
    assert len(five.captured_queries) <= 23


def test_htmx_gets_the_results_fragment_only(
    client: Any, clinician: Any, organization: Any, queue_rows: QueueRows
) -> None:
    queue_rows(organization, 2)
    client.force_login(clinician)
    fragment = client.get(QUEUE, {"urgency": "warning"}, headers={"HX-Request": "true"})
    assert fragment.status_code == 200
    body = fragment.content.decode()
    assert body.lstrip().startswith('<div id="queue-results"')
    assert "<html" not in body and "<form" not in body
    assert summaries(fragment) == ["Row 0", "Row 1"]
    full = client.get(QUEUE, {"urgency": "warning"}).content.decode()
    assert "<html" in full and 'hx-get="/review/"' in full and 'hx-target="#queue-results"' in full
    assert "htmx.min.js" in full


def test_a_history_restore_gets_the_whole_page(client: Any, clinician: Any) -> None:
    client.force_login(clinician)
    response = client.get(QUEUE, headers={"HX-Request": "true", "HX-History-Restore-Request": "true"})
    assert b"<html" in response.content


def test_each_view_is_on_record_with_the_filter_names_not_their_values(
    client: Any, clinician: Any, organization: Any, queue_rows: QueueRows
) -> None:
    queue_rows(organization, 1, pseudonym="bbbb2222" + "0" * 24)
    client.force_login(clinician)
    client.get(QUEUE, {"patient": "bbbb2222", "urgency": "warning"})
    event = AuditEvent.objects.get(action="review.queue.view")
    assert event.outcome == "success"
    assert event.actor_id == str(clinician.pk)
    assert event.detail["filters"] == ["patient", "urgency"]
    assert event.detail["shown"] == 1
    assert "bbbb2222" not in str(event.detail)


def test_an_auditor_sees_the_queue_read_only(
    client: Any, auditor: Any, organization: Any, queue_rows: QueueRows
) -> None:
    queue_rows(organization, 1, prefix="Ours")
    client.force_login(auditor)
    response = client.get(QUEUE)
    assert response.status_code == 200
    assert summaries(response) == ["Ours 0"]


def test_a_clinician_of_another_site_sees_none_of_ours(
    client: Any, other_site_clinician: Any, organization: Any, queue_rows: QueueRows
) -> None:
    queue_rows(organization, 3)
    client.force_login(other_site_clinician)
    response = client.get(QUEUE)
    assert response.status_code == 200
    assert summaries(response) == []


def test_the_navigation_and_home_page_link_to_the_queue_by_role(
    client: Any, clinician: Any, auditor: Any
) -> None:
    client.force_login(clinician)
    page = client.get("/").content.decode()
    assert 'href="/review/">Review queue' in page
    assert 'href="/review/">Queue' in page and 'href="/models/">Models' in page
    assert 'href="/audit/">Audit' not in page
    client.force_login(auditor)
    page = client.get(QUEUE).content.decode()
    assert page.count('href="/audit/">Audit</a>') == 1


def test_a_session_with_its_second_factor_unverified_goes_to_the_code_page(
    client: Any, clinician: Any
) -> None:
    TOTPDevice.objects.create(user=clinician, name="phone", confirmed=True)
    client.force_login(clinician)
    response = client.get(QUEUE)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/otp/verify/?next=/review/")
