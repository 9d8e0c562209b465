"""NEWS2 against the Royal College of Physicians' 2017 chart: every band boundary, the risk bands, and the
handling of units, panels, missing, stale and withdrawn observations."""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from clinical_ai.inference.builtin.news2 import build
from clinical_ai.inference.builtin.news2.chart import chart_load, chart_parse
from clinical_ai.inference.builtin.news2.model import News2Model
from clinical_ai.inference.builtin.news2.result import NO_VITALS
from clinical_ai.inference.engine.fhir_output import RunContext, run_output_issues, run_resources
from clinical_ai.inference.engine.manifest import (
    ArtifactMismatch,
    ManifestError,
    ModelManifest,
    ModelSpec,
    artifacts_verify,
    entrypoint_resolve,
    manifest_load,
)
from clinical_ai.inference.engine.types import Finding, ModelResult, PatientContext, SourceResource

ROOT = Path(__file__).resolve().parents[3]
MODEL_DIR = ROOT / "fixtures" / "models" / "news2"
SAMPLE_BUNDLE = ROOT / "fixtures" / "sample-bundle.json"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
NOW = datetime(2026, 11, 20, 8, 15, tzinfo=UTC)
PARAMETERS = [
    "respiratory_rate",
    "spo2",
    "air_or_oxygen",
    "systolic_bp",
    "pulse",
    "consciousness",
    "temperature",
]


# --- building patients ----------------------------------------------------------------------------


def iso(when: datetime) -> str:
    return when.isoformat()


def observation(
    code: str,
    value: float | None = None,
    unit: str | None = None,
    *,
    when: datetime | None = NOW,
    system: str = LOINC,
    status: str = "final",
    **extra: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": status,
        "code": {"coding": [{"system": system, "code": code}]},
        **extra,
    }
    if when is not None:
        resource["effectiveDateTime"] = iso(when)
    if value is not None:
        resource["valueQuantity"] = {"value": value, **({"unit": unit} if unit else {})}
    return resource


def answered(code: str, answer_code: str | None, display: str | None = None, **extra: Any) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": SNOMED}
    if answer_code:
        coding["code"] = answer_code
    if display:
        coding["display"] = display
    return observation(code, valueCodeableConcept={"coding": [coding]}, **extra)


def respiratory_rate(value: float, **kw: Any) -> dict[str, Any]:
    return observation("9279-1", value, "/min", **kw)


def spo2(value: float, unit: str | None = "%", **kw: Any) -> dict[str, Any]:
    return observation("59408-5", value, unit, **kw)


def oxygen_flow(litres: float, **kw: Any) -> dict[str, Any]:
    return observation("3151-8", litres, "L/min", **kw)


def room_air(**kw: Any) -> dict[str, Any]:
    return observation("722742002", system=SNOMED, **kw)


def systolic_panel(systolic: float, **kw: Any) -> dict[str, Any]:
    return observation(
        "85354-9",
        component=[
            {
                "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
                "valueQuantity": {"value": systolic, "unit": "mmHg", "code": "mm[Hg]"},
            },
            {
                "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
                "valueQuantity": {"value": 70, "unit": "mmHg", "code": "mm[Hg]"},
            },
        ],
        **kw,
    )


def systolic(value: float, **kw: Any) -> dict[str, Any]:
    return observation("8480-6", value, "mm[Hg]", **kw)


def pulse(value: float, **kw: Any) -> dict[str, Any]:
    return observation("8867-4", value, "/min", **kw)


ACVPU_CODES = {
    "alert": "248234008",
    "confusion": "130987000",
    "voice": "300202002",
    "pain": "450847001",
    "unresponsive": "422768004",
}


def consciousness(level: str, **kw: Any) -> dict[str, Any]:
    return answered("67775-7", ACVPU_CODES[level], **kw)


def temperature(value: float, unit: str = "Cel", **kw: Any) -> dict[str, Any]:
    return observation("8310-5", value, unit, **kw)


