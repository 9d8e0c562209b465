"""The inference stage: create runs with the de-identified copy, dispatch them by id, run them in batches.

Runs are rows. ``inference_runs_create`` is called inside the transaction that stores a job's de-identified
copy and dispatches on commit; ``inference_runs_execute`` (the Celery task's one call) claims each run with
a conditional update, loads the model once per process, predicts for the whole batch, and finishes each
run in its own transaction with its suggestions and its audit row. Workers read de-identified rows only.

A model with a shadow version gets a ``ShadowRun`` beside each active run. The batch runs the shadow
version on the same patient contexts after the active runs are finished (so it never delays them), and
stores only a summary of its result with the active one's: no suggestions, no FHIR outputs.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Protocol

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.crypto import DecryptionError
from clinical_ai.core.jobs import JobTable, LostClaim, job_claim, job_dispatch, job_hold, jobs_sweep
from clinical_ai.core.sealing import canonical_json, open_json, seal_json
from clinical_ai.deid.models import DeidentifiedResource
from clinical_ai.inference.engine.manifest import ManifestError, ModelManifest
from clinical_ai.inference.engine.types import ClinicalModel, ModelResult, PatientContext, SourceResource
from clinical_ai.inference.models import InferenceRun, ModelDeployment, RunRecord, ShadowRun
from clinical_ai.inference.registry import catalogue, deployment_state, enabled_models, model_loaded
from clinical_ai.intake.models import IngestJob

logger = logging.getLogger(__name__)

RUN_ACTION = "inference.run"
SHADOW_RUN_ACTION = "inference.shadow.run"

# Runs are worked in batches of one model by the ``inference`` task, sent by name.
INFERENCE_RUNS = JobTable(
    model=InferenceRun,
    task_name="clinical_ai.inference.run_models",
    lease_setting="INFERENCE_CLAIM_LEASE_SECONDS",
    redispatch_setting="INFERENCE_REDISPATCH_AFTER_SECONDS",
    expires_setting="INFERENCE_TASK_EXPIRES_SECONDS",
    claimed_at_field="started_at",
    batch_by="model_id",
    select_related=("organization",),
)


class InvalidOutput(Exception):
    """The model's output does not make valid FHIR: nothing of it is stored, the run fails."""


class OutputStore(Protocol):
    """Stores what a successful run leaves behind (its suggestions and FHIR outputs), inside the run's
    finishing transaction; returns the new suggestions' ids. Raises ``InvalidOutput`` to fail the run.
    The next stage provides it (``clinical_ai.pipeline``): this stage does not import it."""

    def __call__(
        self, run: InferenceRun, *, manifest: ModelManifest, result: ModelResult, occurred: datetime
    ) -> list[str]: ...


# --- creating and dispatching -------------------------------------------------------------------------


def inference_runs_create(*, job: IngestJob, patient_pseudonyms: Iterable[str]) -> dict[str, list[str]]:
    """Create one queued run per enabled model and patient of the job; dispatch them on commit.

    Must be called inside the transaction that stores the job's de-identified copy, so the runs exist
    exactly when their inputs do. Idempotent per (job, model, patient). Returns run ids by model id.
    """
    patients = sorted({p for p in patient_pseudonyms if p})
    models = enabled_models()
    if not patients or not models:
        return {}
    rows = [
        InferenceRun(
            organization_id=job.organization_id,
            ingest_job=job,
            patient_pseudonym=patient,
            model_id=state.model_id,
        )
        for state in models
        for patient in patients
    ]
    InferenceRun.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)
    _shadow_runs_create(job=job, models=[state for state in models if state.manifest is not None])
    created: dict[str, list[str]] = {}
    for model_id, external_id in (
        InferenceRun.objects.filter(ingest_job=job, status=InferenceRun.Status.QUEUED)
        .order_by("model_id", "patient_pseudonym")
        .values_list("model_id", "external_id")
    ):
        created.setdefault(model_id, []).append(str(external_id))
    for run_ids in created.values():
        transaction.on_commit(partial(inference_runs_dispatch, run_ids=run_ids))
    return created


