"""Bulk intake on SQLite: Synthea NDJSON split per patient into staging jobs, resources of no patient held,
idempotent across batches, bad lines reported by number while the rest goes in, caps, and an exact resume
after a crash."""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from clinical_ai.core.sealing import open_json
from clinical_ai.deid.engine.pipeline import EntryInput, group_by_patient
from clinical_ai.fhir.ndjson import version_marker
from clinical_ai.fhir.references import identifier_key
from clinical_ai.intake import bulk
from clinical_ai.intake.bulk import (
    BatchClosed,
    BatchWriter,
    FileProgress,
    batch_cancel,
    batch_finish,
    batch_open,
    batches_abandoned_cancel,
)
from clinical_ai.intake.keys import patient_key, resource_key, version_key
from clinical_ai.intake.models import (
    BulkBatch,
    HeldIdentifier,
    HeldResource,
    IngestJob,
    RawResource,
    SeenResourceVersion,
)
from clinical_ai.intake.selectors import batch_progress, batch_refresh_status
from clinical_ai.intake.services import (
    OpenedEntry,
    PermanentJobError,
    StageOutcome,
    ingest_job_claim,
    ingest_job_run,
)
from clinical_ai.vault.pseudonyms import patient_identity
from tests.bulk_data import ndjson_bytes, patient_bundle_paths, resources_by_type, shared_bundle_paths

pytestmark = pytest.mark.django_db

ACTOR = Actor.system("tests.bulk")


def _chunks(data: bytes, size: int = 65536) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture(scope="module")
def synthea() -> dict[str, list[dict[str, Any]]]:
    """The three smallest Synthea patients and the hospital and practitioner bundles, as an export delivers
    them."""
    smallest = sorted(patient_bundle_paths(), key=lambda path: path.stat().st_size)[:3]
    return resources_by_type([*smallest, *shared_bundle_paths()])


def _files(grouped: dict[str, list[dict[str, Any]]]) -> dict[str, bytes]:
    return {
        f"{resource_type}.ndjson": ndjson_bytes(resources) for resource_type, resources in grouped.items()
    }


def _ingest(organization: Organization, files: dict[str, bytes], *, label: str = "synthea") -> BulkBatch:
    batch = batch_open(organization=organization, origin=BulkBatch.Origin.FILE, label=label, actor=ACTOR)
    writer = BatchWriter(batch, actor=ACTOR)
    for name, data in files.items():
        writer.feed(name, _chunks(data))
    batch.refresh_from_db()
    return batch


def _expected(grouped: dict[str, list[dict[str, Any]]]) -> tuple[Counter[str], int]:
    """Resources per patient reference, and how many belong to no patient, computed from the data."""
    per_patient: Counter[str] = Counter()
    orphans = 0
    for resources in grouped.values():
        for resource in resources:
            if resource["resourceType"] == "Patient":
                per_patient[f"Patient/{resource['id']}"] += 1
                continue
            reference = next(
                (
                    resource[link]["reference"]
                    for link in ("subject", "patient", "beneficiary")
                    if isinstance(resource.get(link), dict)
                ),
                "",
            )
            if reference.startswith("Patient/"):
                per_patient[reference] += 1
            else:
                orphans += 1
    return per_patient, orphans


def _staged_per_patient(batch: BulkBatch) -> dict[str, int]:
    return {
        job.patient_key_sha256: job.raw_resources.count()
        for job in IngestJob.objects.filter(batch=batch).order_by("pk")
    }


