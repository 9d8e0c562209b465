"""The FHIR R4 form of one model run on one patient: plain dicts the gateway stores and serves to the EHR.

One run gives a GuidanceResponse (the run itself, with the model as a contained Device so it stands alone),
the Device (the model version, also stored on its own), and for each finding the resources its Suggestion
carries: a RiskAssessment for a risk, a DetectedIssue for a problem, plus a RequestGroup proposing the
model's resource (e.g. a provisional Condition) when there is one.

Ids are uuid5 of the run, the finding and the resource type, so a redelivered task builds identical
resources. Every resource is labelled AI-asserted (HL7 ``AIAST``) and tagged with the model version. The
patient is a logical reference by pseudonym and the evidence cites de-identified rows by identifier: the
web app rewrites both to the EHR's own ids when it serves them. No Django here.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clinical_ai.fhir.dates import FhirDateError, fhir_datetime_text
from clinical_ai.fhir.outcome import Issue
from clinical_ai.fhir.validation_resource import validate_resource
from clinical_ai.inference.engine.manifest import ModelManifest
from clinical_ai.inference.engine.types import Finding, ModelResult

PSEUDONYM_SYSTEM = "urn:clinical-ai:patient-pseudonym"
MODEL_SYSTEM = "urn:clinical-ai:model"
MANIFEST_SHA256_SYSTEM = "urn:clinical-ai:model-manifest-sha256"
RUN_SYSTEM = "urn:clinical-ai:inference-run"
INPUT_SHA256_SYSTEM = "urn:clinical-ai:input-sha256"
SUGGESTION_SYSTEM = "urn:clinical-ai:suggestion"
SOURCE_SYSTEM = "urn:clinical-ai:deidentified-resource"
SCORE_EXTENSION = "urn:clinical-ai:score"

AI_ASSERTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "AIAST",
    "display": "Artificial Intelligence asserted",
}
RISK_PROBABILITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/risk-probability"
_RISK_PROBABILITY_DISPLAY = {
    "negligible": "Negligible likelihood",
    "low": "Low likelihood",
    "moderate": "Moderate likelihood",
    "high": "High likelihood",
    "certain": "Certain",
}
CONDITION_VER_STATUS_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-clinical"
ACTION_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/action-type"

CONTAINED_DEVICE_ID = "device"
PROPOSED_CONDITION_ID = "proposed-condition"
DEVICE_TYPE_TEXT = "Clinical decision-support model"

# Fixed forever: changing it changes every id and breaks idempotent redelivery.
_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:clinical-ai:fhir-output")


class FhirOutputError(ValueError):
    """The run's output cannot be expressed as FHIR (mismatched patient, missing suggestion id, bad proposal)."""


@dataclass(frozen=True)
class RunContext:
    run_id: str  # InferenceRun external id (uuid string)
    model: ModelManifest
    patient_pseudonym: str
    occurred: datetime  # aware: when the run finished
    input_sha256: str


@dataclass(frozen=True)
class FindingResources:
    """What one Suggestion stores: [RiskAssessment] or [DetectedIssue], then a RequestGroup if proposed."""

    resources: list[dict[str, Any]]


@dataclass(frozen=True)
class RunOutput:
    guidance_response: dict[str, Any]
    device: dict[str, Any]
    per_finding: dict[str, FindingResources]  # by Finding.key

    def all_resources(self) -> list[dict[str, Any]]:
        """Every top-level resource: the Device, the GuidanceResponse, then each finding's, in order."""
        found = [self.device, self.guidance_response]
        for item in self.per_finding.values():
            found.extend(item.resources)
        return found


# --- small builders -------------------------------------------------------------------------------


def resource_id(run_id: str, finding_key: str, resource_type: str) -> str:
    """The deterministic id of one resource of a run (``finding_key`` is "" for the run's own)."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{run_id}|{finding_key}|{resource_type}"))


def device_id(model: ModelManifest) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, f"device|{model.id}|{model.version}"))


def _model_key(model: ModelManifest) -> str:
    return f"{model.id}@{model.version}"


def _model_label(model: ModelManifest) -> str:
    return f"{model.name} {model.version}"


def _meta(model: ModelManifest) -> dict[str, Any]:
    return {
        "security": [dict(AI_ASSERTED)],
        "tag": [{"system": MODEL_SYSTEM, "code": _model_key(model), "display": _model_label(model)}],
    }


def patient_reference(pseudonym: str) -> dict[str, Any]:
    return {"type": "Patient", "identifier": {"system": PSEUDONYM_SYSTEM, "value": pseudonym}}


def _device_reference(model: ModelManifest) -> dict[str, Any]:
    return {
        "reference": f"Device/{device_id(model)}",
        "type": "Device",
        "identifier": {"system": MODEL_SYSTEM, "value": _model_key(model)},
        "display": _model_label(model),
    }


def _datetime(value: datetime) -> str:
    try:
        return fhir_datetime_text(value)
    except FhirDateError as error:
        raise FhirOutputError(f"the run's time cannot be written: {error}") from None


def _plain_json(value: Any, what: str) -> Any:
    """A deep copy made only of dicts, lists and JSON scalars; anything else is refused."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise FhirOutputError(f"{what} is not plain JSON") from exc


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return value


