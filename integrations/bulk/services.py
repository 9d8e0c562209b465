"""EHR sources and their Bulk Data exports: registering a source, asking for an export, and the resumable
driver that runs one (kick-off, waiting, downloading into the bulk intake, finishing).

An export is a job row (``BulkExport``) claimed through ``clinical_ai.core.jobs`` like every other queue.
The driver saves where it is after every step that costs something (the status URL after the kick-off,
the manifest, each file's lines already stored after each committed group), renewing its lease as it
goes, so a worker killed at any point leaves a row the sweep sends again and the next claim resumes: the
status URL is polled again, finished files are skipped, a file's stored lines are skipped (or not
downloaded again at all when the server honours ``Range``). A task has a time budget: past it the
driver puts the row back in the queue with a countdown rather than holding a worker slot while the EHR
prepares its files.

Only counts and reasons reach the row, the audit log and the page: never a URL with ids in it, a token or
a line of data.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.http import HttpFailure, url_check, url_host
from clinical_ai.core.jobs import JobTable, LostClaim, job_claim, job_dispatch, job_hold, jobs_sweep
from clinical_ai.core.sealing import keyring
from clinical_ai.intake.bulk import (
    FILE_TOO_LARGE,
    BatchWriter,
    FileProgress,
    batch_cancel,
    batch_finish,
    batch_open,
)
from clinical_ai.intake.models import BulkBatch
from integrations.bulk import protocol
from integrations.bulk.keys import private_key_open, private_key_seal, public_jwk_of, signing_key_generate
from integrations.bulk.models import BulkExport, EhrSource

logger = logging.getLogger(__name__)

SOURCE_CREATE_ACTION = "bulk.source.create"
SOURCE_SWITCH_ACTION = "bulk.source.switch"
SOURCE_KEYS_RESEAL_ACTION = "bulk.source_keys.reseal"
EXPORT_REQUEST_ACTION = "bulk.export.request"
EXPORT_FINISH_ACTION = "bulk.export.finish"
EXPORT_CANCEL_ACTION = "bulk.export.cancel"

ACTIVE_STATUSES = (BulkExport.Status.QUEUED, BulkExport.Status.RUNNING)
TRANSPORT_CAP_MARGIN = 1024 * 1024
# Lines of a ``deleted`` file applied per transaction.
DELETED_GROUP_LINES = 500
LEVELS = tuple(choice.value for choice in EhrSource.Level)

BULK_EXPORTS = JobTable(
    model=BulkExport,
    task_name="integrations.bulk.export_run",
    lease_setting="BULK_EXPORT_LEASE_SECONDS",
    redispatch_setting="BULK_EXPORT_REDISPATCH_AFTER_SECONDS",
    expires_setting="BULK_EXPORT_TASK_EXPIRES_SECONDS",
    defaults=(
        ("BULK_EXPORT_LEASE_SECONDS", 120),
        ("BULK_EXPORT_REDISPATCH_AFTER_SECONDS", 600),
        ("BULK_EXPORT_TASK_EXPIRES_SECONDS", 3600),
    ),
    select_related=("source", "source__organization", "batch"),
)


def _setting(name: str, default: int) -> int:
    return int(getattr(settings, name, default))


# --- sources ------------------------------------------------------------------------------------------


class SourceRefused(ValueError):
    """A source that cannot be registered as given (the message says what to fix)."""


def source_create(
    *,
    organization: Organization,
    name: str,
    fhir_base_url: str,
    client_id: str,
    actor: Actor,
    algorithm: str = "ES384",
    token_url: str = "",
    scopes: str = "system/*.rs",
    level: str = EhrSource.Level.SYSTEM,
    group_id: str = "",
    resource_types: Sequence[str] = (),
    type_filters: Sequence[str] = (),
    file_hosts: Sequence[str] = (),
    interval_minutes: int = 0,
    request_id: str = "",
) -> EhrSource:
    """Register an EHR source with a new signing key of its own (sealed), audited. The EHR registers the
    gateway as a client with the public key at the source's JWKS URL."""
    fhir_base_url = fhir_base_url.rstrip("/")
    for what, url in (("the FHIR base URL", fhir_base_url), ("the token URL", token_url)):
        if url:
            try:
                url_check(url, allowed_hosts={url_host(url)}, what=what)
            except HttpFailure as exc:
                raise SourceRefused(str(exc)) from None
    if level not in LEVELS:
        raise SourceRefused(f"level must be one of {', '.join(LEVELS)}")
    if level == EhrSource.Level.GROUP and not group_id:
        raise SourceRefused("a group-level source needs the group id")
    if not client_id.strip():
        raise SourceRefused("the client id the EHR gave this gateway is required")
    if EhrSource.objects.filter(name=name).exists():
        raise SourceRefused(f"a source called {name!r} already exists")
    key = signing_key_generate(algorithm)
    with transaction.atomic():
        source = EhrSource(
            organization=organization,
            name=name,
            fhir_base_url=fhir_base_url,
            token_url=token_url,
            client_id=client_id.strip(),
            key_id=key.key_id,
            algorithm=algorithm,
            scopes=scopes,
            level=level,
            group_id=group_id if level == EhrSource.Level.GROUP else "",
            resource_types=",".join(t.strip() for t in resource_types if t.strip()),
            type_filters=[f for f in type_filters if f],
            file_hosts=sorted({h.strip().lower() for h in file_hosts if h.strip()}),
            interval_minutes=interval_minutes,
        )
        sealed = private_key_seal(key.private_pem, associated_data=source.private_key_associated_data)
        source.private_key_key_id = sealed.key_id
        source.private_key_nonce = sealed.nonce
        source.private_key_ciphertext = sealed.ciphertext
        source.save()
        audit_record(
            actor=actor,
            action=SOURCE_CREATE_ACTION,
            object_type="bulk.EhrSource",
            object_id=str(source.external_id),
            organization=organization.slug,
            request_id=request_id,
            detail={
                "name": name,
                "fhir_host": url_host(fhir_base_url),
                "level": level,
                "algorithm": algorithm,
                "key_id": key.key_id,
                "interval_minutes": interval_minutes,
            },
        )
    return source


