"""The ``inference`` Celery tasks. Thin: run ids in, one pipeline step, nothing returned."""

from __future__ import annotations

from celery import shared_task

from clinical_ai.audit.services import Actor
from clinical_ai.core.tasks import JobTask, SweepTask
from clinical_ai.inference.services import INFERENCE_RUNS, inference_runs_sweep
from clinical_ai.pipeline.worker import models_run


@shared_task(bind=True, base=JobTask, name=INFERENCE_RUNS.task_name)
def run_models(self: JobTask, run_ids: list[str]) -> None:
    actor = Actor.worker(
        task_name="inference.run_models", task_id=self.task_id, hostname=self.request.hostname
    )
    models_run(
        run_ids=[str(run_id) for run_id in run_ids][:500],
        task_id=self.task_id,
        worker=self.worker,
        actor=actor,
    )


@shared_task(base=SweepTask, name="clinical_ai.inference.sweep")
def sweep() -> None:
    inference_runs_sweep()