NORMAL: dict[str, Any] = {
    "respiratory_rate": lambda: respiratory_rate(16),
    "spo2": lambda: spo2(98),
    "air_or_oxygen": lambda: room_air(),
    "systolic_bp": lambda: systolic(120),
    "pulse": lambda: pulse(70),
    "consciousness": lambda: consciousness("alert"),
    "temperature": lambda: temperature(37.0),
}


def vitals(**replace: dict[str, Any] | list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """A complete set scoring 0, with some parameters replaced (a resource, a list, or None to leave out)."""
    resources: list[dict[str, Any]] = []
    for name in PARAMETERS:
        chosen = replace[name] if name in replace else NORMAL[name]()
        if chosen is None:
            continue
        resources.extend(chosen if isinstance(chosen, list) else [chosen])
    return resources


def patient(resources: list[dict[str, Any]], pseudonym: str = "pt-1") -> PatientContext:
    return PatientContext(
        patient_pseudonym=pseudonym,
        resources=tuple(SourceResource(ref=f"row-{i}", resource=r) for i, r in enumerate(resources)),
    )


@functools.cache
def manifest() -> ModelManifest:
    return manifest_load(MODEL_DIR / "manifest.json")


@functools.cache
def model() -> News2Model:
    loaded = manifest()
    return build(ModelSpec(manifest=loaded, artifacts=artifacts_verify(loaded)))


def run(resources: list[dict[str, Any]], news2: News2Model | None = None) -> ModelResult:
    return (news2 or model()).predict([patient(resources)])[0]


def finding(resources: list[dict[str, Any]]) -> Finding:
    result = run(resources)
    assert len(result.findings) == 1
    return result.findings[0]


def parameter(found: Finding, name: str) -> dict[str, Any]:
    return next(p for p in found.evidence["parameters"] if p["name"] == name)


# --- every band boundary of the chart -------------------------------------------------------------

BOUNDARIES: list[tuple[str, Any, int]] = [
    # respiration rate: <=8 3, 9-11 1, 12-20 0, 21-24 2, >=25 3
    *[
        ("respiratory_rate", v, s)
        for v, s in [(8, 3), (9, 1), (11, 1), (12, 0), (20, 0), (21, 2), (24, 2), (25, 3)]
    ],
    # SpO2 scale 1: <=91 3, 92-93 2, 94-95 1, >=96 0
    *[("spo2", v, s) for v, s in [(91, 3), (92, 2), (93, 2), (94, 1), (95, 1), (96, 0)]],
    # air 0, oxygen 2
    ("air_or_oxygen", "air", 0),
    ("air_or_oxygen", "oxygen", 2),
    # systolic: <=90 3, 91-100 2, 101-110 1, 111-219 0, >=220 3
    *[
        ("systolic_bp", v, s)
        for v, s in [(90, 3), (91, 2), (100, 2), (101, 1), (110, 1), (111, 0), (219, 0), (220, 3)]
    ],
    # pulse: <=40 3, 41-50 1, 51-90 0, 91-110 1, 111-130 2, >=131 3
    *[
        ("pulse", v, s)
        for v, s in [
            (40, 3),
            (41, 1),
            (50, 1),
            (51, 0),
            (90, 0),
            (91, 1),
            (110, 1),
            (111, 2),
            (130, 2),
            (131, 3),
        ]
    ],
    # consciousness: alert 0, new confusion, voice, pain, unresponsive 3
    *[("consciousness", level, 3 if level != "alert" else 0) for level in ACVPU_CODES],
    # temperature: <=35.0 3, 35.1-36.0 1, 36.1-38.0 0, 38.1-39.0 1, >=39.1 2
    *[
        ("temperature", v, s)
        for v, s in [(35.0, 3), (35.1, 1), (36.0, 1), (36.1, 0), (38.0, 0), (38.1, 1), (39.0, 1), (39.1, 2)]
    ],
]
BUILDERS: dict[str, Any] = {
    "respiratory_rate": respiratory_rate,
    "spo2": spo2,
    "air_or_oxygen": lambda v: room_air() if v == "air" else oxygen_flow(2),
    "systolic_bp": systolic,
    "pulse": pulse,
    "consciousness": consciousness,
    "temperature": temperature,
}


def test_boundary_table_covers_every_band_edge_of_the_seven_parameters() -> None:
    assert {name for name, _, _ in BOUNDARIES} == set(PARAMETERS)
    assert len(BOUNDARIES) == 47


@pytest.mark.parametrize(("name", "value", "score"), BOUNDARIES, ids=[f"{n}={v}" for n, v, _ in BOUNDARIES])
def test_chart_boundary(name: str, value: Any, score: int) -> None:
    found = finding(vitals(**{name: BUILDERS[name](value)}))
    item = parameter(found, name)
    assert item["status"] == "scored"
    assert item["score"] == score
    assert found.evidence["aggregate"] == score
    assert found.evidence["complete"] is True


@pytest.mark.parametrize(
    ("name", "value", "score"),
    [
        ("temperature", 36.05, 0),  # rounds to 36.1
        ("temperature", 35.04, 3),  # rounds to 35.0
        ("respiratory_rate", 20.4, 0),
        ("respiratory_rate", 20.5, 2),  # rounds to 21
        ("spo2", 95.5, 0),  # rounds to 96
    ],
)
def test_bands_are_read_on_the_rounded_value(name: str, value: float, score: int) -> None:
    assert parameter(finding(vitals(**{name: BUILDERS[name](value)})), name)["score"] == score


# --- units, panels, latest values -----------------------------------------------------------------


def test_fahrenheit_is_converted_before_scoring() -> None:
    item = parameter(finding(vitals(temperature=temperature(101.3, "degF"))), "temperature")
    assert (item["value"], item["unit"], item["score"]) == (38.5, "Cel", 1)
    assert (item["original_value"], item["original_unit"]) == (101.3, "degF")


def test_spo2_as_a_fraction() -> None:
    item = parameter(finding(vitals(spo2=spo2(0.93, unit=None))), "spo2")
    assert (item["value"], item["unit"], item["score"]) == (93, "%", 2)


def test_systolic_from_a_blood_pressure_panel_component() -> None:
    panel = systolic_panel(98)
    found = finding(vitals(systolic_bp=panel))
    item = parameter(found, "systolic_bp")
    assert (item["value"], item["score"], item["loinc"]) == (98, 2, "8480-6")
    rows = {p["name"]: p["ref"] for p in found.evidence["parameters"]}
    assert rows["systolic_bp"] == f"row-{vitals(systolic_bp=panel).index(panel)}"


def test_the_latest_value_wins_whatever_the_order() -> None:
    later = pulse(120, when=NOW)
    earlier = pulse(70, when=NOW - timedelta(hours=2))
    item = parameter(finding(vitals(pulse=[later, earlier])), "pulse")
    assert (item["value"], item["score"], item["age_hours"]) == (120, 2, 0.0)


def test_an_unreadable_latest_value_is_missing_not_replaced_by_an_older_one() -> None:
    unreadable = temperature(37.0, unit="furlongs", when=NOW)
    older = temperature(37.0, when=NOW - timedelta(hours=1))
    found = finding(vitals(temperature=[older, unreadable]))
    item = parameter(found, "temperature")
    assert item["status"] == "missing"
    assert "not recognised" in item["reason"]
    assert found.evidence["missing"] == ["temperature"]


def test_an_implausible_value_is_missing_with_its_reason() -> None:
    # Fahrenheit mislabelled as Celsius: scoring it would give 2 points for a fever that is not there.
    item = parameter(finding(vitals(temperature=temperature(101.3, "Cel"))), "temperature")
    assert item["status"] == "missing"
    assert "plausible" in item["reason"]


def test_a_value_without_an_effective_time_is_missing() -> None:
    item = parameter(finding(vitals(pulse=pulse(70, when=None))), "pulse")
    assert item["status"] == "missing"
    assert item["reason"] == "recorded without an effective time"


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled"])
def test_withdrawn_observations_are_ignored(status: str) -> None:
    withdrawn = pulse(150, when=NOW, status=status)
    earlier = pulse(70, when=NOW - timedelta(hours=1))
    item = parameter(finding(vitals(pulse=[withdrawn, earlier])), "pulse")
    assert (item["value"], item["score"]) == (70, 0)


def test_the_reference_time_is_the_latest_vital_sign_used() -> None:
    found = finding(vitals(pulse=pulse(70, when=NOW + timedelta(minutes=30))))
    assert found.evidence["reference_time"] == "2026-11-20T08:45:00+00:00"
    assert parameter(found, "respiratory_rate")["age_hours"] == 0.5


# --- stale and missing ----------------------------------------------------------------------------


def test_a_stale_value_is_reported_but_not_scored() -> None:
    old = temperature(39.5, when=NOW - timedelta(hours=30))
    found = finding(vitals(temperature=old))
    item = parameter(found, "temperature")
    assert item["status"] == "stale"
    assert (item["value"], item["age_hours"], item["score"]) == (39.5, 30.0, None)
    assert found.evidence["partial_sum"] == 0
    assert "aggregate" not in found.evidence and "band" not in found.evidence
    assert found.evidence["stale"] == ["temperature"]
    assert found.evidence["complete"] is False
    assert found.completeness == "not_scored"
    assert found.missing_inputs == ("Temperature (over 24 h old)",)
    assert found.summary == (
        "NEWS2 cannot be scored: not enough observations (1 of 7 parameters out of date)"
    )


def test_a_value_exactly_at_the_stale_limit_is_still_scored() -> None:
    item = parameter(
        finding(vitals(temperature=temperature(39.5, when=NOW - timedelta(hours=24)))), "temperature"
    )
    assert (item["status"], item["score"]) == ("scored", 2)


def test_the_stale_limit_comes_from_the_manifest() -> None:
    loaded = dataclasses.replace(manifest(), thresholds={**manifest().thresholds, "stale_after_hours": 1})
    strict = build(ModelSpec(manifest=loaded, artifacts=artifacts_verify(loaded)))
    result = run(vitals(pulse=pulse(70, when=NOW - timedelta(hours=2))), strict)
    assert result.findings[0].evidence["stale"] == ["pulse"]
    assert result.findings[0].evidence["thresholds"]["stale_after_hours"] == 1


def test_missing_parameters_are_listed_and_the_aggregate_is_partial() -> None:
    found = finding(vitals(consciousness=None, air_or_oxygen=None, respiratory_rate=respiratory_rate(25)))
    assert found.evidence["missing"] == ["air_or_oxygen", "consciousness"]
    assert found.evidence["complete"] is False
    assert found.evidence["aggregate"] == 3
    assert parameter(found, "consciousness") | {"label": None} == {
        "name": "consciousness",
        "label": None,
        "loinc": "67775-7",
        "code": None,
        "value": None,
        "unit": None,
        "original_value": None,
        "original_unit": None,
        "effective": None,
        "ref": None,
        "resourceType": None,
        "score": None,
        "range": None,
        "status": "missing",
        "age_hours": None,
        "reason": "not recorded",
    }
    assert found.summary.startswith("NEWS2 at least 3")
    assert "incomplete (2 of 7 parameters missing)" in found.summary
    assert "partial" in found.evidence["note"].lower()


def test_missing_and_stale_together_in_the_summary() -> None:
    found = finding(vitals(consciousness=None, pulse=pulse(131, when=NOW - timedelta(days=2))))
    assert found.summary == (
        "NEWS2 cannot be scored: not enough observations (1 of 7 parameters missing, 1 out of date)"
    )


def test_sample_bundle_patient() -> None:
    bundle = json.loads(SAMPLE_BUNDLE.read_text())
    found = finding([entry["resource"] for entry in bundle["entry"]])
    scores = {p["name"]: p["score"] for p in found.evidence["parameters"]}
    assert scores == {
        "respiratory_rate": 2,  # 24 /min
        "spo2": 2,  # 93 %
        "air_or_oxygen": None,
        "systolic_bp": 2,  # 98 mm[Hg] from the 85354-9 panel
        "pulse": 2,  # 112 /min
        "consciousness": None,
        "temperature": 1,  # 101.3 degF = 38.5 Cel
    }
    assert found.evidence["missing"] == ["air_or_oxygen", "consciousness"]
    assert found.evidence["aggregate"] == 9
    assert found.evidence["band"] == "high"
    assert found.urgency == "critical"
    assert found.completeness == "lower_bound"
    assert found.summary == "NEWS2 at least 9, incomplete (2 of 7 parameters missing) — high risk"


# --- risk bands -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("replace", "aggregate", "band", "urgency", "qualitative"),
    [
        ({}, 0, "low", "info", "low"),
        ({"pulse": pulse(111), "temperature": temperature(38.1), "spo2": spo2(95)}, 4, "low", "info", "low"),
        ({"respiratory_rate": respiratory_rate(25)}, 3, "low-medium", "warning", "moderate"),
        ({"temperature": temperature(35.0), "pulse": pulse(91)}, 4, "low-medium", "warning", "moderate"),
        (
            {"pulse": pulse(111), "spo2": spo2(92), "temperature": temperature(38.1)},
            5,
            "medium",
            "warning",
            "moderate",
        ),
        ({"consciousness": consciousness("voice"), "spo2": spo2(92)}, 5, "medium", "warning", "moderate"),
        (
            {"pulse": pulse(111), "spo2": spo2(92), "air_or_oxygen": oxygen_flow(2)},
            6,
            "medium",
            "warning",
            "moderate",
        ),
        (
            {"pulse": pulse(131), "spo2": spo2(92), "air_or_oxygen": oxygen_flow(2)},
            7,
            "high",
            "critical",
            "high",
        ),
        (
            {"respiratory_rate": respiratory_rate(30), "systolic_bp": systolic(85)},
            6,
            "medium",
            "warning",
            "moderate",
        ),
    ],
)
def test_risk_bands(
    replace: dict[str, Any], aggregate: int, band: str, urgency: str, qualitative: str
) -> None:
    found = finding(vitals(**replace))
    assert (found.evidence["aggregate"], found.evidence["band"], found.urgency) == (aggregate, band, urgency)
    assert found.score == float(aggregate)
    assert found.risk == {
        "band": band,
        "score": float(aggregate),
        "qualitative_risk": qualitative,
        "outcome": "Clinical deterioration (NEWS2 escalation)",
    }
    assert found.evidence["clinical_response"]
    assert found.key == "news2" and found.kind == "risk"


