"""Bulk intake: NDJSON lines (a Bulk Data export, files given to ``manage.py ingest_ndjson``, a body posted by
an EHR client) split per patient into staging ``IngestJob`` rows of one ``BulkBatch``, sealed exactly as a
pushed Bundle's entries are, then queued together into the same de-identification → inference → review
pipeline.

- A resource of a patient (the Patient itself, or one whose patient link names ``Patient/<id>``) goes into
  that patient's job of the batch (one per patient, created when their first resource arrives).
- A resource of no patient (Practitioner, Organization, Location, Medication, ...) is held, sealed, with its
  business identifiers as keyed digests, so that references to it can be resolved later.
- The same resource with the same version as one already stored by any batch of the organization is a
  duplicate: counted, not stored again.
- Lines are written in groups, each group in one transaction with the batch's counters: a crash loses the
  group in flight only, and ``feed(..., skip_lines=<lines of the last progress>)`` resumes exactly.
- Memory stays flat in the number of lines: the writer keeps one group and a patient → job map.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, OuterRef, Subquery
from django.utils import timezone

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.crypto import DecryptionError
from clinical_ai.core.rows import rows_insert
from clinical_ai.core.sealing import open_json, seal_json
from clinical_ai.fhir.compartment import patient_reference_of
from clinical_ai.fhir.ndjson import (
    INVALID,
    TOO_LONG,
    Line,
    line_decode,
    lines_split,
    resource_valid,
)
from clinical_ai.fhir.references import identifier_key
from clinical_ai.intake.keys import patient_key, resource_key, version_key
from clinical_ai.intake.models import (
    BulkBatch,
    HeldIdentifier,
    HeldResource,
    IngestJob,
    RawResource,
    SeenResourceVersion,
)
from clinical_ai.intake.services import ingest_job_dispatch

logger = logging.getLogger(__name__)

# Lines written per transaction: small enough that a crash loses little, large enough to keep the number
# of round trips down.
GROUP_LINES = 500
# Error lines kept on the batch (file label, line number, reason; never content).
MAX_ERROR_LINES = 100
FILE_TOO_LARGE = "file_too_large"
# A line of a resource type the sender may not write (its SMART scopes).
FORBIDDEN = "forbidden"
# A line of a ``deleted`` file that is not a Bundle of DELETE entries naming Type/id.
UNREADABLE_DELETION = "unreadable_deletion"

DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_FILE_BYTES = 2 * 1024 * 1024 * 1024


@dataclass(frozen=True)
class DeletionCounts:
    read: int  # resources named as deleted
    forgotten: int  # stored versions forgotten
    held_removed: int  # held resources (practitioners, organizations, ...) dropped
    unreadable: int  # lines refused


class BatchClosed(Exception):
    """The batch no longer takes lines (finished, failed or cancelled)."""


@dataclass(frozen=True)
class FileProgress:
    """Where one ``feed`` call stands. ``lines`` counts every line read, skipped ones included, so that a
    caller can resume with ``skip_lines=lines``; ``bytes`` is the size of those complete lines (never bytes
    read ahead), so that ``start_byte + bytes`` is where the next line starts."""

    lines: int
    staged: int
    duplicates: int
    held: int
    refused: int
    bytes: int
    stopped: str = ""


def _max_line_bytes() -> int:
    return int(getattr(settings, "BULK_MAX_LINE_BYTES", DEFAULT_MAX_LINE_BYTES))


def max_file_bytes() -> int:
    """The most bytes one NDJSON file or body may bring (``BULK_MAX_FILE_BYTES``)."""
    return int(getattr(settings, "BULK_MAX_FILE_BYTES", DEFAULT_MAX_FILE_BYTES))


class CountedChunks:
    """A stream's chunks as they pass: the bytes that arrived and the largest chunk held at once."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.received = 0
        self.largest = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self.received += len(chunk)
            self.largest = max(self.largest, len(chunk))
            yield chunk


