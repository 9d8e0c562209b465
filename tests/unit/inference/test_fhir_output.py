from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.detectedissue import DetectedIssue
from fhir.resources.R4B.device import Device
from fhir.resources.R4B.guidanceresponse import GuidanceResponse
from fhir.resources.R4B.requestgroup import RequestGroup
from fhir.resources.R4B.riskassessment import RiskAssessment

from clinical_ai.fhir.validation import validate_resource
from clinical_ai.inference.engine.fhir_output import (
    AI_ASSERTED,
    PSEUDONYM_SYSTEM,
    SCORE_EXTENSION,
    SOURCE_SYSTEM,
    FhirOutputError,
    RunContext,
    RunOutput,
    device_for_model,
    proposed_condition,
    resource_id,
    run_output_issues,
    run_resources,
    source_references,
)
from clinical_ai.inference.engine.manifest import ModelManifest, manifest_parse
from clinical_ai.inference.engine.types import Finding, ModelResult

MODELS: dict[str, Any] = {
    "Device": Device,
    "GuidanceResponse": GuidanceResponse,
    "RiskAssessment": RiskAssessment,
    "DetectedIssue": DetectedIssue,
    "RequestGroup": RequestGroup,
}
PSEUDONYM = "pt-7f3a9c"
RUN_ID = "3f1c2b8e-5d4a-4e6f-9a0b-1c2d3e4f5a6b"
OCCURRED = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)


def manifest(*, version: str = "1.2.0", sha256: str = "0" * 64) -> ModelManifest:
    return manifest_parse(
        {
            "id": "news2",
            "version": version,
            "name": "NEWS2 early warning",
            "kind": "rules",
            "entrypoint": "clinical_ai.inference.builtin.news2:build",
            "artifacts": [],
            "inputs": [],
            "card": {
                "clinical_summary": "Flags deterioration in adult inpatients. Not for children.",
                "intended_use": "Flags deterioration in adult inpatients for review by a clinician.",
                "intended_users": "Ward nurses and doctors",
                "development": "Royal College of Physicians NEWS2 chart",
                "validation": "Published validation studies",
                "limitations": "Not for children or pregnancy",
            },
        },
        source=Path("x.json"),
        sha256=sha256,
    )


def news2_finding() -> Finding:
    return Finding(
        key="news2",
        kind="risk",
        urgency="warning",
        summary="NEWS2 6: medium clinical risk",
        evidence={
            "parameters": [
                {
                    "name": "respiratory_rate",
                    "value": 24,
                    "unit": "/min",
                    "ref": "obs-rr",
                    "resourceType": "Observation",
                },
                {"name": "spo2", "value": 93, "unit": "%", "ref": "obs-spo2", "resource_type": "Observation"},
                {"name": "temperature", "value": None, "ref": None},
                {"name": "pulse", "value": 112, "ref": "obs-rr"},  # the same row cited twice: one basis entry
            ],
            "missing": ["consciousness"],
            "clinical_response": "Urgent ward-based response",
        },
        score=6,
        risk={
            "band": "medium",
            "score": 6,
            "qualitative_risk": "moderate",
            "outcome": "Clinical deterioration",
        },
    )


def problem_finding() -> Finding:
    return Finding(
        key="condition:44054006",
        kind="problem",
        urgency="info",
        summary="Notes suggest type 2 diabetes, absent from the problem list",
        evidence={
            "excerpts": [
                {
                    "ref": "doc-1",
                    "resourceType": "DocumentReference",
                    "text": "known T2DM",
                    "start": 0,
                    "end": 10,
                },
                {"ref": "doc-2", "text": "on metformin", "start": 5, "end": 17},
            ]
        },
        proposal={
            "resourceType": "Condition",
            "code": {
                "coding": [
                    {"system": "http://snomed.info/sct", "code": "44054006", "display": "Type 2 diabetes"}
                ]
            },
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                            "code": "problem-list-item",
                        }
                    ]
                }
            ],
            "subject": {"reference": "Patient/someone-else"},
        },
    )


def run_context(**changes: Any) -> RunContext:
    run = RunContext(
        run_id=RUN_ID, model=manifest(), patient_pseudonym=PSEUDONYM, occurred=OCCURRED, input_sha256="a" * 64
    )
    return dataclasses.replace(run, **changes)


def full_output(run: RunContext | None = None) -> RunOutput:
    result = ModelResult(patient_pseudonym=PSEUDONYM, findings=(news2_finding(), problem_finding()))
    ids = {
        "news2": "11111111-1111-4111-8111-111111111111",
        "condition:44054006": "22222222-2222-4222-8222-222222222222",
    }
    return run_resources(run or run_context(), result, ids)