def source_switch(
    *, source: EhrSource, enabled: bool, actor: Actor, reason: str, request_id: str = ""
) -> bool:
    """Switch a source off (no scheduled or asked-for pull, its JWK Set URL answers 404, so the EHR no
    longer accepts the gateway's token; a pull under way is stopped with the reason) or on again. Audited
    with the reason. Returns False, writing nothing, when the source already is as asked."""
    reason = reason.strip()
    if not reason:
        raise SourceRefused("say why (a few words, no patient details)")
    with transaction.atomic():
        locked = EhrSource.objects.select_for_update().select_related("organization").get(pk=source.pk)
        if locked.enabled == enabled:
            return False
        locked.enabled = enabled
        locked.save(update_fields=["enabled", "updated_at"])
        audit_record(
            actor=actor,
            action=SOURCE_SWITCH_ACTION,
            object_type="bulk.EhrSource",
            object_id=str(locked.external_id),
            organization=locked.organization.slug,
            request_id=request_id,
            detail={"name": locked.name, "enabled": enabled, "reason": reason[:200]},
        )
        active = BulkExport.objects.filter(source=locked, status__in=ACTIVE_STATUSES).first()
    source.enabled = enabled
    if not enabled and active is not None:
        export_cancel(
            export=active, actor=actor, reason=f"source switched off: {reason}"[:200], request_id=request_id
        )
    return True


def source_private_key(source: EhrSource) -> bytes:
    return private_key_open(source.private_key_sealed, associated_data=source.private_key_associated_data)


def source_keys_reseal(*, actor: Actor) -> int:
    """Re-seal each source's private key that is not sealed with the installation's active key (after a key
    rotation), under row locks, with one audit row (count and key ids, never key material). The key pair
    stays the same, so the public JWK, its kid and what the EHR registered do not change. Returns how many
    were re-sealed."""
    active = keyring().active_key_id
    with transaction.atomic():
        sources = list(
            EhrSource.objects.exclude(private_key_key_id=active).select_for_update().order_by("pk")
        )
        if not sources:
            return 0
        old_keys = sorted({source.private_key_key_id for source in sources})
        for source in sources:
            private_pem = source_private_key(source)
            sealed = private_key_seal(private_pem, associated_data=source.private_key_associated_data)
            source.private_key_key_id = sealed.key_id
            source.private_key_nonce = sealed.nonce
            source.private_key_ciphertext = sealed.ciphertext
        EhrSource.objects.bulk_update(
            sources, ["private_key_key_id", "private_key_nonce", "private_key_ciphertext"]
        )
        audit_record(
            actor=actor,
            action=SOURCE_KEYS_RESEAL_ACTION,
            object_type="bulk.EhrSource",
            detail={"count": len(sources), "from_keys": old_keys, "to_key": active},
        )
    return len(sources)


