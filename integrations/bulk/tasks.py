"""Celery tasks of the Bulk Data pull, on the ``bulk`` queue: running an export (an id in, the resumable
driver, nothing returned), the beat schedule that queues due sources' exports, and the sweep that sends
again the exports no worker holds. A run stops at its time budget and goes back to the queue: a long
export never holds a worker slot past the task time limit, and the EHR's waits are not slept in a slot."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings

from clinical_ai.audit.services import Actor
from clinical_ai.core.tasks import JobTask, SweepTask
from integrations.bulk.services import BULK_EXPORTS, exports_schedule, exports_sweep
from integrations.bulk.services import export_run as export_drive


@shared_task(bind=True, base=JobTask, name=BULK_EXPORTS.task_name)
def export_run(self: JobTask, export_id: str) -> None:
    actor = Actor.worker(task_name="bulk.export_run", task_id=self.task_id, hostname=self.request.hostname)
    export_drive(
        export_id=export_id,
        task_id=self.task_id,
        worker=self.worker,
        actor=actor,
        budget_seconds=float(settings.BULK_TASK_BUDGET_SECONDS),
    )


@shared_task(base=SweepTask, name="integrations.bulk.schedule")
def schedule() -> None:
    exports_schedule()


@shared_task(base=SweepTask, name="integrations.bulk.sweep")
def sweep() -> None:
    exports_sweep()