def empty_output(messages: tuple[str, ...] = ("no vital signs recorded",)) -> RunOutput:
    return run_resources(
        run_context(), ModelResult(patient_pseudonym=PSEUDONYM, findings=(), messages=messages), {}
    )


def by_type(output: RunOutput, resource_type: str) -> list[dict[str, Any]]:
    return [r for r in output.all_resources() if r["resourceType"] == resource_type]


def one(output: RunOutput, resource_type: str) -> dict[str, Any]:
    [resource] = by_type(output, resource_type)
    return resource


def strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return []


def pseudonyms_in(value: Any) -> list[str]:
    if isinstance(value, dict):
        found = [str(value["value"])] if value.get("system") == PSEUDONYM_SYSTEM else []
        return found + [p for v in value.values() for p in pseudonyms_in(v)]
    if isinstance(value, list):
        return [p for v in value for p in pseudonyms_in(v)]
    return []


# --- shape and validity ---------------------------------------------------------------------------


def test_the_resources_of_a_run() -> None:
    output = full_output()
    assert [r["resourceType"] for r in output.per_finding["news2"].resources] == ["RiskAssessment"]
    assert [r["resourceType"] for r in output.per_finding["condition:44054006"].resources] == [
        "DetectedIssue",
        "RequestGroup",
    ]
    assert output.device["resourceType"] == "Device"
    assert output.guidance_response["resourceType"] == "GuidanceResponse"


@pytest.mark.parametrize("build", [full_output, empty_output], ids=["findings", "empty"])
def test_every_resource_validates_with_fhir_resources_r4b(build: Any) -> None:
    output = build()
    for resource in output.all_resources():
        MODELS[resource["resourceType"]].model_validate(resource)
        assert validate_resource(resource) == [], resource["resourceType"]
    assert run_output_issues(output) == []


@pytest.mark.parametrize("build", [full_output, empty_output], ids=["findings", "empty"])
def test_every_resource_is_labelled_ai_asserted_and_tagged_with_the_model(build: Any) -> None:
    output = build()
    resources = output.all_resources()
    contained = [c for r in resources for c in r.get("contained", [])]
    for resource in resources + contained:
        assert AI_ASSERTED in resource["meta"]["security"]
        assert {
            "system": "urn:clinical-ai:model",
            "code": "news2@1.2.0",
            "display": "NEWS2 early warning 1.2.0",
        } in (resource["meta"]["tag"])


def test_json_round_trip() -> None:
    output = full_output()
    for resource in output.all_resources():
        assert json.loads(json.dumps(resource, allow_nan=False)) == resource


def test_only_the_given_pseudonym_appears() -> None:
    output = full_output()
    found = pseudonyms_in(output.all_resources())
    assert found and set(found) == {PSEUDONYM}
    assert "Patient/someone-else" not in strings_in(output.all_resources())


def test_a_result_for_another_patient_is_refused() -> None:
    result = ModelResult(patient_pseudonym="pt-other", findings=(news2_finding(),))
    with pytest.raises(FhirOutputError, match="another patient"):
        run_resources(run_context(), result, {"news2": "x"})


def test_a_finding_without_a_suggestion_id_is_refused() -> None:
    result = ModelResult(patient_pseudonym=PSEUDONYM, findings=(news2_finding(),))
    with pytest.raises(FhirOutputError, match="news2"):
        run_resources(run_context(), result, {})


def test_duplicate_finding_keys_are_refused() -> None:
    result = ModelResult(patient_pseudonym=PSEUDONYM, findings=(news2_finding(), news2_finding()))
    with pytest.raises(FhirOutputError, match="unique"):
        run_resources(run_context(), result, {"news2": "x"})


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(FhirOutputError, match="timezone"):
        full_output(run_context(occurred=datetime(2024, 5, 1, 12, 0)))


def test_times_keep_their_offset() -> None:
    occurred = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    output = full_output(run_context(occurred=occurred))
    assert output.guidance_response["occurrenceDateTime"] == "2024-05-01T14:00:00+02:00"
    assert one(output, "RiskAssessment")["occurrenceDateTime"] == "2024-05-01T14:00:00+02:00"


# --- deterministic ids ----------------------------------------------------------------------------


def test_the_same_inputs_build_identical_resources() -> None:
    assert full_output() == full_output()


def test_ids_are_unique_within_a_run() -> None:
    ids = [r["id"] for r in full_output().all_resources()]
    assert len(set(ids)) == len(ids)


def test_another_run_gets_other_ids_but_the_same_device() -> None:
    first = full_output()
    second = full_output(run_context(run_id="9e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a"))
    first_ids = {r["id"] for r in first.all_resources() if r["resourceType"] != "Device"}
    second_ids = {r["id"] for r in second.all_resources() if r["resourceType"] != "Device"}
    assert not first_ids & second_ids
    assert first.device == second.device