# The public JWK of each source's key, by (source, key id): the public endpoint answers without opening the
# sealed private key at every request. A new key has a new kid (its thumbprint), so it is never stale.
_PUBLIC_JWKS: dict[tuple[str, str], dict[str, Any]] = {}


def source_jwks(source: EhrSource) -> dict[str, Any]:
    """The public JWK Set the EHR registers for this gateway's client (kid, alg, use "sig")."""
    cache_key = (str(source.external_id), source.key_id)
    jwk = _PUBLIC_JWKS.get(cache_key)
    if jwk is None:
        jwk = _PUBLIC_JWKS[cache_key] = public_jwk_of(source_private_key(source))
    return {"keys": [dict(jwk)]}


# --- requesting an export -----------------------------------------------------------------------------


class ExportBusy(Exception):
    """An export of this source is already queued or running."""

    def __init__(self, export: BulkExport) -> None:
        super().__init__("an export of this source is already queued or running")
        self.export = export


def export_request(
    *,
    source: EhrSource,
    actor: Actor,
    full: bool = False,
    requested_by: str,
    request_id: str = "",
    dispatch: bool = True,
) -> BulkExport:
    """Queue an export of ``source`` (incremental from its last successful export unless ``full``),
    audited, dispatched on commit (``dispatch=False``: the caller runs it in its own process at once, as
    ``manage.py pull_source`` does). Raises ``ExportBusy`` when one is already queued or running."""
    with transaction.atomic():
        locked = EhrSource.objects.select_for_update().select_related("organization").get(pk=source.pk)
        active = BulkExport.objects.filter(source=locked, status__in=ACTIVE_STATUSES).first()
        if active is not None:
            raise ExportBusy(active)
        since = None if full else locked.last_transaction_time
        export = BulkExport.objects.create(source=locked, requested_by=requested_by[:200], since=since)
        audit_record(
            actor=actor,
            action=EXPORT_REQUEST_ACTION,
            object_type="BulkExport",
            object_id=str(export.external_id),
            organization=locked.organization.slug,
            request_id=request_id,
            detail={"source": locked.name, "full": since is None, "requested_by": requested_by[:100]},
        )
        if dispatch:
            transaction.on_commit(partial(export_dispatch, export_id=str(export.external_id)))
    return export


def export_cancel(*, export: BulkExport, actor: Actor, reason: str, request_id: str = "") -> bool:
    """Stop a queued or running export: the row is cancelled (a worker running it loses its claim at its next
    step and stops, its last group rolled back), its batch cancelled (what it staged is dropped, so a later
    pull takes it again), audited; then the EHR is told it may delete the job (best effort). Returns False
    when the export had already ended."""
    with transaction.atomic():
        locked = (
            BulkExport.objects.select_for_update(of=("self",))
            .select_related("source__organization", "batch")
            .get(pk=export.pk)
        )
        if locked.status not in ACTIVE_STATUSES:
            return False
        now = timezone.now()
        BulkExport.objects.filter(pk=locked.pk).update(
            status=BulkExport.Status.CANCELLED,
            finished_at=now,
            lease_expires_at=None,
            error=f"Cancelled: {reason}"[:500],
            updated_at=now,
        )
        if locked.batch is not None and locked.batch.status == BulkBatch.Status.RECEIVING:
            batch_cancel(locked.batch, actor=actor, reason=f"export cancelled: {reason}"[:200])
        audit_record(
            actor=actor,
            action=EXPORT_CANCEL_ACTION,
            object_type="BulkExport",
            object_id=str(locked.external_id),
            organization=locked.source.organization.slug,
            request_id=request_id,
            detail={**_counts(locked.batch, locked), "phase": locked.phase},
        )
    if locked.status_url:
        endpoint = _endpoint(locked.source)
        try:
            token = _token_get(locked.source, endpoint)
        except (protocol.BulkTransient, protocol.BulkRefused, HttpFailure) as exc:
            logger.info(
                "bulk export %s: no token to delete it at the EHR (%s)", locked.pk, type(exc).__name__
            )
        else:
            protocol.export_delete(endpoint, token.value, locked.status_url)
    export.refresh_from_db()
    return True


