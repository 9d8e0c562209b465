"""The ``deid`` Celery task. Thin: an IngestJob id in, claim, one pipeline step, nothing returned."""

from __future__ import annotations

from celery import shared_task

from clinical_ai.audit.services import Actor
from clinical_ai.core.tasks import JobTask
from clinical_ai.intake.services import INGEST_JOBS, ingest_job_claim, ingest_job_run
from clinical_ai.pipeline.worker import deidentify


@shared_task(bind=True, base=JobTask, name=INGEST_JOBS.task_name)
def deidentify_ingest_job(self: JobTask, job_id: str) -> None:
    claim = ingest_job_claim(job_id=job_id, task_id=self.task_id, worker=self.worker)
    if claim.retry_in_seconds:
        raise self.retry(countdown=claim.retry_in_seconds, max_retries=None)
    if claim.job is None:
        return
    actor = Actor.worker(
        task_name="deid.deidentify_ingest_job", task_id=self.task_id, hostname=self.request.hostname
    )
    ingest_job_run(job=claim.job, actor=actor, stage=deidentify)
