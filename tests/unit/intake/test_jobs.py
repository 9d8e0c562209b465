"""Job rows: claim once, finish once, fail permanent faults for good, sweep what was never queued."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from clinical_ai.intake.models import IngestJob, RawResource
from clinical_ai.intake.services import (
    OpenedEntry,
    StageOutcome,
    ingest_job_claim,
    ingest_job_dispatch,
    ingest_job_run,
    ingest_jobs_sweep,
)
from tests.factories import post_fhir, sample_bundle

pytestmark = pytest.mark.django_db

WORKER = Actor.worker(task_name="test", task_id="t-1", hostname="unit")


def NO_STAGE(job: IngestJob, entries: list[OpenedEntry], actor: Actor) -> StageOutcome:
    """The intake contract on its own: entries opened and checked, nothing computed."""
    assert len(entries) == job.resource_count
    return StageOutcome(detail={})


@pytest.fixture
def job(client: Client, ehr_token: str) -> IngestJob:
    assert post_fhir(client, ehr_token, sample_bundle()).status_code == 200
    return IngestJob.objects.get()


def test_task_arguments_are_plain_json_ids(job: IngestJob, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the dispatch really publishes: the task's name and one job id, which survive JSON unchanged."""
    sent: list[tuple[str, Any]] = []
    monkeypatch.setattr(
        "clinical_ai.core.queue.app.send_task", lambda name, args, **options: sent.append((name, args))
    )
    assert ingest_job_dispatch(job_id=str(job.external_id))
    assert sent == [("clinical_ai.deid.deidentify_ingest_job", [str(job.external_id)])]
    _, args = sent[0]
    assert json.loads(json.dumps(args)) == args and all(isinstance(a, str) for a in args)
    job.refresh_from_db()
    assert job.dispatched_at is not None


def test_claim_then_run_succeeds_once(job: IngestJob) -> None:
    claim = ingest_job_claim(job_id=str(job.external_id), task_id="task-a", worker="w1")
    assert claim.job is not None and claim.job.status == IngestJob.Status.RUNNING
    assert claim.job.attempts == 1
    assert ingest_job_run(job=claim.job, actor=WORKER, stage=NO_STAGE)
    job.refresh_from_db()
    assert job.status == IngestJob.Status.SUCCEEDED and job.finished_at is not None
    processed = AuditEvent.objects.get(action="intake.job.process")
    assert processed.actor_type == "worker" and processed.outcome == "success"
    # A duplicate delivery later finds nothing to do.
    again = ingest_job_claim(job_id=str(job.external_id), task_id="task-b", worker="w2")
    assert again.job is None and again.retry_in_seconds == 0
    assert AuditEvent.objects.filter(action="intake.job.process").count() == 1


def test_second_delivery_waits_for_the_lease_of_the_first(job: IngestJob) -> None:
    first = ingest_job_claim(job_id=str(job.external_id), task_id="task-a", worker="w1")
    assert first.job is not None
    other = ingest_job_claim(job_id=str(job.external_id), task_id="task-b", worker="w2")
    assert other.job is None and other.retry_in_seconds > 0


def test_redelivered_message_of_a_dead_worker_is_taken_back_at_once(job: IngestJob) -> None:
    first = ingest_job_claim(job_id=str(job.external_id), task_id="task-a", worker="w1")
    redelivered = ingest_job_claim(job_id=str(job.external_id), task_id="task-a", worker="w1-new-child")
    assert first.job is not None and redelivered.job is not None
    assert redelivered.job.attempts == 2
    # The first run (its process is gone) cannot finish over the second.
    assert not ingest_job_run(job=first.job, actor=WORKER, stage=NO_STAGE)
    assert ingest_job_run(job=redelivered.job, actor=WORKER, stage=NO_STAGE)
    assert AuditEvent.objects.filter(action="intake.job.process").count() == 1


def test_expired_lease_lets_another_worker_take_over(job: IngestJob) -> None:
    stale = ingest_job_claim(job_id=str(job.external_id), task_id="task-a", worker="w1")
    IngestJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    takeover = ingest_job_claim(job_id=str(job.external_id), task_id="task-b", worker="w2")
    assert stale.job is not None and takeover.job is not None
    assert ingest_job_run(job=takeover.job, actor=WORKER, stage=NO_STAGE)
    assert not ingest_job_run(job=stale.job, actor=WORKER, stage=NO_STAGE)
    job.refresh_from_db()
    assert job.status == IngestJob.Status.SUCCEEDED and job.claimed_by == "w2"


