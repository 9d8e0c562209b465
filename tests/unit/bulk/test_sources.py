"""EHR sources: the gateway's own signing key per source (sealed, its public JWK Set served), the sources page
by persona (admins of the source's site only), Pull now (audited; refused while a pull runs), the beat
schedule, and the source_add command."""

from __future__ import annotations

import io
import json
import time
from datetime import timedelta
from typing import Any

import jwt
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError, OutputWrapper
from django.test import Client
from django.utils import timezone

from clinical_ai.accounts.models import Organization, Role
from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from clinical_ai.core.crypto import DecryptionError
from integrations.bulk.keys import (
    KeyAlgorithmRefused,
    private_key_open,
    private_key_seal,
    public_jwk_of,
    signing_key_generate,
)
from integrations.bulk.management.commands.pull_source import ProgressPrinter
from integrations.bulk.models import BulkExport, EhrSource
from integrations.bulk.services import (
    ExportBusy,
    ExportProgress,
    SourceRefused,
    export_request,
    exports_schedule,
    source_create,
    source_jwks,
    source_private_key,
)
from integrations.smart.jwk import jwk_load
from tests.factories import make_organization
from tests.unit.audit.personas import make_user

pytestmark = pytest.mark.django_db


def _source(organization: Organization, name: str = "st-epic", **extra: Any) -> EhrSource:
    return source_create(
        organization=organization,
        name=name,
        fhir_base_url="https://ehr.st-elsewhere.example/fhir/",
        client_id="clinical-ai-gateway",
        actor=Actor.system("tests"),
        **extra,
    )


@pytest.fixture
def organization() -> Organization:
    return make_organization("st-elsewhere", "St Elsewhere General")


@pytest.fixture
def other_organization() -> Organization:
    return make_organization("county-hospital", "County Hospital")


@pytest.fixture
def admin(organization: Organization) -> Any:
    return make_user("admin-abe", organization, Role.ADMIN, is_staff=True)


@pytest.fixture
def clinician(organization: Organization) -> Any:
    return make_user("dr-ward", organization, Role.CLINICIAN)


def _signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


# --- keys -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "kty"), [("ES384", "EC"), ("RS384", "RSA")])
def test_signing_key_is_what_smart_backend_services_accepts(algorithm: str, kty: str) -> None:
    key = signing_key_generate(algorithm)
    assert key.public_jwk["kty"] == kty
    assert key.public_jwk["alg"] == algorithm and key.public_jwk["use"] == "sig"
    assert key.key_id == key.public_jwk["kid"] and len(key.key_id) >= 40  # an RFC 7638 thumbprint
    assert "d" not in key.public_jwk
    # What the private key signs, the public JWK verifies.
    token = jwt.encode({"iss": "x"}, key.private_pem, algorithm=algorithm, headers={"kid": key.key_id})
    verified = jwt.decode(token, jwk_load(key.public_jwk, algorithm).key, algorithms=[algorithm])
    assert verified == {"iss": "x"}
    assert public_jwk_of(key.private_pem) == key.public_jwk


def test_an_algorithm_smart_does_not_allow_is_refused() -> None:
    with pytest.raises(KeyAlgorithmRefused):
        signing_key_generate("HS256")


def test_sealed_key_opens_only_for_its_own_row() -> None:
    key = signing_key_generate("ES384")
    sealed = private_key_seal(key.private_pem, associated_data="bulk.EhrSource.private_key:one")
    assert b"PRIVATE KEY" not in sealed.ciphertext
    assert private_key_open(sealed, associated_data="bulk.EhrSource.private_key:one") == key.private_pem
    with pytest.raises(DecryptionError):
        private_key_open(sealed, associated_data="bulk.EhrSource.private_key:two")


# --- registering a source ---------------------------------------------------------------------------


def test_source_create_seals_the_key_and_is_audited(organization: Organization) -> None:
    source = _source(organization, algorithm="RS384", level="group", group_id="diabetes-cohort")
    source.refresh_from_db()
    assert source.fhir_base_url == "https://ehr.st-elsewhere.example/fhir"
    assert b"PRIVATE KEY" not in bytes(source.private_key_ciphertext)
    assert b"PRIVATE KEY" in source_private_key(source)
    jwks = source_jwks(source)
    assert [k["kid"] for k in jwks["keys"]] == [source.key_id]
    assert jwks["keys"][0]["alg"] == "RS384" and "d" not in jwks["keys"][0]
    event = AuditEvent.objects.get(action="bulk.source.create")
    assert event.object_id == str(source.external_id) and event.organization == "st-elsewhere"
    assert event.detail["fhir_host"] == "ehr.st-elsewhere.example"
    assert "PRIVATE" not in json.dumps(event.detail)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"level": "group"}, "group id"),
        ({"level": "everything"}, "level must be"),
        ({"fhir_base_url": "http://ehr.example/fhir"}, "https"),
        ({"client_id": " "}, "client id"),
    ],
)
def test_source_create_refuses_what_cannot_work(organization: Organization, extra: Any, message: str) -> None:
    arguments: dict[str, Any] = {
        "organization": organization,
        "name": "bad",
        "fhir_base_url": "https://ehr.example/fhir",
        "client_id": "gw",
        "actor": Actor.system("tests"),
        **extra,
    }
    with pytest.raises(SourceRefused, match=message):
        source_create(**arguments)
    assert not EhrSource.objects.exists()


