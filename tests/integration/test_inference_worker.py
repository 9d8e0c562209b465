"""The inference stage through Redis and real worker processes: a posted bundle reaches its suggestions,
a killed inference worker loses nothing and duplicates nothing, and the stop switch acts at once."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from django.test import Client

from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.selectors import audit_chain_verify
from clinical_ai.audit.services import Actor
from clinical_ai.inference.models import InferenceRun
from clinical_ai.inference.switches import model_configure
from clinical_ai.intake.models import IngestJob
from clinical_ai.review.models import Suggestion
from tests.factories import make_ehr_client, make_organization, obtain_token, post_fhir, sample_bundle
from tests.integration.conftest import WorkerFactory, wait_for
from tests.integration.exactly_once import assert_exactly_once

SLOW_INFERENCE = {"SLOW_WORKER_STAGE": "inference"}


def _post_sample(client: Client) -> IngestJob:
    identity = make_ehr_client(make_organization())
    token = obtain_token(client, identity)
    bundle = sample_bundle()
    bundle["identifier"]["value"] = f"urn:uuid:{os.urandom(8).hex()}"
    response = post_fhir(client, token, bundle)
    assert response.status_code == 200, response.content
    return IngestJob.objects.get(request_id=response["X-Request-Id"])


def _news2_run(job: IngestJob) -> InferenceRun | None:
    return InferenceRun.objects.filter(ingest_job=job, model_id="news2").first()


def _finished(job: IngestJob) -> bool:
    runs = InferenceRun.objects.filter(ingest_job=job)
    return runs.exists() and not runs.filter(status__in=["queued", "running"]).exists()


def test_posted_bundle_reaches_pending_suggestions_through_real_workers(
    client: Client, workers: WorkerFactory
) -> None:
    workers.start(concurrency=2)
    job = _post_sample(client)
    wait_for(lambda: _finished(job), timeout=120, what="the inference runs to finish")
    runs = InferenceRun.objects.filter(ingest_job=job)
    assert set(runs.values_list("status", flat=True)) == {InferenceRun.Status.SUCCEEDED}
    news2 = Suggestion.objects.get(run__ingest_job=job, model_id="news2")
    assert news2.status == Suggestion.Status.PENDING and news2.urgency in ("warning", "critical")
    run = news2.run
    assert run.claimed_by.startswith("it-") and run.timings["batch_size"] >= 1
    event = AuditEvent.objects.get(action="inference.run", object_id=str(run.external_id))
    assert event.actor_type == "worker" and "inference.run_models" in event.actor_id
    assert audit_chain_verify().ok


def test_inference_process_killed_mid_task_loses_nothing_and_duplicates_nothing(
    client: Client, workers: WorkerFactory, tmp_path: Path
) -> None:
    worker = workers.start(slow_seconds=120, env=SLOW_INFERENCE)
    job = _post_sample(client)
    wait_for(lambda: _news2_run(job) is not None, what="the runs to be created")
    run = _news2_run(job)
    assert run is not None
    markers = list(tmp_path.glob("*.started"))
    wait_for(
        lambda: bool(markers := list(tmp_path.glob("*.started"))) and bool(markers), what="a run to start"
    )
    markers = list(tmp_path.glob("*.started"))
    os.kill(int(markers[0].read_text()), signal.SIGKILL)  # the pool process holding the batch
    wait_for(lambda: _finished(job), timeout=120, what="the redelivered runs")
    for finished in InferenceRun.objects.filter(ingest_job=job):
        assert finished.status == InferenceRun.Status.SUCCEEDED
        assert (
            AuditEvent.objects.filter(action="inference.run", object_id=str(finished.external_id)).count()
            == 1
        )
    assert Suggestion.objects.filter(run__ingest_job=job, model_id="news2").count() == 1
    assert "WorkerLostError" in worker.log() or "exited with 'signal 9" in worker.log()
    assert_exactly_once([job])  # every run of the job, with its one suggestion set, and the audit chain


def test_switching_a_model_off_mid_run_stores_nothing(
    client: Client, workers: WorkerFactory, tmp_path: Path
) -> None:
    workers.start(slow_seconds=8, env=SLOW_INFERENCE)
    job = _post_sample(client)
    wait_for(lambda: any(tmp_path.glob("*.started")), what="a run to start")
    for model_id in ("news2", "problem-list-gaps"):
        model_configure(actor=Actor.system("tests"), model_id=model_id, enabled=False, reason="stop")
    wait_for(lambda: _finished(job), timeout=120, what="the runs to finish")
    assert set(InferenceRun.objects.filter(ingest_job=job).values_list("status", flat=True)) == {
        InferenceRun.Status.SKIPPED
    }
    assert not Suggestion.objects.filter(run__ingest_job=job).exists()
    # And a model that is off gets no runs at all for the next bundle.
    later = _post_sample(client)
    wait_for(lambda: _status(later) == IngestJob.Status.SUCCEEDED, what="de-identification")
    assert not InferenceRun.objects.filter(ingest_job=later).exists()


def _status(job: IngestJob) -> str:
    job.refresh_from_db()
    return job.status
