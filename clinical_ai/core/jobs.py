"""Jobs are rows: one mechanism to claim, finish, dispatch and sweep them, for every queue.

A stage's work item (an ``IngestJob``, an ``InferenceRun``, a ``PushJob``) is a database row created in the
transaction that makes it necessary and published by id on commit. A worker takes it with one conditional
``UPDATE`` (``job_claim``), so a message delivered twice never runs the work twice and Celery's ``acks_late``
is safe. Only the holder of the current claim may finish it (``job_hold``, inside the finishing
transaction: it raises ``LostClaim`` when another worker took the row over after our lease ran out). A sweep
(``jobs_sweep``) sends again what was never dispatched (broker down), what sat queued too long (message
lost) and what a dead worker held (lease expired).

Tables name their columns differently for history's sake; ``JobTable`` says which column plays which part.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from clinical_ai.core.queue import task_send

logger = logging.getLogger(__name__)

# A row committed a moment ago is being dispatched by its own transaction's on-commit hook: leave it be.
FRESH_SECONDS = 5


class LostClaim(Exception):
    """Another worker took the row over (our lease ran out): roll back what this worker was writing."""


@dataclass(frozen=True)
class JobTable:
    """How the rows of one model are worked.

    ``task_name`` is the Celery task that works a row, sent by name. Settings are read when used (tests and
    operators change them at run time). ``batch_by`` sends one task per value of that column carrying a
    list of ids (inference batches runs of one model); otherwise one task per id.
    """

    model: type[models.Model]
    task_name: str
    lease_setting: str
    redispatch_setting: str
    expires_setting: str
    defaults: tuple[tuple[str, int], ...] = ()  # settings that may be absent, with their default
    key_field: str = "external_id"
    status_field: str = "status"
    queued: str = "queued"
    running: str = "running"
    claimed_at_field: str = "claimed_at"
    # The column that proves who holds the claim. Where it is ``claimed_at_field`` the claim time is the
    # token (two claims within the same microsecond cannot both win the conditional UPDATE anyway).
    token_field: str = "claim_token"  # noqa: S105 - a column name, not a secret
    task_id_field: str | None = "claimed_task_id"
    worker_field: str | None = "claimed_by"
    due_field: str | None = None  # a row queued for later (a retry with backoff) is claimable from then
    batch_by: str | None = None
    select_related: tuple[str, ...] = ()

    def setting(self, name: str) -> int:
        return int(getattr(settings, name, dict(self.defaults).get(name, 0)))

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.setting(self.lease_setting))

    @property
    def redispatch_after(self) -> timedelta:
        return timedelta(seconds=self.setting(self.redispatch_setting))

    @property
    def expires(self) -> float:
        return float(self.setting(self.expires_setting))

    def rows(self) -> models.QuerySet[Any]:
        return self.model._default_manager.all()


@dataclass(frozen=True)
class Claim:
    row: Any | None
    # When another worker holds an unexpired lease: seconds until it runs out (a task may retry then).
    retry_in_seconds: int = 0


def job_claim(
    table: JobTable, *, key: str, task_id: str = "", worker: str = "", now: datetime | None = None
) -> Claim:
    """Take the row with one conditional UPDATE: queued (and due), or held by a worker whose lease ran out,
    or held by this same Celery task id (its message redelivered after the worker died)."""
    now = now or timezone.now()
    queued = Q(**{table.status_field: table.queued})
    if table.due_field:
        queued &= Q(**{f"{table.due_field}__lte": now})
    claimable = queued | Q(**{table.status_field: table.running, "lease_expires_at__lt": now})
    if task_id and table.task_id_field:
        claimable |= Q(**{table.status_field: table.running, table.task_id_field: task_id})
    changes: dict[str, Any] = {
        table.status_field: table.running,
        table.claimed_at_field: now,
        "lease_expires_at": now + table.lease,
        "attempts": F("attempts") + 1,
    }
    if table.token_field != table.claimed_at_field:
        changes[table.token_field] = secrets.token_hex(16)
    if table.task_id_field:
        changes[table.task_id_field] = task_id[:64]
    if table.worker_field:
        changes[table.worker_field] = worker[:200]
    rows = table.rows().filter(**{table.key_field: key})
    if rows.filter(claimable).update(**changes) == 1:
        return Claim(row=rows.select_related(*table.select_related).get())
    current = rows.values(table.status_field, "lease_expires_at").first()
    if current is None:
        logger.warning("%s %s does not exist; message dropped", table.model.__name__, key)
        return Claim(row=None)
    if current[table.status_field] == table.running and current["lease_expires_at"] is not None:
        remaining = (current["lease_expires_at"] - now).total_seconds()
        return Claim(row=None, retry_in_seconds=max(1, int(remaining) + 1))
    return Claim(row=None)  # finished, not due yet, or gone: a duplicate delivery, nothing to do


def job_hold(table: JobTable, row: Any, **changes: Any) -> None:
    """Inside the finishing transaction: write ``changes`` (status, timings…) to ``row`` and clear its lease,
    only if this worker's claim still holds it. Raises ``LostClaim`` otherwise, so the caller's transaction
    rolls back and nothing of this worker's result is stored."""
    held = table.rows().filter(
        pk=row.pk,
        **{table.status_field: table.running, table.token_field: getattr(row, table.token_field)},
    )
    if held.update(lease_expires_at=None, **changes) != 1:
        raise LostClaim