def test_a_red_score_is_low_medium_and_named() -> None:
    found = finding(vitals(respiratory_rate=respiratory_rate(25)))
    assert found.summary == "NEWS2 3, red score in respiration rate — low-medium risk"
    assert found.evidence["red_score_parameters"] == ["respiratory_rate"]
    assert "hourly" in found.evidence["clinical_response"]


def test_high_band_response_calls_for_critical_care_competencies() -> None:
    found = finding(vitals(pulse=pulse(131), spo2=spo2(91), air_or_oxygen=oxygen_flow(2)))
    assert found.evidence["band"] == "high"
    assert "critical-care competencies" in found.evidence["clinical_response"]
    assert found.summary == "NEWS2 8 — high risk"


def test_summaries_stay_short() -> None:
    found = finding(
        vitals(
            consciousness=None,
            air_or_oxygen=None,
            systolic_bp=systolic(120, when=NOW - timedelta(days=3)),
            temperature=temperature(35.0),
        )
    )
    assert found.evidence["band"] == "medium"  # a red score with parameters unscored: at least medium
    assert len(found.summary) < 140
    assert found.summary == (
        "NEWS2 at least 3, red score in temperature, incomplete (2 of 7 parameters missing, 1 out of date)"
        " — at least medium risk"
    )


# --- air or oxygen --------------------------------------------------------------------------------