# --- the model ------------------------------------------------------------------------------------


def device_for_model(model: ModelManifest) -> dict[str, Any]:
    """The FHIR Device for one model version; the same id for the same model id and version."""
    identifiers = [{"system": MODEL_SYSTEM, "value": _model_key(model)}]
    if model.sha256:
        identifiers.append({"system": MANIFEST_SHA256_SYSTEM, "value": model.sha256})
    device: dict[str, Any] = {
        "resourceType": "Device",
        "id": device_id(model),
        "meta": _meta(model),
        "identifier": identifiers,
        "deviceName": [{"name": model.name, "type": "model-name"}],
        "type": {"text": DEVICE_TYPE_TEXT},
        "version": [{"value": model.version}],
        "property": [{"type": {"text": "Model kind"}, "valueCode": [{"text": model.kind}]}],
    }
    intended_use = model.card.get("intended_use")
    if isinstance(intended_use, str) and intended_use.strip():
        device["note"] = [{"text": f"Intended use: {intended_use.strip()}"}]
    return device


def _contained_device(model: ModelManifest) -> dict[str, Any]:
    device = device_for_model(model)
    device["id"] = CONTAINED_DEVICE_ID
    return device


# --- evidence -------------------------------------------------------------------------------------


def _source_reference(item: Mapping[str, Any]) -> dict[str, Any] | None:
    ref = item.get("ref")
    if not isinstance(ref, str) or not ref:
        return None
    reference: dict[str, Any] = {"identifier": {"system": SOURCE_SYSTEM, "value": ref}}
    resource_type = item.get("resourceType", item.get("resource_type"))
    if isinstance(resource_type, str) and resource_type:
        reference["type"] = resource_type
    return reference


def source_references(evidence: Mapping[str, Any]) -> list[dict[str, Any]]:
    """References to the de-identified rows a finding cites (``parameters`` then ``excerpts``), each once."""
    references: list[dict[str, Any]] = []
    seen: set[str] = set()
    for section in ("parameters", "excerpts"):
        items = evidence.get(section)
        if not isinstance(items, Sequence) or isinstance(items, str):
            continue
        for item in items:
            reference = _source_reference(item) if isinstance(item, Mapping) else None
            if reference is not None and reference["identifier"]["value"] not in seen:
                seen.add(reference["identifier"]["value"])
                references.append(reference)
    return references


# --- per finding ----------------------------------------------------------------------------------


def _finding_base(
    run: RunContext, finding: Finding, resource_type: str, suggestion_id: str
) -> dict[str, Any]:
    return {
        "resourceType": resource_type,
        "id": resource_id(run.run_id, finding.key, resource_type),
        "meta": _meta(run.model),
        "identifier": [{"system": SUGGESTION_SYSTEM, "value": suggestion_id}],
    }


def _qualitative_risk(risk: Mapping[str, Any], *, lower_bound: bool) -> dict[str, Any] | None:
    code = risk.get("qualitative_risk")
    band = risk.get("band")
    concept: dict[str, Any] = {}
    if isinstance(code, str) and code in _RISK_PROBABILITY_DISPLAY:
        concept["coding"] = [
            {"system": RISK_PROBABILITY_SYSTEM, "code": code, "display": _RISK_PROBABILITY_DISPLAY[code]}
        ]
    if isinstance(band, str) and band:
        concept["text"] = f"at least {band}" if lower_bound else band
    return concept or None


def _prediction(finding: Finding, risk: Mapping[str, Any], score: int | float | None) -> dict[str, Any]:
    prediction: dict[str, Any] = {"rationale": finding.summary}
    outcome = risk.get("outcome")
    if isinstance(outcome, str) and outcome:
        prediction["outcome"] = {"text": outcome}
    qualitative = _qualitative_risk(risk, lower_bound=finding.completeness == "lower_bound")
    if qualitative is not None:
        prediction["qualitativeRisk"] = qualitative
    probability = _number(risk.get("probability"))
    if probability is not None and 0 <= probability <= 1:
        prediction["probabilityDecimal"] = probability
    if score is not None:
        # An aggregate score (NEWS2) is not a probability: it travels in an extension.
        prediction["extension"] = [{"url": SCORE_EXTENSION, "valueDecimal": score}]
    return prediction


