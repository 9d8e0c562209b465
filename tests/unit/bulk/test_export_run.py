"""The export driver against the EHR stand-in over real HTTP on loopback: the gateway signs its client
assertions with its own key (the stand-in checks them with the JWK Set the gateway serves), kicks off, waits,
streams the Synthea NDJSON into the bulk intake, reads the error file, deletes the job at the EHR; and the
faults: 429 and 500 then success, too many, a manifest naming another host, a connection dropped mid-file,
a worker gone mid-download (the next claim resumes with Range and stores nothing twice), the time budget."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from clinical_ai.intake.models import BulkBatch, IngestJob, RawResource
from integrations.bulk.models import BulkExport, EhrSource
from integrations.bulk.services import (
    ExportProgress,
    export_cancel,
    export_request,
    export_run,
    source_create,
    source_jwks,
)
from tests.bulk_data import patient_bundle_paths, resources_by_type, shared_bundle_paths
from tests.ehr_standin import EhrStandIn, outcome
from tests.factories import make_organization

pytestmark = pytest.mark.django_db

ACTOR = Actor.system("tests")


@pytest.fixture(scope="module")
def small_set() -> dict[str, list[dict[str, Any]]]:
    """Two patients and the shared practitioners and organizations: quick, and still every kind of line."""
    return resources_by_type(patient_bundle_paths(2) + shared_bundle_paths())


@pytest.fixture
def organization() -> Organization:
    return make_organization("st-elsewhere", "St Elsewhere General")


@pytest.fixture(autouse=True)
def _quick(settings: Any) -> None:
    settings.BULK_RETRY_MAX_SECONDS = 2
    settings.BULK_EXPORT_LEASE_SECONDS = 60


class Ehr:
    """A registered source and the stand-in that knows the gateway by the source's public JWK Set."""

    def __init__(self, organization: Organization, resources: dict[str, list[dict[str, Any]]]) -> None:
        self.organization = organization
        self.resources = resources
        self.stand_in: EhrStandIn | None = None
        self.source: EhrSource | None = None

    def __enter__(self) -> Ehr:
        # The source's base URL is only known once the server listens: register it after.
        self.stand_in = EhrStandIn(self.resources, client_id="gateway", client_jwks={"keys": []})
        self.stand_in.__enter__()
        self.source = source_create(
            organization=self.organization,
            name="st-epic",
            fhir_base_url=self.stand_in.base_url,
            client_id="gateway",
            actor=ACTOR,
        )
        self.stand_in.client_jwks = source_jwks(self.source)  # what the EHR's team registered
        self.stand_in.retry_after = "1"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.stand_in is not None
        self.stand_in.__exit__(*exc)

    @property
    def ehr(self) -> EhrStandIn:
        assert self.stand_in is not None
        return self.stand_in

    def pull(self, *, full: bool = False, task_id: str = "t1", **extra: Any) -> BulkExport:
        assert self.source is not None
        self.source.refresh_from_db()
        export = export_request(
            source=self.source, actor=ACTOR, full=full, requested_by="tests", dispatch=False
        )
        return self.run(export, task_id=task_id, **extra)

    def run(self, export: BulkExport, *, task_id: str = "t1", **extra: Any) -> BulkExport:
        finished = export_run(
            export_id=str(export.external_id), task_id=task_id, worker="w", actor=ACTOR, **extra
        )
        assert finished is not None
        return finished


@pytest.fixture
def pulling(organization: Organization, small_set: dict[str, list[dict[str, Any]]]) -> Iterator[Ehr]:
    with Ehr(organization, small_set) as ehr:
        yield ehr


def _stored(batch: BulkBatch) -> int:
    return RawResource.objects.filter(job__batch=batch).count()


def _total(resources: dict[str, list[dict[str, Any]]]) -> int:
    return sum(len(v) for v in resources.values())


