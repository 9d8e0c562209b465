"""Intake: persist an accepted request as an encrypted, queued, claimable job; claim and run jobs.

The FHIR layer (integrations.fhir) parses and validates; this module only ever sees accepted entries.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.crypto import DecryptionError
from clinical_ai.core.jobs import JobTable, LostClaim, job_claim, job_dispatch, job_hold, jobs_sweep
from clinical_ai.core.rows import rows_insert
from clinical_ai.core.sealing import keyring, open_json, seal_json
from clinical_ai.intake.keys import resource_key
from clinical_ai.intake.models import BulkBatch, HeldResource, IngestJob, RawResource, SeenResourceVersion
from clinical_ai.intake.selectors import batch_refresh_status

logger = logging.getLogger(__name__)

RAW_RESOURCES_RESEAL_ACTION = "intake.raw_resources.reseal"
HELD_RESOURCES_RESEAL_ACTION = "intake.held_resources.reseal"

# The tables of sealed documents that a key rotation re-seals (same columns, same associated data scheme).
_SealedRow = TypeVar("_SealedRow", RawResource, HeldResource)


@dataclass(frozen=True)
class IntakeEntry:
    """One accepted Bundle entry (or a single posted resource), with the server id already assigned."""

    external_id: uuid.UUID
    entry_index: int
    resource_type: str
    document: Mapping[str, Any]  # {"fullUrl": ..., "request": ..., "resource": ...}: sealed as a whole


def ingest_job_create(
    *,
    actor: Actor,
    client_pk: int,
    organization_pk: int,
    organization_slug: str,
    kind: str,
    entries: Sequence[IntakeEntry],
    request_id: str,
    idempotency_key_sha256: str,
    input_sha256: str,
    response_status: int,
    response_body: Mapping[str, Any],
    response_location: str = "",
) -> IngestJob:
    """Store the job, its sealed entries and the audit row in one transaction; queue the job on commit.

    Raises ``django.db.IntegrityError`` when the same client already used the idempotency key (a
    concurrent duplicate): the caller then answers with the stored job.
    """
    with transaction.atomic():
        job = IngestJob.objects.create(
            organization_id=organization_pk,
            client_id=client_pk,
            kind=kind,
            request_id=request_id,
            idempotency_key_sha256=idempotency_key_sha256,
            input_sha256=input_sha256,
            resource_count=len(entries),
            response_status=response_status,
            response_body=dict(response_body),
            response_location=response_location,
        )
        rows = []
        for entry in entries:
            row = RawResource(
                external_id=entry.external_id,
                job=job,
                entry_index=entry.entry_index,
                resource_type=entry.resource_type,
            )
            sealed = seal_json(dict(entry.document), associated_data=row.associated_data)
            row.key_id, row.nonce, row.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
            rows.append(row)
        rows_insert(RawResource, rows)
        audit_record(
            actor=actor,
            action="intake.job.create",
            object_type="IngestJob",
            object_id=str(job.external_id),
            organization=organization_slug,
            request_id=request_id,
            detail={
                "kind": kind,
                "resource_count": len(entries),
                "resource_types": sorted({e.resource_type for e in entries}),
            },
        )
        transaction.on_commit(partial(ingest_job_dispatch, job_id=str(job.external_id)))
    return job


# The rows of this stage are worked by the de-identification task, sent by name (clinical_ai.pipeline says
# what follows what; this stage never imports the next one).
INGEST_JOBS = JobTable(
    model=IngestJob,
    task_name="clinical_ai.deid.deidentify_ingest_job",
    lease_setting="INTAKE_CLAIM_LEASE_SECONDS",
    redispatch_setting="INTAKE_REDISPATCH_AFTER_SECONDS",
    expires_setting="INTAKE_TASK_EXPIRES_SECONDS",
)


def ingest_job_dispatch(*, job_id: str) -> bool:
    """Publish the job id to the ``deid`` queue. A broker outage is not an error for the caller: the job row
    stays queued with no ``dispatched_at`` and the sweep sends it again later."""
    return job_dispatch(INGEST_JOBS, keys=[job_id])


def ingest_jobs_sweep(*, now: datetime | None = None, limit: int = 500) -> int:
    """Send again every job that was never dispatched, sat queued too long, or whose claim lease ran out
    (its worker died). Safe to run anywhere, any number of times: claims are idempotent."""
    return jobs_sweep(INGEST_JOBS, now=now, limit=limit)


@dataclass(frozen=True)
class Claim:
    job: IngestJob | None
    # When another worker holds an unexpired lease: seconds until it runs out (the task retries then).
    retry_in_seconds: int = 0


def ingest_job_claim(*, job_id: str, task_id: str, worker: str) -> Claim:
    """Take the job with one conditional UPDATE, so two deliveries of one job never both run it."""
    claim = job_claim(INGEST_JOBS, key=job_id, task_id=task_id, worker=worker)
    return Claim(job=claim.row, retry_in_seconds=claim.retry_in_seconds)


class PermanentJobError(Exception):
    """The job cannot succeed however often it is retried (corrupt entry, unusable content)."""

    def __init__(self, message: str, detail: Mapping[str, Any]) -> None:
        super().__init__(message)
        self.detail = dict(detail)


@dataclass(frozen=True)
class OpenedEntry:
    raw: RawResource
    document: dict[str, Any]  # {"fullUrl", "request", "resource"} as received

    @property
    def resource(self) -> dict[str, Any]:
        resource: dict[str, Any] = self.document["resource"]
        return resource


@dataclass(frozen=True)
class StageOutcome:
    """What a stage computed: ``writes`` persists it inside the transaction that finishes the job, so the
    stage's rows, the job's status and the audit rows commit together or not at all."""

    detail: Mapping[str, Any]
    writes: Callable[[], None] | None = None
    on_commit: Callable[[], None] | None = None
    # Resources written per patient pseudonym: what the next stage has to work on.
    patients: Mapping[str, int] = field(default_factory=dict)

    def then(self, more_writes: Callable[[], None]) -> StageOutcome:
        """The same outcome, with ``more_writes`` in the same transaction after this stage's own."""
        first = self.writes

        def writes() -> None:
            if first is not None:
                first()
            more_writes()

        return replace(self, writes=writes)


