"""Pushing signed results to the EHR's FHIR server (optional, per EHR client).

When a decision is signed, the review service calls ``push_jobs_create`` inside its own transaction. For each
active EHR client of the organization with a ``push_fhir_base_url`` it builds a FHIR transaction Bundle of
the resources, with their references mapped back to the EHR's ids (this needs the vault's private key, so it
runs in the web app, audited as ``fhir.push.queue``), seals it into a ``PushJob`` row and queues the job's id
on commit. A worker then claims the job, authenticates (SMART Backend Services against the client's
``push_token_url``, or a static bearer token) and POSTs the Bundle; it never opens the vault.

Each entry is a ``PUT {type}/{id}`` with this gateway's id, so sending the same Bundle twice (a retry after a
lost answer) and a later version of the same resources (a new decision) both land on the same resources.
Transient failures (no connection, timeouts, 408, 429, 5xx) are retried with exponential backoff, honouring
``Retry-After``, up to ``FHIR_PUSH_MAX_ATTEMPTS``; any other answer fails the job for good. Every attempt is
one ``fhir.push.send`` audit row. ``push_jobs_sweep`` (beat) sends again the jobs that are due but were never
delivered to a worker (broker down) or whose worker died.

Settings (all optional; read with defaults): ``FHIR_PUSH_PRIVATE_KEY`` (PEM, RSA or EC P-384) and
``FHIR_PUSH_KEY_ID`` for the SMART client assertion, ``FHIR_PUSH_BEARER_TOKEN``, ``FHIR_PUSH_MAX_ATTEMPTS``
(8), ``FHIR_PUSH_BACKOFF_SECONDS`` (15), ``FHIR_PUSH_BACKOFF_MAX_SECONDS`` (900),
``FHIR_PUSH_TIMEOUT_SECONDS`` (30), ``FHIR_PUSH_LEASE_SECONDS`` (300), ``FHIR_PUSH_REDISPATCH_AFTER_SECONDS``
(120), ``FHIR_PUSH_TASK_EXPIRES_SECONDS`` (3600).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.http import HttpFailure, HttpReply, http_request, url_check, url_host
from clinical_ai.core.jobs import JobTable, LostClaim, job_claim, job_dispatch, job_hold, jobs_sweep
from clinical_ai.core.sealing import open_json, seal_json
from clinical_ai.review.models import OutputResource
from clinical_ai.review.services import output_resource_body
from integrations.fhir.client import ClientError, access_token_of, token_request
from integrations.fhir.models import PushJob
from integrations.fhir.output_references import reference_maps_gather, references_restore
from integrations.smart.models import EhrClient

logger = logging.getLogger(__name__)

QUEUE_ACTION = "fhir.push.queue"
SEND_ACTION = "fhir.push.send"
# The EHR's transaction-response to a few PUTs; anything near this is not an answer to us.
PUSH_ANSWER_MAX_BYTES = 1024 * 1024

# Push jobs are worked by the push task, sent by name. A job queued again after a transient failure waits
# for its ``next_attempt_at``; the claim time is the claim's token.
PUSH_JOBS = JobTable(
    model=PushJob,
    task_name="integrations.fhir.push_job_send",
    lease_setting="FHIR_PUSH_LEASE_SECONDS",
    redispatch_setting="FHIR_PUSH_REDISPATCH_AFTER_SECONDS",
    expires_setting="FHIR_PUSH_TASK_EXPIRES_SECONDS",
    defaults=(
        ("FHIR_PUSH_LEASE_SECONDS", 300),
        ("FHIR_PUSH_REDISPATCH_AFTER_SECONDS", 120),
        ("FHIR_PUSH_TASK_EXPIRES_SECONDS", 3600),
    ),
    token_field="claimed_at",  # noqa: S106 - a column name, not a secret
    task_id_field=None,
    worker_field=None,
    due_field="next_attempt_at",
    select_related=("client", "organization"),
)


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def push_max_attempts() -> int:
    return int(_setting("FHIR_PUSH_MAX_ATTEMPTS", 8))


# --- building the Bundle (web process) ----------------------------------------------------------------


def transaction_bundle(resources: Sequence[Mapping[str, Any]], *, base_url: str) -> dict[str, Any]:
    """A transaction of ``PUT {type}/{id}`` entries; ``base_url`` is the EHR's FHIR base."""
    base = base_url.rstrip("/")
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"{base}/{r['resourceType']}/{r['id']}",
                "resource": dict(r),
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