def test_full_export_of_the_synthea_set_then_an_incremental_one(organization: Organization) -> None:
    everything = resources_by_type()
    with Ehr(organization, everything) as pulling:
        pulling.ehr.polls_before_ready = 2
        seen: list[ExportProgress] = []
        export = pulling.pull(on_progress=seen.append)
        assert export.status == BulkExport.Status.SUCCEEDED, export.error
        batch = export.batch
        assert batch is not None
        total = _total(everything)
        assert batch.lines_read == total and batch.lines_refused == 0
        assert batch.resources_staged + batch.references_held == total
        assert _stored(batch) == batch.resources_staged  # each patient's resource stored once
        patients = len(everything["Patient"])
        assert IngestJob.objects.filter(batch=batch, kind=IngestJob.Kind.BULK).count() == patients
        assert batch.patients_total == patients
        # What the EHR saw: a signed-in kick-off with no _since, polls, every file, then the job deleted.
        kickoff = pulling.ehr.requests_of("kickoff")[0]
        assert kickoff.token and "_since" not in kickoff.query
        assert len(pulling.ehr.requests_of("status")) == 3
        assert pulling.ehr.jobs_deleted and pulling.ehr.requests_of("delete")[0].status == 202
        assert export.polls == 2 and export.progress == ""
        source = EhrSource.objects.get(pk=export.source_id)
        assert source.last_transaction_time == export.transaction_time is not None
        phases = [p.phase for p in seen]
        assert phases[0] == "kickoff" and "waiting" in phases and "downloading" in phases
        assert seen[-1].lines == total and seen[-1].lines_expected == total
        finished = AuditEvent.objects.get(action="bulk.export.finish")
        assert finished.outcome == "success"
        assert finished.detail["lines_read"] == total and finished.detail["patients_queued"] == patients
        assert "http" not in str(finished.detail) and "bulkstatus" not in str(finished.detail)

        # The EHR updates one observation: the next pull asks only for what changed since.
        changed = dict(everything["Observation"][0])
        changed["status"] = "amended"
        pulling.ehr.resource_put(changed)
        second = pulling.pull()
        assert second.status == BulkExport.Status.SUCCEEDED, second.error
        assert second.since == export.transaction_time
        assert pulling.ehr.requests_of("kickoff")[1].query["_since"]
        assert second.batch is not None
        assert second.batch.lines_read == 1 and second.batch.resources_staged == 1


def test_a_full_pull_again_stores_nothing_twice(pulling: Ehr) -> None:
    first = pulling.pull()
    again = pulling.pull(full=True)
    assert first.status == again.status == BulkExport.Status.SUCCEEDED, again.error
    assert again.since is None
    assert again.batch is not None
    assert again.batch.lines_read == _total(pulling.resources)
    assert again.batch.resources_staged == 0 and _stored(again.batch) == 0
    assert again.batch.duplicates_skipped > 0


def test_429_and_500_then_success(pulling: Ehr) -> None:
    pulling.ehr.throttle("kickoff", 1, retry_after="1")
    pulling.ehr.fail_next("status", 500, 1)
    pulling.ehr.throttle("status", 1, retry_after="1")
    pulling.ehr.fail_next("file", 503, 1, retry_after="1")
    export = pulling.pull()
    assert export.status == BulkExport.Status.SUCCEEDED, export.error
    assert [r.status for r in pulling.ehr.requests_of("kickoff")] == [429, 202]
    assert [r.status for r in pulling.ehr.requests_of("status")][:2] == [500, 429]
    assert export.batch is not None and export.batch.lines_read == _total(pulling.resources)
    assert _stored(export.batch) == export.batch.resources_staged


def test_too_many_failures_fail_the_export_with_a_reason_an_admin_reads(pulling: Ehr, settings: Any) -> None:
    settings.BULK_MAX_TRANSIENT_RETRIES = 2
    pulling.ehr.fail_next("kickoff", 503, 5, retry_after="0")
    export = pulling.pull()
    assert export.status == BulkExport.Status.FAILED
    assert "The EHR was busy or failing (HTTP 503) 3 times in a row" in export.error
    assert len(pulling.ehr.requests_of("kickoff")) == 3
    source = EhrSource.objects.get(name="st-epic")
    assert source.last_transaction_time is None  # only a successful export moves _since
    finished = AuditEvent.objects.get(action="bulk.export.finish")
    assert finished.outcome != "success" and "503" in finished.detail["reason"]
    assert export.batch is not None and export.batch.status == BulkBatch.Status.CANCELLED


