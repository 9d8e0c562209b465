"""Celery tasks of the intake stage. The job itself is run by the de-identification stage
(clinical_ai.deid.tasks); intake only owns the sweep that re-sends jobs which never got to a worker."""

from __future__ import annotations

from celery import shared_task

from clinical_ai.intake.services import ingest_jobs_sweep


@shared_task(name="clinical_ai.intake.sweep", acks_late=True, ignore_result=True)
def sweep() -> None:
    ingest_jobs_sweep()
