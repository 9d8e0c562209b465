"""Celery tasks of the FHIR integration: sending a push job to the EHR, and the sweep that re-sends the push
jobs no worker took. Thin: an id in, one service call, nothing returned. Tasks named ``integrations.fhir.*``
go to the default queue."""

from __future__ import annotations

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from clinical_ai.audit.services import Actor
from integrations.fhir.push import push_job_dispatch, push_job_run, push_jobs_sweep

# The database going away is worth a retry of the task; HTTP trouble is handled by the job's own schedule.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


@shared_task(
    bind=True,
    name="integrations.fhir.push_job_send",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=8,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
)
def push_job_send(self: Task, job_id: str) -> None:  # type: ignore[type-arg]
    actor = Actor.worker(
        task_name="fhir.push_job_send", task_id=str(self.request.id or ""), hostname=self.request.hostname
    )
    run = push_job_run(job_id=job_id, actor=actor)
    if run.retry_in is not None:
        # The job row is queued again with its next_attempt_at; should this publish fail, the sweep sends it.
        push_job_dispatch(job_id=job_id, countdown=run.retry_in)


@shared_task(name="integrations.fhir.push_sweep", acks_late=True, ignore_result=True)
def push_sweep() -> None:
    push_jobs_sweep()
