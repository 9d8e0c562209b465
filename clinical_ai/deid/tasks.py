"""The ``deid`` Celery stage. Thin: an IngestJob id in, claim, one service call, nothing returned."""

from __future__ import annotations

import os

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from clinical_ai.audit.services import Actor
from clinical_ai.deid.services import ingest_job_deidentify
from clinical_ai.intake.services import ingest_job_claim, ingest_job_run

# Only faults that can pass retry: the database going away or timing out. A malformed job fails for good.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


@shared_task(
    bind=True,
    name="clinical_ai.deid.deidentify_ingest_job",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def deidentify_ingest_job(self: Task, job_id: str) -> None:  # type: ignore[type-arg]
    task_id = str(self.request.id or "")
    worker = f"{self.request.hostname or 'worker'}/{os.getpid()}"
    claim = ingest_job_claim(job_id=job_id, task_id=task_id, worker=worker)
    if claim.retry_in_seconds:
        raise self.retry(countdown=claim.retry_in_seconds, max_retries=None)
    if claim.job is None:
        return
    actor = Actor.worker(
        task_name="deid.deidentify_ingest_job", task_id=task_id, hostname=self.request.hostname
    )
    ingest_job_run(job=claim.job, actor=actor, stage=ingest_job_deidentify)
