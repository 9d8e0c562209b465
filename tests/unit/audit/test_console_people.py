"""The audit console names people and systems, finds them by username or registered name, says so when a
name means nobody, takes the start of a patient's pseudonym, and shows times that read at a glance."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor, audit_record
from tests.unit.audit.personas import make_user

pytestmark = pytest.mark.django_db

PATIENT = "3f2a9c1e0b7d4e8fa1c2b3d4e5f60718"
NEIGHBOUR = "3f2a9d0000000000000000000000abcd"  # shares the first five characters only


@pytest.fixture
def ward(organization: Any) -> Any:
    return make_user("dr-ward", organization, "clinician", first_name="Wanda", last_name="Ward")


def _seed(ward: Any, ehr_client: Any) -> None:
    audit_record(actor=Actor.user(ward.pk), action="review.suggestion.view", patient_pseudonym=PATIENT)
    audit_record(actor=Actor.user(ward.pk), action="review.suggestion.sign_off", patient_pseudonym=PATIENT)
    audit_record(actor=Actor.ehr_client(ehr_client.client_id), action="intake.job.create")
    audit_record(
        actor=Actor.worker(task_name="deid.deidentify_ingest_job", task_id="t-1", hostname="w1"),
        action="deid.resources.create",
        patient_pseudonym=NEIGHBOUR,
    )


def _actions(response: Any) -> list[str]:
    assert response.status_code == 200, response.content[:800]
    return [event.action for event in response.context["page"].events]


def _actor_cells(page: str) -> list[str]:
    cells = re.findall(r'<td title="[^"]*">([^<]*)</td>', page)
    return [html.unescape(cell) for cell in cells]


def test_actors_are_shown_as_people_and_registered_systems(
    client: Client, auditor: Any, ward: Any, ehr_client: Any
) -> None:
    _seed(ward, ehr_client)
    client.force_login(auditor)
    page = client.get("/audit/?action=").content.decode()
    cells = _actor_cells(page)
    assert "Wanda Ward (dr-ward)" in cells
    assert f"{ehr_client.client.name} (EHR system)" in cells
    assert "De-identification worker on w1" in cells
    assert f"user:{ward.pk}" not in cells  # the recorded id is still there, as the cell's title only
    event = AuditEvent.objects.get(action="review.suggestion.sign_off")
    detail = client.get(f"/audit/events/{event.seq}/").content.decode()
    assert "Wanda Ward (dr-ward)" in detail and f"user:{ward.pk}" in detail


@pytest.mark.parametrize("typed", ["dr-ward", "DR-Ward", " dr-ward "])
def test_who_takes_a_username(client: Client, auditor: Any, ward: Any, ehr_client: Any, typed: str) -> None:
    _seed(ward, ehr_client)
    client.force_login(auditor)
    response = client.get("/audit/", {"actor_id": typed})
    assert _actions(response) == ["review.suggestion.sign_off", "review.suggestion.view"]
    view = AuditEvent.objects.filter(action="audit.console.view").latest("seq")
    assert view.detail["filters"] == ["actors_in"]  # the filter's name, never what was typed
    assert "ward" not in str(view.detail)


def test_who_takes_an_ehr_systems_registered_name_and_recorded_ids(
    client: Client, auditor: Any, ward: Any, ehr_client: Any
) -> None:
    _seed(ward, ehr_client)
    client.force_login(auditor)
    assert _actions(client.get("/audit/", {"actor_id": ehr_client.client.name.upper()})) == [
        "intake.job.create"
    ]
    assert _actions(client.get("/audit/", {"actor_id": f"user:{ward.pk}"}))[0] == "review.suggestion.sign_off"
    worker_id = AuditEvent.objects.get(action="deid.resources.create").actor_id
    assert _actions(client.get("/audit/", {"actor_id": worker_id})) == ["deid.resources.create"]


def test_an_unknown_username_is_said_to_be_unknown_not_shown_as_an_empty_log(
    client: Client, auditor: Any, ward: Any, ehr_client: Any
) -> None:
    _seed(ward, ehr_client)
    client.force_login(auditor)
    response = client.get("/audit/", {"actor_id": "dr-nobody"})
    assert response.status_code == 400
    page = html.unescape(response.content.decode())
    assert "No such user: “dr-nobody”" in page
    assert "No events match" not in page and response.context["page"] is None
    export = client.get("/audit/export.ndjson", {"actor_id": "dr-nobody"})
    assert export.status_code == 400 and "No such user" in export.content.decode()


def test_patient_search_takes_a_prefix_of_six_characters_or_more(
    client: Client, auditor: Any, ward: Any, ehr_client: Any
) -> None:
    _seed(ward, ehr_client)
    client.force_login(auditor)
    first = client.get("/audit/?action=")
    assert "first 6 characters or more" in first.content.decode()
    assert _actions(client.get("/audit/", {"patient": PATIENT[:6]})) == [
        "review.suggestion.sign_off",
        "review.suggestion.view",
    ]
    assert (
        _actions(client.get("/audit/", {"patient": PATIENT[:6].upper()}))[0] == "review.suggestion.sign_off"
    )
    assert len(_actions(client.get("/audit/", {"patient": PATIENT}))) == 2
    too_short = client.get("/audit/", {"patient": PATIENT[:5]})
    assert too_short.status_code == 400
    assert "at least 6 characters" in too_short.content.decode()


def test_actor_names_cost_the_same_queries_for_one_person_or_fifty(client: Client, auditor: Any) -> None:
    client.force_login(auditor)
    audit_record(actor=Actor.user(auditor.pk), action="test.people")
    with CaptureQueriesContext(connection) as one:
        assert client.get("/audit/?action=test.people").status_code == 200
    for i in range(50):
        person = make_user(f"person-{i}", None, None, first_name="P", last_name=str(i))
        audit_record(actor=Actor.user(person.pk), action="test.people")
    with CaptureQueriesContext(connection) as fifty:
        page = client.get("/audit/?action=test.people").content.decode()
    assert "P 49 (person-49)" in page
    assert len(fifty.captured_queries) == len(one.captured_queries)


def test_times_are_whole_readable_time_elements(client: Client, auditor: Any) -> None:
    audit_record(actor=Actor.system("t"), action="test.time", patient_pseudonym=PATIENT)
    event = AuditEvent.objects.get(action="test.time")
    client.force_login(auditor)
    page = client.get(f"/audit/patients/{PATIENT}/").content.decode()
    shown = event.occurred_at.strftime("%-d %b %Y, %H:%M:%S")
    assert re.search(rf'<td class="when"><time datetime="[^"]+">{re.escape(shown)}</time></td>', page)
    assert "Time (UTC)" in page