def test_tampered_ciphertext_fails_the_job_for_good(job: IngestJob) -> None:
    row = RawResource.objects.filter(job=job).order_by("entry_index")[3]
    tampered = bytearray(bytes(row.ciphertext))
    tampered[5] ^= 0xFF
    RawResource.objects.filter(pk=row.pk).update(ciphertext=bytes(tampered))
    claim = ingest_job_claim(job_id=str(job.external_id), task_id="t", worker="w")
    assert claim.job is not None
    ingest_job_run(job=claim.job, actor=WORKER, stage=NO_STAGE)
    job.refresh_from_db()
    assert job.status == IngestJob.Status.FAILED
    assert "entry 3" in job.error
    failure = AuditEvent.objects.get(action="intake.job.process")
    assert failure.outcome == "failure" and failure.detail["error"] == "DecryptionError"


def test_swapped_ciphertexts_do_not_open(job: IngestJob) -> None:
    a, b = RawResource.objects.filter(job=job).order_by("entry_index")[:2]
    RawResource.objects.filter(pk=a.pk).update(ciphertext=bytes(b.ciphertext), nonce=bytes(b.nonce))
    claim = ingest_job_claim(job_id=str(job.external_id), task_id="t", worker="w")
    assert claim.job is not None
    ingest_job_run(job=claim.job, actor=WORKER, stage=NO_STAGE)
    job.refresh_from_db()
    assert job.status == IngestJob.Status.FAILED


@override_settings(INTAKE_MAX_ATTEMPTS=2)
def test_a_job_that_keeps_killing_workers_is_given_up(job: IngestJob) -> None:
    for _ in range(3):
        claim = ingest_job_claim(job_id=str(job.external_id), task_id="same-task", worker="w")
    assert claim.job is not None and claim.job.attempts == 3
    ingest_job_run(job=claim.job, actor=WORKER, stage=NO_STAGE)
    job.refresh_from_db()
    assert job.status == IngestJob.Status.FAILED and "gave up" in job.error


def test_unknown_job_id_is_dropped(db: Any) -> None:
    claim = ingest_job_claim(job_id="00000000-0000-0000-0000-000000000000", task_id="t", worker="w")
    assert claim.job is None and claim.retry_in_seconds == 0


def test_sweep_sends_jobs_never_dispatched_and_jobs_of_dead_workers(job: IngestJob) -> None:
    # In this test the on-commit dispatch never ran (the test transaction never commits): like a broker
    # that was down when the request was accepted.
    assert job.dispatched_at is None
    assert ingest_jobs_sweep() == 0  # too fresh: its own request may still be dispatching it
    later = timezone.now() + timedelta(seconds=30)
    assert ingest_jobs_sweep(now=later) == 1
    job.refresh_from_db()
    assert job.dispatched_at is not None
    assert ingest_jobs_sweep(now=later) == 0  # dispatched recently: left alone
    ingest_job_claim(job_id=str(job.external_id), task_id="t", worker="w")
    IngestJob.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert ingest_jobs_sweep() == 1


def test_key_rotation_reseals_old_values(job: IngestJob, settings: Any) -> None:
    from clinical_ai.core.crypto import KeyRing, generate_key_spec
    from clinical_ai.core.sealing import open_json
    from clinical_ai.intake.services import raw_resources_reseal

    before = {r.pk: open_json(r.sealed, associated_data=r.associated_data) for r in RawResource.objects.all()}
    old_ring: KeyRing = settings.ENCRYPTION_KEYRING
    old_spec_keys = ",".join(f"{kid}:{_b64(old_ring, kid)}" for kid in old_ring.key_ids)
    settings.ENCRYPTION_KEYRING = KeyRing.parse(f"{generate_key_spec('new1')},{old_spec_keys}")
    assert raw_resources_reseal(actor=Actor.system("test")) == len(before)
    assert set(RawResource.objects.values_list("key_id", flat=True)) == {"new1"}
    after = {r.pk: open_json(r.sealed, associated_data=r.associated_data) for r in RawResource.objects.all()}
    assert after == before
    assert raw_resources_reseal(actor=Actor.system("test")) == 0
    assert AuditEvent.objects.filter(action="intake.raw_resources.reseal").count() == 1


def _b64(ring: Any, kid: str) -> str:
    import base64

    return base64.b64encode(ring._keys[kid]).decode()