def test_ids_come_from_run_finding_and_type() -> None:
    output = full_output()
    assert one(output, "RiskAssessment")["id"] == resource_id(RUN_ID, "news2", "RiskAssessment")
    assert output.guidance_response["id"] == resource_id(RUN_ID, "", "GuidanceResponse")


# --- the Device -----------------------------------------------------------------------------------


def test_device_for_model() -> None:
    device = device_for_model(manifest())
    assert device["deviceName"] == [{"name": "NEWS2 early warning", "type": "model-name"}]
    assert device["version"] == [{"value": "1.2.0"}]
    assert device["type"] == {"text": "Clinical decision-support model"}
    assert {"system": "urn:clinical-ai:model", "value": "news2@1.2.0"} in device["identifier"]
    assert {"system": "urn:clinical-ai:model-manifest-sha256", "value": "0" * 64} in device["identifier"]
    Device.model_validate(device)


def test_device_id_depends_on_the_model_version() -> None:
    assert device_for_model(manifest())["id"] == device_for_model(manifest(sha256="1" * 64))["id"]
    assert device_for_model(manifest())["id"] != device_for_model(manifest(version="1.3.0"))["id"]


def test_a_manifest_without_a_digest_has_no_empty_identifier() -> None:
    device = device_for_model(manifest(sha256=""))
    assert [i["system"] for i in device["identifier"]] == ["urn:clinical-ai:model"]
    assert validate_resource(device) == []


# --- the GuidanceResponse -------------------------------------------------------------------------


def test_guidance_response() -> None:
    output = full_output()
    guidance = output.guidance_response
    assert guidance["status"] == "success"
    assert guidance["requestIdentifier"] == {"system": "urn:clinical-ai:inference-run", "value": RUN_ID}
    assert {"system": "urn:clinical-ai:input-sha256", "value": "a" * 64} in guidance["identifier"]
    assert guidance["moduleUri"] == "urn:clinical-ai:model:news2:1.2.0"
    assert guidance["subject"] == {
        "type": "Patient",
        "identifier": {"system": PSEUDONYM_SYSTEM, "value": PSEUDONYM},
    }
    assert guidance["occurrenceDateTime"] == "2024-05-01T12:30:15.123456+00:00"
    assert guidance["result"]["reference"] == f"RequestGroup/{one(output, 'RequestGroup')['id']}"
    assert "note" not in guidance


def test_guidance_response_stands_alone_with_a_contained_device() -> None:
    output = full_output()
    guidance = output.guidance_response
    [device] = guidance["contained"]
    assert guidance["performer"]["reference"] == f"#{device['id']}"
    assert {k: v for k, v in device.items() if k != "id"} == {
        k: v for k, v in output.device.items() if k != "id"
    }


def test_no_findings_with_messages_is_data_required() -> None:
    guidance = empty_output().guidance_response
    assert guidance["status"] == "data-required"
    assert guidance["note"] == [{"text": "no vital signs recorded"}]
    assert "result" not in guidance


def test_no_findings_and_no_messages_is_success() -> None:
    output = empty_output(messages=())
    assert output.guidance_response["status"] == "success"
    assert output.per_finding == {}


def test_messages_are_noted_even_with_findings() -> None:
    result = ModelResult(
        patient_pseudonym=PSEUDONYM, findings=(news2_finding(),), messages=("temperature stale",)
    )
    guidance = run_resources(run_context(), result, {"news2": "s"}).guidance_response
    assert guidance["status"] == "success"
    assert guidance["note"] == [{"text": "temperature stale"}]
    assert "result" not in guidance  # a risk finding proposes nothing


# --- the RiskAssessment ---------------------------------------------------------------------------


def test_risk_assessment() -> None:
    output = full_output()
    risk = one(output, "RiskAssessment")
    assert risk["status"] == "preliminary"
    assert risk["identifier"] == [
        {"system": "urn:clinical-ai:suggestion", "value": "11111111-1111-4111-8111-111111111111"}
    ]
    assert risk["performer"]["reference"] == f"Device/{output.device['id']}"
    assert risk["method"]["text"] == "NEWS2 early warning 1.2.0"
    assert risk["mitigation"] == "Urgent ward-based response"
    [prediction] = risk["prediction"]
    assert prediction["outcome"] == {"text": "Clinical deterioration"}
    assert prediction["qualitativeRisk"]["coding"] == [
        {
            "system": "http://terminology.hl7.org/CodeSystem/risk-probability",
            "code": "moderate",
            "display": "Moderate likelihood",
        }
    ]
    assert prediction["rationale"] == "NEWS2 6: medium clinical risk"
    assert "probabilityDecimal" not in prediction  # an aggregate score is not a probability
    assert prediction["extension"] == [{"url": SCORE_EXTENSION, "valueDecimal": 6}]
    assert {"text": "Score 6 (medium)"} in risk["note"]


