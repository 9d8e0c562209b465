"""The one base class of the tasks that work job rows (``clinical_ai.core.jobs``).

Every such task takes ids, claims its row, and may be killed at any moment, so every one of them is
``acks_late`` with ``reject_on_worker_lost`` (a message whose worker died goes back to the queue), retries
only transient faults (the database going away or timing out: a malformed job fails for good and is
recorded by its stage), with jittered exponential backoff, and keeps no result.
"""

from __future__ import annotations

import os

from celery import Task
from django.conf import settings
from django.db import InterfaceError, OperationalError

# Only faults that can pass: the database going away or timing out.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (OperationalError, InterfaceError)


class JobTask(Task):  # type: ignore[type-arg]
    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    autoretry_for = TRANSIENT_ERRORS
    retry_backoff = 2
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = 8
    soft_time_limit = settings.CELERY_TASK_SOFT_TIME_LIMIT
    time_limit = settings.CELERY_TASK_TIME_LIMIT

    @property
    def task_id(self) -> str:
        return str(self.request.id or "")

    @property
    def worker(self) -> str:
        """Which worker process holds a claim, for the row's ``claimed_by``: host and pid."""
        return f"{self.request.hostname or 'worker'}/{os.getpid()}"


class SweepTask(Task):  # type: ignore[type-arg]
    """A periodic sweep: idempotent, so redelivery is harmless; no result kept."""

    acks_late = True
    ignore_result = True