def oximetry_with(component_code: str, value: float, unit: str | None) -> dict[str, Any]:
    quantity: dict[str, Any] = {"value": value, **({"unit": unit} if unit else {})}
    return spo2(
        97,
        component=[
            {"code": {"coding": [{"system": LOINC, "code": component_code}]}, "valueQuantity": quantity}
        ],
    )


@pytest.mark.parametrize(
    ("resource", "state"),
    [
        (oxygen_flow(2), "oxygen"),
        (oxygen_flow(0), "air"),
        (oximetry_with("3151-8", 2, "L/min"), "oxygen"),
        (oximetry_with("3150-0", 28, "%"), "oxygen"),
        (observation("3150-0", 21, "%"), "air"),
        (observation("3150-0", 40, "%"), "oxygen"),
        (observation("19996-8", 0.21, None), "air"),  # 0.21 * 100 must not read as 21.000000000000004
        (observation("19996-8", 0.28, "1"), "oxygen"),
        (room_air(), "air"),
        (observation("371825009", system=SNOMED), "oxygen"),
        (observation("371825009", 2, "L/min", system=SNOMED), "oxygen"),
        (observation("371825009", 0, "L/min", system=SNOMED), "air"),
        (answered("371825009", "373067005", "No", system=SNOMED), "air"),
        (answered("371825009", "373066001", "Yes", system=SNOMED), "oxygen"),
        (observation("371825009", system=SNOMED, valueBoolean=False), "air"),
        (answered("3150-0", "722742002", "Breathing room air"), "air"),
    ],
)
def test_air_or_oxygen_from_what_is_recorded(resource: dict[str, Any], state: str) -> None:
    found = finding(vitals(air_or_oxygen=resource, spo2=None))
    item = parameter(found, "air_or_oxygen")
    assert (item["status"], item["value"], item["score"]) == ("scored", state, 2 if state == "oxygen" else 0)