def _shadow_runs_create(*, job: IngestJob, models: Sequence[Any]) -> None:
    """A queued shadow run beside each queued run of a model with a shadow version (one query when none)."""
    running = {state.model_id: state.manifest.version for state in models}
    shadowed = {
        model_id: version
        for model_id, version in ModelDeployment.objects.filter(model_id__in=sorted(running))
        .exclude(shadow_version="")
        .values_list("model_id", "shadow_version")
        if version != running[model_id] and catalogue().manifest(model_id, version) is not None
    }
    if not shadowed:
        return
    ShadowRun.objects.bulk_create(
        [
            ShadowRun(active_run_id=pk, model_id=model_id, model_version=shadowed[model_id])
            for pk, model_id in InferenceRun.objects.filter(
                ingest_job=job, model_id__in=sorted(shadowed), status=InferenceRun.Status.QUEUED
            ).values_list("pk", "model_id")
        ],
        batch_size=500,
        ignore_conflicts=True,
    )


def inference_runs_dispatch(*, run_ids: Sequence[str]) -> bool:
    """Publish one task for a batch of runs (the same model) to the ``inference`` queue. A broker outage
    leaves the rows queued without ``dispatched_at``; the sweep sends them later."""
    return job_dispatch(INFERENCE_RUNS, keys=run_ids)


def inference_runs_sweep(*, now: datetime | None = None, limit: int = 500) -> int:
    """Send again the runs never dispatched, queued too long, or whose claim lease ran out."""
    return jobs_sweep(INFERENCE_RUNS, now=now, limit=limit)


def inference_run_claim(*, run_id: str, task_id: str, worker: str) -> InferenceRun | None:
    """Take the run with one conditional UPDATE; None when another worker holds it or it is finished."""
    claimed: InferenceRun | None = job_claim(INFERENCE_RUNS, key=run_id, task_id=task_id, worker=worker).row
    return claimed


# --- inputs --------------------------------------------------------------------------------------------


def patient_context_load(run: InferenceRun, manifest: ModelManifest) -> PatientContext:
    """The patient's de-identified resources of the types the model declares (its inputs, its features' or
    notes' types, plus Patient), newest first, identical copies (the same data posted twice) kept once. A
    declarative model's prediction time is the newest of these: the same types in service and offline."""
    types = manifest.resource_types
    rows = (
        DeidentifiedResource.objects.filter(
            organization_id=run.organization_id,
            patient_pseudonym=run.patient_pseudonym,
            resource_type__in=sorted(types),
        )
        .order_by("-created_at", "-pk")
        .only("external_id", "key_id", "nonce", "ciphertext")[: settings.INFERENCE_MAX_INPUT_RESOURCES]
    )
    seen: set[str] = set()
    resources: list[SourceResource] = []
    for row in rows.iterator(chunk_size=200):
        try:
            resource = open_json(row.sealed, associated_data=row.associated_data)
        except (DecryptionError, ValueError):
            logger.error(
                "de-identified resource %s does not open; left out of run %s",
                row.external_id,
                run.external_id,
            )
            continue
        digest = hashlib.sha256(canonical_json(resource)).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        resources.append(SourceResource(ref=str(row.external_id), resource=resource))
    return PatientContext(patient_pseudonym=run.patient_pseudonym, resources=tuple(resources))


def context_sha256(context: PatientContext) -> str:
    """A hash of the de-identified input, independent of row ids and order: the same data hashes the same."""
    digests = sorted(hashlib.sha256(canonical_json(r.resource)).hexdigest() for r in context.resources)
    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


# --- running -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchReport:
    claimed: int
    succeeded: int
    failed: int
    skipped: int
    lost: int = 0  # claimed, then taken over by another worker (our lease ran out): result dropped


def inference_runs_execute(
    *, run_ids: Sequence[str], task_id: str, worker: str, actor: Actor, store: OutputStore
) -> BatchReport:
    """Claim and run a batch of runs. Each run finishes in its own transaction; a run someone else holds is
    left alone; database faults propagate (the task retries and re-claims its own runs)."""
    runs = [
        run
        for run_id in run_ids
        if (run := inference_run_claim(run_id=run_id, task_id=task_id, worker=worker))
    ]
    counts = {"succeeded": 0, "failed": 0, "skipped": 0, "lost": 0}
    by_model: dict[str, list[InferenceRun]] = {}
    for run in runs:
        by_model.setdefault(run.model_id, []).append(run)
    for model_id, model_runs in by_model.items():
        for status in _execute_model_batch(model_id, model_runs, actor=actor, store=store):
            counts[status] += 1
    return BatchReport(claimed=len(runs), **counts)


