"""A Bulk Data pull through real worker processes: PostgreSQL, Redis, a Celery worker consuming the ``bulk``
queue (and ``deid``, ``inference``), the EHR stand-in on loopback guarded by SMART Backend Services with the
gateway's own key. The worker is killed (SIGKILL, the whole process group) in the middle of the downloads;
a second worker takes the export over once its lease runs out and the sweep sends it again, resumes it
(the status URL kept, the files done skipped), and every resource is stored exactly once; every patient
then reaches de-identification."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from clinical_ai.deid.models import DeidentifiedResource
from clinical_ai.intake.models import IngestJob, RawResource
from integrations.bulk.models import BulkExport
from integrations.bulk.services import export_request, exports_sweep, source_create, source_jwks
from tests.bulk_data import patient_bundle_paths, resources_by_type, shared_bundle_paths
from tests.ehr_standin import EhrStandIn
from tests.factories import make_organization
from tests.integration.conftest import WorkerFactory, wait_for

SHORT_LEASE = {"BULK_EXPORT_LEASE_SECONDS": "4", "BULK_RETRY_MAX_SECONDS": "1"}


@pytest.fixture
def organization(transactional_db: None) -> Organization:
    return make_organization("st-elsewhere", "St Elsewhere General")


@pytest.fixture
def resources() -> dict[str, list[dict[str, Any]]]:
    return resources_by_type(patient_bundle_paths(2) + shared_bundle_paths())


@pytest.fixture
def ehr(resources: dict[str, list[dict[str, Any]]]) -> Iterator[EhrStandIn]:
    with EhrStandIn(resources, client_id="gateway", client_jwks={"keys": []}) as stand_in:
        yield stand_in


def _export(export: BulkExport) -> BulkExport:
    export.refresh_from_db()
    return export


def test_worker_killed_mid_download_and_a_second_one_finishes_the_export(
    organization: Organization,
    resources: dict[str, list[dict[str, Any]]],
    ehr: EhrStandIn,
    workers: WorkerFactory,
    settings: Any,
) -> None:
    settings.BULK_EXPORT_LEASE_SECONDS = 4
    source = source_create(
        organization=organization,
        name="st-epic",
        fhir_base_url=ehr.base_url,
        client_id="gateway",
        actor=Actor.system("tests"),
    )
    ehr.client_jwks = source_jwks(source)
    ehr.lines_per_file = 40  # many small files...
    ehr.delay_seconds = 0.25  # ...each answered slowly: the download lasts long enough to be cut
    total = sum(len(v) for v in resources.values())

    first = workers.start(env=SHORT_LEASE)
    export = export_request(source=source, actor=Actor.system("tests"), requested_by="tests")

    def some_files_done() -> bool:
        files = _export(export).files
        return sum(1 for f in files if f["status"] == "done") >= 3

    wait_for(some_files_done, timeout=120, what="the first files stored")
    first.kill_all()
    killed = _export(export)
    assert killed.status == BulkExport.Status.RUNNING and killed.phase == BulkExport.Phase.DOWNLOADING
    done_when_killed = {f["url"] for f in killed.files if f["status"] == "done"}
    pending_when_killed = [f for f in killed.files if f["status"] == "pending"]
    assert pending_when_killed, "the export finished before the worker was killed: make the EHR slower"
    downloads_before = len(ehr.requests_of("file"))

    ehr.delay_seconds = 0.0
    workers.start(env=SHORT_LEASE)
    wait_for(lambda: exports_sweep() >= 1, timeout=30, what="the sweep to send the export again")
    wait_for(
        lambda: _export(export).status == BulkExport.Status.SUCCEEDED,
        timeout=180,
        what="the export finished by the second worker",
    )
    finished = _export(export)
    assert finished.attempts == 2, finished.attempts
    assert len(ehr.requests_of("kickoff")) == 1  # the status URL was kept
    later = ehr.requests_of("file")[downloads_before:]
    assert not any(url.endswith(r.path) for r in later for url in done_when_killed)  # files done skipped
    assert ehr.jobs_deleted

    batch = finished.batch
    assert batch is not None
    batch.refresh_from_db()
    lines = sum(int(f["count"] or 0) for f in finished.files if f["kind"] == "output")
    assert batch.lines_read == lines == total
    # Every resource stored once: the patients' resources as rows, the others held; nothing skipped as a
    # duplicate (nothing was ever stored twice to be skipped).
    stored = RawResource.objects.filter(job__batch=batch).count()
    assert stored == batch.resources_staged and stored + batch.references_held == lines
    assert batch.duplicates_skipped == 0
    assert AuditEvent.objects.filter(action="bulk.export.finish", outcome="success").count() == 1

    # Every patient reaches de-identification, through the same pipeline as a pushed Bundle.
    jobs = IngestJob.objects.filter(batch=batch)
    assert jobs.count() == batch.patients_total == 2
    wait_for(
        lambda: not jobs.exclude(status=IngestJob.Status.SUCCEEDED).exists(),
        timeout=240,
        what="every patient de-identified",
    )
    assert DeidentifiedResource.objects.filter(job__batch=batch).count() == stored
