"""The audit console, by persona: refused to anonymous and clinicians, open to auditors and admins; its
filters, paging, event page, chain verification and patient timeline; every page itself on record."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor, audit_record
from tests.unit.audit.tamper import tamper

pytestmark = pytest.mark.django_db

PATIENT = "3f2a9c1e0b7d4e8fa1c2b3d4e5f60718"
OTHER_PATIENT = "99aa88bb77cc66dd55ee44ff33001122"
JOB = "6b1f8d0e-0000-4000-8000-000000000001"

PAGES = [
    ("get", "/audit/"),
    ("get", "/audit/events/1/"),
    ("post", "/audit/verify/"),
    ("get", f"/audit/patients/{PATIENT}/"),
    ("get", "/audit/export.ndjson"),
]


def _seed_pipeline() -> None:
    """One patient's data through the stages, as the audit log tells it (later stages' action names are
    what those stages will record; the console does not need to know them)."""
    ehr = Actor.ehr_client("ehr-st-elsewhere")
    worker = Actor.worker(task_name="clinical_ai.deid", task_id="t-1", hostname="w1")
    audit_record(actor=ehr, action="smart.token.issue", organization="st-elsewhere", request_id="req-token")
    audit_record(
        actor=ehr,
        action="intake.job.create",
        object_type="IngestJob",
        object_id=JOB,
        organization="st-elsewhere",
        request_id="req-intake",
        detail={"kind": "transaction", "resource_count": 9},
    )
    for patient in (PATIENT, OTHER_PATIENT):
        audit_record(
            actor=worker,
            action="deid.resources.create",
            object_type="IngestJob",
            object_id=JOB,
            organization="st-elsewhere",
            patient_pseudonym=patient,
            request_id="req-intake",
        )
    audit_record(
        actor=worker,
        action="intake.job.process",
        object_type="IngestJob",
        object_id=JOB,
        organization="st-elsewhere",
        request_id="req-intake",
    )
    audit_record(
        actor=Actor.worker(task_name="clinical_ai.inference", task_id="t-2", hostname="gpu1"),
        action="inference.run.finish",
        object_type="InferenceRun",
        object_id="run-1",
        organization="st-elsewhere",
        patient_pseudonym=PATIENT,
    )
    audit_record(
        actor=Actor.user(7),
        action="review.suggestion.sign_off",
        object_type="Suggestion",
        object_id="sugg-1",
        organization="st-elsewhere",
        patient_pseudonym=PATIENT,
        request_id="req-review",
    )
    audit_record(
        actor=Actor.anonymous(), action="fhir.intake.refuse", outcome="failure", request_id="req-bad"
    )


def _console_rows() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="audit.console.view").order_by("seq"))


# --- Who gets in ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "url"), PAGES)
def test_anonymous_is_sent_to_login(client: Client, method: str, url: str) -> None:
    audit_record(actor=Actor.system("t"), action="test.event")
    response = getattr(client, method)(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")
    assert AuditEvent.objects.count() == 1  # nothing recorded, nothing verified


@pytest.mark.parametrize("persona", ["clinician", "other_site_clinician"])
@pytest.mark.parametrize(("method", "url"), PAGES)
def test_clinicians_are_refused_and_the_attempt_is_recorded(
    client: Client, request: pytest.FixtureRequest, persona: str, method: str, url: str
) -> None:
    user = request.getfixturevalue(persona)
    audit_record(actor=Actor.system("t"), action="test.event")
    client.force_login(user)
    response = getattr(client, method)(url)
    assert response.status_code == 403
    assert "for auditors and administrators" in response.content.decode()
    refused = AuditEvent.objects.get(action="audit.console.view")
    assert (refused.actor_type, refused.actor_id, refused.outcome) == ("user", str(user.pk), "failure")
    assert refused.detail["status"] == 403
    assert not AuditEvent.objects.filter(action__in=["audit.verify", "audit.export"]).exists()


@pytest.mark.parametrize("persona", ["auditor", "admin", "superuser"])
@pytest.mark.parametrize(("method", "url"), PAGES)
def test_auditors_and_admins_are_let_in(
    client: Client, request: pytest.FixtureRequest, persona: str, method: str, url: str
) -> None:
    _seed_pipeline()
    client.force_login(request.getfixturevalue(persona))
    response = getattr(client, method)(url)
    assert response.status_code == 200, response.content[:500]


def test_inactive_auditor_is_not_let_in(client: Client, auditor: Any) -> None:
    client.force_login(auditor)
    auditor.is_active = False
    auditor.save(update_fields=["is_active"])
    assert client.get("/audit/").status_code in (302, 403)


# --- The list: filters, paging, query count ---------------------------------------------------------------


def _listed(client: Client, query: str = "") -> list[str]:
    response = client.get(f"/audit/{query}")
    assert response.status_code == 200, response.content[:800]
    return [event.action for event in response.context["page"].events]


def test_list_is_newest_first_and_each_view_is_recorded_with_filter_names_only(
    client: Client, auditor: Any
) -> None:
    _seed_pipeline()
    client.force_login(auditor)
    actions = _listed(client, "?request_id=req-intake&patient=")
    assert actions == [
        "intake.job.process",
        "deid.resources.create",
        "deid.resources.create",
        "intake.job.create",
    ]
    view = _console_rows()[-1]
    assert (view.actor_type, view.actor_id, view.outcome) == ("user", str(auditor.pk), "success")
    assert view.detail == {"page": "list", "filters": ["request_id"], "shown": 4}
    assert "req-intake" not in str(view.detail)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?action=intake.job.create", ["intake.job.create"]),
        ("?action=deid.", ["deid.resources.create", "deid.resources.create"]),
        ("?action=intake.*", ["intake.job.process", "intake.job.create"]),
        ("?actor_type=anonymous", ["fhir.intake.refuse"]),
        ("?actor_type=ehr_client&actor_id=ehr-st-elsewhere", ["intake.job.create", "smart.token.issue"]),
        ("?outcome=failure", ["fhir.intake.refuse"]),
        (
            f"?patient={PATIENT}",
            ["review.suggestion.sign_off", "inference.run.finish", "deid.resources.create"],
        ),
        ("?object_type=Suggestion&object_id=sugg-1", ["review.suggestion.sign_off"]),
        ("?request_id=req-token", ["smart.token.issue"]),
        ("?action=nothing.like.this", []),
    ],
)
def test_filters(client: Client, auditor: Any, query: str, expected: list[str]) -> None:
    _seed_pipeline()
    client.force_login(auditor)
    assert _listed(client, query) == expected


def test_time_range_filter(client: Client, auditor: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for day in (1, 2, 3):
        moment = datetime(2026, 3, day, 12, 0, tzinfo=UTC)
        with monkeypatch.context() as patch:
            patch.setattr(timezone, "now", lambda moment=moment: moment)
            audit_record(actor=Actor.system("t"), action=f"test.day{day}")
    client.force_login(auditor)
    assert _listed(client, "?occurred_from=2026-03-02T00:00&occurred_before=2026-03-03T00:00") == [
        "test.day2"
    ]
    assert _listed(client, "?occurred_from=2026-03-02T12:00&action=test.") == ["test.day3", "test.day2"]
    bad = client.get("/audit/?occurred_from=2026-03-03T00:00&occurred_before=2026-03-02T00:00")
    assert bad.status_code == 400
    assert client.get("/audit/?occurred_from=yesterday").status_code == 400
    assert client.get("/audit/?actor_type=robot").status_code == 400


def test_paging_fifty_at_a_time_by_sequence_number(client: Client, auditor: Any) -> None:
    for i in range(120):
        audit_record(actor=Actor.system("t"), action="test.bulk", object_id=str(i))
    client.force_login(auditor)
    first = client.get("/audit/?action=test.bulk")
    page = first.context["page"]
    assert [e.seq for e in page.events] == list(range(120, 70, -1))
    assert page.newer_than is None and page.older_than == 71
    assert "before=71" in first.content.decode() and "action=test.bulk" in first.content.decode()
    second = client.get("/audit/?action=test.bulk&before=71").context["page"]
    assert [e.seq for e in second.events] == list(range(70, 20, -1))
    last = client.get("/audit/?action=test.bulk&before=21").context["page"]
    assert [e.seq for e in last.events] == list(range(20, 0, -1)) and last.older_than is None
    back = client.get("/audit/?action=test.bulk&after=70").context["page"]
    assert [e.seq for e in back.events] == list(range(120, 70, -1))
    assert client.get("/audit/?before=abc").status_code == 400


def test_list_query_count_does_not_grow_with_the_log(
    client: Client, auditor: Any, django_assert_max_num_queries: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client.force_login(auditor)
    _seed_pipeline()
    with CaptureQueriesContext(connection) as few:
        assert client.get("/audit/").status_code == 200
    for i in range(150):
        audit_record(actor=Actor.system("t"), action="test.bulk", object_id=str(i), patient_pseudonym=PATIENT)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(f"/audit/?patient={PATIENT}&action=test.")
    assert response.status_code == 200 and len(response.context["page"].events) == 50
    assert len(few.captured_queries) <= 12


# --- One event --------------------------------------------------------------------------------------------


def test_event_page_shows_every_field_the_hashes_and_neighbours(client: Client, auditor: Any) -> None:
    _seed_pipeline()
    client.force_login(auditor)
    event = AuditEvent.objects.get(action="intake.job.create")
    html = client.get(f"/audit/events/{event.seq}/").content.decode()
    for value in (
        event.hash,
        event.prev_hash,
        JOB,
        "req-intake",
        "ehr-st-elsewhere",
        "st-elsewhere",
        "resource_count",
    ):
        assert value in html
    assert (
        f'href="/audit/events/{event.seq - 1}/"' in html and f'href="/audit/events/{event.seq + 1}/"' in html
    )
    view = _console_rows()[-1]
    assert (view.object_type, view.object_id, view.detail["page"]) == ("AuditEvent", str(event.seq), "event")
    assert client.get("/audit/events/999999/").status_code == 404


# --- Verify -----------------------------------------------------------------------------------------------


def test_verify_shows_an_intact_chain_and_is_recorded(client: Client, auditor: Any) -> None:
    _seed_pipeline()
    client.force_login(auditor)
    count = AuditEvent.objects.count()
    response = client.post("/audit/verify/")
    assert response.status_code == 200
    assert re.search(rf"Intact.</strong> {count} events verified", response.content.decode())
    verify = AuditEvent.objects.get(action="audit.verify")
    assert (verify.actor_id, verify.outcome) == (str(auditor.pk), "success")
    assert verify.detail["intact"] is True and verify.detail["checked"] == count


def test_verify_shows_the_first_bad_event_of_a_broken_chain(client: Client, admin: Any) -> None:
    _seed_pipeline()
    tamper("UPDATE {table} SET actor_id = %s WHERE seq = %s", ["someone-else", 3])
    client.force_login(admin)
    html = client.post("/audit/verify/").content.decode()
    assert "Broken</strong> at event 3" in html and "content does not match its hash" in html
    verify = AuditEvent.objects.get(action="audit.verify")
    assert verify.outcome == "failure" and verify.detail["first_bad_seq"] == 3


def test_verify_shows_a_deleted_event(client: Client, admin: Any) -> None:
    _seed_pipeline()
    tamper("DELETE FROM {table} WHERE seq = %s", [2])
    client.force_login(admin)
    html = client.post("/audit/verify/").content.decode()
    assert "Broken</strong> at event 3" in html and "expected event seq 2" in html


def test_verify_needs_post_and_csrf(auditor: Any) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(auditor)
    assert strict.post("/audit/verify/").status_code == 403
    assert strict.get("/audit/verify/").status_code == 405
    assert not AuditEvent.objects.filter(action="audit.verify").exists()
    page = strict.get("/audit/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode())
    assert token is not None
    assert strict.post("/audit/verify/", {"csrfmiddlewaretoken": token.group(1)}).status_code == 200


# --- One patient's timeline -------------------------------------------------------------------------------


def test_patient_timeline_follows_the_data_through_the_stages(client: Client, auditor: Any) -> None:
    _seed_pipeline()
    client.force_login(auditor)
    response = client.get(f"/audit/patients/{PATIENT}/")
    timeline = response.context["timeline"]
    assert [[e.action for e in g.events] for g in timeline.groups] == [
        [
            "intake.job.create",  # shares the job and the request of the de-identification
            "deid.resources.create",
            "deid.resources.create",  # the other patient of the same bundle: same job, same request
            "intake.job.process",
        ],
        ["inference.run.finish"],
        ["review.suggestion.sign_off"],
    ]
    assert [g.request_id for g in timeline.groups] == ["req-intake", "", "req-review"]
    assert "smart.token.issue" not in response.content.decode()
    view = _console_rows()[-1]
    assert view.patient_pseudonym == PATIENT and view.detail == {
        "page": "patient_timeline",
        "known": True,
        "shown": 6,
    }
    # Looking at the timeline is part of the patient's record from now on.
    again = client.get(f"/audit/patients/{PATIENT}/").context["timeline"]
    assert again.groups[-1].events[-1].action == "audit.console.view"


def test_unknown_patient_is_not_put_on_record(client: Client, auditor: Any) -> None:
    client.force_login(auditor)
    response = client.get("/audit/patients/MargaretOkafor/")
    assert response.status_code == 200 and "No audit event names this pseudonym" in response.content.decode()
    view = _console_rows()[-1]
    assert view.patient_pseudonym == "" and view.detail["known"] is False
    assert "Okafor" not in str(view.detail)
    assert client.get("/audit/patients/Margaret%20Okafor/").status_code == 404


def test_timeline_of_a_long_history_is_capped(client: Client, auditor: Any, settings: Any) -> None:
    from clinical_ai.audit.selectors import audit_patient_timeline

    for i in range(5):
        audit_record(
            actor=Actor.system("t"), action="test.event", patient_pseudonym=PATIENT, request_id=f"r{i}"
        )
    capped = audit_patient_timeline(patient_pseudonym=PATIENT, limit=3)
    assert capped.truncated and capped.event_count == 3


def test_console_times_are_utc(client: Client, auditor: Any) -> None:
    audit_record(actor=Actor.system("t"), action="test.event")
    client.force_login(auditor)
    html = client.get("/audit/").content.decode()
    now = timezone.now().astimezone(UTC)
    assert now.strftime("%Y-%m-%d") in html or (now - timedelta(minutes=1)).strftime("%Y-%m-%d") in html


def test_the_audit_log_is_not_readable_through_the_django_admin(client: Client, superuser: Any) -> None:
    client.force_login(superuser)
    assert client.get("/admin/audit/auditevent/").status_code == 404