@dataclass(frozen=True)
class _Predicted:
    """An active run's input and result, kept for its shadow run to compare with."""

    context: PatientContext
    input_sha256: str
    result: ModelResult


def _execute_model_batch(
    model_id: str, runs: list[InferenceRun], *, actor: Actor, store: OutputStore
) -> list[str]:
    predicted: dict[int, _Predicted] = {}
    outcomes = _execute_active_batch(model_id, runs, actor=actor, store=store, predicted=predicted)
    try:
        _execute_shadow_batch(model_id, runs, actor=actor, predicted=predicted)
    except DatabaseError:  # the active runs are stored already; their shadows stay queued, unanswered
        logger.exception("shadow runs of %s not finished", model_id)
    return outcomes


def _execute_active_batch(
    model_id: str,
    runs: list[InferenceRun],
    *,
    actor: Actor,
    store: OutputStore,
    predicted: dict[int, _Predicted],
) -> list[str]:
    outcomes: list[str] = []
    live: list[InferenceRun] = []
    for run in runs:
        if run.attempts > settings.INFERENCE_MAX_ATTEMPTS:
            outcomes.append(
                _finish_failed(run, actor=actor, error=f"gave up after {run.attempts - 1} attempts")
            )
        else:
            live.append(run)
    if not live:
        return outcomes
    state = deployment_state(model_id)
    if not state.enabled or state.manifest is None:
        return outcomes + [_finish_skipped(run, actor=actor, reason="model switched off") for run in live]
    manifest = state.manifest
    try:
        model, load_seconds = model_loaded(manifest)
    except ManifestError as exc:
        logger.error("model %s %s refused to load: %s", manifest.id, manifest.version, exc)
        return outcomes + [
            _finish_failed(run, actor=actor, error=str(exc), manifest=manifest) for run in live
        ]
    read_started = time.perf_counter()
    contexts = [patient_context_load(run, manifest) for run in live]
    read_ms = (time.perf_counter() - read_started) * 1000 / len(live)
    input_hashes = [context_sha256(context) for context in contexts]
    to_predict: list[int] = []
    for index, run in enumerate(live):
        earlier = _earlier_identical_run(run, manifest, input_hashes[index])
        if earlier is not None:
            outcomes.append(
                _finish_unchanged(
                    run, actor=actor, manifest=manifest, input_sha256=input_hashes[index], earlier=earlier
                )
            )
        else:
            to_predict.append(index)
    if not to_predict:
        return outcomes
    predict_started = time.perf_counter()
    answers = predict_each(
        model, [contexts[i] for i in to_predict], label=f"{manifest.id} {manifest.version}"
    )
    predict_ms = (time.perf_counter() - predict_started) * 1000
    timings = {
        "read_ms": round(read_ms, 2),
        "predict_ms_batch": round(predict_ms, 2),
        "predict_ms": round(predict_ms / len(to_predict), 2),
        "load_ms": round(load_seconds * 1000, 2),
        "batch_size": len(to_predict),
    }
    for i, result in zip(to_predict, answers, strict=True):
        if isinstance(result, str) or result.failure:
            error = result if isinstance(result, str) else f"model error: {result.failure}"
            record = None if isinstance(result, str) else result.record
            outcomes.append(
                _finish_failed(live[i], actor=actor, error=error, manifest=manifest, record=record)
            )
            continue
        outcome = _finish_succeeded(
            live[i],
            actor=actor,
            store=store,
            manifest=manifest,
            result=result,
            input_sha256=input_hashes[i],
            input_count=len(contexts[i].resources),
            timings=timings,
        )
        outcomes.append(outcome)
        if outcome == InferenceRun.Status.SUCCEEDED:
            predicted[live[i].pk] = _Predicted(contexts[i], input_hashes[i], result)
    return outcomes