def test_oxygen_is_missing_when_nothing_says_air_or_oxygen() -> None:
    # A pulse oximetry reading alone says nothing about inspired oxygen: never assume air.
    found = finding(vitals(air_or_oxygen=None))
    item = parameter(found, "air_or_oxygen")
    assert (item["status"], item["score"], item["reason"]) == ("missing", None, "not recorded")
    assert found.evidence["complete"] is False


def test_an_unrecognised_oxygen_answer_is_missing() -> None:
    item = parameter(
        finding(vitals(air_or_oxygen=answered("371825009", "12345", "Maybe", system=SNOMED))), "air_or_oxygen"
    )
    assert item["status"] == "missing"
    assert item["reason"] == "answer not recognised as air or oxygen"


# --- consciousness --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resource", "value", "score"),
    [
        (answered("67775-7", None, "ALERT"), "alert", 0),
        (answered("67775-7", None, "Responds to Voice"), "voice", 3),
        (answered("80288-4", None, "V - responds to voice"), "voice", 3),
        (answered("1104441000000107", "130987000", "Acute confusion", system=SNOMED), "confusion", 3),
        (answered("67775-7", "255373000", "Verbal"), "voice", 3),
        (answered("67775-7", "450847001", "Responds to pain (finding)"), "pain", 3),
        (observation("67775-7", valueString="New confusion"), "confusion", 3),
        (observation("67775-7", valueCodeableConcept={"text": "unresponsive"}), "unresponsive", 3),
    ],
)
def test_consciousness_mapping(resource: dict[str, Any], value: str, score: int) -> None:
    item = parameter(finding(vitals(consciousness=resource)), "consciousness")
    assert (item["status"], item["value"], item["score"]) == ("scored", value, score)


