"""Celery tasks of the intake stage. The job itself is worked by the de-identification task
(``clinical_ai.deid.tasks``); intake owns the sweep that re-sends jobs which never got to a worker."""

from __future__ import annotations

from celery import shared_task

from clinical_ai.core.tasks import SweepTask
from clinical_ai.intake.bulk import batches_abandoned_cancel
from clinical_ai.intake.services import ingest_jobs_sweep


@shared_task(base=SweepTask, name="clinical_ai.intake.sweep")
def sweep() -> None:
    ingest_jobs_sweep()
    batches_abandoned_cancel()
