"""Count, from the database alone, whether every accepted bundle reached its suggestions exactly once.

Shared by the fault tests (tests/integration) and the chaos run (benchmarks/chaos.py). For each ingest job:

- the job finished, with exactly one ``intake.job.process`` audit row and, per patient, exactly one
  ``deid.resources.create`` row (the de-identified copy was stored once);
- one inference run per enabled model and patient, each finished, each with exactly one ``inference.run``
  audit row;
- each run's suggestions are exactly the ones its audit row names (one set, written in the same transaction).

A job still queued or running, or a run missing, is *lost* (once the caller has waited for quiescence); any
second row where one is expected is *duplicated*. ``post_bundles`` and ``assert_exactly_once`` are what the
fault tests use around it.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.test import Client

from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.selectors import audit_chain_verify
from clinical_ai.inference.models import InferenceRun
from clinical_ai.inference.registry import enabled_models
from clinical_ai.inference.services import inference_runs_sweep
from clinical_ai.intake.models import IngestJob
from clinical_ai.intake.services import ingest_jobs_sweep
from clinical_ai.review.models import Suggestion
from tests.factories import make_ehr_client, make_organization, obtain_token, post_fhir, sample_bundle

FINISHED_RUN = (InferenceRun.Status.SUCCEEDED, InferenceRun.Status.FAILED, InferenceRun.Status.SKIPPED)


@dataclass
class Tally:
    jobs: int = 0
    completed: int = 0  # job succeeded, every expected run succeeded, one suggestion set each
    lost: int = 0  # accepted but not (yet) finished: job or run queued/running, or a run missing
    duplicated: int = 0  # jobs with any second row where one is expected
    failed: int = 0  # finished, but as failed or skipped (recorded, not lost)
    runs: int = 0
    suggestions: int = 0
    suggestions_by_model: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "jobs": self.jobs,
            "completed": self.completed,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "failed": self.failed,
            "runs": self.runs,
            "suggestions": self.suggestions,
            "suggestions_by_model": dict(sorted(self.suggestions_by_model.items())),
            "problems": self.problems[:50],
        }


def pipeline_tally(job_pks: Iterable[int], *, model_ids: Sequence[str] | None = None) -> Tally:
    """Check every job of ``job_pks`` (see the module's docstring); ``model_ids`` defaults to the models
    enabled now (pass the ones enabled when the jobs ran if a switch changed since)."""
    models = sorted(model_ids if model_ids is not None else [s.model_id for s in enabled_models()])
    jobs = list(IngestJob.objects.filter(pk__in=list(job_pks)).order_by("pk"))
    external = {str(job.external_id): job for job in jobs}
    process_rows: Counter[str] = Counter()
    deid_rows: Counter[tuple[str, str]] = Counter()
    for action, object_id, patient in AuditEvent.objects.filter(
        action__in=["intake.job.process", "deid.resources.create"], object_id__in=list(external)
    ).values_list("action", "object_id", "patient_pseudonym"):
        if action == "intake.job.process":
            process_rows[object_id] += 1
        else:
            deid_rows[(object_id, patient)] += 1
    runs_by_job: dict[int, list[InferenceRun]] = defaultdict(list)
    for run in InferenceRun.objects.filter(ingest_job_id__in=[job.pk for job in jobs]):
        runs_by_job[run.ingest_job_id or 0].append(run)
    all_runs = [run for runs in runs_by_job.values() for run in runs]
    run_rows: dict[str, list[list[str]]] = defaultdict(list)
    for object_id, detail in AuditEvent.objects.filter(
        action="inference.run", object_id__in=[str(run.external_id) for run in all_runs]
    ).values_list("object_id", "detail"):
        run_rows[object_id].append(sorted(str(s) for s in (detail or {}).get("suggestions", [])))
    suggestions_by_run: dict[int, list[str]] = defaultdict(list)
    for run_pk, suggestion_id in Suggestion.objects.filter(
        run_id__in=[run.pk for run in all_runs]
    ).values_list("run_id", "external_id"):
        suggestions_by_run[run_pk].append(str(suggestion_id))

    tally = Tally(jobs=len(jobs), runs=len(all_runs))
    for job in jobs:
        key = str(job.external_id)
        lost = duplicated = failed = False
        problems: list[str] = []
        if job.status in (IngestJob.Status.QUEUED, IngestJob.Status.RUNNING):
            lost = True
            problems.append(f"job {key} still {job.status}")
        elif job.status == IngestJob.Status.FAILED:
            failed = True
            problems.append(f"job {key} failed: {job.error[:120]}")
        if process_rows[key] > 1:
            duplicated = True
            problems.append(f"job {key}: {process_rows[key]} intake.job.process rows")
        groups = sorted(patient for (object_id, patient) in deid_rows if object_id == key)
        for patient in groups:
            if deid_rows[(key, patient)] > 1:
                duplicated = True
                problems.append(f"job {key}: {deid_rows[(key, patient)]} deid rows for one patient")
        # Resources of no patient (Organization, Practitioner) have a deid row of their own but no runs.
        patients = [patient for patient in groups if patient]
        runs = runs_by_job.get(job.pk, [])
        per_slot = Counter((run.model_id, run.patient_pseudonym) for run in runs)
        if job.status == IngestJob.Status.SUCCEEDED:
            for model_id in models:
                for patient in patients:
                    if per_slot[(model_id, patient)] == 0:
                        lost = True
                        problems.append(f"job {key}: no {model_id} run for a patient")
        for slot, count in per_slot.items():
            if count > 1:
                duplicated = True
                problems.append(f"job {key}: {count} runs of {slot[0]} for one patient")
        for run in runs:
            rid = str(run.external_id)
            if run.status not in FINISHED_RUN:
                lost = True
                problems.append(f"run {rid} ({run.model_id}) still {run.status}")
                continue
            if run.status != InferenceRun.Status.SUCCEEDED:
                failed = True
                problems.append(f"run {rid} ({run.model_id}) {run.status}: {run.error[:120]}")
            rows = run_rows.get(rid, [])
            stored = sorted(suggestions_by_run.get(run.pk, []))
            tally.suggestions += len(stored)
            tally.suggestions_by_model[run.model_id] += len(stored)
            if len(rows) != 1:
                duplicated = duplicated or len(rows) > 1
                lost = lost or not rows
                problems.append(f"run {rid} ({run.model_id}): {len(rows)} inference.run audit rows")
            elif rows[0] != stored:
                duplicated = True
                problems.append(
                    f"run {rid} ({run.model_id}): {len(stored)} suggestions stored, "
                    f"its audit row names {len(rows[0])}"
                )
        tally.lost += lost
        tally.duplicated += duplicated
        tally.failed += failed and not lost
        tally.completed += not (lost or duplicated or failed)
        tally.problems += problems
    return tally


def post_bundles(client: Client, count: int) -> list[IngestJob]:
    """POST the sample bundle ``count`` times, each for a fresh organization: each job then predicts anew
    (an unchanged input within one organization is answered from the earlier run, with no suggestions)."""
    jobs = []
    for _ in range(count):
        identity = make_ehr_client(make_organization(f"faults-{uuid.uuid4().hex[:8]}"))
        token = obtain_token(client, identity)
        bundle = sample_bundle()
        bundle["identifier"]["value"] = f"urn:uuid:{uuid.uuid4()}"
        response = post_fhir(client, token, bundle)
        assert response.status_code == 200, response.content
        jobs.append(IngestJob.objects.get(request_id=response["X-Request-Id"]))
    return jobs


def assert_exactly_once(jobs: list[IngestJob], *, timeout: float = 120, sweep: bool = False) -> Tally:
    """Wait until every job reached its suggestions (running both sweeps meanwhile when ``sweep``), then
    check that each did so exactly once and that the audit chain verifies."""
    pks = [job.pk for job in jobs]

    def done() -> bool:
        if sweep:
            ingest_jobs_sweep()
            inference_runs_sweep()
        tally = pipeline_tally(pks)
        return tally.lost == 0 or tally.duplicated > 0

    from tests.integration.conftest import (
        wait_for,
    )  # here: the chaos script imports this module, not pytest's

    wait_for(done, timeout=timeout, what="every job to reach its suggestions")
    tally = pipeline_tally(pks)
    assert tally.problems == [], tally.problems
    assert tally.completed == len(jobs)
    assert tally.suggestions_by_model["news2"] == len(jobs)  # the sample patient's NEWS2 is one finding
    assert audit_chain_verify().ok
    return tally