def predict_each(
    model: ClinicalModel, contexts: Sequence[PatientContext], *, label: str
) -> list[ModelResult | str]:
    """The model's result for each patient, or why it has none. One batched call; if the model raises, or
    answers for the wrong number of patients, each patient is tried alone, so one patient the model cannot
    handle fails that patient's run only, not the batch."""
    try:
        results = model.predict(contexts)
        if len(results) == len(contexts):
            return list(results)
        logger.error("model %s returned %d results for %d patients", label, len(results), len(contexts))
    except Exception as exc:  # the model's own code failed on this batch: find the patient(s) it fails on
        logger.error("model %s failed on a batch of %d: %s", label, len(contexts), type(exc).__name__)
    answers: list[ModelResult | str] = []
    for context in contexts:
        try:
            alone = model.predict([context])
        except (
            Exception
        ) as exc:  # this patient's input makes the model's own code fail: recorded, not retried
            answers.append(f"model error: {type(exc).__name__}")
            continue
        answers.append(alone[0] if len(alone) == 1 else "model returned a result per patient mismatch")
    return answers


# --- shadow runs ---------------------------------------------------------------------------------------


def result_summary(result: ModelResult) -> dict[str, Any]:
    """What the agreement report compares: each finding's key, kind, urgency, band and score, and the
    features used. No free text (summaries and evidence may quote the record)."""
    findings = []
    for finding in sorted(result.findings, key=lambda f: f.key):
        risk = dict(finding.risk or {})
        findings.append(
            {
                "key": finding.key[:128],
                "kind": finding.kind,
                "urgency": finding.urgency,
                # A result that cannot be scored, or a lower bound, must not agree with a full score.
                "band": {"not_scored": "not scored", "lower_bound": f"at least {risk.get('band', '')}"}.get(
                    finding.completeness, str(risk.get("band", ""))
                )[:32],
                "score": round(float(finding.score), 6) if finding.score is not None else None,
            }
        )
    return {"findings": findings, "features": _json_safe_features(result.features)}


def _execute_shadow_batch(
    model_id: str, runs: list[InferenceRun], *, actor: Actor, predicted: dict[int, _Predicted]
) -> None:
    """Run the shadow version on the contexts the active runs just used. Every fault here ends in the
    shadow rows alone: the active runs are finished before this starts."""
    shadows = list(
        ShadowRun.objects.filter(
            active_run_id__in=[run.pk for run in runs], status=ShadowRun.Status.QUEUED
        ).order_by("pk")
    )
    if not shadows:
        return
    active_by_pk = {run.pk: run for run in runs}
    switch = ModelDeployment.objects.filter(model_id=model_id).first()
    state = deployment_state(model_id, row=switch, lookup=False)
    shadow_version = switch.shadow_version if switch and state.enabled else ""
    to_run: list[ShadowRun] = []
    for shadow in shadows:
        active = active_by_pk[shadow.active_run_id]
        if shadow.model_version != shadow_version:
            _finish_shadow(
                shadow, active, actor=actor, status=ShadowRun.Status.SKIPPED, error="shadow stopped"
            )
        elif shadow.active_run_id not in predicted:
            reason = "the active run made no new prediction (input unchanged, failed or skipped)"
            _finish_shadow(shadow, active, actor=actor, status=ShadowRun.Status.SKIPPED, error=reason)
        else:
            to_run.append(shadow)
    if not to_run:
        return
    manifest = catalogue().manifest(model_id, shadow_version)

    def fail(shadow: ShadowRun, error: str) -> None:
        _finish_shadow(
            shadow,
            active_by_pk[shadow.active_run_id],
            actor=actor,
            status=ShadowRun.Status.FAILED,
            error=error,
            manifest=manifest,
        )

    def fail_all(error: str) -> None:
        for shadow in to_run:
            fail(shadow, error)

    if manifest is None:
        return fail_all(f"version {shadow_version} is not in the catalogue")
    try:
        model, load_seconds = model_loaded(manifest)
    except ManifestError as exc:
        logger.error("shadow model %s %s refused to load: %s", manifest.id, manifest.version, exc)
        return fail_all(str(exc))
    inputs = [predicted[shadow.active_run_id] for shadow in to_run]
    started = time.perf_counter()
    answers = predict_each(
        model, [item.context for item in inputs], label=f"shadow {manifest.id} {manifest.version}"
    )
    predict_ms = (time.perf_counter() - started) * 1000
    timings = {
        "predict_ms_batch": round(predict_ms, 2),
        "predict_ms": round(predict_ms / len(to_run), 2),
        "load_ms": round(load_seconds * 1000, 2),
        "batch_size": len(to_run),
    }
    for shadow, item, result in zip(to_run, inputs, answers, strict=True):
        if isinstance(result, str) or result.failure:
            fail(shadow, result if isinstance(result, str) else f"model error: {result.failure}")
            continue
        _finish_shadow(
            shadow,
            active_by_pk[shadow.active_run_id],
            actor=actor,
            status=ShadowRun.Status.SUCCEEDED,
            manifest=manifest,
            fields={
                "input_sha256": item.input_sha256,
                "result": result_summary(result),
                "active_result": result_summary(item.result),
                "timings": timings,
            },
        )