def batch_open(
    *, organization: Organization, origin: str, label: str, actor: Actor, request_id: str = ""
) -> BulkBatch:
    """A new batch, receiving, audited. ``label`` names the source or the files (no PHI)."""
    if origin not in BulkBatch.Origin.values:
        raise ValueError(f"unknown batch origin {origin!r}")
    with transaction.atomic():
        batch = BulkBatch.objects.create(
            organization=organization, origin=origin, label=label[:200], request_id=request_id[:64]
        )
        audit_record(
            actor=actor,
            action="intake.batch.open",
            object_type="BulkBatch",
            object_id=str(batch.external_id),
            organization=organization.slug,
            request_id=request_id,
            detail={"origin": origin},
        )
    return batch


@dataclass
class _PatientJob:
    pk: int
    next_index: int


@dataclass
class _Accepted:
    number: int
    resource: dict[str, Any]
    resource_type: str
    resource_id: str
    key: str
    version: str
    patient: str | None  # Patient/<id>, or None for a resource of no patient


@dataclass
class _Group:
    """The lines of one transaction."""

    accepted: list[_Accepted] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    lines: int = 0  # lines processed in this group, blank ones included (skipped ones are not)
    last_line: int = 0  # number of the last line read (skipped ones included), in this feed call
    end: int = 0  # byte offset just past that line, in this feed call


@dataclass
class _Run:
    """One feed call: what it reports and to whom."""

    label: str
    line_offset: int
    on_progress: Callable[[FileProgress], None] | None
    allowed: Callable[[str], bool] | None = None
    stopped: str = ""
    progress: FileProgress = field(default_factory=lambda: FileProgress(0, 0, 0, 0, 0, 0))


class _CappedChunks:
    """The chunks of a stream up to ``limit`` bytes; past it, iteration stops and ``capped`` is set."""

    def __init__(self, chunks: Iterable[bytes], limit: int) -> None:
        self._chunks = chunks
        self._limit = limit
        self.read = 0
        self.capped = False
        self.last_byte = b""

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            room = self._limit - self.read
            if len(chunk) > room:
                self.capped = True
                if room > 0:
                    self.read += room
                    self.last_byte = chunk[room - 1 : room]
                    yield chunk[:room]
                return
            if chunk:
                self.read += len(chunk)
                self.last_byte = chunk[-1:]
                yield chunk


