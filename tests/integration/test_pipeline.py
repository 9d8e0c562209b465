"""A POSTed bundle ends as a claimed, finished job — through Redis and real worker processes — and
survives a worker killed mid-task, a whole worker killed, a duplicate delivery and a broker outage: each
fault test ends with the bundle's suggestions stored exactly once (``assert_exactly_once``). More faults in
test_faults.py."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.selectors import audit_chain_verify
from clinical_ai.deid.tasks import deidentify_ingest_job
from clinical_ai.inference.models import InferenceRun
from clinical_ai.inference.tasks import run_models
from clinical_ai.intake.models import IngestJob
from clinical_ai.intake.services import ingest_jobs_sweep
from tests.factories import make_ehr_client, make_organization, obtain_token, post_fhir, sample_bundle
from tests.integration.conftest import WorkerFactory, redis_client, wait_for
from tests.integration.exactly_once import assert_exactly_once, post_bundles

SHORT_LEASE = {"INTAKE_CLAIM_LEASE_SECONDS": "3"}


def _post_sample(client: Client, **headers: str) -> IngestJob:
    identity = make_ehr_client(make_organization())
    token = obtain_token(client, identity)
    bundle = sample_bundle()
    bundle["identifier"]["value"] = f"urn:uuid:{os.urandom(8).hex()}"
    response = post_fhir(client, token, bundle, headers=headers)
    assert response.status_code == 200, response.content
    return IngestJob.objects.get(request_id=response["X-Request-Id"])


def _status(job: IngestJob) -> str:
    job.refresh_from_db()
    return job.status


def _process_rows(job: IngestJob) -> int:
    return AuditEvent.objects.filter(action="intake.job.process", object_id=str(job.external_id)).count()


def test_posted_bundle_is_claimed_and_finished_by_a_real_worker(
    client: Client, workers: WorkerFactory
) -> None:
    workers.start()
    job = _post_sample(client)
    wait_for(lambda: _status(job) == IngestJob.Status.SUCCEEDED, what="the worker to finish the job")
    assert job.dispatched_at is not None and job.attempts == 1
    assert job.claimed_by.startswith("it-")
    event = AuditEvent.objects.get(action="intake.job.process", object_id=str(job.external_id))
    assert event.actor_type == "worker" and "deid.deidentify_ingest_job" in event.actor_id
    assert audit_chain_verify().ok


def test_pool_process_killed_mid_task_is_redelivered_and_done_once(
    client: Client, workers: WorkerFactory, tmp_path: Path
) -> None:
    worker = workers.start(slow_seconds=120)
    job = _post_sample(client)
    marker = tmp_path / f"{job.external_id}.started"
    wait_for(marker.exists, what="the task to start")
    assert _status(job) == IngestJob.Status.RUNNING
    os.kill(int(marker.read_text()), signal.SIGKILL)  # the pool process running the task
    wait_for(lambda: _status(job) == IngestJob.Status.SUCCEEDED, timeout=90, what="the redelivered task")
    assert job.attempts == 2
    assert _process_rows(job) == 1
    assert "WorkerLostError" in worker.log() or "exited with 'signal 9" in worker.log()
    assert_exactly_once([job])


def test_whole_worker_killed_then_the_sweep_recovers_the_job(
    client: Client, workers: WorkerFactory, tmp_path: Path
) -> None:
    first = workers.start(slow_seconds=120, env=SHORT_LEASE)
    job = _post_sample(client)
    wait_for((tmp_path / f"{job.external_id}.started").exists, what="the task to start")
    first.kill_all()
    assert _status(job) == IngestJob.Status.RUNNING
    workers.start(env=SHORT_LEASE)
    time.sleep(4)  # the dead worker's lease runs out
    assert ingest_jobs_sweep() == 1
    wait_for(lambda: _status(job) == IngestJob.Status.SUCCEEDED, what="the swept job")
    assert job.attempts == 2
    assert _process_rows(job) == 1
    assert_exactly_once([job])


def test_duplicate_deliveries_do_nothing_twice(client: Client, workers: WorkerFactory) -> None:
    workers.start(concurrency=2)
    job = _post_sample(client)
    wait_for(lambda: _status(job) == IngestJob.Status.SUCCEEDED, what="the first delivery")
    # The same message again (same task id, as after a redelivery) and a fresh message for the same job.
    deidentify_ingest_job.apply_async(args=(str(job.external_id),), task_id=job.claimed_task_id)
    deidentify_ingest_job.apply_async(args=(str(job.external_id),))
    queue = redis_client()
    wait_for(lambda: queue.llen("deid") == 0, what="the duplicates to be consumed")
    # And the same for its inference batches, once they are finished.
    assert_exactly_once([job])
    for run in InferenceRun.objects.filter(ingest_job=job):
        run_models.apply_async(args=([str(run.external_id)],), task_id=run.claimed_task_id, queue="inference")
        run_models.apply_async(args=([str(run.external_id)],), queue="inference")
    wait_for(lambda: queue.llen("inference") == 0, what="the inference duplicates to be consumed")
    time.sleep(2)
    job.refresh_from_db()
    assert job.attempts == 1
    assert _process_rows(job) == 1
    assert set(InferenceRun.objects.filter(ingest_job=job).values_list("attempts", flat=True)) == {1}
    assert_exactly_once([job])


def _redis_is_local() -> bool:
    return (
        settings.CELERY_BROKER_URL.startswith("redis://127.0.0.1:6379")
        and shutil.which("redis-server") is not None
    )


def _start_redis() -> None:
    subprocess.run(
        [
            "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
            "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis", "--logfile", "/var/log/redis/ci.log",
        ],
        check=True,
    )  # fmt: skip
    wait_for(lambda: subprocess.run(["redis-cli", "ping"], capture_output=True).returncode == 0, what="Redis")


def test_broker_outage_loses_nothing(client: Client, workers: WorkerFactory) -> None:
    if not _redis_is_local():
        pytest.skip("stops and restarts the local Redis server; needs redis-server on 127.0.0.1:6379")
    subprocess.run(["redis-cli", "shutdown", "nosave"], capture_output=True, check=False)
    try:
        wait_for(
            lambda: subprocess.run(["redis-cli", "ping"], capture_output=True).returncode != 0,
            what="Redis down",
        )
        jobs = post_bundles(client, 3)  # each for its own organization, so each predicts anew
        assert all(j.status == IngestJob.Status.QUEUED and j.dispatched_at is None for j in jobs)
    finally:
        _start_redis()
    workers.start()
    time.sleep(6)  # past the sweep's grace period for fresh jobs
    assert ingest_jobs_sweep() == 3
    wait_for(
        lambda: all(_status(job) == IngestJob.Status.SUCCEEDED for job in jobs),
        what="jobs accepted during the outage",
    )
    assert all(_process_rows(job) == 1 for job in jobs)
    assert_exactly_once(jobs)