def _score_note(finding: Finding, risk: Mapping[str, Any], score: int | float | None) -> list[dict[str, Any]]:
    notes: list[dict[str, Any]] = []
    if score is not None:
        band = risk.get("band")
        suffix = f" ({band})" if isinstance(band, str) and band else ""
        if finding.completeness == "lower_bound":
            notes.append(
                {"text": f"Partial score {score:g}, a lower bound: the risk band is at least {band}"}
            )
        else:
            notes.append({"text": f"Score {score}{suffix}"})
    if finding.missing_inputs:
        notes.append({"text": f"Missing or out of date, not scored: {', '.join(finding.missing_inputs)}"})
    return notes


def risk_assessment(run: RunContext, finding: Finding, suggestion_id: str) -> dict[str, Any]:
    """A risk finding as a RiskAssessment. One that cannot be scored has no prediction (no band, no score,
    no qualitative risk) and the status ``registered`` (R4: "no result yet available"); its notes say why
    and what is missing."""
    risk = finding.risk or {}
    not_scored = finding.completeness == "not_scored"
    score = None if not_scored else _number(risk.get("score", finding.score))
    resource = _finding_base(run, finding, "RiskAssessment", suggestion_id)
    resource.update(
        {
            "status": "registered" if not_scored else "preliminary",
            "method": {
                "coding": [{"system": MODEL_SYSTEM, "code": _model_key(run.model)}],
                "text": _model_label(run.model),
            },
            "code": {"text": run.model.name},
            "subject": patient_reference(run.patient_pseudonym),
            "occurrenceDateTime": _datetime(run.occurred),
            "performer": _device_reference(run.model),
            "note": [{"text": finding.summary}, *_score_note(finding, risk, score)],
        }
    )
    if not not_scored:
        resource["prediction"] = [_prediction(finding, risk, score)]
    basis = source_references(finding.evidence)
    if basis:
        resource["basis"] = basis
    mitigation = finding.evidence.get("clinical_response")
    if isinstance(mitigation, str) and mitigation:
        resource["mitigation"] = mitigation
    return resource


def detected_issue(run: RunContext, finding: Finding, suggestion_id: str) -> dict[str, Any]:
    resource = _finding_base(run, finding, "DetectedIssue", suggestion_id)
    resource.update(
        {
            "status": "preliminary",
            "code": {"text": "Problem list gap"},
            "severity": "low",
            "patient": patient_reference(run.patient_pseudonym),
            "identifiedDateTime": _datetime(run.occurred),
            "author": _device_reference(run.model),
            "detail": finding.summary,
        }
    )
    sources = source_references(finding.evidence)
    if sources:
        resource["evidence"] = [{"detail": sources}]
    return resource


def proposed_condition(finding: Finding, *, patient_pseudonym: str | None = None) -> dict[str, Any] | None:
    """The finding's proposal as a provisional, active Condition to contain in a RequestGroup; None when
    the finding proposes nothing. The model cannot confirm a diagnosis: verificationStatus is always
    provisional. The subject is set when ``patient_pseudonym`` is given (FHIR R4 requires it)."""
    if finding.proposal is None:
        return None
    condition = _plain_json(finding.proposal, f"the proposal of finding {finding.key!r}")
    if not isinstance(condition, dict) or condition.get("resourceType", "Condition") != "Condition":
        raise FhirOutputError(f"the proposal of finding {finding.key!r} is not a Condition")
    for element in ("meta", "subject", "encounter"):  # ours to set, never the model's
        condition.pop(element, None)
    condition.update(
        {
            "resourceType": "Condition",
            "id": PROPOSED_CONDITION_ID,
            "verificationStatus": {
                "coding": [{"system": CONDITION_VER_STATUS_SYSTEM, "code": "provisional"}]
            },
        }
    )
    condition.setdefault(
        "clinicalStatus", {"coding": [{"system": CONDITION_CLINICAL_SYSTEM, "code": "active"}]}
    )
    if patient_pseudonym is not None:
        condition["subject"] = patient_reference(patient_pseudonym)
    return condition


def _condition_display(condition: Mapping[str, Any]) -> str:
    code = condition.get("code")
    if isinstance(code, Mapping):
        if isinstance(code.get("text"), str) and code["text"]:
            return str(code["text"])
        for coding in code.get("coding") or ():
            if isinstance(coding, Mapping) and isinstance(coding.get("display"), str) and coding["display"]:
                return str(coding["display"])
    return "the proposed condition"