class BatchWriter:
    """Writes NDJSON lines into one receiving batch. One writer per batch at a time; a new writer for the
    same batch (after a restart) recovers the patients' jobs and their next entry indexes from the
    database."""

    def __init__(self, batch: BulkBatch, *, actor: Actor) -> None:
        self.batch = batch
        self.actor = actor
        self.organization = batch.organization
        self._key = settings.PSEUDONYM_KEY.encode("utf-8")
        self._max_nesting_depth = int(getattr(settings, "FHIR_MAX_NESTING_DEPTH", 64))
        self._jobs: dict[str, _PatientJob] = {}
        for pk, key, last_index in (
            IngestJob.objects.filter(batch=batch)
            .annotate(last_index=Max("raw_resources__entry_index"))
            .values_list("pk", "patient_key_sha256", "last_index")
            .iterator(chunk_size=2000)
        ):
            self._jobs[key] = _PatientJob(pk, 0 if last_index is None else last_index + 1)

    # --- public -------------------------------------------------------------------------------------

    def feed(
        self,
        file_label: str,
        chunks: Iterable[bytes],
        *,
        skip_lines: int = 0,
        line_offset: int = 0,
        byte_offset: int = 0,
        on_progress: Callable[[FileProgress], None] | None = None,
        allowed: Callable[[str], bool] | None = None,
    ) -> FileProgress:
        """Read one NDJSON stream into the batch and return where it stands.

        ``skip_lines`` lines at the start are consumed but not processed (a resume after a crash: pass the
        ``lines`` of the last progress). ``line_offset`` is added to the line numbers reported (a resume by
        byte range) and ``byte_offset`` counts towards the file cap. ``on_progress`` is called inside each
        group's transaction, just before it commits, so that the caller's own bookkeeping commits with the
        group (if it raises, the group rolls back). Past the file cap the file stops
        (``stopped="file_too_large"``); what was read before stays. ``allowed``, when given, says which
        resource types the sender may write; a line of another type is refused as ``forbidden``."""
        if self.batch.status != BulkBatch.Status.RECEIVING:
            raise BatchClosed(f"batch {self.batch.external_id} is {self.batch.status}")
        capped = _CappedChunks(chunks, max(0, max_file_bytes() - byte_offset))
        run = _Run(label=file_label[:200], line_offset=line_offset, on_progress=on_progress, allowed=allowed)
        group = _Group()
        for line in lines_split(capped, max_line_bytes=_max_line_bytes()):
            if capped.capped and line.end == capped.read and capped.last_byte != b"\n":
                break  # the cap cut this line short: it is not a line of the file
            group.last_line, group.end = line.number, line.end
            if line.number <= skip_lines:
                continue
            self._line_take(line, run, group)
            if group.lines >= GROUP_LINES:
                self._group_write(run, group)
                group = _Group(last_line=group.last_line, end=group.end)
        if capped.capped:
            run.stopped = FILE_TOO_LARGE
            group.refused.append((group.last_line + 1 + line_offset, FILE_TOO_LARGE))
        if group.lines or group.refused or group.last_line > run.progress.lines:
            self._group_write(run, group)
        return run.progress

    def refuse(self, file_label: str, reason: str, count: int = 1) -> None:
        """Count lines refused elsewhere (an export's error file, by OperationOutcome issue code)."""
        if count <= 0:
            return
        del file_label  # counted by reason only: an error file's lines name no line of ours
        with transaction.atomic():
            batch = self._batch_lock()
            errors = dict(batch.errors)
            errors[reason[:64]] = int(errors.get(reason[:64], 0)) + count
            batch.errors = errors
            batch.lines_refused += count
            batch.save(update_fields=["errors", "lines_refused", "updated_at"])
        self.batch = batch

    def deletions(
        self, file_label: str, references: Iterable[tuple[str, str]], unreadable_lines: Iterable[int] = ()
    ) -> DeletionCounts:
        """Resources the source says it deleted since the last pull (one group of a Bulk Data ``deleted``
        file), in one transaction with the batch's counters: the organization forgets that it stored them
        (a resource created again under the same id and version is then taken again) and drops the held
        ones (no reference resolves to a deleted practitioner any more). A patient's records already
        de-identified and scored stay on record. ``unreadable_lines`` (line numbers) are refused."""
        pairs = sorted(set(references))
        unreadable = sorted(unreadable_lines)
        ids_by_type: dict[str, set[str]] = {}
        for resource_type, resource_id in pairs:
            ids_by_type.setdefault(resource_type, set()).add(resource_id)
        with transaction.atomic():
            batch = self._batch_lock()
            forgotten, _ = (
                SeenResourceVersion.objects.filter(
                    organization=self.organization,
                    resource_key_sha256__in={resource_key(t, i) for t, i in pairs},
                )
                .exclude(batch=batch)
                .delete()
            )
            held_removed = 0
            for resource_type, ids in sorted(ids_by_type.items()):
                held = HeldResource.objects.filter(
                    organization=self.organization, resource_type=resource_type, resource_id__in=ids
                )
                held_removed += held.count()
                held.delete()  # their identifiers go with them (CASCADE)
            _refusals_note(batch, file_label[:200], [(n, UNREADABLE_DELETION) for n in unreadable])
            batch.lines_refused += len(unreadable)
            batch.deletions_read += len(pairs)
            batch.save(
                update_fields=["errors", "error_lines", "lines_refused", "deletions_read", "updated_at"]
            )
        self.batch = batch
        return DeletionCounts(
            read=len(pairs), forgotten=forgotten, held_removed=held_removed, unreadable=len(unreadable)
        )

    # --- one line -------------------------------------------------------------------------------------

    def _line_take(self, line: Line, run: _Run, group: _Group) -> None:
        group.lines += 1
        number = line.number + run.line_offset
        if line.too_long:
            group.refused.append((number, TOO_LONG))
            return
        if line.blank:
            return
        parsed = line_decode(line.data, max_nesting_depth=self._max_nesting_depth)
        if parsed.resource is None:
            group.refused.append((number, parsed.reason))
            return
        resource = parsed.resource
        resource_type, resource_id = str(resource["resourceType"]), str(resource["id"])
        if run.allowed is not None and not run.allowed(resource_type):
            group.refused.append((number, FORBIDDEN))
            return
        group.accepted.append(
            _Accepted(
                number=number,
                resource=resource,
                resource_type=resource_type,
                resource_id=resource_id,
                key=resource_key(resource_type, resource_id),
                version=version_key(resource),
                patient=patient_reference_of(resource),
            )
        )

    # --- one group, one transaction -------------------------------------------------------------------

    def _batch_lock(self) -> BulkBatch:
        batch = BulkBatch.objects.select_for_update().select_related("organization").get(pk=self.batch.pk)
        if batch.status != BulkBatch.Status.RECEIVING:
            raise BatchClosed(f"batch {batch.external_id} is {batch.status}")
        return batch

    def _group_write(self, run: _Run, group: _Group) -> None:
        jobs: dict[str, _PatientJob] = {}  # this group's new or advanced jobs, kept only once committed
        with transaction.atomic():
            batch = self._batch_lock()
            fresh, duplicates = self._fresh(group)
            staged = self._patients_write(batch, [a for a in fresh if a.patient], jobs)
            held = [a for a in fresh if not a.patient]
            self._held_write(held)
            rows_insert(
                SeenResourceVersion,
                [
                    SeenResourceVersion(
                        organization=self.organization,
                        batch=batch,
                        resource_key_sha256=a.key,
                        version_sha256=a.version,
                    )
                    for a in fresh
                ],
                ignore_conflicts=True,
            )
            refused_lines = [(n, r) for n, r in group.refused if r != FILE_TOO_LARGE]
            _refusals_note(batch, run.label, group.refused)
            batch.lines_read += group.lines
            batch.resources_staged += staged
            batch.duplicates_skipped += duplicates
            batch.references_held += len(held)
            batch.lines_refused += len(refused_lines)
            batch.patients_total = len(self._jobs.keys() | jobs.keys())
            batch.save()
            run.progress = FileProgress(
                lines=group.last_line,
                staged=run.progress.staged + staged,
                duplicates=run.progress.duplicates + duplicates,
                held=run.progress.held + len(held),
                refused=run.progress.refused + len(refused_lines),
                bytes=group.end,
                stopped=run.stopped,
            )
            if run.on_progress is not None:
                run.on_progress(run.progress)
        self._jobs.update(jobs)
        self.batch = batch

    def _fresh(self, group: _Group) -> tuple[list[_Accepted], int]:
        """The resources whose version no batch of the organization stored yet (nor an earlier line of this
        group), validated as the push path validates an entry (an invalid one joins the group's refusals),
        and how many lines were duplicates. Duplicates are found before validation: a resume or a second
        run over the same files costs the decoding only."""
        if not group.accepted:
            return [], 0
        stored = set(
            SeenResourceVersion.objects.filter(
                organization=self.organization, resource_key_sha256__in={a.key for a in group.accepted}
            ).values_list("resource_key_sha256", "version_sha256")
        )
        fresh: list[_Accepted] = []
        duplicates = 0
        for item in group.accepted:
            pair = (item.key, item.version)
            if pair in stored:
                duplicates += 1
            elif not resource_valid(item.resource):
                group.refused.append((item.number, INVALID))
            else:
                stored.add(pair)
                fresh.append(item)
        group.refused.sort()
        return fresh, duplicates

    def _patients_write(
        self, batch: BulkBatch, accepted: list[_Accepted], jobs: dict[str, _PatientJob]
    ) -> int:
        rows: list[RawResource] = []
        for item in accepted:
            assert item.patient is not None
            key = patient_key(item.patient)
            job = jobs.get(key)
            if job is None:
                known = self._jobs.get(key)
                job = _PatientJob(known.pk, known.next_index) if known else self._job_create(batch, key)
                jobs[key] = job
            row = RawResource(
                external_id=uuid.uuid4(),
                job_id=job.pk,
                entry_index=job.next_index,
                resource_type=item.resource_type,
            )
            job.next_index += 1
            reference = f"{item.resource_type}/{item.resource_id}"
            # As ingest_job_create seals a pushed Bundle's entry: the deid stage reads it the same way.
            document = {
                "fullUrl": reference,
                "request": {"method": "PUT", "url": reference},
                "resource": item.resource,
            }
            sealed = seal_json(document, associated_data=row.associated_data)
            row.key_id, row.nonce, row.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
            rows.append(row)
        rows_insert(RawResource, rows)
        return len(rows)

    def _job_create(self, batch: BulkBatch, key: str) -> _PatientJob:
        job = IngestJob.objects.create(
            organization=self.organization,
            client=None,
            batch=batch,
            patient_key_sha256=key,
            kind=IngestJob.Kind.BULK,
            status=IngestJob.Status.STAGING,
            request_id=batch.request_id,
            # No request body of its own: the batch and the patient name its input.
            input_sha256=hashlib.sha256(f"bulk:{batch.external_id}:{key}".encode()).hexdigest(),
            resource_count=0,
            response_status=202,
            response_body={"batch": str(batch.external_id)},
        )
        return _PatientJob(job.pk, 0)

    def _held_write(self, held: list[_Accepted]) -> None:
        """Upsert the resources of no patient by type and id (the last line wins), with their identifiers."""
        if not held:
            return
        latest = {(a.resource_type, a.resource_id): a for a in held}
        existing = {
            (row.resource_type, row.resource_id): row
            for row in HeldResource.objects.filter(
                organization=self.organization,
                resource_type__in={t for t, _ in latest},
                resource_id__in={i for _, i in latest},
            )
            if (row.resource_type, row.resource_id) in latest
        }
        now = timezone.now()
        updated: list[HeldResource] = []
        created: list[HeldResource] = []
        for (resource_type, resource_id), item in latest.items():
            row = existing.get((resource_type, resource_id))
            if row is None:
                row = HeldResource(
                    external_id=uuid.uuid4(),
                    organization=self.organization,
                    resource_type=resource_type,
                    resource_id=resource_id,
                )
                created.append(row)
            else:
                updated.append(row)
            sealed = seal_json(item.resource, associated_data=row.associated_data)
            row.key_id, row.nonce, row.ciphertext, row.updated_at = (
                sealed.key_id,
                sealed.nonce,
                sealed.ciphertext,
                now,
            )
        if updated:
            HeldResource.objects.bulk_update(updated, ["key_id", "nonce", "ciphertext", "updated_at"])
            HeldIdentifier.objects.filter(held__in=updated).delete()
        if created:
            HeldResource.objects.bulk_create(created, batch_size=500)
        pks = dict(
            HeldResource.objects.filter(
                external_id__in=[r.external_id for r in created + updated]
            ).values_list("external_id", "pk")
        )
        identifiers: list[HeldIdentifier] = []
        for row in created + updated:
            item = latest[(row.resource_type, row.resource_id)]
            digests = {
                identifier_key(
                    key=self._key,
                    organization=self.organization.slug,
                    resource_type=row.resource_type,
                    system=system,
                    value=value,
                )
                for system, value in _identifiers(item.resource)
            }
            identifiers.extend(
                HeldIdentifier(
                    held_id=pks[row.external_id],
                    organization=self.organization,
                    resource_type=row.resource_type,
                    identifier_sha256=digest,
                )
                for digest in sorted(digests)
            )
        HeldIdentifier.objects.bulk_create(identifiers, batch_size=500)