def _endpoint(source: EhrSource) -> protocol.BulkEndpoint:
    return protocol.BulkEndpoint(
        base_url=source.fhir_base_url.rstrip("/"),
        file_hosts=frozenset(str(host).lower() for host in source.file_hosts or []),
        timeout_seconds=float(_setting("BULK_HTTP_TIMEOUT_SECONDS", 30)),
    )


def _token_get(source: EhrSource, endpoint: protocol.BulkEndpoint) -> protocol.AccessToken:
    """An access token for the source, signed with its key (one try: callers decide about retries)."""
    token_url = source.token_url or protocol.token_endpoint_discover(endpoint)
    return protocol.access_token_get(
        endpoint,
        token_url=token_url,
        client_id=source.client_id,
        private_key_pem=source_private_key(source),
        key_id=source.key_id,
        scopes=source.scopes,
    )


def export_dispatch(*, export_id: str, countdown: float | None = None) -> bool:
    return job_dispatch(BULK_EXPORTS, keys=[export_id], countdown=countdown)


def exports_sweep(*, now: datetime | None = None, limit: int = 100) -> int:
    """Send again each export never dispatched, queued too long, or held by a worker whose lease ran out."""
    return jobs_sweep(BULK_EXPORTS, now=now, limit=limit)


def exports_schedule(*, now: datetime | None = None) -> int:
    """Beat: an export for every enabled source with a schedule whose last export began ``interval``
    ago or more (and none is running). Returns how many were queued."""
    now = now or timezone.now()
    queued = 0
    for source in EhrSource.objects.filter(enabled=True, interval_minutes__gt=0).select_related(
        "organization"
    ):
        last = source.exports.order_by("-created_at").values_list("created_at", flat=True).first()
        if last is not None and last > now - timedelta(minutes=source.interval_minutes):
            continue
        try:
            export_request(source=source, actor=Actor.system("bulk.schedule"), requested_by="schedule")
        except ExportBusy:
            continue
        queued += 1
    return queued


# --- running an export --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportProgress:
    """Where a running export stands, for a progress bar: ``lines`` of ``lines_expected`` (the manifest's
    counts, when it gives them all) or ``bytes`` read of the files."""

    phase: str
    message: str
    files_total: int = 0
    files_done: int = 0
    lines: int = 0
    lines_expected: int | None = None
    bytes: int = 0


ProgressCallback = Callable[[ExportProgress], None]


class ExportFailed(Exception):
    """The export cannot finish; the message is for a hospital admin."""


class _Pause(Exception):
    """The task's time budget is spent: put the row back in the queue, to go on in ``countdown`` seconds."""

    def __init__(self, countdown: float) -> None:
        super().__init__("paused")
        self.countdown = countdown


_T = TypeVar("_T")