def push_jobs_create(
    *, organization_id: int, resources: Sequence[int], actor: Actor, request_id: str = ""
) -> list[PushJob]:
    """Queue the push of these OutputResource rows (pks, of ``organization_id``) to every EHR client of the
    organization that has push configured; nothing when none has. Call inside the sign-off's transaction,
    in the web process (it opens the pseudonym vault to map the patient back). The jobs are dispatched on
    commit; an older job for the same client and resources that is still waiting is superseded."""
    clients = list(
        EhrClient.objects.filter(organization_id=organization_id, is_active=True)
        .exclude(push_fhir_base_url="")
        .select_related("organization")
        .order_by("pk")
    )
    rows = list(
        OutputResource.objects.filter(organization_id=organization_id, pk__in=resources).order_by("pk")
    )
    if not clients or not rows:
        return []
    bodies = [output_resource_body(row) for row in rows]
    maps = reference_maps_gather(organization_id=organization_id, bodies=bodies)
    restored = [references_restore(body, maps.patients, maps.sources) for body in bodies]
    keys = sorted(f"{row.resource_type}/{row.resource_id}" for row in rows)
    resources_sha256 = hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()
    # The model's Device row carries whichever patient it was first stored with: not this push's patient.
    patients = sorted(
        {row.patient_pseudonym for row in rows if row.patient_pseudonym and row.resource_type != "Device"}
    )
    now = timezone.now()
    jobs: list[PushJob] = []
    for client in clients:
        superseded = PushJob.objects.filter(
            client=client, resources_sha256=resources_sha256, status=PushJob.Status.QUEUED
        ).update(status=PushJob.Status.SUPERSEDED, finished_at=now)
        job = PushJob(
            organization_id=organization_id,
            client=client,
            patient_pseudonym=patients[0] if len(patients) == 1 else "",
            resource_keys=keys,
            resources_sha256=resources_sha256,
            next_attempt_at=now,
            request_id=request_id[:64],
        )
        sealed = seal_json(
            transaction_bundle(restored, base_url=client.push_fhir_base_url),
            associated_data=job.associated_data,
        )
        job.key_id, job.nonce, job.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
        job.save()
        audit_record(
            actor=actor,
            action=QUEUE_ACTION,
            object_type="PushJob",
            object_id=str(job.external_id),
            organization=client.organization.slug,
            patient_pseudonym=job.patient_pseudonym,
            request_id=request_id,
            detail={
                "client_id": client.client_id,
                "resource_count": len(rows),
                "patients_reidentified": len(maps.opened),
                "superseded": superseded,
            },
        )
        transaction.on_commit(partial(push_job_dispatch, job_id=str(job.external_id)))
        jobs.append(job)
    return jobs


# --- queueing -----------------------------------------------------------------------------------------


def push_job_dispatch(*, job_id: str, countdown: float | None = None) -> bool:
    """Publish the job id. A broker outage is not the caller's problem: the sweep sends it later."""
    return job_dispatch(PUSH_JOBS, keys=[job_id], countdown=countdown)


def push_jobs_sweep(*, now: datetime | None = None, limit: int = 500) -> int:
    """Send again each job that has been due for a while without a worker taking it (never dispatched,
    message lost or expired) and each whose worker died holding it. Duplicates are harmless: claims are
    conditional."""
    return jobs_sweep(PUSH_JOBS, now=now, limit=limit)


# --- sending (worker) ---------------------------------------------------------------------------------


def push_job_claim(*, job_id: str, now: datetime | None = None) -> PushJob | None:
    """Take a due job with one conditional UPDATE (or one whose worker's lease ran out); None when it is
    finished, superseded, not due yet, or held by another worker."""
    claimed: PushJob | None = job_claim(PUSH_JOBS, key=job_id, now=now).row
    return claimed


@dataclass(frozen=True)
class SendResult:
    """How one attempt went: ``sent``, ``transient`` (worth another try) or ``permanent``."""

    kind: str
    status: int | None = None
    reason: str = ""
    retry_after: int | None = None


def _classify(reply: HttpReply, what: str) -> SendResult:
    if reply.ok:
        return SendResult("sent", reply.status)
    kind = "transient" if reply.transient else "permanent"
    return SendResult(kind, reply.status, f"{what} answered HTTP {reply.status}", reply.retry_after)


def _failed(failure: HttpFailure, what: str) -> SendResult:
    """A request that got no usable answer (no connection, a timeout, a redirect, a refused URL)."""
    kind = "permanent" if failure.permanent else "transient"
    reason = f"{what}: {failure}" if failure.permanent else f"no answer from {what}: {failure}"
    return SendResult(kind, failure.status, reason, failure.retry_after)


def _plain_http_allowed() -> bool:
    # The Bundle names the EHR's own patient ids and goes with a bearer token: https, except to a stand-in
    # on this machine, or anywhere on a developer's DEBUG setup.
    return bool(settings.DEBUG)


def _access_token(client: EhrClient, timeout: float) -> str | SendResult:
    """A bearer token for the EHR (possibly ""), or the SendResult of a failed token request."""
    if not client.push_token_url:
        return str(_setting("FHIR_PUSH_BEARER_TOKEN", ""))
    private_pem = str(_setting("FHIR_PUSH_PRIVATE_KEY", ""))
    if not private_pem or not client.push_client_id:
        return SendResult(
            "permanent", None, "FHIR_PUSH_PRIVATE_KEY or the client's push_client_id is not set"
        )
    what = "the token endpoint"
    try:
        reply = token_request(
            token_url=client.push_token_url,
            client_id=client.push_client_id,
            private_key_pem=private_pem.encode("utf-8"),
            kid=str(_setting("FHIR_PUSH_KEY_ID", "")),
            scope=client.push_scope or "system/*.write",
            timeout=timeout,
            allow_plain_http=_plain_http_allowed(),
        )
    except HttpFailure as failure:
        return _failed(failure, what)
    token = access_token_of(reply)
    if token is not None:
        return token
    result = _classify(reply, what)
    return result if result.kind != "sent" else SendResult("permanent", reply.status, "no access_token")