def test_source_add_prints_the_jwks_url_and_the_public_set(organization: Organization, settings: Any) -> None:
    settings.PUBLIC_BASE_URL = "https://gateway.st-elsewhere.example"
    out = io.StringIO()
    call_command(
        "source_add", "st-epic", "--organization", "st-elsewhere", "--fhir-base", "https://ehr.example/fhir",
        "--client-id", "gw-1", "--types", "Patient,Observation", "--interval-minutes", "60", stdout=out,
    )  # fmt: skip
    source = EhrSource.objects.get(name="st-epic")
    text = out.getvalue()
    assert f"https://gateway.st-elsewhere.example/bulk/sources/{source.external_id}/jwks.json" in text
    printed = json.loads(text[text.index("{") :])
    assert printed == source_jwks(source)
    assert source.resource_types == "Patient,Observation" and source.interval_minutes == 60
    with pytest.raises(CommandError, match="no organization"):
        call_command("source_add", "x", "--organization", "nowhere", "--fhir-base", "https://e.example",
                     "--client-id", "c", stdout=io.StringIO())  # fmt: skip


# --- the public JWK Set -----------------------------------------------------------------------------


def test_jwks_is_public_cacheable_and_only_for_enabled_sources(organization: Organization) -> None:
    source = _source(organization)
    answer = Client().get(f"/bulk/sources/{source.external_id}/jwks.json")
    assert answer.status_code == 200
    assert answer["Content-Type"] == "application/jwk-set+json"
    assert "max-age" in answer["Cache-Control"] and "public" in answer["Cache-Control"]
    assert answer.json() == source_jwks(source)
    assert Client().get("/bulk/sources/00000000-0000-4000-8000-000000000000/jwks.json").status_code == 404
    EhrSource.objects.filter(pk=source.pk).update(enabled=False)
    assert Client().get(f"/bulk/sources/{source.external_id}/jwks.json").status_code == 404


# --- the sources page by persona --------------------------------------------------------------------


