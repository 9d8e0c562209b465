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
import http.client
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerOperationalError

from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.sealing import open_json, seal_json
from clinical_ai.review.models import OutputResource
from integrations.fhir.client import ClientError, HttpAnswer, _send, client_assertion
from integrations.fhir.models import PushJob
from integrations.fhir.outputs import output_resource_body, reference_maps_gather, references_restore
from integrations.smart.models import EhrClient

logger = logging.getLogger(__name__)

QUEUE_ACTION = "fhir.push.queue"
SEND_ACTION = "fhir.push.send"
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


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
    from integrations.fhir.tasks import push_job_send

    try:
        push_job_send.apply_async(
            args=(job_id,),
            countdown=countdown or 0,
            expires=float(_setting("FHIR_PUSH_TASK_EXPIRES_SECONDS", 3600)),
        )
    except (BrokerOperationalError, OSError) as exc:
        logger.warning("broker unavailable, push job %s left for the sweep (%s)", job_id, type(exc).__name__)
        return False
    PushJob.objects.filter(external_id=job_id).update(dispatched_at=timezone.now())
    return True


def push_jobs_sweep(*, now: datetime | None = None, limit: int = 500) -> int:
    """Send again each job that has been due for a while without a worker taking it (never dispatched,
    message lost or expired) and each whose worker died holding it. Duplicates are harmless: claims are
    conditional."""
    now = now or timezone.now()
    overdue = now - timedelta(seconds=_setting("FHIR_PUSH_REDISPATCH_AFTER_SECONDS", 120))
    stale = (
        PushJob.objects.filter(
            Q(status=PushJob.Status.QUEUED, next_attempt_at__lt=overdue)
            | Q(
                status=PushJob.Status.QUEUED,
                dispatched_at__isnull=True,
                created_at__lt=now - timedelta(seconds=5),
            )
            | Q(status=PushJob.Status.RUNNING, lease_expires_at__lt=now)
        )
        .order_by("next_attempt_at")
        .values_list("external_id", flat=True)[:limit]
    )
    sent = 0
    for job_id in list(stale):
        if not push_job_dispatch(job_id=str(job_id)):
            break
        sent += 1
    if sent:
        logger.info("push sweep re-dispatched %d job(s)", sent)
    return sent


# --- sending (worker) ---------------------------------------------------------------------------------


def push_job_claim(*, job_id: str, now: datetime | None = None) -> PushJob | None:
    """Take a due job with one conditional UPDATE (or one whose worker's lease ran out)."""
    now = now or timezone.now()
    claimable = Q(status=PushJob.Status.QUEUED, next_attempt_at__lte=now) | Q(
        status=PushJob.Status.RUNNING, lease_expires_at__lt=now
    )
    updated = (
        PushJob.objects.filter(external_id=job_id)
        .filter(claimable)
        .update(
            status=PushJob.Status.RUNNING,
            attempts=F("attempts") + 1,
            claimed_at=now,
            lease_expires_at=now + timedelta(seconds=_setting("FHIR_PUSH_LEASE_SECONDS", 300)),
        )
    )
    if updated != 1:
        return None  # finished, superseded, not due yet, or held by another worker
    return PushJob.objects.select_related("client", "organization").get(external_id=job_id)


@dataclass(frozen=True)
class SendResult:
    """How one attempt went: ``sent``, ``transient`` (worth another try) or ``permanent``."""

    kind: str
    status: int | None = None
    reason: str = ""
    retry_after: int | None = None


def _retry_after(headers: Mapping[str, str]) -> int | None:
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), "")
    return int(value) if value.strip().isdigit() else None


def _classify(answer: HttpAnswer, what: str) -> SendResult:
    if 200 <= answer.status < 300:
        return SendResult("sent", answer.status)
    kind = "transient" if answer.status in TRANSIENT_STATUSES else "permanent"
    return SendResult(
        kind, answer.status, f"{what} answered HTTP {answer.status}", _retry_after(answer.headers)
    )


def _access_token(client: EhrClient, timeout: float) -> str | SendResult:
    """A bearer token for the EHR (possibly ""), or the SendResult of a failed token request."""
    if not client.push_token_url:
        return str(_setting("FHIR_PUSH_BEARER_TOKEN", ""))
    private_pem = str(_setting("FHIR_PUSH_PRIVATE_KEY", ""))
    if not private_pem or not client.push_client_id:
        return SendResult(
            "permanent", None, "FHIR_PUSH_PRIVATE_KEY or the client's push_client_id is not set"
        )
    form = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "scope": client.push_scope or "system/*.write",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": client_assertion(
                client_id=client.push_client_id,
                token_url=client.push_token_url,
                private_key_pem=private_pem.encode("utf-8"),
                kid=str(_setting("FHIR_PUSH_KEY_ID", "")),
            ),
        }
    ).encode("ascii")
    request = urllib.request.Request(  # noqa: S310 (the URL's scheme is checked below)
        client.push_token_url,
        data=form,
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
    )
    answer = _send(request, timeout)
    if (
        answer.status == 200
        and isinstance(answer.body, dict)
        and isinstance(answer.body.get("access_token"), str)
    ):
        return str(answer.body["access_token"])
    result = _classify(answer, "the token endpoint")
    return result if result.kind != "sent" else SendResult("permanent", answer.status, "no access_token")


def push_bundle_send(*, client: EhrClient, bundle: Mapping[str, Any], request_id: str) -> SendResult:
    """One attempt: token, then POST the Bundle to the client's FHIR base. Never raises for network or
    HTTP trouble; the result says whether another attempt may help."""
    timeout = float(_setting("FHIR_PUSH_TIMEOUT_SECONDS", 30))
    for url in (client.push_fhir_base_url, client.push_token_url):
        if url and urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            return SendResult("permanent", None, "push URLs must be http(s)")
    try:
        token = _access_token(client, timeout)
        if isinstance(token, SendResult):
            return token
        headers = {
            "Content-Type": "application/fhir+json",
            "Accept": "application/fhir+json",
            "X-Request-Id": request_id,
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        body = json.dumps(bundle, ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(  # noqa: S310 (scheme checked above)
            client.push_fhir_base_url.rstrip("/"), data=body, method="POST", headers=headers
        )
        return _classify(_send(request, timeout), "the EHR")
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        return SendResult("transient", None, f"no answer: {type(exc).__name__}")
    except ClientError as exc:
        return SendResult("permanent", None, f"client configuration: {type(exc).__name__}")
    except ValueError as exc:  # an unreadable private key
        return SendResult("permanent", None, f"client configuration: {type(exc).__name__}")


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
    with transaction.atomic():
        # Only the holder of this claim records it: a worker whose lease ran out and was taken over does not.
        updated = PushJob.objects.filter(
            pk=job.pk, status=PushJob.Status.RUNNING, claimed_at=job.claimed_at
        ).update(
            status=status,
            response_status=result.status,
            last_error=result.reason[:500],
            next_attempt_at=now + timedelta(seconds=retry_in or 0),
            lease_expires_at=None,
            finished_at=now if finished else None,
        )
        if updated != 1:
            return PushRun(status=None)
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
    return PushRun(status=str(status), retry_in=retry_in)
