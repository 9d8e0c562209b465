"""Proof under faults, to the suggestions: after each fault every accepted bundle reaches exactly one set of
suggestions per enabled model, one run per model and patient, one audit row per stage action, and the audit
chain verifies. Real PostgreSQL, Redis and Celery worker processes.

The faults already met at job level in test_pipeline.py and test_inference_worker.py (a pool process killed
in either stage, a whole worker killed, duplicate deliveries, bundles accepted while the broker is down) are
carried to the suggestions there, with the same check (``tests.integration.exactly_once``). This module
adds the faults those do not reach: the broker restarted with tasks in flight (every queued message lost),
PostgreSQL restarted while a worker is mid-task, and duplicate deliveries while the first is still running.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from clinical_ai.deid.tasks import deidentify_ingest_job
from clinical_ai.inference.models import InferenceRun
from clinical_ai.inference.tasks import run_models
from tests.integration.conftest import WorkerFactory, redis_client, wait_for
from tests.integration.exactly_once import assert_exactly_once, post_bundles
from tests.integration.test_pipeline import _redis_is_local, _start_redis

SLOW_INFERENCE = {"SLOW_WORKER_STAGE": "inference"}


def _redis_ping() -> bool:
    return subprocess.run(["redis-cli", "ping"], capture_output=True).returncode == 0


def test_broker_restarted_mid_run_loses_its_queued_messages_and_the_sweeps_recover(
    client: Client, workers: WorkerFactory, tmp_path: Path, settings: Any
) -> None:
    """Redis restarted without persistence while an inference task runs and other jobs wait in the queue:
    every message in Redis (queued, reserved, unacked) is gone. The rows stay queued or running; the
    sweeps send them again and nothing runs twice."""
    if not _redis_is_local():
        pytest.skip("stops and restarts the local Redis server; needs redis-server on 127.0.0.1:6379")
    settings.INTAKE_REDISPATCH_AFTER_SECONDS = 4
    settings.INFERENCE_REDISPATCH_AFTER_SECONDS = 4
    workers.start(slow_seconds=5, env=SLOW_INFERENCE)
    jobs = post_bundles(client, 3)
    wait_for(lambda: (tmp_path / "inference.started").exists(), what="an inference task to start")
    assert redis_client().llen("deid") >= 1  # jobs still waiting in the broker when it goes
    subprocess.run(["redis-cli", "shutdown", "nosave"], capture_output=True, check=False)
    try:
        wait_for(lambda: not _redis_ping(), what="Redis down")
        time.sleep(1)
    finally:
        _start_redis()
    assert redis_client().llen("deid") == 0  # the queued messages are lost
    assert_exactly_once(jobs, sweep=True)


def _postgres_is_local() -> bool:
    return (
        shutil.which("pg_ctlcluster") is not None
        and Path("/etc/postgresql").is_dir()
        and connection.settings_dict["HOST"] in ("127.0.0.1", "localhost", "::1")
    )


def _postgres_restart() -> None:
    """Restart the local cluster (fast mode: every connection is cut), and always bring it back."""
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]
    try:
        subprocess.run([*command, "restart", "-m", "fast"], capture_output=True, check=True, timeout=60)
    finally:
        ready = ["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(connection.settings_dict["PORT"] or 5432)]
        if subprocess.run(ready, capture_output=True).returncode != 0:
            subprocess.run([*command, "start"], capture_output=True, check=False, timeout=60)
        wait_for(lambda: subprocess.run(ready, capture_output=True).returncode == 0, what="PostgreSQL")
        connection.close()  # this process's connection was cut too


def test_postgres_restarted_mid_task_loses_nothing(
    client: Client, workers: WorkerFactory, tmp_path: Path
) -> None:
    """PostgreSQL restarted while a de-identification task sleeps between its claim and its work: the task's
    connection is cut, it fails with OperationalError, retries (same task id, so it takes its own claim
    back) and finishes once; the inference stage runs on fresh connections."""
    if not _postgres_is_local():
        pytest.skip(
            "restarts the local PostgreSQL cluster; needs pg_ctlcluster and the database on localhost"
        )
    worker = workers.start(slow_seconds=4)
    jobs = post_bundles(client, 2)
    wait_for((tmp_path / f"{jobs[0].external_id}.started").exists, what="the first task to start")
    _postgres_restart()
    assert_exactly_once(jobs)
    jobs[0].refresh_from_db()
    assert jobs[0].attempts == 2  # the attempt cut by the restart, then its retry
    assert "Retry in" in worker.log()


def test_duplicates_delivered_while_the_first_runs_do_nothing_twice(
    client: Client, workers: WorkerFactory, tmp_path: Path
) -> None:
    """While the first delivery of a job (then of its first inference batch) is mid-task, holding its claim,
    the same message (same task id, as Redis redelivers it) and a fresh one arrive and are taken by the other
    pool process. The same task id may take the claim over; the paused first delivery then finds its claim
    gone and drops its result. Nothing is stored twice."""
    # The inference pause outlasts the other process's queue (the problem-list batch) so the duplicates
    # reach it while the first delivery still holds the run.
    slow = {"SLOW_WORKER_STAGE": "deid,claimed-inference", "SLOW_WORKER_INFERENCE_SECONDS": "10"}
    worker = workers.start(slow_seconds=4, concurrency=2, env=slow)
    (job,) = post_bundles(client, 1)
    wait_for((tmp_path / f"{job.external_id}.started").exists, what="the de-identification to start")
    job.refresh_from_db()
    deidentify_ingest_job.apply_async(args=(str(job.external_id),), task_id=job.claimed_task_id)
    deidentify_ingest_job.apply_async(args=(str(job.external_id),))
    marker = tmp_path / "inference.started"
    wait_for(marker.exists, timeout=60, what="an inference batch to start")
    paused = InferenceRun.objects.get(
        ingest_job=job, status=InferenceRun.Status.RUNNING, claimed_by__endswith=f"/{marker.read_text()}"
    )
    run_ids = [str(paused.external_id)]
    run_models.apply_async(args=(run_ids,), task_id=paused.claimed_task_id, queue="inference")
    run_models.apply_async(args=(run_ids,), queue="inference")
    queue = redis_client()
    wait_for(lambda: queue.llen("deid") + queue.llen("inference") == 0, what="the duplicates to be taken")
    wait_for(
        lambda: worker.log().count("was taken over by another worker") == 2,
        timeout=30,
        what="both paused deliveries to wake and drop their results",
    )
    assert_exactly_once([job])
    job.refresh_from_db()
    paused.refresh_from_db()
    assert (
        job.attempts == 2 and paused.attempts == 2
    )  # the same task id took each over; the fresh one did not