def job_dispatch(table: JobTable, *, keys: Sequence[str], countdown: float | None = None) -> bool:
    """Publish the rows by id (one message for a batch table, else one per id), then mark them dispatched.
    A broker outage leaves them undispatched for the sweep and returns False."""
    keys = [str(key) for key in keys]
    messages: list[list[str]] = [keys] if table.batch_by else [[key] for key in keys]
    sent: list[str] = []
    ok = True
    for message in messages:
        args: list[str | list[str]] = [message] if table.batch_by else [message[0]]
        if not task_send(table.task_name, args=args, expires=table.expires, countdown=countdown):
            ok = False
            break
        sent.extend(message)
    if sent:
        table.rows().filter(**{f"{table.key_field}__in": sent}).update(dispatched_at=timezone.now())
    return ok


def jobs_stale(table: JobTable, *, now: datetime, limit: int) -> list[list[str]]:
    """The rows a sweep should send again, grouped into messages: never dispatched (past a few seconds),
    queued or due for longer than the redispatch delay, or running past their lease."""
    waiting_since = table.due_field or "dispatched_at"
    stale = (
        table.rows()
        .filter(
            Q(
                **{
                    table.status_field: table.queued,
                    "dispatched_at__isnull": True,
                    "created_at__lt": now - timedelta(seconds=FRESH_SECONDS),
                }
            )
            | Q(**{table.status_field: table.queued, f"{waiting_since}__lt": now - table.redispatch_after})
            | Q(**{table.status_field: table.running, "lease_expires_at__lt": now})
        )
        .order_by(table.due_field or "created_at")
    )
    if not table.batch_by:
        return [[str(key)] for key in stale.values_list(table.key_field, flat=True)[:limit]]
    batches: dict[str, list[str]] = {}
    for group, key in stale.values_list(table.batch_by, table.key_field)[:limit]:
        batches.setdefault(str(group), []).append(str(key))
    return list(batches.values())


def jobs_sweep(table: JobTable, *, now: datetime | None = None, limit: int = 500) -> int:
    """Send again every stale row (``jobs_stale``). Safe to run anywhere, any number of times: claims are
    conditional. Stops at the first broker fault (the next sweep tries again). Returns rows sent."""
    sent = 0
    for keys in jobs_stale(table, now=now or timezone.now(), limit=limit):
        if not job_dispatch(table, keys=keys):
            break
        sent += len(keys)
    if sent:
        logger.info("sweep re-dispatched %d %s row(s)", sent, table.model.__name__)
    return sent
