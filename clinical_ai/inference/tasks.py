"""The ``inference`` Celery stage. Thin: run ids in, one service call, nothing returned."""

from __future__ import annotations

import os

from celery import Task, shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError

from clinical_ai.audit.services import Actor
from clinical_ai.inference.services import inference_runs_execute, inference_runs_sweep

# Only faults that can pass: the database going away or timing out. A model that fails is recorded.
TRANSIENT_ERRORS = (OperationalError, InterfaceError)


@shared_task(
    bind=True,
    name="clinical_ai.inference.run_models",
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
def run_models(self: Task, run_ids: list[str]) -> None:  # type: ignore[type-arg]
    task_id = str(self.request.id or "")
    actor = Actor.worker(task_name="inference.run_models", task_id=task_id, hostname=self.request.hostname)
    inference_runs_execute(
        run_ids=[str(run_id) for run_id in run_ids][:500],
        task_id=task_id,
        worker=f"{self.request.hostname or 'worker'}/{os.getpid()}",
        actor=actor,
    )


@shared_task(name="clinical_ai.inference.sweep", acks_late=True, ignore_result=True)
def sweep() -> None:
    inference_runs_sweep()
