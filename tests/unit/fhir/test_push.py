"""Pushing signed results to the EHR: against a real HTTP server on localhost playing the EHR's token endpoint
and FHIR base (it checks our signed client assertion with our public key). No mocks of our own code."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.test import Client, override_settings
from django.utils import timezone

from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from clinical_ai.review.models import OutputResource
from integrations.fhir.models import PushJob
from integrations.fhir.push import (
    backoff_seconds,
    push_job_claim,
    push_job_run,
    push_jobs_create,
    push_jobs_sweep,
)
from integrations.fhir.tasks import push_job_send
from integrations.smart.models import EhrClient
from tests.factories import EhrIdentity
from tests.stand_in import loopback_server
from tests.unit.fhir.test_outputs_fixtures import EhrGraph, ehr_graph_build, outputs_put, risk_assessment

pytestmark = pytest.mark.django_db

SIGNER = Actor.user(1)
WORKER = Actor.worker(task_name="tests.push", task_id="t-1", hostname="tests")
OUR_CLIENT_ID = "clinical-ai-at-ehr"
OUR_KID = "gateway-key-1"


@dataclass
class FakeEhr:
    """The EHR side: answers the token endpoint and the FHIR base from scripts, records what it got."""

    url: str
    public_key: Any
    fhir_answers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    token_status: int = 200
    posts: list[dict[str, Any]] = field(default_factory=list)
    token_requests: list[dict[str, Any]] = field(default_factory=list)


def _handler(ehr: FakeEhr) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(raw)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/token":
                form = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                claims = jwt.decode(
                    form["client_assertion"],
                    ehr.public_key,
                    algorithms=["ES384"],
                    audience=f"{ehr.url}/token",
                )
                ehr.token_requests.append({"form": form, "claims": claims})
                if ehr.token_status != 200:
                    self._answer(ehr.token_status, {"error": "invalid_client"})
                    return
                self._answer(
                    200, {"access_token": "ehr-issued-token", "token_type": "bearer", "expires_in": 300}
                )
                return
            ehr.posts.append(
                {"path": self.path, "headers": dict(self.headers.items()), "body": json.loads(raw)}
            )
            status, headers = ehr.fhir_answers.pop(0) if ehr.fhir_answers else (200, {})
            body = {"resourceType": "Bundle", "type": "transaction-response"} if status == 200 else {}
            self._answer(status, body, headers)

    return Handler


@pytest.fixture
def fake_ehr() -> Iterator[FakeEhr]:
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    ehr = FakeEhr(url="", public_key=key.public_key())
    with (
        loopback_server(_handler(ehr)) as ehr.url,
        override_settings(
            FHIR_PUSH_PRIVATE_KEY=pem,
            FHIR_PUSH_KEY_ID=OUR_KID,
            FHIR_PUSH_BACKOFF_SECONDS=0,
            FHIR_PUSH_MAX_ATTEMPTS=3,
        ),
    ):
        yield ehr


@pytest.fixture
def graph(client: Client, ehr_client: EhrIdentity) -> EhrGraph:
    return ehr_graph_build(client, ehr_client)


def _configure(identity: EhrIdentity, ehr: FakeEhr, *, token_url: bool = True) -> EhrClient:
    client = identity.client
    client.push_fhir_base_url = f"{ehr.url}/fhir"
    client.push_token_url = f"{ehr.url}/token" if token_url else ""
    client.push_client_id = OUR_CLIENT_ID
    client.save()
    return client


def _signed_outputs(graph: EhrGraph) -> list[OutputResource]:
    pseudonym = graph.pseudonyms["Patient/pat-123"]
    return outputs_put(
        graph.organization_id,
        pseudonym,
        [risk_assessment(pseudonym, [graph.sources["Observation/obs-1"]], status="final")],
    )


def _queue(graph: EhrGraph, rows: list[OutputResource], capture: Any) -> PushJob:
    with capture(execute=False) as callbacks:
        jobs = push_jobs_create(
            organization_id=graph.organization_id,
            resources=[r.pk for r in rows],
            actor=SIGNER,
            request_id="req-1",
        )
    assert len(jobs) == 1 and len(callbacks) == 1  # dispatched on commit, not before
    return jobs[0]


def _run(job: PushJob) -> PushJob:
    # Task arguments travel as JSON: the job id is a plain string.
    job_id = json.loads(json.dumps(str(job.external_id)))
    push_job_run(job_id=job_id, actor=WORKER)
    job.refresh_from_db()
    return job


def test_nothing_is_queued_where_no_push_is_configured(graph: EhrGraph) -> None:
    rows = _signed_outputs(graph)
    assert (
        push_jobs_create(organization_id=graph.organization_id, resources=[r.pk for r in rows], actor=SIGNER)
        == []
    )
    assert not PushJob.objects.exists()


def test_a_signed_result_is_pushed_as_a_transaction_with_the_ehrs_references(
    graph: EhrGraph, ehr_client: EhrIdentity, fake_ehr: FakeEhr, django_capture_on_commit_callbacks: Any
) -> None:
    _configure(ehr_client, fake_ehr)
    rows = _signed_outputs(graph)
    job = _queue(graph, rows, django_capture_on_commit_callbacks)
    assert job.status == PushJob.Status.QUEUED and job.resource_keys == [
        f"RiskAssessment/{rows[0].resource_id}"
    ]
    queued = AuditEvent.objects.get(action="fhir.push.queue")
    assert queued.patient_pseudonym == graph.pseudonyms["Patient/pat-123"]
    assert queued.detail["patients_reidentified"] == 1

    # The worker does not hold the vault key, and does not need it.
    with override_settings(VAULT_PRIVATE_KEY=""):
        job = _run(job)
    assert job.status == PushJob.Status.SUCCEEDED and job.response_status == 200 and job.attempts == 1
    (token_request,) = fake_ehr.token_requests
    assert (
        token_request["claims"]["iss"] == OUR_CLIENT_ID and token_request["form"]["scope"] == "system/*.write"
    )
    (post,) = fake_ehr.posts
    assert post["path"] == "/fhir"
    assert post["headers"]["Authorization"] == "Bearer ehr-issued-token"
    assert post["headers"]["X-Request-Id"] == str(job.external_id)
    bundle = post["body"]
    assert bundle["type"] == "transaction"
    (entry,) = bundle["entry"]
    resource = entry["resource"]
    assert entry["request"] == {"method": "PUT", "url": f"RiskAssessment/{resource['id']}"}
    assert entry["fullUrl"] == f"{fake_ehr.url}/fhir/RiskAssessment/{resource['id']}"
    assert resource["subject"] == {"reference": "Patient/pat-123", "type": "Patient"}
    assert resource["basis"] == [{"reference": "Observation/obs-1", "type": "Observation"}]
    assert graph.pseudonyms["Patient/pat-123"] not in json.dumps(bundle)
    sent = AuditEvent.objects.get(action="fhir.push.send")
    assert sent.outcome == "success" and sent.detail["http_status"] == 200 and sent.actor_type == "worker"
    # A finished job is not sent again by a redelivered message.
    assert push_job_claim(job_id=str(job.external_id)) is None


def test_transient_failures_are_retried_with_backoff_until_sent(
    graph: EhrGraph, ehr_client: EhrIdentity, fake_ehr: FakeEhr, django_capture_on_commit_callbacks: Any
) -> None:
    _configure(ehr_client, fake_ehr)
    job = _queue(graph, _signed_outputs(graph), django_capture_on_commit_callbacks)
    fake_ehr.fhir_answers = [(503, {}), (429, {"Retry-After": "0"})]
    assert _run(job).status == PushJob.Status.QUEUED
    assert job.response_status == 503 and job.last_error == "the EHR answered HTTP 503"
    assert _run(job).status == PushJob.Status.QUEUED and job.response_status == 429
    assert _run(job).status == PushJob.Status.SUCCEEDED and job.attempts == 3
    attempts = list(AuditEvent.objects.filter(action="fhir.push.send").order_by("seq"))
    assert [(a.outcome, a.detail["http_status"], a.detail["attempt"]) for a in attempts] == [
        ("failure", 503, 1),
        ("failure", 429, 2),
        ("success", 200, 3),
    ]
    assert len(fake_ehr.posts) == 3
    assert fake_ehr.posts[0]["body"] == fake_ehr.posts[2]["body"]  # the same Bundle each time


def test_an_ehr_that_does_not_answer_fails_the_job_after_the_last_attempt(
    graph: EhrGraph, ehr_client: EhrIdentity, fake_ehr: FakeEhr, django_capture_on_commit_callbacks: Any
) -> None:
    client = _configure(ehr_client, fake_ehr, token_url=False)
    client.push_fhir_base_url = "http://127.0.0.1:9/fhir"  # discard port: connection refused
    client.save()
    job = _queue(graph, _signed_outputs(graph), django_capture_on_commit_callbacks)
    for expected in (PushJob.Status.QUEUED, PushJob.Status.QUEUED, PushJob.Status.FAILED):
        assert _run(job).status == expected
    assert job.attempts == 3 and job.response_status is None and job.last_error.startswith("no answer")
    assert job.finished_at is not None
    assert AuditEvent.objects.filter(action="fhir.push.send", outcome="failure").count() == 3


@pytest.mark.parametrize("status", [400, 404, 422])
def test_a_refusal_fails_the_job_at_once(
    graph: EhrGraph,
    ehr_client: EhrIdentity,
    fake_ehr: FakeEhr,
    django_capture_on_commit_callbacks: Any,
    status: int,
) -> None:
    _configure(ehr_client, fake_ehr)
    job = _queue(graph, _signed_outputs(graph), django_capture_on_commit_callbacks)
    fake_ehr.fhir_answers = [(status, {})]
    assert _run(job).status == PushJob.Status.FAILED
    assert job.attempts == 1 and job.response_status == status
    audit = AuditEvent.objects.get(action="fhir.push.send")
    assert audit.outcome == "failure" and audit.detail["result"] == "permanent"


def test_a_refused_token_fails_the_job_without_posting(
    graph: EhrGraph, ehr_client: EhrIdentity, fake_ehr: FakeEhr, django_capture_on_commit_callbacks: Any
) -> None:
    _configure(ehr_client, fake_ehr)
    fake_ehr.token_status = 401
    job = _queue(graph, _signed_outputs(graph), django_capture_on_commit_callbacks)
    assert _run(job).status == PushJob.Status.FAILED
    assert job.response_status == 401 and "token endpoint" in job.last_error
    assert fake_ehr.posts == []


def test_a_static_bearer_token_is_sent_when_no_token_url_is_configured(
    graph: EhrGraph, ehr_client: EhrIdentity, fake_ehr: FakeEhr, django_capture_on_commit_callbacks: Any
) -> None:
    _configure(ehr_client, fake_ehr, token_url=False)
    job = _queue(graph, _signed_outputs(graph), django_capture_on_commit_callbacks)
    with override_settings(FHIR_PUSH_BEARER_TOKEN="static-token"):
        assert _run(job).status == PushJob.Status.SUCCEEDED
    assert fake_ehr.posts[0]["headers"]["Authorization"] == "Bearer static-token"
    assert fake_ehr.token_requests == []


def test_the_celery_task_sends_the_job(
    graph: EhrGraph, ehr_client: EhrIdentity, fake_ehr: FakeEhr, django_capture_on_commit_callbacks: Any
) -> None:
    _configure(ehr_client, fake_ehr)
    job = _queue(graph, _signed_outputs(graph), django_capture_on_commit_callbacks)
    push_job_send.apply(args=json.loads(json.dumps([str(job.external_id)])))
    job.refresh_from_db()
    assert job.status == PushJob.Status.SUCCEEDED and len(fake_ehr.posts) == 1


def test_a_newer_push_of_the_same_resources_supersedes_a_waiting_one(
    graph: EhrGraph, ehr_client: EhrIdentity, fake_ehr: FakeEhr, django_capture_on_commit_callbacks: Any
) -> None:
    _configure(ehr_client, fake_ehr)
    rows = _signed_outputs(graph)
    first = _queue(graph, rows, django_capture_on_commit_callbacks)
    second = _queue(graph, rows, django_capture_on_commit_callbacks)
    first.refresh_from_db()
    assert first.status == PushJob.Status.SUPERSEDED
    assert _run(first).status == PushJob.Status.SUPERSEDED  # a late message for it does nothing
    assert _run(second).status == PushJob.Status.SUCCEEDED and len(fake_ehr.posts) == 1


def test_the_sweep_sends_jobs_no_worker_took_and_claims_are_conditional(
    graph: EhrGraph, ehr_client: EhrIdentity, fake_ehr: FakeEhr, django_capture_on_commit_callbacks: Any
) -> None:
    _configure(ehr_client, fake_ehr)
    job = _queue(graph, _signed_outputs(graph), django_capture_on_commit_callbacks)
    assert push_jobs_sweep() == 0  # just created: its own commit dispatches it
    later = timezone.now() + timedelta(minutes=5)
    assert push_jobs_sweep(now=later) == 1
    job.refresh_from_db()
    assert job.dispatched_at is not None
    # Not due yet: nobody may claim it; due: exactly one claim wins.
    PushJob.objects.filter(pk=job.pk).update(next_attempt_at=later)
    assert push_job_claim(job_id=str(job.external_id)) is None
    assert push_job_claim(job_id=str(job.external_id), now=later) is not None
    assert push_job_claim(job_id=str(job.external_id), now=later) is None
    # A worker that died holding it: once the lease runs out the sweep and a new claim take it back.
    much_later = later + timedelta(hours=1)
    assert push_jobs_sweep(now=much_later) == 1
    assert push_job_claim(job_id=str(job.external_id), now=much_later) is not None


def test_backoff_is_exponential_capped_and_honours_retry_after() -> None:
    with override_settings(FHIR_PUSH_BACKOFF_SECONDS=15, FHIR_PUSH_BACKOFF_MAX_SECONDS=900):
        assert [backoff_seconds(n) for n in (1, 2, 3, 7, 20)] == [15, 30, 60, 900, 900]
        assert backoff_seconds(1, retry_after=120) == 120
        assert backoff_seconds(1, retry_after=5000) == 900