def test_error_file_is_counted_by_reason_without_its_text(pulling: Ehr) -> None:
    pulling.ehr.error_file_lines = [
        outcome("not-found", "Patient Jane Q Public (MRN 555-12-3456) not found"),
        outcome("not-found", "another"),
        outcome("processing", "Encounter for Jane Q Public unreadable"),
    ]
    pulling.ehr.add_malformed_line("Observation", b'{"resourceType": "Observation", "id": ', at=3)
    export = pulling.pull()
    assert export.status == BulkExport.Status.SUCCEEDED, export.error
    batch = export.batch
    assert batch is not None
    assert batch.errors == {
        "the EHR reported: not-found": 2,
        "the EHR reported: processing": 1,
        "not_json": 1,
    }
    assert batch.lines_refused == 4
    # The malformed line is reported by file and line number; the rest of its file is stored.
    observations = next(f for f in export.files if f["type"] == "Observation")
    assert {"line": 4, "reason": "not_json"}.items() <= batch.error_lines[0].items()
    assert observations["lines_done"] == len(pulling.resources["Observation"]) + 1
    assert "Jane" not in str(batch.error_lines) and "Jane" not in str(export.files)
    assert [f["kind"] for f in export.files].count("error") == 1


def test_manifest_naming_another_host_is_refused(pulling: Ehr) -> None:
    pulling.ehr.files_on_other_host = "files.example.org"
    export = pulling.pull()
    assert export.status == BulkExport.Status.FAILED
    assert "another host" in export.error or "host" in export.error
    assert pulling.ehr.requests_of("file") == []
    assert "files.example.org" not in export.error


@pytest.mark.parametrize("range_supported", [True, False], ids=["range", "no-range"])
def test_a_dropped_connection_resumes_and_stores_each_line_once(
    organization: Organization, range_supported: bool
) -> None:
    # One file of 1,559 observations (1.3 MB): the connection drops after two groups of 500 lines were read
    # and one committed; the download goes on from the first line not stored.
    observations = {"Observation": resources_by_type()["Observation"]}
    with Ehr(organization, observations) as pulling:
        pulling.ehr.range_supported = range_supported
        pulling.ehr.drop_file_after(800_000)
        export = pulling.pull()
        assert export.status == BulkExport.Status.SUCCEEDED, export.error
        downloads = pulling.ehr.requests_of("file")
        assert len(downloads) == 2 and downloads[0].range is None
        resumed_from = int((downloads[1].range or "").removeprefix("bytes=").rstrip("-"))
        assert 0 < resumed_from < 800_000
        batch = export.batch
        assert batch is not None
        assert batch.lines_read == 1559
        assert _stored(batch) == batch.resources_staged == 1559 and batch.duplicates_skipped == 0
        assert export.files[0]["lines_done"] == 1559 and export.files[0]["status"] == "done"


class WorkerGone(BaseException):
    """A worker killed mid-download: nothing of this run's last group is committed, the row stays running."""


def test_a_worker_gone_mid_download_is_resumed_by_the_next_claim(pulling: Ehr) -> None:
    pulling.ehr.lines_per_file = 500
    pulling.ehr.range_supported = True
    assert pulling.source is not None
    export = export_request(source=pulling.source, actor=ACTOR, requested_by="tests", dispatch=False)
    groups = 0

    def die_at_the_third_group(progress: ExportProgress) -> None:
        nonlocal groups
        if progress.phase == "downloading" and progress.message.startswith("Storing"):
            groups += 1
            if groups == 3:
                raise WorkerGone

    with pytest.raises(WorkerGone):
        export_run(
            export_id=str(export.external_id), task_id="t1", worker="w1", actor=ACTOR,
            on_progress=die_at_the_third_group,
        )  # fmt: skip
    export.refresh_from_db()
    assert export.status == BulkExport.Status.RUNNING and export.phase == BulkExport.Phase.DOWNLOADING
    done_before = [f["url"] for f in export.files if f["status"] == "done"]
    requested_before = len(pulling.ehr.requests_of("file"))
    # Another message (another task id) cannot take it while the lease holds; once it runs out it can.
    assert export_run(export_id=str(export.external_id), task_id="t2", worker="w2", actor=ACTOR) is None
    BulkExport.objects.filter(pk=export.pk).update(lease_expires_at=timezone.now())
    finished = pulling.run(export, task_id="t2")
    assert finished.status == BulkExport.Status.SUCCEEDED, finished.error
    assert finished.attempts == 2
    later = pulling.ehr.requests_of("file")[requested_before:]
    assert not any(r.path.endswith(url.rsplit("/", 1)[1]) for r in later for url in done_before)
    assert pulling.ehr.requests_of("kickoff")[1:] == []  # the status URL was kept
    batch = finished.batch
    assert batch is not None
    assert batch.lines_read == _total(pulling.resources)
    assert _stored(batch) == batch.resources_staged and batch.duplicates_skipped == 0