def _finish_shadow(
    shadow: ShadowRun,
    active: InferenceRun,
    *,
    actor: Actor,
    status: str,
    error: str = "",
    manifest: ModelManifest | None = None,
    fields: dict[str, Any] | None = None,
) -> None:
    """Store the shadow run's outcome and its audit row together; a row finished already is left alone."""
    with transaction.atomic():
        updated = ShadowRun.objects.filter(pk=shadow.pk, status=ShadowRun.Status.QUEUED).update(
            status=status,
            finished_at=timezone.now(),
            error=error[:500],
            manifest_sha256=manifest.sha256 if manifest else "",
            **(fields or {}),
        )
        if updated != 1:
            return
        audit_record(
            actor=actor,
            action=SHADOW_RUN_ACTION,
            outcome=Outcome.FAILURE if status == ShadowRun.Status.FAILED else Outcome.SUCCESS,
            object_type="ShadowRun",
            object_id=str(shadow.external_id),
            organization=active.organization.slug,
            patient_pseudonym=active.patient_pseudonym,
            request_id=active.ingest_job.request_id if active.ingest_job_id and active.ingest_job else "",
            detail={
                "model": shadow.model_id,
                "version": shadow.model_version,
                "status": status,
                "active_run": str(active.external_id),
                "findings": len((fields or {}).get("result", {}).get("findings", [])),
                **({"error": error[:200]} if error else {}),
            },
        )


def _earlier_identical_run(
    run: InferenceRun, manifest: ModelManifest, input_sha256: str
) -> InferenceRun | None:
    return (
        InferenceRun.objects.filter(
            organization_id=run.organization_id,
            patient_pseudonym=run.patient_pseudonym,
            model_id=manifest.id,
            model_version=manifest.version,
            input_sha256=input_sha256,
            status=InferenceRun.Status.SUCCEEDED,
        )
        .exclude(pk=run.pk)
        .order_by("created_at")
        .first()
    )


def _finish(
    run: InferenceRun,
    *,
    actor: Actor,
    status: str,
    detail: dict[str, Any],
    fields: dict[str, Any],
    manifest: ModelManifest | None = None,
    result: ModelResult | None = None,
    store: OutputStore | None = None,
    record: Any = None,
) -> str:
    """Finish the run if this worker still holds it: the row, its sealed record, its suggestions and its audit
    row together.
    The model's switch is read again here, under lock, so a model switched off mid-run stores nothing."""
    try:
        with transaction.atomic():
            if status == InferenceRun.Status.SUCCEEDED and manifest is not None:
                switch = ModelDeployment.objects.select_for_update().filter(model_id=manifest.id).first()
                state = deployment_state(manifest.id, row=switch, lookup=False)
                if not state.enabled or state.manifest is None or state.manifest.version != manifest.version:
                    status, result = InferenceRun.Status.SKIPPED, None
                    detail = {**detail, "skipped": "model switched off or re-pinned during the run"}
            now = timezone.now()
            job_hold(INFERENCE_RUNS, run, status=status, finished_at=now, **fields)
            if record is not None and status != InferenceRun.Status.SKIPPED:
                detail = {**detail, "record_sha256": _record_seal(run, record)}
            suggestion_ids: list[str] = []
            if result is not None and manifest is not None and store is not None:
                run.refresh_from_db()
                suggestion_ids = store(run, manifest=manifest, result=result, occurred=now)
            audit_record(
                actor=actor,
                action=RUN_ACTION,
                outcome=Outcome.FAILURE if status == InferenceRun.Status.FAILED else Outcome.SUCCESS,
                object_type="InferenceRun",
                object_id=str(run.external_id),
                organization=run.organization.slug,
                patient_pseudonym=run.patient_pseudonym,
                request_id=run.ingest_job.request_id if run.ingest_job_id and run.ingest_job else "",
                detail={
                    "model": run.model_id,
                    "version": manifest.version if manifest else "",
                    "status": status,
                    "suggestions": suggestion_ids,
                    **detail,
                },
            )
    except LostClaim:
        logger.warning("inference run %s was taken over by another worker; this result is dropped", run.pk)
        return "lost"
    except InvalidOutput as exc:
        return _finish_failed(run, actor=actor, error=f"invalid model output: {exc}", manifest=manifest)
    return str(status)