JobStage = Callable[[IngestJob, list[OpenedEntry], Actor], StageOutcome]


def raw_entries_open(job: IngestJob) -> list[OpenedEntry]:
    """Open every sealed entry of the job; any that does not open or is not what was recorded is permanent."""
    opened: list[OpenedEntry] = []
    for raw in job.raw_resources.order_by("entry_index").iterator(chunk_size=200):
        try:
            document = open_json(raw.sealed, associated_data=raw.associated_data)
        except (DecryptionError, ValueError) as exc:
            raise PermanentJobError(
                f"entry {raw.entry_index}: {exc}",
                {"entry_index": raw.entry_index, "error": type(exc).__name__},
            ) from exc
        resource = document.get("resource") if isinstance(document, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != raw.resource_type:
            raise PermanentJobError(
                f"entry {raw.entry_index}: stored document does not hold a {raw.resource_type}",
                {"entry_index": raw.entry_index, "error": "corrupt_entry"},
            )
        opened.append(OpenedEntry(raw, document))
    if len(opened) != job.resource_count:
        raise PermanentJobError(
            f"expected {job.resource_count} entries, found {len(opened)}",
            {"error": "missing_entries", "found": len(opened)},
        )
    return opened


def ingest_job_finish(
    *,
    job: IngestJob,
    actor: Actor,
    status: str,
    error: str,
    detail: Mapping[str, Any],
    writes: Callable[[], None] | None = None,
    on_commit: Callable[[], None] | None = None,
) -> bool:
    """Finish the job if this run still holds its claim: stage writes, status and audit row in one
    transaction. Returns False (and writes nothing) when another worker took the job over."""
    try:
        with transaction.atomic():
            job_hold(INGEST_JOBS, job, status=status, finished_at=timezone.now(), error=error[:500])
            if writes is not None:
                writes()
            if status == IngestJob.Status.FAILED and job.batch_id is not None:
                detail = {**detail, "versions_forgotten": _bulk_versions_forget(job)}
            audit_record(
                actor=actor,
                action="intake.job.process",
                outcome=Outcome.SUCCESS if status == IngestJob.Status.SUCCEEDED else Outcome.FAILURE,
                object_type="IngestJob",
                object_id=str(job.external_id),
                organization=job.organization.slug,
                request_id=job.request_id,
                detail=dict(detail),
            )
            if on_commit is not None:
                transaction.on_commit(on_commit)
            if job.batch_id is not None:
                # A bulk batch is done once its last patient's job is: checked after this one commits.
                transaction.on_commit(partial(_batch_refresh, batch_id=job.batch_id), robust=True)
    except LostClaim:
        logger.warning("ingest job %s was taken over by another worker; this run's result is dropped", job.pk)
        return False
    return True


def _bulk_versions_forget(job: IngestJob) -> int:
    """A bulk job failed for good: forget the resource versions its batch recorded for this job's entries,
    so that the same versions sent again (a later pull, the same files) are taken instead of skipped as
    already stored. Entries that no longer open are left (their keys cannot be known). Returns how many."""
    keys = set()
    for raw in job.raw_resources.iterator(chunk_size=200):
        try:
            document = open_json(raw.sealed, associated_data=raw.associated_data)
        except (DecryptionError, ValueError):
            continue
        resource = document.get("resource") if isinstance(document, dict) else None
        if isinstance(resource, dict) and isinstance(resource.get("id"), str):
            keys.add(resource_key(str(resource.get("resourceType")), resource["id"]))
    if not keys:
        return 0
    forgotten, _ = SeenResourceVersion.objects.filter(
        organization_id=job.organization_id, batch_id=job.batch_id, resource_key_sha256__in=keys
    ).delete()
    return forgotten


def _batch_refresh(*, batch_id: int) -> None:
    batch = BulkBatch.objects.filter(pk=batch_id).first()
    if batch is not None:
        batch_refresh_status(batch)


def ingest_job_run(*, job: IngestJob, actor: Actor, stage: JobStage) -> bool:
    """Run a claimed job: open its sealed entries, let the stage compute, finish the job with the stage's
    writes. Permanent faults (an entry that does not open, unusable content, too many attempts) fail the job
    for good and are audited; database faults propagate so the task retries."""
    if job.attempts > settings.INTAKE_MAX_ATTEMPTS:
        return ingest_job_finish(
            job=job,
            actor=actor,
            status=IngestJob.Status.FAILED,
            error=f"gave up after {job.attempts - 1} attempts",
            detail={"attempts": job.attempts},
        )
    try:
        entries = raw_entries_open(job)
        outcome = stage(job, entries, actor)
    except PermanentJobError as exc:
        return ingest_job_finish(
            job=job, actor=actor, status=IngestJob.Status.FAILED, error=str(exc), detail=exc.detail
        )
    return ingest_job_finish(
        job=job,
        actor=actor,
        status=IngestJob.Status.SUCCEEDED,
        error="",
        detail={"resource_count": len(entries), "attempts": job.attempts, **outcome.detail},
        writes=outcome.writes,
        on_commit=outcome.on_commit,
    )


def raw_resources_reseal(*, actor: Actor, batch_size: int = 500) -> int:
    """Re-seal every stored entry not sealed with the active key (after a key rotation), in batches, each
    batch in its own transaction with its audit row. Returns how many were re-sealed."""
    return _rows_reseal(RawResource, actor=actor, batch_size=batch_size, action=RAW_RESOURCES_RESEAL_ACTION)


def held_resources_reseal(*, actor: Actor, batch_size: int = 500) -> int:
    """Re-seal every held resource (the bulk intake's resources of no patient) not sealed with the active
    key, as ``raw_resources_reseal`` does. Its ``updated_at`` stays: the content did not change."""
    return _rows_reseal(HeldResource, actor=actor, batch_size=batch_size, action=HELD_RESOURCES_RESEAL_ACTION)


def _rows_reseal(model: type[_SealedRow], *, actor: Actor, batch_size: int, action: str) -> int:
    """Open each row not under the active key and seal the same document again with it (same associated
    data), a batch at a time under row locks, one audit row per batch: count and key ids, never content."""
    active = keyring().active_key_id
    total = 0
    while True:
        with transaction.atomic():
            rows = list(model.objects.exclude(key_id=active).select_for_update()[:batch_size])
            if not rows:
                return total
            old_keys = sorted({row.key_id for row in rows})
            for row in rows:
                document = open_json(row.sealed, associated_data=row.associated_data)
                sealed = seal_json(document, associated_data=row.associated_data)
                row.key_id, row.nonce, row.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
            model.objects.bulk_update(rows, ["key_id", "nonce", "ciphertext"])
            audit_record(
                actor=actor,
                action=action,
                object_type=model.__name__,
                detail={"count": len(rows), "from_keys": old_keys, "to_key": active},
            )
            total += len(rows)
