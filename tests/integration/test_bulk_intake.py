"""Bulk intake end to end on PostgreSQL, Redis and a real worker process: Synthea patients as NDJSON files given
to ``manage.py ingest_ndjson`` are split per patient, de-identified and scored by the same pipeline as a pushed
Bundle; no identifier of those patients is left in any de-identified copy; the same files again make no job."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from clinical_ai.core.sealing import open_json
from clinical_ai.deid.engine.text.patient_terms import patient_identifiers_from_fhir
from clinical_ai.deid.models import DeidentifiedResource
from clinical_ai.inference.models import InferenceRun
from clinical_ai.intake.models import BulkBatch, IngestJob
from clinical_ai.intake.selectors import batch_progress, batch_refresh_status
from tests.bulk_data import ndjson_files, patient_bundle_paths, resources_by_type, shared_bundle_paths
from tests.factories import make_organization
from tests.integration.conftest import WorkerFactory, wait_for

pytestmark = pytest.mark.shared_data

FINISHED_RUN = (InferenceRun.Status.SUCCEEDED, InferenceRun.Status.FAILED, InferenceRun.Status.SKIPPED)


def _known_identifiers(patient: dict[str, Any]) -> set[str]:
    """What identifies the patient in their record: names (with and without Synthea's digits), identifier
    values, phones, e-mails, street lines and the birth date."""
    identifiers = patient_identifiers_from_fhir(patient)
    known: set[str] = set()
    for name in (*identifiers.names, *identifiers.given_names, *identifiers.family_names):
        for token in name.split():
            if token.rstrip(".").lower() not in {"mr", "mrs", "ms", "miss", "dr"}:
                known |= {token, re.sub(r"\d+$", "", token)}
    known |= {*identifiers.identifiers, *identifiers.phones, *identifiers.emails}
    known |= {line for address in patient.get("address", []) for line in address.get("line", [])}
    if identifiers.birth_date:
        known.add(identifiers.birth_date)
    return {value for value in known if len(value) > 2}


def _text_of(resource: dict[str, Any]) -> str:
    text = json.dumps(resource)
    for content in resource.get("content", []):
        data = content.get("attachment", {}).get("data")
        if data:
            text += base64.b64decode(data).decode("utf-8", "replace")
    return text


def _ingest(files: list[Path], label: str) -> BulkBatch:
    call_command(
        "ingest_ndjson", *[str(f) for f in files], "--organization", "st-elsewhere", "--label", label
    )
    return BulkBatch.objects.get(label=label)


def test_ndjson_files_become_deidentified_patients_and_model_runs(
    workers: WorkerFactory, tmp_path: Path
) -> None:
    make_organization()
    patients = sorted(patient_bundle_paths(), key=lambda path: path.stat().st_size)[:2]
    files = ndjson_files(tmp_path / "export", [*patients, *shared_bundle_paths()])
    worker = workers.start()

    batch = _ingest(files, "backfill")
    jobs = list(IngestJob.objects.filter(batch=batch))
    assert len(jobs) == 2 and batch.status == BulkBatch.Status.PROCESSING
    assert {(j.kind, j.status, j.client_id) for j in jobs} == {
        (IngestJob.Kind.BULK, IngestJob.Status.QUEUED, None)
    }

    def all_jobs_done() -> bool:
        return (
            not IngestJob.objects.filter(batch=batch)
            .exclude(status__in=(IngestJob.Status.SUCCEEDED, IngestJob.Status.FAILED))
            .exists()
        )

    wait_for(all_jobs_done, timeout=300, what="the de-identification of the batch's patients")
    for job in IngestJob.objects.filter(batch=batch):
        assert job.status == IngestJob.Status.SUCCEEDED, job.error
        rows = DeidentifiedResource.objects.filter(job=job)
        assert rows.count() == job.resource_count
        # one patient per job: every resource carries the same pseudonym
        assert len(set(rows.values_list("patient_pseudonym", flat=True))) == 1
        assert "" not in set(rows.values_list("patient_pseudonym", flat=True))

    runs = InferenceRun.objects.filter(ingest_job__batch=batch)
    assert runs.exists(), "the de-identified patients were handed to the models"
    wait_for(
        lambda: not runs.exclude(status__in=FINISHED_RUN).exists(), timeout=300, what="the batch's model runs"
    )
    assert set(runs.values_list("ingest_job_id", flat=True)) == {job.pk for job in jobs}
    assert not runs.filter(status=InferenceRun.Status.FAILED).exists(), list(
        runs.values_list("error", flat=True)
    )

    batch.refresh_from_db()  # the last job's finish marked the batch done
    assert batch.status == BulkBatch.Status.SUCCEEDED and batch.finished_at is not None
    assert batch_refresh_status(batch) == BulkBatch.Status.SUCCEEDED
    progress = batch_progress(batch)
    assert (progress.patients_done, progress.patients_failed, progress.percent_done) == (2, 0, 100)

    # no identifier of these patients in any de-identified copy of theirs, nor in the worker's log
    for patient in resources_by_type(patients)["Patient"]:
        known = _known_identifiers(patient)
        assert known
        for row in DeidentifiedResource.objects.filter(job__batch=batch):
            text = _text_of(open_json(row.sealed, associated_data=row.associated_data))
            leaked = [v for v in known if re.search(rf"(?<!\w){re.escape(v)}(?!\w)", text, re.IGNORECASE)]
            assert leaked == [], f"{leaked} left in a de-identified {row.resource_type}"
        assert not [v for v in known if v in worker.log()]

    # the same files again: everything is already stored, no new job, nothing for the worker
    again = _ingest(files, "backfill again")
    assert again.status == BulkBatch.Status.SUCCEEDED
    assert (
        again.resources_staged == 0
        and again.duplicates_skipped == batch.resources_staged + batch.references_held
    )
    assert IngestJob.objects.filter(batch=again).count() == 0
    assert IngestJob.objects.count() == 2
