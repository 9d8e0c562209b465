"""Run the real pipeline in-process for tests: POST over FHIR, then the de-identification and inference
stages called directly (no broker), exactly as the workers call them. Real keys, engines and models."""

from __future__ import annotations

from typing import Any

from django.test import Client

from clinical_ai.audit.services import Actor
from clinical_ai.inference.models import InferenceRun
from clinical_ai.intake.models import IngestJob
from clinical_ai.intake.services import ingest_job_claim, ingest_job_run
from clinical_ai.pipeline.worker import deidentify, models_run
from clinical_ai.review.models import Suggestion
from tests.factories import EhrIdentity, obtain_token, post_fhir, sample_bundle

WORKER = Actor.worker(task_name="tests.pipeline", task_id="t-1", hostname="tests")


def jobs_process() -> list[InferenceRun]:
    """Run every queued ingest job through de-identification, then every queued inference run."""
    for job_id in IngestJob.objects.filter(status=IngestJob.Status.QUEUED).values_list(
        "external_id", flat=True
    ):
        claim = ingest_job_claim(job_id=str(job_id), task_id="", worker="tests")
        assert claim.job is not None
        ingest_job_run(job=claim.job, actor=WORKER, stage=deidentify)
    runs = list(InferenceRun.objects.filter(status=InferenceRun.Status.QUEUED).order_by("pk"))
    by_model: dict[str, list[str]] = {}
    for run in runs:
        by_model.setdefault(run.model_id, []).append(str(run.external_id))
    for run_ids in by_model.values():
        models_run(run_ids=run_ids, task_id="", worker="tests", actor=WORKER)
    return list(InferenceRun.objects.filter(pk__in=[r.pk for r in runs]).order_by("pk"))


def bundle_process(
    http: Client, identity: EhrIdentity, bundle: dict[str, Any] | None = None
) -> list[Suggestion]:
    """POST a bundle (the sample one by default) as the EHR and run it to its suggestions."""
    token = obtain_token(http, identity)
    response = post_fhir(http, token, bundle if bundle is not None else sample_bundle())
    assert response.status_code in (200, 201), response.content
    runs = jobs_process()
    return list(Suggestion.objects.filter(run__in=runs).order_by("urgency_rank", "pk"))