def test_past_its_budget_a_run_goes_back_to_the_queue_and_the_next_one_finishes(pulling: Ehr) -> None:
    pulling.ehr.polls_before_ready = 1
    pulling.ehr.retry_after = "3"
    assert pulling.source is not None
    export = export_request(source=pulling.source, actor=ACTOR, requested_by="tests", dispatch=False)
    paused = pulling.run(export, budget_seconds=1)
    assert paused.status == BulkExport.Status.QUEUED and paused.phase == BulkExport.Phase.WAITING
    assert paused.status_url and paused.lease_expires_at is None
    finished = pulling.run(export, task_id="t2")
    assert finished.status == BulkExport.Status.SUCCEEDED, finished.error
    assert len(pulling.ehr.requests_of("kickoff")) == 1


def test_pull_source_shows_progress_and_a_summary_and_fails_with_the_reason(pulling: Ehr) -> None:
    out, err = io.StringIO(), io.StringIO()
    call_command("pull_source", "st-epic", stdout=out, stderr=err)
    progress = err.getvalue().splitlines()  # not a terminal: a line per phase or per 5%
    assert progress[0] == "Asking the EHR to start the export"
    assert any("The EHR is preparing the files" in line or "%" in line for line in progress)
    assert progress[-1].startswith("100% Done")
    summary = out.getvalue()
    total = _total(pulling.resources)
    assert "st-epic: done in" in summary and "full export" in summary
    assert f"records received: {total:,}" in summary and "patients queued for de-identification: 2" in summary

    pulling.ehr.fail_next("kickoff", 403, code="forbidden")
    with pytest.raises(
        CommandError, match=r"the pull failed: The EHR refused the export \(HTTP 403\)"
    ) as failed:
        call_command("pull_source", "st-epic", stdout=io.StringIO(), stderr=io.StringIO())
    assert failed.value.returncode == 1
    assert pulling.ehr.requests_of("kickoff")[-1].query.get("_since")  # incremental after the first
    with pytest.raises(CommandError, match="no source"):
        call_command("pull_source", "nowhere", stdout=io.StringIO(), stderr=io.StringIO())


def test_an_oversized_file_is_read_to_the_cap_counted_and_the_export_goes_on(
    pulling: Ehr, settings: Any
) -> None:
    settings.BULK_MAX_FILE_BYTES = 400_000  # above every real file of the set
    pulling.ehr.oversized_file("Observation", 3_000_000)
    export = pulling.pull()
    assert export.status == BulkExport.Status.SUCCEEDED, export.error
    batch = export.batch
    assert batch is not None
    assert batch.errors.get("file_too_large") == 1
    observations = next(f for f in export.files if f["type"] == "Observation")
    assert observations["error"] == "file_too_large" and observations["status"] == "done"
    assert 0 < observations["bytes"] <= 400_000
    patients = next(f for f in export.files if f["type"] == "Patient")
    assert patients["lines_done"] == 2 and patients["error"] == ""
    # The rest of the cut file is not given up: the next pull asks from the same point as this one did.
    assert pulling.source is not None
    pulling.source.refresh_from_db()
    assert pulling.source.last_transaction_time is None
    finish = AuditEvent.objects.filter(action="bulk.export.finish", object_id=str(export.external_id)).get()
    assert finish.detail["files_cut_at_cap"] == 1
    again = pulling.pull()
    assert again.since is None


def test_an_ehr_that_does_not_answer_in_time_is_asked_again(pulling: Ehr, settings: Any) -> None:
    settings.BULK_HTTP_TIMEOUT_SECONDS = 1
    pulling.ehr.delay_next("status", 3)
    export = pulling.pull()
    assert export.status == BulkExport.Status.SUCCEEDED, export.error
    assert export.batch is not None and export.batch.lines_read == _total(pulling.resources)