def test_admin_sees_their_sites_sources_only(
    organization: Organization, other_organization: Organization, admin: Any
) -> None:
    ours = _source(organization, interval_minutes=120)
    theirs = _source(other_organization, name="county-cerner")
    page = _signed_in(admin).get("/bulk/sources/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "st-epic" in html and "Every 2 hours" in html and "ehr.st-elsewhere.example" in html
    assert f"/bulk/sources/{ours.external_id}/jwks.json" in html
    assert "county-cerner" not in html and str(theirs.external_id) not in html
    assert "Never pulled yet" in html
    event = AuditEvent.objects.filter(action="bulk.source.view").latest("seq")
    assert event.outcome == "success" and event.detail == {"page": "sources", "shown": 1}


def test_clinician_gets_a_recorded_403_and_anonymous_signs_in(
    organization: Organization, clinician: Any
) -> None:
    _source(organization)
    answer = _signed_in(clinician).get("/bulk/sources/")
    assert answer.status_code == 403
    assert "st-epic" not in answer.content.decode()
    event = AuditEvent.objects.filter(action="bulk.source.view").latest("seq")
    assert event.outcome != "success" and event.actor_id == str(clinician.pk)
    anonymous = Client().get("/bulk/sources/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")


def test_pull_now_is_audited_and_refused_politely_while_one_runs(
    organization: Organization, admin: Any, clinician: Any
) -> None:
    source = _source(organization)
    client = _signed_in(admin)
    first = client.post(f"/bulk/sources/{source.external_id}/pull", {"what": "everything"}, follow=True)
    assert first.status_code == 200
    assert "Pull from st-epic asked for" in first.content.decode()
    export = BulkExport.objects.get(source=source)
    assert export.status == BulkExport.Status.QUEUED and export.requested_by == "admin-abe"
    asked = AuditEvent.objects.get(action="bulk.export.request", outcome="success")
    assert asked.actor_id == str(admin.pk) and asked.object_id == str(export.external_id)

    second = client.post(f"/bulk/sources/{source.external_id}/pull", {"what": "everything"}, follow=True)
    assert "already under way" in second.content.decode()
    assert BulkExport.objects.filter(source=source).count() == 1
    refused = AuditEvent.objects.filter(action="bulk.export.request").exclude(outcome="success").get()
    assert refused.detail["refused"] == "already running"

    assert (
        _signed_in(clinician)
        .post(f"/bulk/sources/{source.external_id}/pull", {"what": "changes"})
        .status_code
        == 403
    )
    assert BulkExport.objects.filter(source=source).count() == 1


def test_pull_now_of_another_sites_source_does_not_exist_for_an_admin(
    other_organization: Organization, admin: Any
) -> None:
    theirs = _source(other_organization, name="county-cerner")
    answer = _signed_in(admin).post(f"/bulk/sources/{theirs.external_id}/pull", {"what": "everything"})
    assert answer.status_code == 404
    assert not BulkExport.objects.exists()


def test_the_page_says_how_far_a_pull_got_in_words(organization: Organization, admin: Any) -> None:
    source = _source(organization)
    export = export_request(source=source, actor=Actor.system("tests"), requested_by="schedule")
    BulkExport.objects.filter(pk=export.pk).update(
        status=BulkExport.Status.RUNNING,
        phase=BulkExport.Phase.DOWNLOADING,
        files=[
            {"kind": "output", "type": "Patient", "count": 10, "status": "done", "lines_done": 10, "bytes": 1},
            {"kind": "output", "type": "Observation", "count": 30, "status": "pending", "lines_done": 5,
             "bytes": 1},
        ],
    )  # fmt: skip
    html = _signed_in(admin).get("/bulk/sources/").content.decode()
    assert "Receiving and storing the files" in html
    assert '<progress value="15" max="40"' in html and "15 of 40 records received (38%)" in html
    BulkExport.objects.filter(pk=export.pk).update(
        status=BulkExport.Status.FAILED, error="The EHR refused the export (HTTP 403): forbidden"
    )
    html = _signed_in(admin).get("/bulk/sources/").content.decode()
    assert "Failed: The EHR refused the export (HTTP 403): forbidden" in html


# --- requests and the schedule ----------------------------------------------------------------------


def test_a_second_concurrent_export_is_refused(organization: Organization) -> None:
    source = _source(organization)
    first = export_request(source=source, actor=Actor.system("tests"), requested_by="tests")
    with pytest.raises(ExportBusy) as busy:
        export_request(source=source, actor=Actor.system("tests"), requested_by="tests")
    assert busy.value.export.pk == first.pk


def test_schedule_queues_due_sources_only(organization: Organization) -> None:
    hourly = _source(organization, name="hourly", interval_minutes=60)
    _source(organization, name="on-demand")
    assert exports_schedule() == 1
    assert list(BulkExport.objects.values_list("source__name", "requested_by")) == [("hourly", "schedule")]
    # Not due again (and one is queued anyway) until an hour after the last one began.
    BulkExport.objects.update(status=BulkExport.Status.SUCCEEDED)
    assert exports_schedule() == 0
    BulkExport.objects.update(created_at=timezone.now() - timedelta(minutes=61))
    hourly.last_transaction_time = timezone.now() - timedelta(hours=1)
    hourly.save()
    time.sleep(0.01)
    assert exports_schedule() == 1
    newest = BulkExport.objects.latest("created_at")
    assert newest.since == hourly.last_transaction_time  # incremental: _since the last export's time


def test_an_admin_stops_a_pull_with_a_reason_and_a_clinician_cannot(
    organization: Organization, admin: Any, clinician: Any
) -> None:
    source = _source(organization)
    export = export_request(source=source, actor=Actor.system("tests"), requested_by="schedule")
    client = _signed_in(admin)
    html = client.get("/bulk/sources/").content.decode()
    assert "Stop this pull" in html
    assert (
        _signed_in(clinician).post(f"/bulk/sources/{source.external_id}/cancel", {"reason": "x"}).status_code
        == 403
    )
    assert client.post(f"/bulk/sources/{source.external_id}/cancel", {"reason": ""}).status_code == 400
    export.refresh_from_db()
    assert export.status == BulkExport.Status.QUEUED
    stopped = client.post(
        f"/bulk/sources/{source.external_id}/cancel", {"reason": "asked twice"}, follow=True
    )
    assert "The pull from st-epic was stopped" in stopped.content.decode()
    export.refresh_from_db()
    assert export.status == BulkExport.Status.CANCELLED and export.error == "Cancelled: asked twice"
    event = AuditEvent.objects.get(action="bulk.export.cancel", outcome="success")
    assert event.actor_id == str(admin.pk) and event.object_id == str(export.external_id)
    again = client.post(f"/bulk/sources/{source.external_id}/cancel", {"reason": "again"}, follow=True)
    assert "No pull from st-epic is under way" in again.content.decode()
    assert "Stop this pull" not in again.content.decode()
    # Stopped, a new pull may be asked for.
    assert export_request(source=source, actor=Actor.system("tests"), requested_by="tests").pk != export.pk


def test_pull_source_cancel_stops_the_pull_under_way(organization: Organization) -> None:
    source = _source(organization)
    with pytest.raises(CommandError, match="no pull from 'st-epic' is under way"):
        call_command("pull_source", "st-epic", "--cancel", "test", stdout=io.StringIO())
    export = export_request(source=source, actor=Actor.system("tests"), requested_by="schedule")
    out = io.StringIO()
    call_command("pull_source", "st-epic", "--cancel", "maintenance at the EHR tonight", stdout=out)
    assert "the pull under way was stopped" in out.getvalue()
    export.refresh_from_db()
    assert export.status == BulkExport.Status.CANCELLED
    assert export.error == "Cancelled: maintenance at the EHR tonight"


def test_source_switch_off_stops_the_pull_hides_the_key_and_on_again_restores_it(
    organization: Organization, admin: Any
) -> None:
    source = _source(organization, interval_minutes=60)
    export = export_request(source=source, actor=Actor.system("tests"), requested_by="schedule")
    with pytest.raises(CommandError, match="the following arguments are required: --reason"):
        call_command("source_switch", "st-epic", "--off", stdout=io.StringIO(), stderr=io.StringIO())
    with pytest.raises(CommandError, match="say why"):
        call_command("source_switch", "st-epic", "--off", "--reason", "  ", stdout=io.StringIO())
    with pytest.raises(CommandError, match="no source 'nowhere'"):
        call_command("source_switch", "nowhere", "--off", "--reason", "x", stdout=io.StringIO())
    out = io.StringIO()
    call_command("source_switch", "st-epic", "--off", "--reason", "EHR contract ended", stdout=out)
    assert out.getvalue().strip() == "source st-epic: switched off"
    source.refresh_from_db()
    export.refresh_from_db()
    assert source.enabled is False
    assert export.status == BulkExport.Status.CANCELLED
    assert export.error == "Cancelled: source switched off: EHR contract ended"
    event = AuditEvent.objects.get(action="bulk.source.switch")
    assert event.detail == {"name": "st-epic", "enabled": False, "reason": "EHR contract ended"}
    assert Client().get(f"/bulk/sources/{source.external_id}/jwks.json").status_code == 404
    BulkExport.objects.update(created_at=timezone.now() - timedelta(hours=2))
    assert exports_schedule() == 0  # switched off: not pulled on its schedule
    with pytest.raises(CommandError, match="switched off"):
        call_command("pull_source", "st-epic", stdout=io.StringIO(), stderr=io.StringIO())
    page = _signed_in(admin).get("/bulk/sources/").content.decode()
    assert "st-epic <small>(switched off)</small>" in page
    assert "Switched off: nothing is pulled from this source" in page and "Pull now" not in page
    # Switching off twice changes nothing and writes nothing.
    again = io.StringIO()
    call_command("source_switch", "st-epic", "--off", "--reason", "again", stdout=again)
    assert "already off; nothing changed" in again.getvalue()
    assert AuditEvent.objects.filter(action="bulk.source.switch").count() == 1

    call_command("source_switch", "st-epic", "--on", "--reason", "new contract", stdout=io.StringIO())
    source.refresh_from_db()
    assert source.enabled is True
    assert Client().get(f"/bulk/sources/{source.external_id}/jwks.json").status_code == 200
    assert exports_schedule() == 1


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_bar_redraws_in_place_on_a_terminal() -> None:
    terminal = _Terminal()
    printer = ProgressPrinter(OutputWrapper(terminal))
    printer(ExportProgress(phase="waiting", message="The EHR is preparing the files"))
    printer(
        ExportProgress(
            phase="downloading", message="Storing Observation file 2", files_total=4, files_done=1,
            lines=1_500, lines_expected=3_000,
        )
    )  # fmt: skip
    printer(ExportProgress(phase="done", message="Done", files_total=4, files_done=4, lines=3_000))
    printer.close()
    text = terminal.getvalue()
    frames = text.split("\r\033[K")[1:]
    assert frames[0].startswith("[" + "." * 30 + "]") and "preparing" in frames[0]
    assert frames[1].startswith("[" + "#" * 15 + "." * 15 + "]  50% Storing Observation file 2")
    assert "(1/4 files, 1,500 records)" in frames[1]
    assert frames[2].startswith("[" + "#" * 30 + "] 100% Done") and text.endswith("\n")
    assert "\033[31" not in text  # progress is not printed as an error