def test_synthea_is_split_into_one_staging_job_per_patient(
    organization: Organization, synthea: dict[str, list[dict[str, Any]]]
) -> None:
    batch = _ingest(organization, _files(synthea))
    per_patient, orphans = _expected(synthea)
    assert len(per_patient) == 3
    assert _staged_per_patient(batch) == {patient_key(ref): n for ref, n in per_patient.items()}
    jobs = list(IngestJob.objects.filter(batch=batch))
    assert {(j.kind, j.status, j.client_id, j.organization_id) for j in jobs} == {
        (IngestJob.Kind.BULK, IngestJob.Status.STAGING, None, organization.pk)
    }
    total = sum(len(resources) for resources in synthea.values())
    assert (batch.lines_read, batch.resources_staged, batch.references_held) == (
        total,
        sum(per_patient.values()),
        orphans,
    )
    assert (batch.duplicates_skipped, batch.lines_refused, batch.errors, batch.patients_total) == (
        0,
        0,
        {},
        3,
    )

    # each entry is sealed as a pushed Bundle's entry is, indexes 0..n-1 in each job
    for job in jobs:
        raws = list(job.raw_resources.order_by("entry_index"))
        assert [raw.entry_index for raw in raws] == list(range(len(raws)))
        for raw in raws[:20]:
            document = open_json(raw.sealed, associated_data=raw.associated_data)
            resource = document["resource"]
            reference = f"{resource['resourceType']}/{resource['id']}"
            assert document == {
                "fullUrl": reference,
                "request": {"method": "PUT", "url": reference},
                "resource": resource,
            }
            assert raw.resource_type == resource["resourceType"]

    # a job is exactly one patient for the de-identification pipeline: no second group, no orphan
    for job in jobs:
        entries = [
            EntryInput(raw.entry_index, document.get("fullUrl"), document["resource"])
            for raw in job.raw_resources.order_by("entry_index")
            for document in [open_json(raw.sealed, associated_data=raw.associated_data)]
        ]
        groups, orphaned = group_by_patient(entries)
        assert len(groups) == 1 and orphaned == []
        assert groups[0].patient_resource is not None and len(groups[0].entries) == len(entries)

    # the versions stored are keyed digests: neither the resource's type/id nor its version marker in a
    # plain digest anyone could compute from the EHR's data
    patient = synthea["Patient"][0]
    seen = SeenResourceVersion.objects.get(
        organization=organization, resource_key_sha256=resource_key("Patient", patient["id"])
    )
    plain = hashlib.sha256(version_marker(patient).encode("utf-8")).hexdigest()
    assert seen.version_sha256 == version_key(patient) != plain
    assert seen.resource_key_sha256 != hashlib.sha256(f"Patient/{patient['id']}".encode()).hexdigest()


def test_resources_of_no_patient_are_held_with_their_identifiers(
    organization: Organization, synthea: dict[str, list[dict[str, Any]]]
) -> None:
    _ingest(organization, _files(synthea))
    practitioner = synthea["Practitioner"][0]
    held = HeldResource.objects.get(
        organization=organization, resource_type="Practitioner", resource_id=practitioner["id"]
    )
    assert open_json(held.sealed, associated_data=held.associated_data) == practitioner
    npi = practitioner["identifier"][0]
    digest = identifier_key(
        key=settings.PSEUDONYM_KEY.encode("utf-8"),
        organization=organization.slug,
        resource_type="Practitioner",
        system=npi["system"],
        value=npi["value"],
    )
    assert list(
        HeldIdentifier.objects.filter(
            organization=organization, resource_type="Practitioner", identifier_sha256=digest
        ).values_list("held_id", flat=True)
    ) == [held.pk]
    types = set(HeldResource.objects.values_list("resource_type", flat=True))
    assert {"Practitioner", "PractitionerRole", "Organization", "Location"} <= types
    assert "Patient" not in types and "Observation" not in types
    # no identifier is stored in clear
    assert npi["value"] not in json.dumps(list(HeldIdentifier.objects.values()), default=str)


