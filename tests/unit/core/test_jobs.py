"""The one job-row mechanism (clinical_ai.core.jobs) on its own: claims, holds, dispatch, sweeps and batches.

The stages' own tests (intake, inference, push) run it through their wrappers; these pin the parts each
table configures differently: a claim token column or the claim time as the token, a due time, batches.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone

from clinical_ai.core import jobs
from clinical_ai.core.jobs import JobTable, LostClaim, job_claim, job_dispatch, job_hold, jobs_stale
from clinical_ai.inference.models import InferenceRun
from clinical_ai.inference.services import INFERENCE_RUNS
from clinical_ai.intake.models import IngestJob
from clinical_ai.intake.services import INGEST_JOBS
from tests.factories import post_fhir, sample_bundle

pytestmark = pytest.mark.django_db

# IngestJob worked the way the push table works: no claim token (the claim time is the token), no task id,
# claimable only from a due time (``created_at`` stands in for ``next_attempt_at``).
DUE_TABLE = JobTable(
    model=IngestJob,
    task_name="tests.due",
    lease_setting="INTAKE_CLAIM_LEASE_SECONDS",
    redispatch_setting="INTAKE_REDISPATCH_AFTER_SECONDS",
    expires_setting="INTAKE_TASK_EXPIRES_SECONDS",
    token_field="claimed_at",
    task_id_field=None,
    worker_field=None,
    due_field="created_at",
)


@pytest.fixture
def job(client: Client, ehr_token: str) -> IngestJob:
    assert post_fhir(client, ehr_token, sample_bundle()).status_code == 200
    return IngestJob.objects.get()


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[Any]]]:
    messages: list[tuple[str, list[Any]]] = []

    def record(name: str, *, args: list[Any], **options: Any) -> bool:
        messages.append((name, args))
        return True

    monkeypatch.setattr(jobs, "task_send", record)
    return messages


def test_only_the_current_claim_holder_may_finish(job: IngestJob) -> None:
    first = job_claim(INGEST_JOBS, key=str(job.external_id), task_id="a", worker="w1").row
    assert first is not None
    # Its lease runs out; another worker takes the job over with a new token.
    IngestJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    second = job_claim(INGEST_JOBS, key=str(job.external_id), task_id="b", worker="w2").row
    assert second is not None and second.claim_token != first.claim_token
    with pytest.raises(LostClaim), transaction.atomic():
        job_hold(INGEST_JOBS, first, status=IngestJob.Status.SUCCEEDED)
    job_hold(INGEST_JOBS, second, status=IngestJob.Status.SUCCEEDED)
    job.refresh_from_db()
    assert job.status == IngestJob.Status.SUCCEEDED and job.lease_expires_at is None


def test_a_held_row_tells_when_its_lease_ends(job: IngestJob) -> None:
    assert job_claim(INGEST_JOBS, key=str(job.external_id), task_id="a").row is not None
    again = job_claim(INGEST_JOBS, key=str(job.external_id), task_id="other")
    assert again.row is None and 0 < again.retry_in_seconds <= INGEST_JOBS.lease.total_seconds() + 1


def test_a_row_due_later_is_not_claimed_before_its_time_and_its_claim_time_is_the_token(
    job: IngestJob,
) -> None:
    before = job.created_at - timedelta(seconds=1)
    assert job_claim(DUE_TABLE, key=str(job.external_id), now=before).row is None
    claimed = job_claim(DUE_TABLE, key=str(job.external_id)).row
    assert claimed is not None and claimed.claim_token == ""  # no token column written
    stale = IngestJob.objects.get(pk=job.pk)
    stale.claimed_at = claimed.claimed_at - timedelta(seconds=1)
    with pytest.raises(LostClaim), transaction.atomic():
        job_hold(DUE_TABLE, stale, status=IngestJob.Status.SUCCEEDED)
    job_hold(DUE_TABLE, claimed, status=IngestJob.Status.SUCCEEDED)


def test_dispatch_sends_by_name_and_marks_only_what_was_sent(job: IngestJob, sent: list[Any]) -> None:
    assert job_dispatch(INGEST_JOBS, keys=[str(job.external_id)])
    assert sent == [(INGEST_JOBS.task_name, [str(job.external_id)])]
    assert IngestJob.objects.get(pk=job.pk).dispatched_at is not None


def test_a_broker_outage_leaves_rows_undispatched(job: IngestJob, monkeypatch: pytest.MonkeyPatch) -> None:
    IngestJob.objects.filter(pk=job.pk).update(dispatched_at=None)
    monkeypatch.setattr(jobs, "task_send", lambda name, **kwargs: False)
    assert not job_dispatch(INGEST_JOBS, keys=[str(job.external_id)])
    assert IngestJob.objects.get(pk=job.pk).dispatched_at is None


def test_a_batch_table_sends_one_message_per_model(job: IngestJob, sent: list[Any]) -> None:
    old = timezone.now() - timedelta(minutes=10)
    runs = [
        InferenceRun.objects.create(
            organization_id=job.organization_id, ingest_job=job, patient_pseudonym=f"p{i}", model_id=model
        )
        for i, model in enumerate(["news2", "news2", "problem-list"])
    ]
    InferenceRun.objects.filter(pk__in=[r.pk for r in runs]).update(created_at=old, dispatched_at=None)
    batches = jobs_stale(INFERENCE_RUNS, now=timezone.now(), limit=500)
    assert sorted(len(batch) for batch in batches) == [1, 2]
    assert jobs.jobs_sweep(INFERENCE_RUNS) == 3
    assert sorted(len(args[0]) for _, args in sent) == [1, 2]  # a list of ids per message
    assert not InferenceRun.objects.filter(pk__in=[r.pk for r in runs], dispatched_at__isnull=True).exists()
