"""Suggestions created from a model run, in the inference worker (pending review).

Creation runs inside the inference run's finishing transaction (``run_outputs_store`` is the inference
stage's output store, handed to it by ``clinical_ai.pipeline``). A risk finding supersedes the patient's
older pending one from the same model (the queue shows the current score); a problem the clinician has
already seen for this patient (pending, accepted or rejected) is not proposed again.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.utils import timezone

from clinical_ai.core.sealing import seal_json
from clinical_ai.inference.engine.fhir_output import (
    FhirOutputError,
    RunContext,
    run_output_issues,
    run_resources,
)
from clinical_ai.inference.engine.manifest import ModelManifest
from clinical_ai.inference.engine.types import URGENCY_ORDER, Finding, ModelResult
from clinical_ai.inference.models import InferenceRun
from clinical_ai.inference.services import InvalidOutput
from clinical_ai.review.models import OutputResource, Suggestion

_SEEN_STATUSES = (
    Suggestion.Status.PENDING,
    Suggestion.Status.ACCEPTED,
    Suggestion.Status.MODIFIED,
    Suggestion.Status.REJECTED,
)


@dataclass(frozen=True)
class SuggestionPlan:
    """Which findings of a result become suggestions (``result`` keeps only those), with their new ids."""

    result: ModelResult
    ids_by_key: dict[str, str]
    supersedes: list[int]  # pks of older pending suggestions to mark superseded
    repeated: list[str]  # finding keys left out because the clinician has already seen them


def suggestions_plan(*, run: Any, manifest: ModelManifest, result: ModelResult) -> SuggestionPlan:
    keys = [finding.key for finding in result.findings]
    earlier = Suggestion.objects.filter(
        organization_id=run.organization_id,
        patient_pseudonym=run.patient_pseudonym,
        model_id=manifest.id,
        finding_key__in=keys,
        status__in=_SEEN_STATUSES,
    ).exclude(run_id=run.pk)
    earlier_by_key: dict[str, list[tuple[int, str]]] = {}
    for pk, key, status in earlier.values_list("pk", "finding_key", "status"):
        earlier_by_key.setdefault(key, []).append((pk, status))
    kept: list[Finding] = []
    supersedes: list[int] = []
    repeated: list[str] = []
    for finding in result.findings:
        previous = earlier_by_key.get(finding.key, [])
        if finding.kind == "risk":
            supersedes.extend(pk for pk, status in previous if status == Suggestion.Status.PENDING)
            kept.append(finding)
        elif previous:
            repeated.append(finding.key)
        else:
            kept.append(finding)
    return SuggestionPlan(
        result=replace(result, findings=tuple(kept)),
        ids_by_key={finding.key: str(uuid.uuid4()) for finding in kept},
        supersedes=supersedes,
        repeated=repeated,
    )


def suggestions_create(
    *,
    run: Any,
    manifest: ModelManifest,
    plan: SuggestionPlan,
    resources_by_key: Mapping[str, Sequence[Mapping[str, Any]]],
) -> list[Suggestion]:
    """Store the planned suggestions, sealed, and supersede the older pending ones. Inside the run's
    finishing transaction; idempotent per (run, finding key)."""
    rows: list[Suggestion] = []
    for finding in plan.result.findings:
        row = Suggestion(
            external_id=uuid.UUID(plan.ids_by_key[finding.key]),
            run=run,
            organization_id=run.organization_id,
            patient_pseudonym=run.patient_pseudonym,
            model_id=manifest.id,
            model_version=manifest.version,
            finding_key=finding.key[:128],
            kind=finding.kind,
            urgency=finding.urgency,
            urgency_rank=URGENCY_ORDER.get(finding.urgency, len(URGENCY_ORDER)),
            score=finding.score,
            completeness=finding.completeness,
        )
        payload = {
            "summary": finding.summary[:140],
            "evidence": dict(finding.evidence),
            "proposal": dict(finding.proposal) if finding.proposal is not None else None,
            "risk": dict(finding.risk) if finding.risk is not None else None,
            "completeness": finding.completeness,
            "missing_inputs": list(finding.missing_inputs),
            "resources": [dict(r) for r in resources_by_key.get(finding.key, [])],
            "model": {"id": manifest.id, "version": manifest.version, "name": manifest.name},
        }
        sealed = seal_json(payload, associated_data=row.associated_data)
        row.key_id, row.nonce, row.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
        rows.append(row)
    Suggestion.objects.bulk_create(rows, ignore_conflicts=True)
    # ignore_conflicts leaves the objects without primary keys: read back what the table holds.
    rows = list(Suggestion.objects.filter(run=run, finding_key__in=[r.finding_key for r in rows]))
    for row in rows:
        output_resources_put(
            organization_id=run.organization_id,
            patient_pseudonym=run.patient_pseudonym,
            resources=resources_by_key.get(row.finding_key, []),
            suggestion=row,
            run=run,
        )
    if plan.supersedes:
        Suggestion.objects.filter(pk__in=plan.supersedes, status=Suggestion.Status.PENDING).update(
            status=Suggestion.Status.SUPERSEDED
        )
    return rows


def output_resources_put(
    *,
    organization_id: int,
    patient_pseudonym: str,
    resources: Sequence[Mapping[str, Any]],
    suggestion: Suggestion | None = None,
    run: Any = None,
    replace_existing: bool = True,
) -> list[OutputResource]:
    """Store (or replace, bumping the version) the FHIR resources served to the EHR. Inside the caller's
    transaction. Each body gets ``meta.versionId`` and ``meta.lastUpdated`` to match the row."""
    now = timezone.now()
    stored: list[OutputResource] = []
    for resource in resources:
        resource_type, resource_id = str(resource["resourceType"]), str(resource["id"])
        row = (
            OutputResource.objects.select_for_update()
            .filter(organization_id=organization_id, resource_type=resource_type, resource_id=resource_id)
            .first()
        )
        if row is None:
            row = OutputResource(
                organization_id=organization_id,
                resource_type=resource_type,
                resource_id=resource_id,
                version=1,
            )
        elif not replace_existing:
            continue  # e.g. the model's Device: the same for every run of the version
        else:
            row.version += 1
        body = dict(resource)
        body["meta"] = {
            **dict(body.get("meta") or {}),
            "versionId": str(row.version),
            "lastUpdated": now.isoformat(),
        }
        row.patient_pseudonym = patient_pseudonym
        row.status = str(body.get("status", ""))[:32]
        row.suggestion = suggestion if suggestion is not None else row.suggestion
        row.run = run if run is not None else row.run
        row.last_updated = now
        sealed = seal_json(body, associated_data=row.associated_data)
        row.key_id, row.nonce, row.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
        row.save()
        stored.append(row)
    return stored


def run_outputs_store(
    run: InferenceRun, *, manifest: ModelManifest, result: ModelResult, occurred: datetime
) -> list[str]:
    """What a successful run leaves behind, inside its finishing transaction: the planned suggestions
    (pending, sealed), the run's GuidanceResponse and the model's Device, all validated as FHIR first.
    Raises ``InvalidOutput`` (the run fails, nothing of it is stored) when the output is not valid FHIR."""
    plan = suggestions_plan(run=run, manifest=manifest, result=result)
    context = RunContext(
        run_id=str(run.external_id),
        model=manifest,
        patient_pseudonym=run.patient_pseudonym,
        occurred=occurred,
        input_sha256=run.input_sha256,
    )
    try:
        output = run_resources(context, plan.result, plan.ids_by_key)
    except FhirOutputError as exc:
        raise InvalidOutput(str(exc)[:200]) from exc
    issues = run_output_issues(output)
    if issues:
        where = ", ".join(issues[0].expression) or "?"
        raise InvalidOutput(f"{len(issues)} FHIR validation issue(s), the first at {where}")
    created = suggestions_create(
        run=run,
        manifest=manifest,
        plan=plan,
        resources_by_key={key: found.resources for key, found in output.per_finding.items()},
    )
    InferenceRun.objects.filter(pk=run.pk).update(guidance_response=output.guidance_response)
    output_resources_put(
        organization_id=run.organization_id,
        patient_pseudonym="",
        resources=[output.device],
        replace_existing=False,
    )
    output_resources_put(
        organization_id=run.organization_id,
        patient_pseudonym=run.patient_pseudonym,
        resources=[output.guidance_response],
        run=run,
    )
    return [str(s.external_id) for s in created]