class _Run:
    """One claim of one export: the row, the source's endpoint, the access token, the clock."""

    def __init__(
        self,
        export: BulkExport,
        *,
        actor: Actor,
        on_progress: ProgressCallback | None,
        budget_seconds: float | None,
        sleep: Callable[[float], None],
    ) -> None:
        self.export = export
        self.source: EhrSource = export.source
        self.actor = actor
        self.on_progress = on_progress
        self.started = time.monotonic()
        self.budget_seconds = budget_seconds
        self.sleep_for = sleep
        self.endpoint = _endpoint(self.source)
        self.token: protocol.AccessToken | None = None
        self.transient_failures = 0
        # Set for the best-effort calls at the end (the delete): a transient fault is not waited out.
        self.no_retries = False

    # the row ------------------------------------------------------------------------------------------

    def save(self, **changes: Any) -> None:
        """Write ``changes`` to the row and renew the lease, only while this run holds the claim."""
        lease_expires_at = timezone.now() + BULK_EXPORTS.lease
        held = BulkExport.objects.filter(
            pk=self.export.pk, status=BulkExport.Status.RUNNING, claim_token=self.export.claim_token
        )
        if held.update(lease_expires_at=lease_expires_at, updated_at=timezone.now(), **changes) != 1:
            raise LostClaim
        for name, value in changes.items():
            setattr(self.export, name, value)
        self.export.lease_expires_at = lease_expires_at

    def report(self, message: str) -> None:
        if self.on_progress is None:
            return
        files = [f for f in self.export.files if f.get("kind") == "output"]
        counts = [f.get("count") for f in files]
        self.on_progress(
            ExportProgress(
                phase=self.export.phase,
                message=message,
                files_total=len(files),
                files_done=sum(1 for f in files if f.get("status") == "done"),
                lines=sum(int(f.get("lines_done") or 0) for f in files),
                lines_expected=sum(int(c) for c in counts if c is not None)
                if counts and all(c is not None for c in counts)
                else None,
                bytes=sum(int(f.get("bytes") or 0) for f in files),
            )
        )

    # time ---------------------------------------------------------------------------------------------

    def remaining(self) -> float | None:
        if self.budget_seconds is None:
            return None
        return self.budget_seconds - (time.monotonic() - self.started)

    def check_budget(self, *, countdown: float = 0) -> None:
        remaining = self.remaining()
        if remaining is not None and remaining <= 0:
            raise _Pause(countdown)

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds``, renewing the lease; past the budget, pause for the rest instead."""
        remaining = self.remaining()
        if remaining is not None and seconds > remaining:
            raise _Pause(seconds)
        deadline = time.monotonic() + seconds
        renew_every = max(1.0, BULK_EXPORTS.lease.total_seconds() / 3)
        while (left := deadline - time.monotonic()) > 0:
            self.sleep_for(min(left, renew_every))
            self.save()

    # the EHR ------------------------------------------------------------------------------------------

    def access_token(self) -> str:
        if self.token is None or self.token.expires_at - time.time() < 60:
            self.token = self.call(lambda: _token_get(self.source, self.endpoint))
        return self.token.value

    def call(self, operation: Callable[[], _T]) -> _T:
        """``operation``, tried again after a transient fault (429, 5xx, a timeout) once the EHR's
        Retry-After or a growing backoff has passed, up to BULK_MAX_TRANSIENT_RETRIES faults per claim;
        one 401 gets a fresh access token and one more try."""
        refreshed = False
        while True:
            try:
                return operation()
            except protocol.BulkTransient as exc:
                self.transient(exc.status, exc.retry_after)
            except HttpFailure as exc:
                if exc.permanent:
                    raise ExportFailed(_http_words(exc)) from None
                self.transient(exc.status, exc.retry_after)
            except protocol.BulkRefused as exc:
                if exc.status == 401 and not refreshed and self.token is not None:
                    refreshed, self.token = True, None
                    continue
                raise

    def transient(self, status: int | None, retry_after: int | None) -> None:
        self.transient_failures += 1
        limit = _setting("BULK_MAX_TRANSIENT_RETRIES", 8)
        what = f"HTTP {status}" if status else "no answer in time"
        if self.no_retries:
            raise ExportFailed(f"The EHR was busy or failing ({what}).")
        if self.transient_failures > limit:
            raise ExportFailed(
                f"The EHR was busy or failing ({what}) {self.transient_failures} times in a row; "
                "the export will be tried again at the next scheduled pull, or use Pull now later."
            )
        backoff = min(2 ** (self.transient_failures - 1), 60) * (1 + random.random() / 4)
        seconds = min(float(retry_after) if retry_after is not None else backoff, _retry_cap())
        logger.info("bulk export %s: %s, trying again in %.0f s", self.export.pk, what, seconds)
        self.report(f"The EHR answered {what}; trying again in {seconds:.0f} s")
        self.wait(seconds)


def _retry_cap() -> float:
    return float(_setting("BULK_RETRY_MAX_SECONDS", 300))


def _http_words(exc: HttpFailure) -> str:
    return f"The EHR's answer could not be used: {exc}"


def export_run(
    *,
    export_id: str,
    task_id: str,
    worker: str,
    actor: Actor,
    on_progress: ProgressCallback | None = None,
    budget_seconds: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> BulkExport | None:
    """Claim the export and drive it as far as it goes: to the end (succeeded or failed, audited), or to
    the end of ``budget_seconds`` (back in the queue with a countdown, resumed by the next claim). Returns
    the row as it stands, or None when another worker holds it or it is already finished."""
    claim = job_claim(BULK_EXPORTS, key=export_id, task_id=task_id, worker=worker)
    export: BulkExport | None = claim.row
    if export is None:
        return None
    run = _Run(export, actor=actor, on_progress=on_progress, budget_seconds=budget_seconds, sleep=sleep)
    try:
        try:
            if export.attempts > _setting("BULK_EXPORT_MAX_ATTEMPTS", 200):
                raise ExportFailed(f"Gave up after {export.attempts - 1} attempts by the workers.")
            _batch_ensure(run)
            if export.phase == BulkExport.Phase.KICKOFF:
                _kickoff(run)
            if export.phase == BulkExport.Phase.WAITING:
                _wait_for_manifest(run)
            if export.phase == BulkExport.Phase.DOWNLOADING:
                _download_all(run)
            _succeed(run)
        except _Pause as pause:
            _pause(run, pause.countdown)
        except ExportFailed as exc:
            _fail(run, str(exc))
        except protocol.BulkRefused as exc:
            _fail(run, _refused_words(exc))
    except LostClaim:
        logger.warning("bulk export %s was taken over by another worker; this run stops", export.pk)
        return None
    export.refresh_from_db()
    return export


def _refused_words(exc: protocol.BulkRefused) -> str:
    status = f" (HTTP {exc.status})" if exc.status else ""
    return f"The EHR refused the export{status}: {exc.reason}"[:500]


def _batch_ensure(run: _Run) -> None:
    """The intake batch this export's lines go to, opened at the first claim."""
    if run.export.batch_id is not None:
        return
    with transaction.atomic():
        batch = batch_open(
            organization=run.source.organization,
            origin=BulkBatch.Origin.EXPORT,
            label=run.source.name,
            actor=run.actor,
            request_id=str(run.export.external_id)[:64],
        )
        run.save(batch=batch)


