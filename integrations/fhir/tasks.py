"""Celery tasks of the FHIR integration: sending a push job to the EHR, and the sweep that re-sends the push
jobs no worker took. Thin: an id in, one service call, nothing returned. Tasks named ``integrations.fhir.*``
go to the default queue. HTTP trouble is handled by the job's own schedule; only database faults retry the
task (``JobTask``)."""

from __future__ import annotations

from celery import shared_task

from clinical_ai.audit.services import Actor
from clinical_ai.core.tasks import JobTask, SweepTask
from integrations.fhir.push import PUSH_JOBS, push_job_dispatch, push_job_run, push_jobs_sweep


@shared_task(bind=True, base=JobTask, name=PUSH_JOBS.task_name)
def push_job_send(self: JobTask, job_id: str) -> None:
    actor = Actor.worker(task_name="fhir.push_job_send", task_id=self.task_id, hostname=self.request.hostname)
    run = push_job_run(job_id=job_id, actor=actor)
    if run.retry_in is not None:
        # The job row is queued again with its next_attempt_at; should this publish fail, the sweep sends it.
        push_job_dispatch(job_id=job_id, countdown=run.retry_in)


@shared_task(base=SweepTask, name="integrations.fhir.push_sweep")
def push_sweep() -> None:
    push_jobs_sweep()
