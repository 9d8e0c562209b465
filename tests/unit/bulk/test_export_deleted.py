"""IG 2.0 ``deleted`` files of an incremental export, against the EHR stand-in over real HTTP: the resources
the EHR deleted since the last pull are read (with the access token, streamed, in groups), the gateway forgets
that it stored them and drops the held ones, the batch and the audit count them, a malformed line is refused
by line number, a resource deleted then created again ends up stored, and a dropped connection applies each
line once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from clinical_ai.accounts.models import Organization, Role
from clinical_ai.audit.models import AuditEvent
from clinical_ai.intake.keys import resource_key
from clinical_ai.intake.models import HeldIdentifier, HeldResource, RawResource, SeenResourceVersion
from integrations.bulk import protocol
from integrations.bulk.models import BulkExport
from tests.bulk_data import patient_bundle_paths, resources_by_type, shared_bundle_paths
from tests.factories import make_organization
from tests.unit.audit.personas import make_user
from tests.unit.bulk.test_export_run import Ehr

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def small_set() -> dict[str, list[dict[str, Any]]]:
    return resources_by_type(patient_bundle_paths(2) + shared_bundle_paths())


@pytest.fixture(autouse=True)
def _quick(settings: Any) -> None:
    settings.BULK_RETRY_MAX_SECONDS = 2
    settings.BULK_EXPORT_LEASE_SECONDS = 60


@pytest.fixture
def pulling(small_set: dict[str, list[dict[str, Any]]]) -> Iterator[Ehr]:
    with Ehr(make_organization("st-elsewhere", "St Elsewhere General"), small_set) as ehr:
        yield ehr


def _seen(organization: Organization, resource_type: str, resource_id: str) -> bool:
    return SeenResourceVersion.objects.filter(
        organization=organization, resource_key_sha256=resource_key(resource_type, resource_id)
    ).exists()


def _held_practitioner(pulling: Ehr) -> str:
    held = HeldResource.objects.filter(organization=pulling.organization, resource_type="Practitioner")
    chosen = held.filter(identifiers__isnull=False).first()
    assert chosen is not None, "the shared set holds practitioners with identifiers"
    return chosen.resource_id


def test_an_incremental_pull_reads_the_deleted_file_and_forgets_what_the_ehr_deleted(pulling: Ehr) -> None:
    first = pulling.pull()
    assert first.status == BulkExport.Status.SUCCEEDED, first.error
    stored_before = RawResource.objects.count()
    practitioner = _held_practitioner(pulling)
    observation = pulling.resources["Observation"][0]["id"]
    assert _seen(pulling.organization, "Observation", observation)

    pulling.ehr.resource_delete("Practitioner", practitioner)
    pulling.ehr.resource_delete("Observation", observation)
    second = pulling.pull()

    assert second.status == BulkExport.Status.SUCCEEDED, second.error
    assert second.since == first.transaction_time
    deleted = [f for f in second.files if f["kind"] == "deleted"]
    assert len(deleted) == 1 and deleted[0]["status"] == "done" and deleted[0]["lines_done"] == 2
    assert pulling.ehr.requests_of("file")[-1].token  # read with the access token, as the output files
    batch = second.batch
    assert batch is not None
    assert batch.deletions_read == 2 and batch.lines_refused == 0
    # The practitioner no longer resolves a reference; the gateway no longer holds the observation's version.
    assert not HeldResource.objects.filter(resource_type="Practitioner", resource_id=practitioner).exists()
    assert not HeldIdentifier.objects.filter(held__resource_id=practitioner).exists()
    assert not _seen(pulling.organization, "Observation", observation)
    # What was already received, de-identified and scored stays on record.
    assert RawResource.objects.count() == stored_before
    finished = AuditEvent.objects.filter(action="bulk.export.finish").latest("seq")
    assert finished.detail["resources_deleted_at_ehr"] == 2
    assert practitioner not in str(finished.detail) and observation not in str(finished.detail)
    # The admin sees it on the sources page, in words.
    client = Client()
    client.force_login(make_user("admin-abe", pulling.organization, Role.ADMIN, is_staff=True))
    html = client.get("/bulk/sources/").content.decode()
    assert "Deleted at the EHR since the last pull" in html


def test_a_resource_deleted_then_created_again_ends_up_stored(pulling: Ehr) -> None:
    assert pulling.pull().status == BulkExport.Status.SUCCEEDED
    observation = dict(pulling.resources["Observation"][1])
    pulling.ehr.resource_delete("Observation", observation["id"])
    pulling.ehr.resource_put(observation)  # the EHR creates it again under the same id

    second = pulling.pull()

    assert second.status == BulkExport.Status.SUCCEEDED, second.error
    assert next(f["kind"] for f in second.files) == "deleted"  # read before the output files
    batch = second.batch
    assert batch is not None
    assert batch.deletions_read == 1 and batch.resources_staged == 1
    assert SeenResourceVersion.objects.filter(
        batch=batch, resource_key_sha256=resource_key("Observation", observation["id"])
    ).exists()


def test_malformed_lines_of_a_deleted_file_are_refused_by_line_number(pulling: Ehr) -> None:
    assert pulling.pull().status == BulkExport.Status.SUCCEEDED
    pulling.ehr.resource_delete("Observation", pulling.resources["Observation"][2]["id"])
    pulling.ehr.deleted_file_extra_lines = [
        b"not json",
        b'{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST","url":"Observation"}}]}',
        b'{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Nonsense/1"}}]}',
    ]
    pulling.ehr.deleted_type_in_manifest = False  # some EHRs leave the type out: still read

    second = pulling.pull()

    assert second.status == BulkExport.Status.SUCCEEDED, second.error
    batch = second.batch
    assert batch is not None
    assert batch.deletions_read == 1
    assert batch.errors == {"unreadable_deletion": 3} and batch.lines_refused == 3
    assert [(e["file"], e["line"]) for e in batch.error_lines] == [
        ("deleted file 1", 2),
        ("deleted file 1", 3),
        ("deleted file 1", 4),
    ]


def test_a_dropped_connection_applies_each_deleted_line_once(
    pulling: Ehr, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("integrations.bulk.services.DELETED_GROUP_LINES", 2)
    assert pulling.pull().status == BulkExport.Status.SUCCEEDED
    for observation in pulling.resources["Observation"][:5]:
        pulling.ehr.resource_delete("Observation", observation["id"])
    line_bytes = len(
        b'{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE",'
        b'"url":"Observation/' + pulling.resources["Observation"][0]["id"].encode() + b'"}}]}\n'
    )
    pulling.ehr.drop_file_after(int(line_bytes * 2.5))  # two lines applied, then the connection drops

    second = pulling.pull()

    assert second.status == BulkExport.Status.SUCCEEDED, second.error
    assert len([r for r in pulling.ehr.requests_of("file") if "deleted" in r.path]) == 2
    batch = second.batch
    assert batch is not None
    assert batch.deletions_read == 5  # not 7: the retry skipped the two lines already applied


def test_deleted_file_lines_name_type_and_id_or_nothing() -> None:
    bundle = (
        b'{"resourceType":"Bundle","type":"transaction","entry":['
        b'{"request":{"method":"DELETE","url":"Observation/o-1"}},'
        b'{"request":{"method":"DELETE","url":"https://ehr.example.org/fhir/Patient/p.2"}}]}\n'
    )
    lines = list(protocol.deleted_file_lines([bundle, b"\n", b'{"resourceType":"Patient","id":"x"}\n']))
    assert lines[0] == protocol.DeletedLine(1, (("Observation", "o-1"), ("Patient", "p.2")))
    assert lines[1].number == 3 and lines[1].unreadable