def _finish_succeeded(
    run: InferenceRun,
    *,
    actor: Actor,
    store: OutputStore,
    manifest: ModelManifest,
    result: ModelResult,
    input_sha256: str,
    input_count: int,
    timings: dict[str, Any],
) -> str:
    return _finish(
        run,
        actor=actor,
        status=InferenceRun.Status.SUCCEEDED,
        manifest=manifest,
        result=result,
        store=store,
        record=result.record,
        detail={"input_sha256": input_sha256, "findings": len(result.findings)},
        fields={
            "model_version": manifest.version,
            "manifest_sha256": manifest.sha256,
            "input_sha256": input_sha256,
            "input_resource_count": input_count,
            "timings": timings,
            "features": _json_safe_features(result.features),
            "messages": list(result.messages)[:20],
            "error": "",
        },
    )


def _finish_unchanged(
    run: InferenceRun, *, actor: Actor, manifest: ModelManifest, input_sha256: str, earlier: InferenceRun
) -> str:
    message = f"input unchanged since run {earlier.external_id}; its suggestions stand"
    return _finish(
        run,
        actor=actor,
        status=InferenceRun.Status.SUCCEEDED,
        detail={"input_sha256": input_sha256, "unchanged_since": str(earlier.external_id)},
        fields={
            "model_version": manifest.version,
            "manifest_sha256": manifest.sha256,
            "input_sha256": input_sha256,
            "features": earlier.features,
            "messages": [message],
            "guidance_response": earlier.guidance_response,
        },
    )


def _finish_failed(
    run: InferenceRun,
    *,
    actor: Actor,
    error: str,
    manifest: ModelManifest | None = None,
    record: Any = None,
) -> str:
    return _finish(
        run,
        actor=actor,
        status=InferenceRun.Status.FAILED,
        record=record,
        detail={"error": error[:200]},
        fields={
            "error": error[:500],
            "model_version": manifest.version if manifest else run.model_version,
            "manifest_sha256": manifest.sha256 if manifest else run.manifest_sha256,
        },
    )


def _finish_skipped(run: InferenceRun, *, actor: Actor, reason: str) -> str:
    return _finish(
        run,
        actor=actor,
        status=InferenceRun.Status.SKIPPED,
        detail={"reason": reason},
        fields={"error": reason},
    )


def _record_seal(run: InferenceRun, record: Any) -> str:
    """Seal the run's record (replacing one from an earlier attempt of the same run); returns its sha256."""
    digest = hashlib.sha256(canonical_json(record)).hexdigest()
    RunRecord.objects.filter(run=run).delete()
    row = RunRecord(run=run, key_id="", nonce=b"", ciphertext=b"", sha256=digest)
    sealed = seal_json(record, associated_data=f"inference.RunRecord:{run.external_id}")
    row.key_id, row.nonce, row.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
    row.save()
    return digest


def run_record_open(run: InferenceRun) -> dict[str, Any] | None:
    """The run's sealed record, opened (None when the model keeps none); raises DecryptionError on a row
    that was edited or moved to another run."""
    row = RunRecord.objects.filter(run=run).select_related("run").first()
    if row is None:
        return None
    record: dict[str, Any] = open_json(row.sealed, associated_data=row.associated_data)
    return record


def _json_safe_features(features: Any) -> dict[str, Any]:
    safe: dict[str, Any] = {}
    for key, value in dict(features or {}).items():
        if value is None or isinstance(value, bool | int | float | str):
            safe[str(key)[:64]] = value if not isinstance(value, str) else value[:64]
    return safe