@pytest.mark.parametrize(
    ("resource", "reason"),
    [
        (answered("67775-7", "999999", "Drowsy"), "answer not recognised as ACVPU"),
        (observation("67775-7"), "no answer recorded"),
        (observation("67775-7", dataAbsentReason={"text": "asleep"}), "value absent"),
    ],
)
def test_an_unrecognised_consciousness_answer_is_missing(resource: dict[str, Any], reason: str) -> None:
    found = finding(vitals(consciousness=resource))
    item = parameter(found, "consciousness")
    assert (item["status"], item["score"], item["reason"]) == ("missing", None, reason)
    assert "consciousness" in found.evidence["missing"]


# --- no vital signs, features, evidence -----------------------------------------------------------


def test_no_vital_signs_no_findings() -> None:
    lab = observation("2160-0", 80, "umol/L")
    for resources in ([], [lab], [{"resourceType": "Condition", "id": "x"}]):
        result = run(resources)
        assert result.findings == ()
        assert result.messages == (NO_VITALS,)
        assert result.features["news2_aggregate"] is None


def test_only_unusable_vital_signs_no_findings_with_the_reason() -> None:
    result = run([temperature(37.0, unit="furlongs")])
    assert result.findings == ()
    assert result.messages[0].startswith(NO_VITALS)
    assert "temperature" in result.messages[0]