def test_the_same_files_again_add_nothing_and_a_changed_version_is_taken(
    organization: Organization, synthea: dict[str, list[dict[str, Any]]]
) -> None:
    files = _files(synthea)
    first = _ingest(organization, files, label="first")
    assert batch_finish(first, actor=ACTOR) == 3
    raw_count, held_count = RawResource.objects.count(), HeldResource.objects.count()

    again = _ingest(organization, files, label="again")
    assert (again.resources_staged, again.references_held, again.lines_refused) == (0, 0, 0)
    assert again.duplicates_skipped == first.resources_staged + first.references_held
    assert IngestJob.objects.filter(batch=again).count() == 0
    assert (RawResource.objects.count(), HeldResource.objects.count()) == (raw_count, held_count)
    assert batch_finish(again, actor=ACTOR) == 0
    again.refresh_from_db()
    assert again.status == BulkBatch.Status.SUCCEEDED

    changed = json.loads(json.dumps(synthea["Observation"][5]))
    changed["meta"] = {"versionId": "2", "lastUpdated": "2030-01-01T00:00:00Z"}
    changed_practitioner = {**synthea["Practitioner"][0], "active": False}
    third = _ingest(
        organization,
        {
            "Observation.ndjson": ndjson_bytes([changed, *synthea["Observation"][:5]]),
            "Practitioner.ndjson": ndjson_bytes([changed_practitioner]),
        },
        label="third",
    )
    assert (third.resources_staged, third.references_held, third.duplicates_skipped) == (1, 1, 5)
    job = IngestJob.objects.get(batch=third)
    assert job.patient_key_sha256 == patient_key(changed["subject"]["reference"])
    raw = job.raw_resources.get()
    assert open_json(raw.sealed, associated_data=raw.associated_data)["resource"] == changed
    held = HeldResource.objects.get(resource_type="Practitioner", resource_id=changed_practitioner["id"])
    assert open_json(held.sealed, associated_data=held.associated_data) == changed_practitioner
    assert HeldResource.objects.count() == held_count  # upserted, not added

    # the patient did not change, so the export did not resend them: at finish the job gets the Patient as
    # the first batch stored it, and the pipeline names the patient exactly as it did then
    assert batch_finish(third, actor=ACTOR) == 1
    job.refresh_from_db()
    documents = [
        open_json(r.sealed, associated_data=r.associated_data)
        for r in job.raw_resources.order_by("entry_index")
    ]
    assert [d["resource"]["resourceType"] for d in documents] == ["Observation", "Patient"]
    assert job.resource_count == 2
    patient = next(p for p in synthea["Patient"] if f"Patient/{p['id']}" == changed["subject"]["reference"])
    assert documents[1]["resource"] == patient
    entries = [EntryInput(i, d["fullUrl"], d["resource"]) for i, d in enumerate(documents)]
    groups, orphans = group_by_patient(entries)
    assert orphans == [] and len(groups) == 1
    assert groups[0].identity == patient_identity(patient, f"Patient/{patient['id']}")
    assert groups[0].identity.startswith("identifier:")  # by medical record number, as the first time


def test_a_repeated_line_within_one_batch_is_a_duplicate(organization: Organization) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female"}
    data = ndjson_bytes([patient, patient, {**patient, "gender": "male"}])
    batch = _ingest(organization, {"Patient.ndjson": data})
    assert (batch.resources_staged, batch.duplicates_skipped) == (2, 1)
    assert RawResource.objects.filter(job__batch=batch).count() == 2


@override_settings(BULK_MAX_LINE_BYTES=4000)
def test_bad_lines_are_reported_by_number_and_the_rest_goes_in(organization: Organization) -> None:
    good = [
        {"resourceType": "Patient", "id": "p1", "gender": "female"},
        {
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": "Patient/p1"},
        },
        {"resourceType": "Medication", "id": "m1", "code": {"text": "aspirin"}},
    ]
    lines = [
        json.dumps(good[0]).encode(),  # 1
        b'{"resourceType": "Observation", "id": "broken"',  # 2 not_json
        b"",  # 3 blank: neither a resource nor a refusal
        b'{"resourceType": "Starship", "id": "s1"}',  # 4 unknown type
        json.dumps(good[1]).encode(),  # 5
        b'{"resourceType": "Patient", "id": "' + b"x" * 5000 + b'"}',  # 6 too long
        b'{"resourceType": "Patient", "gender": "female"}',  # 7 no id
        b'{"resourceType": "Patient", "id": "p9", "gender": "sometimes"}',  # 8 invalid
        b"[1, 2]",  # 9 not an object
        json.dumps(good[2]).encode(),  # 10
    ]
    data = b"\r\n".join(lines)  # CRLF, no final newline
    batch = batch_open(organization=organization, origin=BulkBatch.Origin.FILE, label="bad", actor=ACTOR)
    progress = BatchWriter(batch, actor=ACTOR).feed("mixed.ndjson", _chunks(data, 7))
    assert progress == FileProgress(lines=10, staged=2, duplicates=0, held=1, refused=6, bytes=len(data))
    batch.refresh_from_db()
    assert batch.error_lines == [
        {"file": "mixed.ndjson", "line": 2, "reason": "not_json"},
        {"file": "mixed.ndjson", "line": 4, "reason": "unknown_resource_type"},
        {"file": "mixed.ndjson", "line": 6, "reason": "too_long"},
        {"file": "mixed.ndjson", "line": 7, "reason": "no_id"},
        {"file": "mixed.ndjson", "line": 8, "reason": "invalid"},
        {"file": "mixed.ndjson", "line": 9, "reason": "not_an_object"},
    ]
    assert batch.errors == {
        "not_json": 1,
        "unknown_resource_type": 1,
        "too_long": 1,
        "no_id": 1,
        "invalid": 1,
        "not_an_object": 1,
    }
    assert (batch.lines_read, batch.lines_refused, batch.resources_staged, batch.references_held) == (
        10,
        6,
        2,
        1,
    )
    # the batch keeps no content of a refused line
    assert "broken" not in json.dumps(batch.error_lines) and "Starship" not in json.dumps(batch.error_lines)


