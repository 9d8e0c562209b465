"""Results from too few observations (issue 15, point 1): "cannot be scored" is an outcome of the model
contract, NEWS2 follows the RCP chart's triggers on a partial sum ("at least", never a band from nothing),
a tabular model does not impute a required input, and the FHIR RiskAssessment says so. Pure: no database."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch

from clinical_ai.fhir.validation_resource import validate_resource
from clinical_ai.inference.builtin.news2 import build
from clinical_ai.inference.builtin.news2.result import NOT_SCORED_RESPONSE
from clinical_ai.inference.builtin.tabular import TabularModel
from clinical_ai.inference.engine.fhir_output import (
    RunContext,
    risk_assessment,
    run_output_issues,
    run_resources,
)
from clinical_ai.inference.engine.manifest import ManifestError, ModelSpec, artifacts_verify, manifest_parse
from clinical_ai.inference.engine.types import Finding, PatientContext, SourceResource
from clinical_ai.inference.services import result_summary
from tests.unit.inference.hospital_model import write_hospital_model
from tests.unit.inference.test_news2 import (
    NOW,
    consciousness,
    manifest,
    pulse,
    respiratory_rate,
    run,
    spo2,
    systolic,
    temperature,
    vitals,
)

ROUTINE_WORDS = ("routine", "low risk", "every 12 hours")


def news2(resources: list[dict[str, Any]]) -> Finding:
    result = run(resources)
    assert len(result.findings) == 1
    return result.findings[0]


def words_of(finding: Finding) -> str:
    return json.dumps([finding.summary, dict(finding.evidence), dict(finding.risk or {})]).lower()


# --- NEWS2 ----------------------------------------------------------------------------------------


def test_one_blood_pressure_reading_cannot_be_scored() -> None:
    found = news2([systolic(120)])
    assert found.completeness == "not_scored"
    assert found.summary == "NEWS2 cannot be scored: not enough observations (6 of 7 parameters missing)"
    assert len(found.summary) < 140
    assert found.score is None
    assert found.risk == {"outcome": "Clinical deterioration (NEWS2 escalation)"}
    assert "band" not in found.evidence and "aggregate" not in found.evidence
    assert found.evidence["completeness"] == "not_scored"
    assert found.evidence["clinical_response"] == NOT_SCORED_RESPONSE
    assert "take and record a full set of observations" in NOT_SCORED_RESPONSE.lower()
    assert not any(word in words_of(found).replace("not a low score", "") for word in ROUTINE_WORDS)
    assert found.missing_inputs == (
        "Respiration rate",
        "SpO2 (scale 1)",
        "Air or oxygen",
        "Pulse",
        "Consciousness (ACVPU)",
        "Temperature",
    )
    # Neither a warning that drowns the real ones nor a reassurance: info, with its own label.
    assert found.urgency == "info"


def test_a_low_partial_sum_without_a_red_score_cannot_be_scored() -> None:
    # Six parameters scoring 4 and the temperature missing: the full score could be 4 or 7.
    found = news2(
        vitals(temperature=None, pulse=pulse(111), spo2=spo2(95), respiratory_rate=respiratory_rate(9))
    )
    assert found.completeness == "not_scored"
    assert found.evidence["partial_sum"] == 4
    assert found.missing_inputs == ("Temperature",)


def test_an_out_of_date_parameter_counts_as_missing() -> None:
    found = news2(vitals(temperature=temperature(37.0, when=NOW - timedelta(hours=30))))
    assert found.completeness == "not_scored"
    assert found.missing_inputs == ("Temperature (over 24 h old)",)
    assert "1 of 7 parameters out of date" in found.summary


def test_a_red_parameter_with_others_missing_is_at_least_medium() -> None:
    found = news2([respiratory_rate(25), systolic(120)])  # respiration 25: 3 points, a red score
    assert found.completeness == "lower_bound"
    assert found.evidence["band"] == "medium" and found.risk is not None
    assert found.risk["band"] == "medium" and found.risk["qualitative_risk"] == "moderate"
    assert found.urgency == "warning"
    assert found.summary == (
        "NEWS2 at least 3, red score in respiration rate, incomplete (5 of 7 parameters missing)"
        " — at least medium risk"
    )
    assert "urgent" in found.evidence["clinical_response"].lower()
    assert "routine" not in words_of(found)


def test_a_partial_sum_of_five_is_at_least_medium() -> None:
    found = news2([pulse(111), spo2(94), temperature(39.1), systolic(120)])  # 2 + 1 + 2 + 0, no red
    assert found.evidence["red_score_parameters"] == []
    assert found.completeness == "lower_bound"
    assert (found.evidence["aggregate"], found.evidence["band"], found.urgency) == (5, "medium", "warning")
    assert found.summary.endswith("— at least medium risk")
    assert found.summary.startswith("NEWS2 at least 5")


def test_a_partial_sum_of_seven_is_high() -> None:
    found = news2([pulse(131), spo2(91), temperature(39.1)])  # 3 + 3 + 2
    assert found.completeness == "lower_bound"
    assert (found.evidence["aggregate"], found.evidence["band"], found.urgency) == (8, "high", "critical")
    assert found.summary.endswith("— high risk")  # nothing is above high: not "at least high"
    assert "emergency" in found.evidence["clinical_response"].lower()


@pytest.mark.parametrize(
    ("replace", "summary", "band", "urgency"),
    [
        ({}, "NEWS2 0 — low risk", "low", "info"),
        (
            {"respiratory_rate": respiratory_rate(25)},
            "NEWS2 3, red score in respiration rate — low-medium risk",
            "low-medium",
            "warning",
        ),
        (
            {"pulse": pulse(131), "consciousness": consciousness("voice")},
            "NEWS2 6 — medium risk",
            "medium",
            "warning",
        ),
    ],
)
def test_a_complete_set_is_scored_as_before(
    replace: dict[str, Any], summary: str, band: str, urgency: str
) -> None:
    found = news2(vitals(**replace))
    assert found.completeness == "complete" and found.missing_inputs == ()
    assert (found.summary, found.evidence["band"], found.urgency) == (summary, band, urgency)
    assert "note" not in found.evidence


def test_drift_features_keep_only_whole_scores() -> None:
    assert run([systolic(120)]).features["news2_aggregate"] is None
    assert run(vitals()).features["news2_aggregate"] == 0


# --- the contract ---------------------------------------------------------------------------------


def test_the_contract_refuses_a_band_on_a_result_that_cannot_be_scored() -> None:
    with pytest.raises(ValueError, match="no score or band"):
        Finding(
            "k",
            "risk",
            "info",
            "s",
            {},
            risk={"band": "low"},
            completeness="not_scored",
            missing_inputs=("x",),
        )
    with pytest.raises(ValueError, match="no score or band"):
        Finding("k", "risk", "info", "s", {}, score=0.0, completeness="not_scored", missing_inputs=("x",))
    with pytest.raises(ValueError, match="what is missing"):
        Finding("k", "risk", "info", "s", {}, completeness="not_scored")
    with pytest.raises(ValueError, match="names the band"):
        Finding("k", "risk", "warning", "s", {}, completeness="lower_bound", missing_inputs=("x",))


# --- FHIR -----------------------------------------------------------------------------------------


def _run_context() -> RunContext:
    return RunContext(
        run_id="7c3c8a6e-0f7e-4a53-9d55-4a1b7e0b2c11",
        model=manifest(),
        patient_pseudonym="pt-1",
        occurred=NOW,
        input_sha256="0" * 64,
    )


def test_the_risk_assessment_of_a_result_that_cannot_be_scored_has_no_prediction() -> None:
    resource = risk_assessment(_run_context(), news2([systolic(120)]), "sugg-1")
    assert validate_resource(resource) == []
    assert resource["status"] == "registered"
    assert "prediction" not in resource
    notes = [note["text"] for note in resource["note"]]
    assert notes[0].startswith("NEWS2 cannot be scored: not enough observations")
    assert any(text.startswith("Missing or out of date, not scored: Respiration rate") for text in notes)
    assert "low" not in json.dumps(resource).lower().replace("not a low score", "").replace("flow", "")
    assert resource["mitigation"] == NOT_SCORED_RESPONSE


def test_the_guidance_response_asks_for_more_data() -> None:
    for resources, status in (
        ([systolic(120)], "data-required"),
        ([respiratory_rate(25), systolic(120)], "data-requested"),
        (vitals(), "success"),
    ):
        result = run(resources)
        output = run_resources(_run_context(), result, {"news2": "sugg-1"})
        assert run_output_issues(output) == []
        assert output.guidance_response["status"] == status


def test_the_risk_assessment_of_a_lower_bound_says_at_least() -> None:
    resource = risk_assessment(_run_context(), news2([respiratory_rate(25), systolic(120)]), "sugg-1")
    assert validate_resource(resource) == []
    assert resource["status"] == "preliminary"
    assert resource["prediction"][0]["qualitativeRisk"]["text"] == "at least medium"
    assert "Partial score 3, a lower bound: the risk band is at least medium" in [
        note["text"] for note in resource["note"]
    ]


# --- a tabular model ------------------------------------------------------------------------------


def _tabular(tmp_path: Path) -> TabularModel:
    path = write_hospital_model(tmp_path / "m")
    data = json.loads(path.read_text())
    data["inputs"][1]["required"] = True  # respiratory rate may not be imputed; heart rate may
    loaded = manifest_parse(data, source=path)
    artifacts = artifacts_verify(loaded)
    module = torch.jit.load(str(artifacts["model"]))
    return TabularModel(ModelSpec(manifest=loaded, artifacts=artifacts, module=module))


def _vital(ref: str, code: str, value: float) -> SourceResource:
    return SourceResource(
        ref,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "effectiveDateTime": NOW.isoformat(),
            "valueQuantity": {"value": value, "unit": "/min"},
        },
    )


def test_a_tabular_model_does_not_impute_a_required_input(tmp_path: Path) -> None:
    model = _tabular(tmp_path)
    no_rate, no_pulse = model.predict(
        [
            PatientContext("p1", (_vital("a", "8867-4", 130),)),
            PatientContext("p2", (_vital("b", "9279-1", 30),)),
        ]
    )
    found = no_rate.findings[0]
    assert found.completeness == "not_scored"
    assert found.score is None and found.risk == {"outcome": "unplanned ICU transfer within 24 hours"}
    assert found.summary == (
        "Ward deterioration (St Elsewhere) cannot be scored: not enough observations (missing respiratory rate)"
    )
    assert found.missing_inputs == ("respiratory rate",)
    assert "imputed" not in json.dumps(found.evidence)
    # An optional input is still imputed (and said so): the result is scored.
    scored = no_pulse.findings[0]
    assert scored.completeness == "complete" and scored.score is not None
    assert scored.missing_inputs == ("heart rate",) and "1 input not recorded" in scored.summary


def test_the_urgency_of_a_result_that_cannot_be_scored_comes_from_the_manifest() -> None:
    loaded = manifest()
    assert loaded.outputs["urgency_when_not_scored"] == "info"
    for value, refused in (("warning", False), ("panic", True)):
        outputs = {**loaded.outputs, "urgency_when_not_scored": value}
        spec = ModelSpec(
            manifest=dataclasses.replace(loaded, outputs=outputs), artifacts=artifacts_verify(loaded)
        )
        if refused:
            with pytest.raises(ManifestError, match="urgency_when_not_scored"):
                build(spec)
        else:
            assert (
                build(spec)
                .predict([PatientContext("p", (SourceResource("r", systolic(120)),))])[0]
                .findings[0]
                .urgency
                == "warning"
            )


def test_shadow_agreement_tells_cannot_be_scored_and_at_least_from_a_full_score() -> None:
    bands = [
        result_summary(run(resources))["findings"][0]["band"]
        for resources in ([systolic(120)], [respiratory_rate(25), systolic(120)], vitals())
    ]
    assert bands == ["not scored", "at least medium", "low"]