def _kickoff(run: _Run) -> None:
    run.report("Asking the EHR to start the export")
    source = run.source
    types = [t for t in source.resource_types.split(",") if t]
    status_url = run.call(
        lambda: protocol.export_kickoff(
            run.endpoint,
            run.access_token(),
            level=source.level,
            group_id=source.group_id,
            types=types,
            type_filters=list(source.type_filters or []),
            since=run.export.since,
        )
    )
    run.save(status_url=status_url[:1000], phase=BulkExport.Phase.WAITING)


def _wait_for_manifest(run: _Run) -> None:
    give_up_at = run.export.created_at + timedelta(seconds=_setting("BULK_POLL_MAX_SECONDS", 6 * 3600))
    while True:
        run.check_budget()
        answer = run.call(
            lambda: protocol.export_poll(run.endpoint, run.access_token(), run.export.status_url)
        )
        if isinstance(answer, protocol.Manifest):
            run.save(
                transaction_time=answer.transaction_time,
                requires_access_token=answer.requires_access_token,
                files=_files_of(answer),
                phase=BulkExport.Phase.DOWNLOADING,
                progress="",
            )
            return
        run.save(progress=answer.progress[:200], polls=run.export.polls + 1)
        run.transient_failures = 0
        if timezone.now() >= give_up_at:
            hours = _setting("BULK_POLL_MAX_SECONDS", 6 * 3600) / 3600
            raise ExportFailed(f"The EHR had not prepared the files after {hours:g} hours; gave up waiting.")
        asked = answer.retry_after if answer.retry_after is not None else 5
        seconds = max(1.0, min(float(asked), _retry_cap()))
        run.report(answer.progress or "The EHR is preparing the files")
        run.wait(seconds)


def _files_of(manifest: protocol.Manifest) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = []
    # Deletions first: a resource deleted and then created again is in both, and must end up stored.
    for kind, listed in (
        ("deleted", manifest.deleted),
        ("output", manifest.output),
        ("error", manifest.error),
    ):
        for item in listed:
            files.append(
                {
                    "url": item.url,
                    "type": item.type,
                    "kind": kind,
                    "count": item.count,
                    "status": "pending",
                    "lines_done": 0,
                    "bytes": 0,
                    "error": "",
                }
            )
    return files


def _download_all(run: _Run) -> None:
    assert run.export.batch is not None  # opened by _batch_ensure
    writer = BatchWriter(run.export.batch, actor=run.actor)
    for index in range(len(run.export.files)):
        entry = run.export.files[index]
        if entry.get("status") != "pending":
            continue
        run.check_budget()
        label = f"{entry.get('type') or 'file'} file {index + 1}"
        if entry.get("kind") == "error":
            _error_file_read(run, writer, index, label)
        elif entry.get("kind") == "deleted":
            _deleted_file_read(run, writer, index, f"deleted file {index + 1}")
        else:
            _output_file_download(run, writer, index, label)
        run.transient_failures = 0


def _file_update(run: _Run, index: int, **changes: Any) -> None:
    files = [dict(f) for f in run.export.files]
    files[index].update(changes)
    run.save(files=files)