def test_only_the_first_hundred_error_lines_are_kept(organization: Organization) -> None:
    data = b"nope\n" * 150
    batch = _ingest(organization, {"junk.ndjson": data})
    assert batch.errors == {"not_json": 150} and batch.lines_refused == 150
    assert [e["line"] for e in batch.error_lines] == list(range(1, 101))


def test_past_the_file_cap_the_file_stops_and_what_was_read_stays(
    organization: Organization, synthea: dict[str, list[dict[str, Any]]]
) -> None:
    observations = synthea["Observation"][:40]
    data = ndjson_bytes(observations)
    line_ends = [len(ndjson_bytes(observations[: i + 1])) for i in range(len(observations))]
    cap = line_ends[24] + 100  # 25 whole lines, then the cap cuts the 26th
    batch = batch_open(organization=organization, origin=BulkBatch.Origin.FILE, label="cap", actor=ACTOR)
    with override_settings(BULK_MAX_FILE_BYTES=cap):
        progress = BatchWriter(batch, actor=ACTOR).feed("Observation.ndjson", _chunks(data, 1000))
    assert (progress.stopped, progress.lines, progress.staged, progress.refused) == (
        "file_too_large",
        25,
        25,
        0,
    )
    assert progress.bytes == line_ends[24]
    batch.refresh_from_db()
    assert batch.errors == {"file_too_large": 1}
    assert batch.error_lines == [{"file": "Observation.ndjson", "line": 26, "reason": "file_too_large"}]
    assert batch.resources_staged == 25 and batch.lines_refused == 0


class _Crash(Exception):
    pass


def _crashing(data: bytes, after: int) -> Iterator[bytes]:
    """The stream dies (a worker killed, a connection dropped) after ``after`` bytes."""
    yield from _chunks(data[:after], 4096)
    raise _Crash


