"""The hand-overs that run in Celery workers: de-identification → inference → review (suggestions)."""

from __future__ import annotations

from collections.abc import Sequence

from clinical_ai.audit.services import Actor
from clinical_ai.deid.services import ingest_job_deidentify
from clinical_ai.inference.services import BatchReport, inference_runs_create, inference_runs_execute
from clinical_ai.intake.models import IngestJob
from clinical_ai.intake.services import OpenedEntry, StageOutcome
from clinical_ai.review.creation import run_outputs_store


def deidentify(job: IngestJob, entries: list[OpenedEntry], actor: Actor) -> StageOutcome:
    """Stage 2 → 3: de-identify a claimed job; its patients' inference runs are created in the same
    transaction as their de-identified copy (so they exist exactly when their inputs do) and are
    dispatched on commit. The stage function for ``ingest_job_run``."""
    outcome = ingest_job_deidentify(job, entries, actor)

    def runs_create() -> None:
        inference_runs_create(job=job, patient_pseudonyms=outcome.patients)

    return outcome.then(runs_create)


def models_run(*, run_ids: Sequence[str], task_id: str, worker: str, actor: Actor) -> BatchReport:
    """Stage 3 → 4: run a batch of inference runs; each successful run's suggestions and FHIR outputs are
    stored by the review stage in the run's finishing transaction."""
    return inference_runs_execute(
        run_ids=run_ids, task_id=task_id, worker=worker, actor=actor, store=run_outputs_store
    )