def push_bundle_send(*, client: EhrClient, bundle: Mapping[str, Any], request_id: str) -> SendResult:
    """One attempt: token, then POST the Bundle to the client's FHIR base. Never raises for network or
    HTTP trouble; the result says whether another attempt may help. A redirect is a permanent failure:
    the Bundle goes to the registered URL or nowhere."""
    timeout = float(_setting("FHIR_PUSH_TIMEOUT_SECONDS", 30))
    base_url = client.push_fhir_base_url.rstrip("/")
    try:
        # Both URLs are checked before a token is asked for, so a bad base URL costs the EHR nothing.
        for url in (base_url, client.push_token_url):
            if url:
                url_check(url, allowed_hosts={url_host(url)}, allow_plain_http=_plain_http_allowed())
    except HttpFailure as failure:
        return SendResult("permanent", None, f"push URLs: {failure}")
    try:
        token = _access_token(client, timeout)
    except (ClientError, ValueError) as exc:  # a private key of the wrong type, or unreadable
        return SendResult("permanent", None, f"client configuration: {type(exc).__name__}")
    if isinstance(token, SendResult):
        return token
    headers = {
        "Content-Type": "application/fhir+json",
        "Accept": "application/fhir+json",
        "X-Request-Id": request_id,
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    what = "the EHR"
    try:
        reply = http_request(
            "POST",
            base_url,
            allowed_hosts={url_host(base_url)},
            allow_plain_http=_plain_http_allowed(),
            timeout_seconds=timeout,
            max_response_bytes=PUSH_ANSWER_MAX_BYTES,
            headers=headers,
            body=json.dumps(bundle, ensure_ascii=False).encode("utf-8"),
        )
    except HttpFailure as failure:
        return _failed(failure, what)
    return _classify(reply, what)


def backoff_seconds(attempts: int, retry_after: int | None = None) -> int:
    """Exponential from FHIR_PUSH_BACKOFF_SECONDS, capped; a Retry-After within the cap wins."""
    base = int(_setting("FHIR_PUSH_BACKOFF_SECONDS", 15))
    cap = int(_setting("FHIR_PUSH_BACKOFF_MAX_SECONDS", 900))
    delay: int = min(cap, base * 2 ** max(0, attempts - 1))
    if retry_after is not None:
        delay = min(cap, max(delay, retry_after))
    return delay


@dataclass(frozen=True)
class PushRun:
    """What a worker's attempt came to: ``status`` of the job afterwards; ``retry_in`` seconds when queued
    again for another attempt; None values when the job was not claimed."""

    status: str | None
    retry_in: int | None = None


def push_job_run(*, job_id: str, actor: Actor) -> PushRun:
    """Claim the job, send it once, record the outcome and its audit row in one transaction."""
    job = push_job_claim(job_id=job_id)
    if job is None:
        return PushRun(status=None)
    bundle = open_json(job.sealed, associated_data=job.associated_data)
    result = push_bundle_send(client=job.client, bundle=bundle, request_id=str(job.external_id))
    now = timezone.now()
    retry_in: int | None = None
    if result.kind == "sent":
        status = PushJob.Status.SUCCEEDED
    elif result.kind == "transient" and job.attempts < push_max_attempts():
        status = PushJob.Status.QUEUED
        retry_in = backoff_seconds(job.attempts, result.retry_after)
    else:
        status = PushJob.Status.FAILED
    finished = status in (PushJob.Status.SUCCEEDED, PushJob.Status.FAILED)
    try:
        with transaction.atomic():
            # Only the holder of this claim records it: a worker whose lease ran out and was taken over does not.
            job_hold(
                PUSH_JOBS,
                job,
                status=status,
                response_status=result.status,
                last_error=result.reason[:500],
                next_attempt_at=now + timedelta(seconds=retry_in or 0),
                finished_at=now if finished else None,
            )
            audit_record(
                actor=actor,
                action=SEND_ACTION,
                outcome=Outcome.SUCCESS if result.kind == "sent" else Outcome.FAILURE,
                object_type="PushJob",
                object_id=str(job.external_id),
                organization=job.organization.slug,
                patient_pseudonym=job.patient_pseudonym,
                request_id=job.request_id,
                detail={
                    "client_id": job.client.client_id,
                    "attempt": job.attempts,
                    "http_status": result.status,
                    "result": result.kind,
                    "job_status": str(status),
                    "retry_in": retry_in,
                    "resource_count": len(job.resource_keys),
                    "reason": result.reason[:200],
                },
            )
    except LostClaim:
        return PushRun(status=None)
    return PushRun(status=str(status), retry_in=retry_in)
