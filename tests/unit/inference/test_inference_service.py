"""The inference stage in-process against the database: runs created with the de-identified copy, claimed,
run, finished with their suggestions and audit rows; the stop switch; idempotency."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clinical_ai.audit.models import AuditEvent
from clinical_ai.inference.models import InferenceRun
from clinical_ai.review.models import OutputResource, Suggestion
from clinical_ai.review.services import output_resource_body, suggestion_payload
from tests.pipeline import bundle_process

pytestmark = pytest.mark.django_db


def test_sample_bundle_yields_a_news2_suggestion_with_its_basis(client: Any, ehr_client: Any) -> None:
    suggestions = bundle_process(client, ehr_client)
    news2 = [s for s in suggestions if s.model_id == "news2"]
    assert len(news2) == 1
    suggestion = news2[0]
    assert suggestion.status == Suggestion.Status.PENDING
    payload = suggestion_payload(suggestion)
    assert payload["risk"]["band"]
    names = {p["name"]: p for p in payload["evidence"]["parameters"]}
    assert names["respiratory_rate"]["status"] == "scored"
    run = suggestion.run
    assert run.status == InferenceRun.Status.SUCCEEDED
    assert run.model_version == "1.0.0" and len(run.input_sha256) == 64
    assert run.features["respiratory_rate"] == 24
    types = set(OutputResource.objects.filter(suggestion=suggestion).values_list("resource_type", flat=True))
    assert "RiskAssessment" in types
    risk = next(
        output_resource_body(r)
        for r in OutputResource.objects.filter(suggestion=suggestion, resource_type="RiskAssessment")
    )
    assert risk["status"] == "preliminary"
    assert any(s["code"] == "AIAST" for s in risk["meta"]["security"])
    assert AuditEvent.objects.filter(action="inference.run", object_id=str(run.external_id)).count() == 1


def test_runs_are_created_with_the_deidentified_copy_and_queued_by_id_on_commit(
    client: Any, ehr_client: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from clinical_ai.intake.models import IngestJob
    from clinical_ai.intake.services import ingest_job_claim, ingest_job_run
    from clinical_ai.pipeline.worker import deidentify
    from tests.factories import obtain_token, post_fhir, sample_bundle
    from tests.pipeline import WORKER

    assert post_fhir(client, obtain_token(client, ehr_client), sample_bundle()).status_code == 200
    job = IngestJob.objects.get()
    claim = ingest_job_claim(job_id=str(job.external_id), task_id="", worker="tests")
    assert claim.job is not None
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        ingest_job_run(job=claim.job, actor=WORKER, stage=deidentify)
    runs = InferenceRun.objects.filter(ingest_job=job)
    assert {r.model_id for r in runs} == {"news2", "problem-list-gaps"}
    assert all(r.status == InferenceRun.Status.QUEUED for r in runs)
    dispatched = [cb.keywords["run_ids"] for cb in callbacks if getattr(cb, "keywords", None)]
    assert sorted(i for ids in dispatched for i in ids) == sorted(str(r.external_id) for r in runs)
    for ids in dispatched:  # the task's only argument: opaque ids that survive JSON unchanged
        assert json.loads(json.dumps(ids)) == ids and all(isinstance(i, str) for i in ids)


def test_the_same_input_again_is_not_run_twice_and_a_newer_score_supersedes(
    client: Any, ehr_client: Any
) -> None:
    from tests.factories import sample_bundle

    first = [s for s in bundle_process(client, ehr_client) if s.model_id == "news2"]
    again = sample_bundle()
    again["identifier"]["value"] = "urn:uuid:5b0a7c53-0f7e-4d0e-9d1c-9d7f5f0e2a11"
    bundle_process(client, ehr_client, again)  # the same data under a new idempotency key
    runs = InferenceRun.objects.filter(model_id="news2").order_by("pk")
    assert runs.count() == 2 and runs[1].messages[0].startswith("input unchanged since run")
    assert Suggestion.objects.filter(model_id="news2").count() == 1
    changed = sample_bundle()
    changed["identifier"]["value"] = "urn:uuid:0c7d3a7e-2b61-4c55-8a0e-3f9b8e6d4c21"
    for entry in changed["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Observation" and resource["code"]["coding"][0]["code"] == "9279-1":
            resource["valueQuantity"]["value"] = 30
    bundle_process(client, ehr_client, changed)
    first[0].refresh_from_db()
    assert first[0].status == Suggestion.Status.SUPERSEDED
    assert Suggestion.objects.filter(model_id="news2", status=Suggestion.Status.PENDING).count() == 1
    # The problem the notes assert was proposed once, not again for each bundle.
    assert Suggestion.objects.filter(model_id="problem-list-gaps").count() == len(
        {s.finding_key for s in Suggestion.objects.filter(model_id="problem-list-gaps")}
    )


def test_a_run_taken_over_mid_batch_is_counted_lost_and_stored_once(
    client: Any, ehr_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same message redelivered to a second worker takes the run over while the first still works on it:
    the first drops its result and reports the run lost (it used to raise TypeError building its report)."""
    from clinical_ai.inference import registry, services
    from clinical_ai.intake.models import IngestJob
    from clinical_ai.intake.services import ingest_job_claim, ingest_job_run
    from clinical_ai.pipeline.worker import deidentify, models_run
    from tests.factories import obtain_token, post_fhir, sample_bundle
    from tests.pipeline import WORKER

    assert post_fhir(client, obtain_token(client, ehr_client), sample_bundle()).status_code == 200
    claim = ingest_job_claim(job_id=str(IngestJob.objects.get().external_id), task_id="", worker="tests")
    assert claim.job is not None
    ingest_job_run(job=claim.job, actor=WORKER, stage=deidentify)
    run = InferenceRun.objects.get(model_id="news2")
    run_ids = [str(run.external_id)]
    loaded = registry.model_loaded
    second: list[services.BatchReport] = []

    def taken_over_while_loading(manifest: Any) -> Any:
        if not second:  # only the first worker's load: the second worker runs the whole batch meanwhile
            second.append(services.BatchReport(claimed=0, succeeded=0, failed=0, skipped=0))
            second[0] = models_run(run_ids=run_ids, task_id="t-same", worker="second", actor=WORKER)
        return loaded(manifest)

    monkeypatch.setattr(services, "model_loaded", taken_over_while_loading)
    first = models_run(run_ids=run_ids, task_id="t-same", worker="first", actor=WORKER)
    assert second[0] == services.BatchReport(claimed=1, succeeded=1, failed=0, skipped=0, lost=0)
    assert first == services.BatchReport(claimed=1, succeeded=0, failed=0, skipped=0, lost=1)
    run.refresh_from_db()
    assert run.status == InferenceRun.Status.SUCCEEDED and run.claimed_by == "second" and run.attempts == 2
    assert Suggestion.objects.filter(run=run).count() == 1
    assert AuditEvent.objects.filter(action="inference.run", object_id=str(run.external_id)).count() == 1
