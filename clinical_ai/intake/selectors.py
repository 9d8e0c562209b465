"""Reads of the intake stage: how far a bulk batch has got, for the admin page and the commands."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count
from django.utils import timezone

from clinical_ai.intake.models import BulkBatch, IngestJob

_UNFINISHED = (IngestJob.Status.STAGING, IngestJob.Status.QUEUED, IngestJob.Status.RUNNING)


@dataclass(frozen=True)
class BatchProgress:
    """Where one batch stands, in counts an operator reads (never content: error lines name a file label,
    a line number and a reason)."""

    external_id: str
    origin: str
    label: str
    status: str
    status_text: str  # the status in words, with the figure that matters now
    lines_read: int
    staged: int
    duplicates: int
    held: int
    refused: int
    refused_by_reason: dict[str, int]
    error_lines: list[dict[str, Any]]
    patients_total: int
    patients_done: int
    patients_failed: int
    resources_per_second: float | None  # while receiving (and the mean over the receiving once done)
    patients_per_second: float | None  # while processing (and the mean once finished)
    created_at: datetime
    received_at: datetime | None
    finished_at: datetime | None
    error: str

    @property
    def patients_waiting(self) -> int:
        return max(0, self.patients_total - self.patients_done - self.patients_failed)

    @property
    def percent_done(self) -> int:
        """Patients finished (done or failed) of those queued; 0 while still receiving."""
        if self.status == BulkBatch.Status.RECEIVING or not self.patients_total:
            return 100 if self.status == BulkBatch.Status.SUCCEEDED else 0
        return int(100 * (self.patients_done + self.patients_failed) / self.patients_total)


def _rate(count: int, since: datetime | None, until: datetime | None) -> float | None:
    if since is None or until is None:
        return None
    seconds = (until - since).total_seconds()
    return round(count / seconds, 2) if seconds > 0 else None


def _status_text(batch: BulkBatch, done: int, failed: int) -> str:
    status = BulkBatch.Status(batch.status)
    if status == BulkBatch.Status.RECEIVING:
        return f"Receiving: {batch.lines_read:,} lines read"
    if status == BulkBatch.Status.PROCESSING:
        return f"Processing: {done + failed:,} of {batch.patients_total:,} patients done"
    if status == BulkBatch.Status.SUCCEEDED:
        return f"Done: {done:,} patients"
    if status == BulkBatch.Status.FAILED:
        return f"Finished with failures: {failed:,} of {batch.patients_total:,} patients failed"
    return "Cancelled"


def batch_progress(batch: BulkBatch) -> BatchProgress:
    """The batch's counters and its jobs by status (one query for the jobs)."""
    by_status = dict(
        IngestJob.objects.filter(batch=batch)
        .order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    done = int(by_status.get(IngestJob.Status.SUCCEEDED, 0))
    failed = int(by_status.get(IngestJob.Status.FAILED, 0))
    now = timezone.now()
    receiving_until = batch.received_at or (
        now if batch.status == BulkBatch.Status.RECEIVING else batch.finished_at
    )
    processing_until = batch.finished_at or (now if batch.status == BulkBatch.Status.PROCESSING else None)
    return BatchProgress(
        external_id=str(batch.external_id),
        origin=batch.origin,
        label=batch.label,
        status=batch.status,
        status_text=_status_text(batch, done, failed),
        lines_read=batch.lines_read,
        staged=batch.resources_staged,
        duplicates=batch.duplicates_skipped,
        held=batch.references_held,
        refused=batch.lines_refused,
        refused_by_reason={str(k): int(v) for k, v in sorted(batch.errors.items())},
        error_lines=list(batch.error_lines),
        patients_total=batch.patients_total,
        patients_done=done,
        patients_failed=failed,
        resources_per_second=_rate(
            batch.resources_staged + batch.duplicates_skipped + batch.references_held,
            batch.created_at,
            receiving_until,
        ),
        patients_per_second=_rate(done + failed, batch.received_at, processing_until),
        created_at=batch.created_at,
        received_at=batch.received_at,
        finished_at=batch.finished_at,
        error=batch.error,
    )


def batch_refresh_status(batch: BulkBatch) -> str:
    """A processing batch whose jobs have all finished becomes succeeded (or failed when any patient's job
    failed). A conditional update: any number of callers may run it at once. Returns the status."""
    if batch.status == BulkBatch.Status.PROCESSING and not (
        IngestJob.objects.filter(batch=batch, status__in=_UNFINISHED).exists()
    ):
        failed = IngestJob.objects.filter(batch=batch, status=IngestJob.Status.FAILED).count()
        status = BulkBatch.Status.FAILED if failed else BulkBatch.Status.SUCCEEDED
        error = f"{failed} of {batch.patients_total} patients failed" if failed else ""
        now = timezone.now()
        BulkBatch.objects.filter(pk=batch.pk, status=BulkBatch.Status.PROCESSING).update(
            status=status, error=error, finished_at=now, updated_at=now
        )
        batch.refresh_from_db()
    return str(batch.status)
