"""The same pipeline on RabbitMQ: only CELERY_BROKER_URL changes, no code."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from django.test import Client

from clinical_ai.intake.models import IngestJob
from tests.factories import make_ehr_client, make_organization, obtain_token, post_fhir, sample_bundle
from tests.integration.conftest import ROOT, WorkerFactory, wait_for

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"


def _rabbitmq_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
    except OSError:
        return False
    return True


def test_job_dispatched_over_rabbitmq_is_done_by_a_rabbitmq_worker(
    client: Client, workers: WorkerFactory
) -> None:
    if not _rabbitmq_up():
        pytest.skip("RabbitMQ is not listening on 127.0.0.1:5672")
    workers.start(env={"CELERY_BROKER_URL": AMQP_URL})
    token = obtain_token(client, make_ehr_client(make_organization()))
    response = post_fhir(
        client, token, sample_bundle()
    )  # this process publishes to Redis; nobody consumes it
    assert response.status_code == 200
    job = IngestJob.objects.get()
    # A second process, configured for RabbitMQ, sends the job id the way the web app would.
    dispatch = (
        "import django; django.setup(); from clinical_ai.intake.services import ingest_job_dispatch; "
        f"assert ingest_job_dispatch(job_id='{job.external_id}')"
    )
    subprocess.run(
        [sys.executable, "-c", dispatch],
        cwd=ROOT,
        env=workers.env({"CELERY_BROKER_URL": AMQP_URL}),
        check=True,
        timeout=60,
    )

    def done() -> bool:
        job.refresh_from_db()
        return job.status == IngestJob.Status.SUCCEEDED

    wait_for(done, what="the RabbitMQ worker to finish the job")
    assert job.attempts == 1
