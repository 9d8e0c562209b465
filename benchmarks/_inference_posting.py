"""Bundles POSTed in-process as an EHR client would (``django.test.Client``, a real SMART token, the real
intake), and the wait for their jobs and inference runs to finish. Shared with the chaos run."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

POLL_SECONDS = 0.1


@dataclass
class Posted:
    mode: str
    round: int
    bundle: str
    status: int
    request_id: str
    post_started: float  # time.time()
    post_returned: float
    job_pk: int | None = None


class Poster:
    """POSTs bundles in-process as an EHR client of a fresh organization per round."""

    def __init__(self, label: str) -> None:
        from django.test import Client

        from tests.factories import make_ehr_client, make_organization

        self.http = Client()
        organization = make_organization(f"bench-{label}-{uuid.uuid4().hex[:6]}")
        self.identity = make_ehr_client(organization)
        self._token = ""
        self._token_at = 0.0

    def token(self) -> str:
        from tests.factories import obtain_token

        if not self._token or time.monotonic() - self._token_at > 120:  # tokens live 300 s
            self._token, self._token_at = obtain_token(self.http, self.identity), time.monotonic()
        return self._token

    def post(self, body: bytes, *, mode: str, round_: int, bundle: str) -> Posted:
        from clinical_ai.intake.models import IngestJob
        from tests.factories import post_fhir

        token = self.token()
        started = time.time()
        response = post_fhir(self.http, token, body)
        returned = time.time()
        request_id = str(response.get("X-Request-Id", ""))
        posted = Posted(mode, round_, bundle, response.status_code, request_id, started, returned)
        if response.status_code in (200, 201):
            posted.job_pk = (
                IngestJob.objects.filter(request_id=request_id).values_list("pk", flat=True).first()
            )
        return posted


def _finished_jobs(job_pks: Iterable[int]) -> set[int]:
    """Jobs whose de-identification failed, or succeeded with every inference run finished."""
    from clinical_ai.inference.models import InferenceRun
    from clinical_ai.intake.models import IngestJob

    pks = list(job_pks)
    ended = dict(
        IngestJob.objects.filter(
            pk__in=pks, status__in=[IngestJob.Status.SUCCEEDED, IngestJob.Status.FAILED]
        ).values_list("pk", "status")
    )
    running = set(
        InferenceRun.objects.filter(
            ingest_job_id__in=list(ended),
            status__in=[InferenceRun.Status.QUEUED, InferenceRun.Status.RUNNING],
        ).values_list("ingest_job_id", flat=True)
    )
    return {pk for pk, status in ended.items() if status == IngestJob.Status.FAILED or pk not in running}


def jobs_wait(job_pks: Iterable[int], *, timeout: float) -> set[int]:
    """Wait until the jobs are finished or ``timeout`` seconds pass; returns the finished ones."""
    waiting = set(job_pks)
    done: set[int] = set()
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        newly = _finished_jobs(waiting)
        done |= newly
        waiting -= newly
        if waiting:
            time.sleep(POLL_SECONDS)
    return done