def request_group(
    run: RunContext, finding: Finding, suggestion_id: str, condition: dict[str, Any]
) -> dict[str, Any]:
    condition = {**condition, "meta": _meta(run.model)}
    resource = _finding_base(run, finding, "RequestGroup", suggestion_id)
    resource.update(
        {
            "contained": [condition],
            "status": "draft",
            "intent": "proposal",
            "subject": patient_reference(run.patient_pseudonym),
            "authoredOn": _datetime(run.occurred),
            "author": _device_reference(run.model),
            "action": [
                {
                    "title": f"Add {_condition_display(condition)} to the problem list",
                    "description": finding.summary,
                    "type": {"coding": [{"system": ACTION_TYPE_SYSTEM, "code": "create"}]},
                    "resource": {"reference": f"#{PROPOSED_CONDITION_ID}"},
                }
            ],
        }
    )
    return resource


def finding_resources(run: RunContext, finding: Finding, suggestion_id: str) -> FindingResources:
    if finding.kind == "risk":
        resources = [risk_assessment(run, finding, suggestion_id)]
    else:
        resources = [detected_issue(run, finding, suggestion_id)]
    condition = proposed_condition(finding, patient_pseudonym=run.patient_pseudonym)
    if condition is not None:
        resources.append(request_group(run, finding, suggestion_id, condition))
    return FindingResources(resources=resources)


# --- the run --------------------------------------------------------------------------------------


def _guidance_status(result: ModelResult) -> str:
    """No findings but messages means the model lacked inputs; no findings and no messages is a clean run.
    A finding that cannot be scored also needs more data ("data-required"); a lower bound is a result that
    more data may raise ("data-requested")."""
    completeness = {finding.completeness for finding in result.findings}
    if (not result.findings and result.messages) or "not_scored" in completeness:
        return "data-required"
    return "data-requested" if "lower_bound" in completeness else "success"


def guidance_response(
    run: RunContext, result: ModelResult, per_finding: Mapping[str, FindingResources]
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "GuidanceResponse",
        "id": resource_id(run.run_id, "", "GuidanceResponse"),
        "meta": _meta(run.model),
        "contained": [_contained_device(run.model)],
        "requestIdentifier": {"system": RUN_SYSTEM, "value": run.run_id},
        "identifier": [
            {"system": RUN_SYSTEM, "value": run.run_id},
            {"system": INPUT_SHA256_SYSTEM, "value": run.input_sha256},
        ],
        "moduleUri": f"urn:clinical-ai:model:{run.model.id}:{run.model.version}",
        "status": _guidance_status(result),
        "subject": patient_reference(run.patient_pseudonym),
        "occurrenceDateTime": _datetime(run.occurred),
        "performer": {"reference": f"#{CONTAINED_DEVICE_ID}", "display": _model_label(run.model)},
    }
    notes = [{"text": message} for message in result.messages if message]
    if notes:
        resource["note"] = notes
    request_groups = [
        r["id"]
        for item in per_finding.values()
        for r in item.resources
        if r["resourceType"] == "RequestGroup"
    ]
    if request_groups:
        # R4 allows one result; the first finding's proposal, the others are on their Suggestions.
        resource["result"] = {"reference": f"RequestGroup/{request_groups[0]}", "type": "RequestGroup"}
    return resource


def _check_run(run: RunContext, result: ModelResult, suggestion_ids: Mapping[str, str]) -> None:
    if result.patient_pseudonym != run.patient_pseudonym:
        raise FhirOutputError("the model result is for another patient than the run")
    if not run.run_id or not run.input_sha256:
        raise FhirOutputError("the run needs an id and an input sha256")
    keys = [finding.key for finding in result.findings]
    if len(set(keys)) != len(keys):
        raise FhirOutputError("finding keys must be unique within a run")
    missing = [key for key in keys if not suggestion_ids.get(key)]
    if missing:
        raise FhirOutputError(f"no suggestion id for findings {', '.join(map(repr, missing))}")


def run_resources(run: RunContext, result: ModelResult, suggestion_ids: Mapping[str, str]) -> RunOutput:
    """Every FHIR resource of one run on one patient; identical for identical inputs."""
    _check_run(run, result, suggestion_ids)
    per_finding = {
        finding.key: finding_resources(run, finding, suggestion_ids[finding.key])
        for finding in result.findings
    }
    return RunOutput(
        guidance_response=guidance_response(run, result, per_finding),
        device=device_for_model(run.model),
        per_finding=per_finding,
    )


def run_output_issues(output: RunOutput) -> list[Issue]:
    """FHIR R4 validation issues of every resource of a run (empty when all are valid). A model's proposal
    is its own JSON: the service checks this before storing and records the run as failed otherwise."""
    return [issue for resource in output.all_resources() for issue in validate_resource(resource)]
