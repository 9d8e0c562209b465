"""A push whose EHR answers with a redirect: against a real HTTP server on 127.0.0.1 that answers the POST
with a 3xx pointing at a path that answers 200 to anything. Following the redirect would turn the POST into
a GET (carrying the bearer token), count the GET's 200 as delivered, and lose the signed decision."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.test import Client, override_settings

from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from integrations.fhir.models import PushJob
from integrations.fhir.push import push_job_run, push_jobs_create
from tests.factories import EhrIdentity
from tests.stand_in import loopback_server
from tests.unit.fhir.test_outputs_fixtures import EhrGraph, ehr_graph_build, outputs_put, risk_assessment

pytestmark = pytest.mark.django_db

BEARER = "static-push-token-never-to-leave"
LANDING = "/landing"


@dataclass
class RedirectingEhr:
    """POST /fhir (and POST /token when asked) answer ``status`` with a Location on this server; anything
    sent to the Location answers 200. Records every request line and its Authorization header."""

    url: str = ""
    status: int = 302
    redirect_token: bool = False
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, Authorization)


def _handler(ehr: RedirectingEhr) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _record_and_answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            ehr.seen.append((self.command, self.path, self.headers.get("Authorization", "")))
            redirects = self.path == "/fhir" or (self.path == "/token" and ehr.redirect_token)
            if redirects:
                self.send_response(ehr.status)
                self.send_header("Location", f"{ehr.url}{LANDING}")
                body = b""
            elif self.path == "/token":
                self.send_response(200)
                body = json.dumps({"access_token": BEARER, "token_type": "bearer"}).encode()
            else:
                self.send_response(200)
                body = json.dumps({"resourceType": "Bundle", "type": "transaction-response"}).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_HEAD = _record_and_answer

    return Handler


@pytest.fixture
def redirecting_ehr() -> Iterator[RedirectingEhr]:
    ehr = RedirectingEhr()
    with (
        loopback_server(_handler(ehr)) as ehr.url,
        override_settings(
            FHIR_PUSH_BEARER_TOKEN=BEARER, FHIR_PUSH_BACKOFF_SECONDS=0, FHIR_PUSH_MAX_ATTEMPTS=3
        ),
    ):
        yield ehr


def _push_job(http: Client, identity: EhrIdentity, ehr: RedirectingEhr, capture: Any) -> PushJob:
    graph: EhrGraph = ehr_graph_build(http, identity)
    client = identity.client
    client.push_fhir_base_url = f"{ehr.url}/fhir"
    client.push_token_url = ""
    client.push_client_id = "clinical-ai-at-ehr"
    client.save()
    pseudonym = graph.pseudonyms["Patient/pat-123"]
    rows = outputs_put(
        graph.organization_id,
        pseudonym,
        [risk_assessment(pseudonym, [graph.sources["Observation/obs-1"]], status="final")],
    )
    with capture(execute=False):
        (job,) = push_jobs_create(
            organization_id=graph.organization_id, resources=[r.pk for r in rows], actor=Actor.user(1)
        )
    return job


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirected_push_fails_for_good_and_the_token_does_not_follow(
    client: Client,
    ehr_client: EhrIdentity,
    redirecting_ehr: RedirectingEhr,
    django_capture_on_commit_callbacks: Any,
    status: int,
) -> None:
    redirecting_ehr.status = status
    job = _push_job(client, ehr_client, redirecting_ehr, django_capture_on_commit_callbacks)

    push_job_run(
        job_id=str(job.external_id), actor=Actor.worker(task_name="tests.push", task_id="t", hostname="h")
    )
    job.refresh_from_db()

    assert job.status == PushJob.Status.FAILED, (job.status, job.response_status, job.last_error)
    assert job.attempts == 1 and job.response_status == status
    # Exactly one request reached the EHR stand-in: the POST. Nothing went to the Location, token or not.
    assert redirecting_ehr.seen == [("POST", "/fhir", f"Bearer {BEARER}")]
    audit = AuditEvent.objects.get(action="fhir.push.send")
    assert audit.outcome == "failure" and audit.detail["result"] == "permanent"
    assert audit.detail["http_status"] == status
    assert BEARER not in json.dumps(audit.detail) and BEARER not in job.last_error


def test_a_redirected_token_request_fails_the_push_without_posting(
    client: Client,
    ehr_client: EhrIdentity,
    redirecting_ehr: RedirectingEhr,
    django_capture_on_commit_callbacks: Any,
) -> None:
    redirecting_ehr.redirect_token = True
    job = _push_job(client, ehr_client, redirecting_ehr, django_capture_on_commit_callbacks)
    job.client.push_token_url = f"{redirecting_ehr.url}/token"
    job.client.save()
    pem = (
        ec.generate_private_key(ec.SECP384R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )
    with override_settings(FHIR_PUSH_PRIVATE_KEY=pem, FHIR_PUSH_KEY_ID="k1"):
        push_job_run(
            job_id=str(job.external_id), actor=Actor.worker(task_name="t", task_id="t", hostname="h")
        )
    job.refresh_from_db()

    assert job.status == PushJob.Status.FAILED and job.response_status == 302
    assert "token endpoint" in job.last_error
    assert [(method, path) for method, path, _ in redirecting_ehr.seen] == [("POST", "/token")]