@pytest.mark.parametrize("by_bytes", [False, True], ids=["skip-lines", "byte-range"])
def test_a_resume_after_a_crash_is_exact(
    organization: Organization,
    other_organization: Organization,
    synthea: dict[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    by_bytes: bool,
) -> None:
    monkeypatch.setattr(bulk, "GROUP_LINES", 50)
    data = b"".join(ndjson_bytes(r) for r in synthea.values())
    clean = _ingest(other_organization, {"all.ndjson": data})

    batch = batch_open(organization=organization, origin=BulkBatch.Origin.EXPORT, label="crash", actor=ACTOR)
    saved: list[FileProgress] = []  # what a caller records with each group (e.g. the export row)
    with pytest.raises(_Crash):
        BatchWriter(batch, actor=ACTOR).feed(
            "all.ndjson", _crashing(data, len(data) // 2), on_progress=saved.append
        )
    last = saved[-1]
    assert last.lines > 0 and last.bytes < len(data) // 2
    batch.refresh_from_db()
    assert batch.lines_read == last.lines  # what the DB holds is exactly what was reported

    resumed = BatchWriter(BulkBatch.objects.get(pk=batch.pk), actor=ACTOR)  # a new process
    if by_bytes:
        resumed.feed(
            "all.ndjson", _chunks(data[last.bytes :]), line_offset=last.lines, byte_offset=last.bytes
        )
    else:
        resumed.feed("all.ndjson", _chunks(data), skip_lines=last.lines)
    batch.refresh_from_db()
    fields = ("lines_read", "resources_staged", "duplicates_skipped", "references_held", "lines_refused")
    assert [getattr(batch, f) for f in fields] == [getattr(clean, f) for f in fields]
    assert batch.duplicates_skipped == 0
    assert _staged_per_patient(batch) == _staged_per_patient(clean)
    for job in IngestJob.objects.filter(batch=batch):
        indexes = list(job.raw_resources.order_by("entry_index").values_list("entry_index", flat=True))
        assert indexes == list(range(len(indexes)))


def test_finish_queues_the_jobs_and_progress_follows_them(
    organization: Organization,
    synthea: dict[str, list[dict[str, Any]]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    batch = _ingest(organization, _files(synthea))
    progress = batch_progress(batch)
    assert progress.status == "receiving" and progress.status_text.startswith("Receiving:")
    with django_capture_on_commit_callbacks() as callbacks:
        assert batch_finish(batch, actor=ACTOR) == 3
    assert len(callbacks) == 3  # one dispatch per patient's job, after commit
    assert batch.status == BulkBatch.Status.PROCESSING and batch.received_at is not None
    jobs = list(IngestJob.objects.filter(batch=batch))
    assert {j.status for j in jobs} == {IngestJob.Status.QUEUED}
    assert all(j.resource_count == j.raw_resources.count() > 0 for j in jobs)
    # Dispatched largest first, so that the batch does not end waiting on one big patient started last.
    sizes = {str(j.external_id): j.resource_count for j in jobs}
    dispatched = [sizes[callback.keywords["job_id"]] for callback in callbacks]
    assert dispatched == sorted(sizes.values(), reverse=True)
    with pytest.raises(BatchClosed):
        BatchWriter(batch, actor=ACTOR).feed("late.ndjson", iter([b"{}\n"]))
    assert batch_finish(batch, actor=ACTOR) == 0  # a second finish does nothing

    progress = batch_progress(batch)
    assert (progress.patients_total, progress.patients_done, progress.percent_done) == (3, 0, 0)
    assert progress.status_text == "Processing: 0 of 3 patients done"
    assert batch_refresh_status(batch) == BulkBatch.Status.PROCESSING
    IngestJob.objects.filter(pk=jobs[0].pk).update(status=IngestJob.Status.SUCCEEDED)
    IngestJob.objects.filter(pk=jobs[1].pk).update(status=IngestJob.Status.SUCCEEDED)
    assert batch_refresh_status(batch) == BulkBatch.Status.PROCESSING
    IngestJob.objects.filter(pk=jobs[2].pk).update(status=IngestJob.Status.FAILED)
    assert batch_refresh_status(batch) == BulkBatch.Status.FAILED
    progress = batch_progress(batch)
    assert (progress.patients_done, progress.patients_failed, progress.percent_done) == (2, 1, 100)
    assert progress.error == "1 of 3 patients failed"

    events = list(AuditEvent.objects.filter(object_id=str(batch.external_id)).order_by("pk"))
    assert [e.action for e in events] == ["intake.batch.open", "intake.batch.finish"]
    assert events[1].detail["resources_staged"] == batch.resources_staged
    assert events[1].detail["jobs_queued"] == 3
    patient = synthea["Patient"][0]
    assert patient["id"] not in json.dumps([e.detail for e in events])


def test_cancel_drops_the_staged_jobs_and_a_later_batch_takes_them_again(
    organization: Organization, synthea: dict[str, list[dict[str, Any]]]
) -> None:
    files = _files(synthea)
    cancelled = _ingest(organization, files, label="cancelled")
    batch_cancel(cancelled, actor=ACTOR, reason="operator stopped the pull")
    assert cancelled.status == BulkBatch.Status.CANCELLED
    assert set(IngestJob.objects.filter(batch=cancelled).values_list("status", flat=True)) == {"failed"}
    assert RawResource.objects.filter(job__batch=cancelled).count() == 0
    assert SeenResourceVersion.objects.filter(batch=cancelled).count() == 0
    later = _ingest(organization, files, label="later")
    assert later.resources_staged == cancelled.resources_staged and later.duplicates_skipped == 0
    event = AuditEvent.objects.filter(object_id=str(cancelled.external_id)).order_by("pk").last()
    assert event is not None and event.action == "intake.batch.finish" and event.outcome == "failure"


def test_a_file_batch_its_sender_abandoned_is_cancelled_by_the_sweep_and_the_lines_taken_again(
    organization: Organization, synthea: dict[str, list[dict[str, Any]]], settings: Any
) -> None:
    """``ingest_ndjson`` killed half-way leaves a batch receiving: after INTAKE_BATCH_IDLE_SECONDS without a
    line the intake sweep cancels it, so the same files loaded again are stored, not skipped."""
    settings.INTAKE_BATCH_IDLE_SECONDS = 600
    files = _files(synthea)
    abandoned = _ingest(organization, files, label="killed")
    pulled = batch_open(organization=organization, origin=BulkBatch.Origin.EXPORT, label="pull", actor=ACTOR)
    now = timezone.now()
    assert batches_abandoned_cancel(now=now + timedelta(seconds=599)) == 0  # still within the idle time
    call_command("intake_sweep", stdout=io.StringIO())  # the real clock: nothing is old enough yet
    abandoned.refresh_from_db()
    assert abandoned.status == BulkBatch.Status.RECEIVING
    assert batches_abandoned_cancel(now=now + timedelta(seconds=601)) == 1
    abandoned.refresh_from_db()
    pulled.refresh_from_db()
    assert abandoned.status == BulkBatch.Status.CANCELLED
    assert abandoned.error == "Abandoned: nothing received for 10 minutes"
    assert pulled.status == BulkBatch.Status.RECEIVING  # a pulled export ends its own batch
    again = _ingest(organization, files, label="again")
    assert again.duplicates_skipped == 0 and again.resources_staged == abandoned.resources_staged


def test_a_patient_whose_job_failed_for_good_is_taken_again_when_sent_again(
    organization: Organization, synthea: dict[str, list[dict[str, Any]]]
) -> None:
    files = _files(synthea)
    first = _ingest(organization, files, label="first")
    assert batch_finish(first, actor=ACTOR) == 3
    jobs = list(IngestJob.objects.filter(batch=first).order_by("pk"))
    failing = jobs[0]

    def unusable(job: IngestJob, entries: list[OpenedEntry], actor: Actor) -> StageOutcome:
        raise PermanentJobError("content the engine cannot process", {"error": "ValueError"})

    claim = ingest_job_claim(job_id=str(failing.external_id), task_id="t", worker="w")
    assert claim.job is not None
    ingest_job_run(job=claim.job, actor=ACTOR, stage=unusable)
    failing.refresh_from_db()
    assert failing.status == IngestJob.Status.FAILED
    event = AuditEvent.objects.filter(action="intake.job.process", object_id=str(failing.external_id)).get()
    assert event.outcome == "failure" and event.detail["versions_forgotten"] == failing.resource_count > 0

    # The same files again: the failed patient's resources are stored again, the others skipped.
    again = _ingest(organization, files, label="again")
    assert again.resources_staged == failing.resource_count
    assert again.duplicates_skipped == first.resources_staged - failing.resource_count + first.references_held
    assert batch_finish(again, actor=ACTOR) == 1
    retried = IngestJob.objects.get(batch=again)
    assert retried.patient_key_sha256 == failing.patient_key_sha256


def test_the_last_job_to_finish_marks_the_batch_done(
    organization: Organization,
    synthea: dict[str, list[dict[str, Any]]],
    django_capture_on_commit_callbacks: Any,
) -> None:
    batch = _ingest(organization, {"Patient.ndjson": ndjson_bytes(synthea["Patient"])})
    assert batch_finish(batch, actor=ACTOR) == 3

    def opened_only(job: IngestJob, entries: list[OpenedEntry], actor: Actor) -> StageOutcome:
        assert [e.resource["resourceType"] for e in entries] == ["Patient"]
        return StageOutcome(detail={})

    for number, job in enumerate(IngestJob.objects.filter(batch=batch).order_by("pk"), start=1):
        claim = ingest_job_claim(job_id=str(job.external_id), task_id="t", worker="w")
        assert claim.job is not None
        with django_capture_on_commit_callbacks(execute=True):
            assert ingest_job_run(job=claim.job, actor=ACTOR, stage=opened_only)
        batch.refresh_from_db()
        expected = BulkBatch.Status.SUCCEEDED if number == 3 else BulkBatch.Status.PROCESSING
        assert batch.status == expected