def _refusals_note(batch: BulkBatch, file_label: str, refused: list[tuple[int, str]]) -> None:
    """Count ``refused`` (line number, reason) on the batch by reason, and keep the first lines of the batch
    (up to MAX_ERROR_LINES) with the file's label. The caller counts ``lines_refused`` and saves."""
    if not refused:
        return
    errors = dict(batch.errors)
    for _, reason in refused:
        errors[reason] = int(errors.get(reason, 0)) + 1
    batch.errors = errors
    room = MAX_ERROR_LINES - len(batch.error_lines)
    if room > 0:
        batch.error_lines = [
            *batch.error_lines,
            *({"file": file_label, "line": n, "reason": r} for n, r in refused[:room]),
        ]


def _identifiers(resource: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(system, value) of each business identifier that has a value; an absent system is ""."""
    for identifier in resource.get("identifier") or ():
        if not isinstance(identifier, dict):
            continue
        system, value = identifier.get("system", ""), identifier.get("value")
        if isinstance(system, str) and isinstance(value, str) and value:
            yield system, value


def _patients_carry(batch: BulkBatch) -> int:
    """Give each job of the batch that holds no Patient resource (an incremental export: the patient did not
    change, their observations did) the Patient as an earlier bulk batch stored it, so that the pipeline
    names the patient as it did then (by medical record number where the record has one) and their
    pseudonym and date shift stay the same. Returns how many jobs got one."""
    with_patient = RawResource.objects.filter(job__batch=batch, resource_type="Patient").values("job_id")
    lacking = (
        IngestJob.objects.filter(batch=batch, status=IngestJob.Status.STAGING)
        .exclude(pk__in=with_patient)
        .values_list("pk", "patient_key_sha256")
    )
    carried = 0
    for job_pk, key in lacking.iterator(chunk_size=500):
        earlier = (
            RawResource.objects.filter(
                job__organization_id=batch.organization_id,
                job__patient_key_sha256=key,
                resource_type="Patient",
            )
            .exclude(job__batch=batch)
            .order_by("-pk")
            .first()
        )
        if earlier is None:
            continue
        try:
            document = open_json(earlier.sealed, associated_data=earlier.associated_data)
        except (DecryptionError, ValueError):
            logger.warning("bulk job %s: the earlier Patient entry does not open; not carried", job_pk)
            continue
        last = RawResource.objects.filter(job_id=job_pk).aggregate(last=Max("entry_index"))["last"]
        row = RawResource(
            external_id=uuid.uuid4(),
            job_id=job_pk,
            entry_index=(-1 if last is None else last) + 1,
            resource_type="Patient",
        )
        sealed = seal_json(document, associated_data=row.associated_data)
        row.key_id, row.nonce, row.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
        row.save()
        carried += 1
    return carried


def batch_finish(batch: BulkBatch, *, actor: Actor) -> int:
    """Every line is in: queue the batch's staging jobs (each dispatched on commit, as a pushed Bundle's
    job is), the batch → processing (succeeded at once when there is nothing to run). Audited. Returns the
    number of jobs queued; 0 and nothing done for a batch no longer receiving."""
    with transaction.atomic():
        locked = BulkBatch.objects.select_for_update().select_related("organization").get(pk=batch.pk)
        if locked.status != BulkBatch.Status.RECEIVING:
            return 0
        _patients_carry(locked)
        staging = IngestJob.objects.filter(batch=locked, status=IngestJob.Status.STAGING)
        counts = (
            RawResource.objects.filter(job=OuterRef("pk"))
            .order_by()
            .values("job")
            .annotate(n=Count("pk"))
            .values("n")
        )
        staging.update(
            resource_count=Subquery(counts), status=IngestJob.Status.QUEUED, updated_at=timezone.now()
        )
        # Largest first: the workers then end the batch on small jobs, not one waiting on the last big one.
        job_ids = [
            str(job_id)
            for job_id in IngestJob.objects.filter(batch=locked, status=IngestJob.Status.QUEUED)
            .order_by("-resource_count", "pk")
            .values_list("external_id", flat=True)
        ]
        now = timezone.now()
        locked.received_at = now
        locked.patients_total = IngestJob.objects.filter(batch=locked).count()
        if job_ids:
            locked.status = BulkBatch.Status.PROCESSING
        else:
            locked.status = BulkBatch.Status.SUCCEEDED
            locked.finished_at = now
        locked.save()
        audit_record(
            actor=actor,
            action="intake.batch.finish",
            object_type="BulkBatch",
            object_id=str(locked.external_id),
            organization=locked.organization.slug,
            request_id=locked.request_id,
            detail=_batch_counts(locked) | {"jobs_queued": len(job_ids)},
        )
        for job_id in job_ids:
            transaction.on_commit(partial(ingest_job_dispatch, job_id=job_id))
    batch.refresh_from_db()
    return len(job_ids)


def batch_cancel(batch: BulkBatch, *, actor: Actor, reason: str) -> None:
    """Stop a batch that is still receiving: its staging jobs fail without running and their sealed
    resources are deleted; the versions it stored first are forgotten, so a later batch takes them again.
    Audited. A batch no longer receiving is left as it is."""
    with transaction.atomic():
        locked = BulkBatch.objects.select_for_update().select_related("organization").get(pk=batch.pk)
        if locked.status != BulkBatch.Status.RECEIVING:
            return
        staging = IngestJob.objects.filter(batch=locked, status=IngestJob.Status.STAGING)
        RawResource.objects.filter(job__in=staging).delete()
        now = timezone.now()
        failed = staging.update(
            status=IngestJob.Status.FAILED, error="batch cancelled", finished_at=now, updated_at=now
        )
        forgotten, _ = SeenResourceVersion.objects.filter(batch=locked).delete()
        locked.status = BulkBatch.Status.CANCELLED
        locked.error = reason[:500]
        locked.finished_at = now
        locked.save()
        audit_record(
            actor=actor,
            action="intake.batch.finish",
            outcome=Outcome.FAILURE,
            object_type="BulkBatch",
            object_id=str(locked.external_id),
            organization=locked.organization.slug,
            request_id=locked.request_id,
            detail=_batch_counts(locked)
            | {"cancelled": True, "jobs_dropped": failed, "versions_forgotten": forgotten},
        )
    batch.refresh_from_db()


def batches_abandoned_cancel(*, now: datetime | None = None) -> int:
    """Cancel the file and POST batches still receiving that have received nothing for
    ``INTAKE_BATCH_IDLE_SECONDS`` (their sender is gone: ``ingest_ndjson`` killed, a web process that
    died mid-body), so that their lines, sent again, are taken instead of skipped as already stored.
    Batches of a pulled export are left to the export, which ends them itself. Returns how many."""
    now = now or timezone.now()
    idle = int(getattr(settings, "INTAKE_BATCH_IDLE_SECONDS", 3600))
    stale = BulkBatch.objects.filter(
        status=BulkBatch.Status.RECEIVING,
        origin__in=(BulkBatch.Origin.FILE, BulkBatch.Origin.POST),
        updated_at__lt=now - timedelta(seconds=idle),
    )
    cancelled = 0
    actor = Actor.system("intake sweep")
    for batch in stale.order_by("pk")[:100]:
        batch_cancel(batch, actor=actor, reason=f"Abandoned: nothing received for {idle // 60} minutes")
        cancelled += 1
    return cancelled


def _batch_counts(batch: BulkBatch) -> dict[str, Any]:
    return {
        "origin": batch.origin,
        "lines_read": batch.lines_read,
        "resources_staged": batch.resources_staged,
        "duplicates_skipped": batch.duplicates_skipped,
        "references_held": batch.references_held,
        "lines_refused": batch.lines_refused,
        "refused_by_reason": [f"{reason}={count}" for reason, count in sorted(batch.errors.items())],
        "patients": batch.patients_total,
    }