def test_features_are_the_values_used() -> None:
    result = run(
        vitals(
            air_or_oxygen=oxygen_flow(2),
            consciousness=consciousness("voice"),
            temperature=temperature(101.3, "degF"),
            pulse=pulse(70, when=NOW - timedelta(days=2)),
            respiratory_rate=None,
        )
    )
    assert result.features == {
        "respiratory_rate": None,
        "spo2": 98,
        "air_or_oxygen": 1,
        "systolic_bp": 120,
        "pulse": None,  # stale: not used
        "consciousness": 2,  # ACVPU ordinal: A0 C1 V2 P3 U4
        "temperature": 38.5,
        "news2_aggregate": None,  # a partial sum is not an aggregate: drift compares whole scores only
    }
    assert result.messages == ("NEWS2 incomplete; not recorded: Respiration rate; out of date: Pulse",)


def test_evidence_is_json_and_in_chart_order() -> None:
    found = finding(vitals(systolic_bp=systolic_panel(98), temperature=temperature(101.3, "degF")))
    evidence = json.loads(json.dumps(found.evidence))
    assert [p["name"] for p in evidence["parameters"]] == PARAMETERS
    assert set(evidence) >= {
        "parameters",
        "aggregate",
        "complete",
        "missing",
        "stale",
        "band",
        "thresholds",
        "clinical_response",
        "reference_time",
        "scale",
    }
    assert evidence["scale"] == "SpO2 scale 1"
    assert evidence["thresholds"] == {
        "medium": 5,
        "high": 7,
        "red_single_parameter": 3,
        "stale_after_hours": 24,
    }
    assert evidence["reference_time"] == "2026-11-20T08:15:00+00:00"
    first = evidence["parameters"][0]
    assert first["effective"] == "2026-11-20T08:15:00+00:00"
    assert first["ref"] == "row-0" and first["resourceType"] == "Observation"
    assert first["range"] == "12\u201320"
    json.dumps(found.risk)


