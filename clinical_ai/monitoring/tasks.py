"""The periodic monitoring job (beat entry ``monitoring-compute``): thin, the service does the work."""

from __future__ import annotations

from celery import Task, shared_task

from clinical_ai.audit.services import Actor
from clinical_ai.core.tasks import TRANSIENT_ERRORS
from clinical_ai.monitoring.services import monitoring_compute


@shared_task(
    bind=True,
    name="clinical_ai.monitoring.compute",
    acks_late=True,
    ignore_result=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=5,
    max_retries=3,
)
def compute(self: Task) -> None:  # type: ignore[type-arg]
    actor = Actor.worker(
        task_name="monitoring.compute", task_id=str(self.request.id or ""), hostname=self.request.hostname
    )
    monitoring_compute(actor=actor)