def test_risk_basis_cites_the_source_rows_by_identifier() -> None:
    risk = one(full_output(), "RiskAssessment")
    assert risk["basis"] == [
        {"identifier": {"system": SOURCE_SYSTEM, "value": "obs-rr"}, "type": "Observation"},
        {"identifier": {"system": SOURCE_SYSTEM, "value": "obs-spo2"}, "type": "Observation"},
    ]


def test_a_probability_becomes_probability_decimal() -> None:
    finding = dataclasses.replace(
        news2_finding(),
        risk={"probability": 0.27, "qualitative_risk": "high", "outcome": "Sepsis"},
        score=None,
    )
    result = ModelResult(patient_pseudonym=PSEUDONYM, findings=(finding,))
    risk = one(run_resources(run_context(), result, {"news2": "s"}), "RiskAssessment")
    assert risk["prediction"][0]["probabilityDecimal"] == 0.27
    assert "extension" not in risk["prediction"][0]
    RiskAssessment.model_validate(risk)


def test_a_bare_risk_finding_still_validates() -> None:
    finding = Finding(key="bare", kind="risk", urgency="info", summary="Something", evidence={})
    result = ModelResult(patient_pseudonym=PSEUDONYM, findings=(finding,))
    output = run_resources(run_context(), result, {"bare": "s"})
    assert run_output_issues(output) == []
    assert "basis" not in one(output, "RiskAssessment")


# --- the DetectedIssue and the RequestGroup -------------------------------------------------------


def test_detected_issue() -> None:
    output = full_output()
    issue = one(output, "DetectedIssue")
    assert issue["status"] == "preliminary"
    assert issue["severity"] == "low"
    assert issue["code"] == {"text": "Problem list gap"}
    assert issue["author"]["reference"] == f"Device/{output.device['id']}"
    assert issue["detail"] == "Notes suggest type 2 diabetes, absent from the problem list"
    assert issue["evidence"] == [
        {
            "detail": [
                {"identifier": {"system": SOURCE_SYSTEM, "value": "doc-1"}, "type": "DocumentReference"},
                {"identifier": {"system": SOURCE_SYSTEM, "value": "doc-2"}},
            ]
        }
    ]


def test_request_group_proposes_a_provisional_condition() -> None:
    output = full_output()
    group = one(output, "RequestGroup")
    assert group["status"] == "draft"
    assert group["intent"] == "proposal"
    assert group["author"]["reference"] == f"Device/{output.device['id']}"
    [condition] = group["contained"]
    assert condition["id"] == "proposed-condition"
    assert condition["verificationStatus"]["coding"][0]["code"] == "provisional"
    assert condition["clinicalStatus"]["coding"][0]["code"] == "active"
    assert condition["subject"]["identifier"]["value"] == PSEUDONYM
    [action] = group["action"]
    assert action["title"] == "Add Type 2 diabetes to the problem list"
    assert action["resource"] == {"reference": "#proposed-condition"}
    assert action["type"]["coding"] == [
        {"system": "http://terminology.hl7.org/CodeSystem/action-type", "code": "create"}
    ]


def test_proposed_condition() -> None:
    assert proposed_condition(news2_finding()) is None
    condition = proposed_condition(problem_finding())
    assert condition is not None
    assert "subject" not in condition  # the model's own subject is dropped
    assert condition["resourceType"] == "Condition"


def test_the_model_cannot_confirm_a_diagnosis() -> None:
    proposal = {
        **(problem_finding().proposal or {}),
        "verificationStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}
            ]
        },
    }
    condition = proposed_condition(dataclasses.replace(problem_finding(), proposal=proposal))
    assert condition is not None
    assert condition["verificationStatus"]["coding"][0]["code"] == "provisional"


def test_a_proposal_of_another_type_is_refused() -> None:
    finding = dataclasses.replace(problem_finding(), proposal={"resourceType": "MedicationRequest"})
    with pytest.raises(FhirOutputError, match="not a Condition"):
        proposed_condition(finding)


def test_an_invalid_proposal_is_reported_by_run_output_issues() -> None:
    finding = dataclasses.replace(
        problem_finding(), proposal={"resourceType": "Condition", "code": "diabetes"}
    )
    result = ModelResult(patient_pseudonym=PSEUDONYM, findings=(finding,))
    output = run_resources(run_context(), result, {"condition:44054006": "s"})
    assert run_output_issues(output) != []


def test_source_references_ignore_malformed_evidence() -> None:
    evidence = {"parameters": "not a list", "excerpts": [{"ref": ""}, {"ref": 5}, "x", {"ref": "doc-9"}]}
    assert source_references(evidence) == [{"identifier": {"system": SOURCE_SYSTEM, "value": "doc-9"}}]