def _file_token(run: _Run) -> str | None:
    return run.access_token() if run.export.requires_access_token else None


def _file_stream(
    run: _Run, url: str, *, margin: int = 0, start_byte: int = 0
) -> AbstractContextManager[protocol.FileStream]:
    """One file of the manifest, streamed with the token when the manifest asks for one, capped at
    BULK_MAX_FILE_BYTES (+ ``margin``) and BULK_DOWNLOAD_SECONDS."""
    return protocol.file_stream(
        run.endpoint,
        _file_token(run),
        url,
        max_bytes=_setting("BULK_MAX_FILE_BYTES", 2 * 1024**3) + margin,
        total_seconds=float(_setting("BULK_DOWNLOAD_SECONDS", 3600)),
        start_byte=start_byte,
    )


def _error_file_read(run: _Run, writer: BatchWriter, index: int, label: str) -> None:
    """An error file: OperationOutcomes counted by issue code and recorded on the batch as refusals."""
    url = run.export.files[index]["url"]

    def read() -> dict[str, int]:
        with _file_stream(run, url) as stream:
            return protocol.error_file_reasons(stream.chunks())

    reasons = run.call(read)
    with transaction.atomic():
        for reason, count in sorted(reasons.items()):
            writer.refuse(label, f"the EHR reported: {reason}", count)
        _file_update(run, index, status="done", lines_done=sum(reasons.values()))


def _deleted_file_read(run: _Run, writer: BatchWriter, index: int, label: str) -> None:
    """A ``deleted`` file: the resources the EHR deleted since ``_since``, applied in groups, each group in
    one transaction with the file's line count (a retry or a resumed pull skips the lines already applied)."""
    url = run.export.files[index]["url"]

    def attempt() -> None:
        done = int(run.export.files[index].get("lines_done") or 0)
        group: list[protocol.DeletedLine] = []

        def apply() -> None:
            with transaction.atomic():
                writer.deletions(
                    label,
                    [reference for line in group for reference in line.references],
                    [line.number for line in group if line.unreadable],
                )
                _file_update(run, index, lines_done=group[-1].number)
            group.clear()

        with _file_stream(run, url) as stream:
            for line in protocol.deleted_file_lines(_until_budget(run, stream.chunks())):
                if line.number <= done:
                    continue
                group.append(line)
                if len(group) >= DELETED_GROUP_LINES:
                    apply()
            if group:
                apply()
        _file_update(run, index, status="done")

    run.call(attempt)


def _output_file_download(run: _Run, writer: BatchWriter, index: int, label: str) -> None:
    """Stream one NDJSON file into the batch, resuming where the row says: from the byte after the last
    stored line when the server honours Range, else from the start skipping the lines already stored."""

    def attempt() -> None:
        entry = run.export.files[index]
        lines_done, bytes_done = int(entry.get("lines_done") or 0), int(entry.get("bytes") or 0)
        # The writer stops the file at BULK_MAX_FILE_BYTES and keeps what it read (the file is refused past
        # there, counted); the transport's own cap, a little further, is only the backstop.
        with _file_stream(run, entry["url"], margin=TRANSPORT_CAP_MARGIN, start_byte=bytes_done) as stream:
            resumed = bytes_done > 0 and stream.resumed_at == bytes_done
            base_lines, base_bytes = (lines_done, bytes_done) if resumed else (0, 0)

            def saved(progress: FileProgress) -> None:
                # Inside the group's transaction: the offsets commit with the group's rows, or neither.
                _file_update(
                    run, index, lines_done=base_lines + progress.lines, bytes=base_bytes + progress.bytes
                )
                run.report(f"Storing {label}")

            progress = writer.feed(
                label,
                _until_budget(run, stream.chunks()),
                skip_lines=0 if resumed else lines_done,
                line_offset=base_lines,
                byte_offset=base_bytes,
                on_progress=saved,
            )
        _file_update(
            run,
            index,
            status="done",
            lines_done=base_lines + progress.lines,
            bytes=base_bytes + progress.bytes,
            error=progress.stopped[:200],
        )

    run.call(attempt)