def test_the_result_makes_a_valid_fhir_risk_assessment_citing_its_observations() -> None:
    bundle = json.loads(SAMPLE_BUNDLE.read_text())
    result = run([entry["resource"] for entry in bundle["entry"]])
    run_context = RunContext(
        run_id="3f1c2b8e-5d4a-4e6f-9a0b-1c2d3e4f5a6b",
        model=manifest(),
        patient_pseudonym="pt-1",
        occurred=NOW,
        input_sha256="0" * 64,
    )
    output = run_resources(run_context, result, {"news2": "11111111-1111-4111-8111-111111111111"})
    assert run_output_issues(output) == []
    (risk,) = output.per_finding["news2"].resources
    cited = {p["ref"] for p in result.findings[0].evidence["parameters"] if p["ref"]}
    assert {b["identifier"]["value"] for b in risk["basis"]} == cited
    assert risk["mitigation"] == result.findings[0].evidence["clinical_response"]
    assert risk["prediction"][0]["qualitativeRisk"]["coding"][0]["code"] == "high"


def test_predict_answers_each_patient_in_order() -> None:
    contexts = [patient(vitals(), "pt-a"), patient([], "pt-b"), patient(vitals(pulse=pulse(131)), "pt-c")]
    results = model().predict(contexts)
    assert [r.patient_pseudonym for r in results] == ["pt-a", "pt-b", "pt-c"]
    assert [len(r.findings) for r in results] == [1, 0, 1]


# --- manifest and chart ---------------------------------------------------------------------------


def test_manifest_loads_and_its_chart_verifies() -> None:
    loaded = manifest()
    assert (loaded.id, loaded.version, loaded.kind) == ("news2", "1.0.0", "rules")
    assert loaded.default_enabled is True
    assert [i.name for i in loaded.inputs] == PARAMETERS
    assert artifacts_verify(loaded) == {"chart": MODEL_DIR / "chart.json"}
    factory = entrypoint_resolve(loaded)
    assert isinstance(factory(ModelSpec(manifest=loaded, artifacts=artifacts_verify(loaded))), News2Model)


def test_manifest_inputs_declare_every_code_the_chart_reads() -> None:
    chart = chart_load(MODEL_DIR / "chart.json")
    declared = {i.name: set(i.codes) for i in manifest().inputs}
    for chart_parameter in chart.parameters:
        assert set(chart_parameter.codes) <= declared[chart_parameter.name], chart_parameter.name


def test_card_cites_the_real_test_counts() -> None:
    validation = manifest().card["validation"]
    assert f"({len(BOUNDARIES)} cases)" in validation["summary"]
    assert validation["figures"][0]["value"] == f"{len(BOUNDARIES)} of {len(BOUNDARIES)} pass"


def test_a_changed_chart_is_refused(tmp_path: Path) -> None:
    shutil.copy(MODEL_DIR / "manifest.json", tmp_path / "manifest.json")
    chart = json.loads((MODEL_DIR / "chart.json").read_text())
    chart["parameters"][0]["bands"][0]["max"] = 7
    (tmp_path / "chart.json").write_text(json.dumps(chart))
    with pytest.raises(ArtifactMismatch):
        artifacts_verify(manifest_load(tmp_path / "manifest.json"))


def test_a_chart_with_a_gap_is_refused() -> None:
    chart = json.loads((MODEL_DIR / "chart.json").read_text())
    chart["parameters"][0]["bands"][1]["min"] = 10
    with pytest.raises(ManifestError, match="not contiguous"):
        chart_parse(chart)


def test_a_bad_urgency_mapping_is_refused() -> None:
    outputs = {**manifest().outputs, "urgency_by_band": {"high": "panic"}}
    loaded = dataclasses.replace(manifest(), outputs=outputs)
    with pytest.raises(ManifestError, match="urgency_by_band"):
        build(ModelSpec(manifest=loaded, artifacts=artifacts_verify(loaded)))


def test_build_needs_the_chart_artifact() -> None:
    with pytest.raises(ManifestError, match="chart"):
        build(ModelSpec(manifest=manifest(), artifacts={}))
