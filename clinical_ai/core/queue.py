"""Sending work to a Celery queue by task name.

A stage never imports the task that works its rows (that would tie it to the next stage): it names the task
(``JobTable.task_name``) and publishes the ids through ``task_send``. The Celery app routes by name
(``clinical_ai.celery``), so the message lands on the same queue as ``task.apply_async`` would put it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kombu.exceptions import OperationalError as BrokerOperationalError

from clinical_ai.celery import app

logger = logging.getLogger(__name__)

# Task arguments are ids: strings, or a list of strings for a batch. Never objects, never PHI.
TaskArgument = str | list[str]


def task_send(
    name: str,
    *,
    args: Sequence[TaskArgument],
    expires: float | None = None,
    countdown: float | None = None,
) -> bool:
    """Publish one message for the task called ``name``. Returns False, having logged the broker fault
    (never the arguments' meaning), when the broker cannot be reached: the caller's rows stay undispatched
    and its sweep sends them later. Any other error propagates."""
    try:
        app.send_task(name, args=list(args), expires=expires, countdown=countdown or None)
    except (BrokerOperationalError, OSError) as exc:
        logger.warning("broker unavailable, %s not sent (%s)", name, type(exc).__name__)
        return False
    return True