def _until_budget(run: _Run, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """The file's chunks until the budget is spent; then ``_Pause`` out of the writer, which drops the
    group it had not committed (the row's offsets stand at the last committed one)."""
    for chunk in chunks:
        run.check_budget()
        yield chunk


def _pause(run: _Run, countdown: float) -> None:
    with transaction.atomic():
        job_hold(BULK_EXPORTS, run.export, status=BulkExport.Status.QUEUED, dispatched_at=None)
        transaction.on_commit(
            partial(export_dispatch, export_id=str(run.export.external_id), countdown=countdown or None)
        )
    logger.info("bulk export %s paused; goes on in %.0f s", run.export.pk, countdown)


def _counts(batch: BulkBatch | None, export: BulkExport) -> dict[str, Any]:
    files = export.files or []
    detail: dict[str, Any] = {
        "source": export.source.name,
        "files": sum(1 for f in files if f.get("kind") == "output"),
        "error_files": sum(1 for f in files if f.get("kind") == "error"),
        "polls": export.polls,
        "attempts": export.attempts,
        "incremental": export.since is not None,
    }
    if batch is not None:
        batch.refresh_from_db()
        detail.update(
            lines_read=batch.lines_read,
            resources_staged=batch.resources_staged,
            duplicates_skipped=batch.duplicates_skipped,
            references_held=batch.references_held,
            lines_refused=batch.lines_refused,
            resources_deleted_at_ehr=batch.deletions_read,
            patients=batch.patients_total,
        )
    return detail


def _delete_at_ehr(run: _Run) -> bool:
    """Tell the EHR it may delete the export's files (best effort: they expire there anyway)."""
    if not run.export.status_url:
        return False
    run.no_retries = True
    try:
        token = run.access_token()
    except (protocol.BulkTransient, protocol.BulkRefused, HttpFailure, ExportFailed, _Pause) as exc:
        logger.info(
            "bulk export %s: no token to delete it at the EHR (%s)", run.export.pk, type(exc).__name__
        )
        return False
    return protocol.export_delete(run.endpoint, token, run.export.status_url)


def _succeed(run: _Run) -> None:
    export, batch = run.export, run.export.batch
    assert batch is not None  # opened by _batch_ensure
    deleted = _delete_at_ehr(run)
    with transaction.atomic():
        job_hold(
            BULK_EXPORTS,
            export,
            status=BulkExport.Status.SUCCEEDED,
            phase=BulkExport.Phase.DONE,
            finished_at=timezone.now(),
            error="",
        )
        queued = batch_finish(batch, actor=run.actor)
        # A file cut at BULK_MAX_FILE_BYTES was not read to its end: the next pull asks again from the
        # same point (what was stored is then skipped as already stored), so nothing past the cut is lost.
        cut = sum(1 for entry in export.files if entry.get("error") == FILE_TOO_LARGE)
        if export.transaction_time is not None and not cut:
            EhrSource.objects.filter(pk=run.source.pk).update(last_transaction_time=export.transaction_time)
        audit_record(
            actor=run.actor,
            action=EXPORT_FINISH_ACTION,
            object_type="BulkExport",
            object_id=str(export.external_id),
            organization=run.source.organization.slug,
            request_id=str(export.external_id),
            detail={
                **_counts(batch, export),
                "patients_queued": queued,
                "deleted_at_ehr": deleted,
                "files_cut_at_cap": cut,
            },
        )
    export.status, export.phase = BulkExport.Status.SUCCEEDED, BulkExport.Phase.DONE
    run.report("Done")


def _fail(run: _Run, reason: str) -> None:
    export = run.export
    logger.warning("bulk export %s failed: %s", export.pk, reason)
    deleted = _delete_at_ehr(run)
    try:
        with transaction.atomic():
            job_hold(
                BULK_EXPORTS,
                export,
                status=BulkExport.Status.FAILED,
                finished_at=timezone.now(),
                error=reason[:500],
            )
            batch = export.batch
            if batch is not None and batch.status == BulkBatch.Status.RECEIVING:
                batch_cancel(batch, actor=run.actor, reason=reason[:200])
            audit_record(
                actor=run.actor,
                action=EXPORT_FINISH_ACTION,
                outcome=Outcome.FAILURE,
                object_type="BulkExport",
                object_id=str(export.external_id),
                organization=run.source.organization.slug,
                request_id=str(export.external_id),
                detail={**_counts(batch, export), "reason": reason[:200], "deleted_at_ehr": deleted},
            )
    except LostClaim:
        logger.warning("bulk export %s was taken over by another worker; its failure is dropped", export.pk)
    run.report(reason)