def test_a_group_level_source_with_types_and_a_type_filter_pulls_what_it_names(
    organization: Organization, small_set: dict[str, list[dict[str, Any]]]
) -> None:
    first = small_set["Patient"][0]["id"]
    with EhrStandIn(
        small_set, client_id="gateway", client_jwks={"keys": []}, groups={"cohort": [first]}
    ) as ehr:
        source = source_create(
            organization=organization,
            name="cohort",
            fhir_base_url=ehr.base_url,
            token_url=ehr.token_url,
            client_id="gateway",
            actor=ACTOR,
            level="group",
            group_id="cohort",
            resource_types=["Patient", "Condition"],
            type_filters=["Condition?clinicalStatus=active"],
            algorithm="RS384",
        )
        ehr.client_jwks = source_jwks(source)
        export = export_request(source=source, actor=ACTOR, requested_by="tests", dispatch=False)
        finished = export_run(export_id=str(export.external_id), task_id="t", worker="w", actor=ACTOR)
        assert finished is not None
        assert finished.status == BulkExport.Status.SUCCEEDED, finished.error
        kickoff = ehr.requests_of("kickoff")[0]
        assert kickoff.path.endswith("/Group/cohort/$export")
        assert kickoff.query["_type"] == ["Patient,Condition"]
        assert kickoff.query["_typeFilter"] == ["Condition?clinicalStatus=active"]
        assert ehr.requests_of("smart-config") == []  # the token URL was given
        assert {f["type"] for f in finished.files if f["kind"] == "output"} <= {"Patient", "Condition"}
        batch = finished.batch
        assert batch is not None and batch.patients_total == 1
        assert IngestJob.objects.filter(batch=batch).count() == 1


def test_a_pull_stopped_mid_download_drops_what_it_staged_and_tells_the_ehr(pulling: Ehr) -> None:
    pulling.ehr.lines_per_file = 100
    assert pulling.source is not None
    export = export_request(source=pulling.source, actor=ACTOR, requested_by="tests", dispatch=False)
    groups = 0

    def die_at_the_fifth_group(progress: ExportProgress) -> None:
        nonlocal groups
        if progress.message.startswith("Storing"):
            groups += 1
            if groups == 5:
                raise WorkerGone

    with pytest.raises(WorkerGone):
        export_run(
            export_id=str(export.external_id), task_id="t1", worker="w1", actor=ACTOR,
            on_progress=die_at_the_fifth_group,
        )  # fmt: skip
    export.refresh_from_db()
    assert export.batch is not None and _stored(export.batch) > 0
    assert export_cancel(export=export, actor=Actor.user("7"), reason="wrong group asked for") is True
    assert export.status == BulkExport.Status.CANCELLED and export.error == "Cancelled: wrong group asked for"
    batch = export.batch
    batch.refresh_from_db()
    assert batch.status == BulkBatch.Status.CANCELLED and _stored(batch) == 0
    assert pulling.ehr.jobs_deleted  # the EHR was told
    cancelled = AuditEvent.objects.get(action="bulk.export.cancel")
    assert cancelled.actor_id == "7" and cancelled.detail["phase"] == "downloading"
    # The worker's message, delivered again, finds nothing to do; a second cancel neither.
    BulkExport.objects.filter(pk=export.pk).update(lease_expires_at=timezone.now())
    assert export_run(export_id=str(export.external_id), task_id="t1", worker="w2", actor=ACTOR) is None
    assert export_cancel(export=export, actor=ACTOR, reason="again") is False
    assert EhrSource.objects.get(pk=pulling.source.pk).last_transaction_time is None


def test_a_token_revoked_mid_export_is_replaced_once_and_the_export_goes_on(pulling: Ehr) -> None:
    revoked = False

    def revoke_at_the_first_file(progress: ExportProgress) -> None:
        nonlocal revoked
        if progress.message.startswith("Storing") and not revoked:
            revoked = True
            pulling.ehr.tokens_expire()

    export = pulling.pull(on_progress=revoke_at_the_first_file)
    assert export.status == BulkExport.Status.SUCCEEDED, export.error
    assert revoked and len(pulling.ehr.requests_of("token")) == 2
    assert [r.status for r in pulling.ehr.requests_of("file")].count(401) == 1
    assert export.batch is not None and export.batch.lines_read == _total(pulling.resources)
