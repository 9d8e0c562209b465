"""Computing declarative features for one patient: windows, aggregates, units, missing rules, demographics."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from clinical_ai.inference.engine.features.extract import (
    REFS_MAX,
    age_years,
    context_as_of,
    event_time,
    features_extract,
    least_squares_slope,
)
from clinical_ai.inference.engine.features.spec import feature_set_parse
from clinical_ai.inference.engine.features.types import FeatureSet, FeatureValue
from clinical_ai.inference.engine.observations import observation_effective
from clinical_ai.inference.engine.types import PatientContext, SourceResource

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
SYSTOLIC = f"{LOINC}|8480-6"
WEIGHT = f"{LOINC}|29463-7"
AS_OF = datetime(2024, 6, 30, 12, 0, tzinfo=UTC)


def at(days_before: float) -> str:
    return (AS_OF - timedelta(days=days_before)).isoformat()


def concept(key: str) -> dict[str, Any]:
    system, _, code = key.partition("|")
    return {"coding": [{"system": system, "code": code}]}


def patient(birth: str | None = "1970-05-15", gender: str | None = "female") -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "id": "p"}
    if birth is not None:
        resource["birthDate"] = birth
    if gender is not None:
        resource["gender"] = gender
    return resource


def encounter(days_before: float, cls: str = "AMB", status: str = "finished", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": status,
        "class": {"system": ACT, "code": cls},
        "period": {"start": at(days_before)},
        **extra,
    }


def observation(
    key: str, value: float | None, unit: str | None, days_before: float, status: str = "final", **extra: Any
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": status,
        "code": concept(key),
        "effectiveDateTime": at(days_before),
        **extra,
    }
    if value is not None:
        resource["valueQuantity"] = {"value": value, **({"code": unit, "unit": unit} if unit else {})}
    return resource


def blood_pressure(
    systolic: float, diastolic: float, days_before: float, status: str = "final"
) -> dict[str, Any]:
    def component(code: str, value: float) -> dict[str, Any]:
        return {"code": concept(f"{LOINC}|{code}"), "valueQuantity": {"value": value, "code": "mm[Hg]"}}

    return {
        "resourceType": "Observation",
        "status": status,
        "code": concept(f"{LOINC}|85354-9"),
        "effectiveDateTime": at(days_before),
        "component": [component("8480-6", systolic), component("8462-4", diastolic)],
    }


def context(*resources: dict[str, Any]) -> PatientContext:
    return PatientContext("pseudonym", tuple(SourceResource(f"r{i}", r) for i, r in enumerate(resources)))


def features(*items: dict[str, Any], base: Path = Path()) -> FeatureSet:
    return feature_set_parse(list(items), base=base, where="test")


def one(item: dict[str, Any], *resources: dict[str, Any], as_of: datetime | None = AS_OF) -> FeatureValue:
    return features_extract(features(item), context(*resources), as_of=as_of).values[0]


def feature(**item: Any) -> dict[str, Any]:
    return {"name": "f", "label": "a feature", **item}


EMERGENCY = feature(resourceType="Encounter", codes=[f"{ACT}|EMER"], window="P365D", aggregate="count")


# --- windows and counts ------------------------------------------------------------------------------


def test_count_in_window_excludes_the_start_includes_as_of_and_ignores_the_future() -> None:
    resources = [
        encounter(0, "EMER"),  # at as_of: inside
        encounter(10, "EMER"),
        encounter(364.99, "EMER"),
        encounter(365, "EMER"),  # exactly as_of - 365 days: outside (the window is open at its start)
        encounter(400, "EMER"),
        encounter(-1, "EMER"),  # after as_of: ignored
        encounter(5, "AMB"),
    ]
    value = one(EMERGENCY, *resources)
    assert (value.value, value.observed, value.status) == (3.0, 3.0, "observed")
    assert value.refs == ("r0", "r1", "r2")  # newest first
    assert value.last_time == AS_OF
    assert (value.window_start, value.window_end) == (AS_OF - timedelta(days=365), AS_OF)


def test_count_and_present_are_zero_never_missing() -> None:
    value = one(EMERGENCY, encounter(5, "AMB"))
    assert (value.value, value.status, value.refs, value.last_time) == (0.0, "observed", (), None)
    present = one({**EMERGENCY, "aggregate": "present"}, encounter(5, "AMB"))
    assert (present.value, present.status) == (0.0, "observed")
    assert one({**EMERGENCY, "aggregate": "present"}, encounter(5, "EMER")).value == 1.0


def test_no_codes_counts_every_resource_of_the_type_and_all_history() -> None:
    item = feature(resourceType="Encounter", aggregate="count")
    assert one(item, encounter(1), encounter(3000, "EMER"), encounter(-5)).value == 2.0


def test_refs_are_capped_and_newest_first() -> None:
    value = one(EMERGENCY, *[encounter(day, "EMER") for day in range(30)])
    assert value.value == 30.0
    assert len(value.refs) == REFS_MAX
    assert value.refs[:3] == ("r0", "r1", "r2")


def test_time_since_the_newest_event_in_days_or_hours() -> None:
    item = feature(resourceType="Encounter", aggregate="time_since", missing={"impute": 9999})
    value = one(item, encounter(30), encounter(2.5), encounter(-3))
    assert value.value == pytest.approx(2.5)
    assert (value.refs, value.last_time) == (("r1",), AS_OF - timedelta(days=2.5))
    hours = one({**item, "time_unit": "h"}, encounter(2.5))
    assert hours.value == pytest.approx(60.0)
    nothing = one(item, encounter(-3))
    assert (nothing.value, nothing.observed, nothing.status) == (9999.0, None, "imputed")


def test_encounter_type_and_reason_lists_and_an_r5_style_class() -> None:
    stroke = f"{SNOMED}|230690007"
    with_reason = encounter(
        3, reasonCode=[concept(f"{SNOMED}|1"), concept(stroke)], type=[concept(f"{SNOMED}|2")]
    )
    r5_class = {**encounter(4), "class": [concept(f"{ACT}|EMER")]}
    by_reason = feature(resourceType="Encounter", element="reasonCode", codes=[stroke], aggregate="count")
    by_type = feature(resourceType="Encounter", element="type", codes=[f"{SNOMED}|2"], aggregate="count")
    assert one(by_reason, with_reason).value == 1.0
    assert one(by_type, with_reason).value == 1.0
    assert one({**by_type, "codes": [stroke]}, with_reason).value == 0.0
    assert one(EMERGENCY, r5_class).value == 1.0


# --- numeric aggregates on Observation values -------------------------------------------------------


def weights() -> list[dict[str, Any]]:
    return [
        observation(WEIGHT, 80.0, "kg", 300),
        observation(WEIGHT, 176.37, "[lb_av]", 200),  # 80.000 kg
        observation(WEIGHT, 70.0, "kg", 100),
        observation(WEIGHT, 90.0, "kg", 10),
        observation(WEIGHT, 99.0, "kg", 1000),  # outside P365D
        observation(WEIGHT, 50.0, "kg", -1),  # after as_of
    ]


@pytest.mark.parametrize(
    ("aggregate", "expected", "ref"),
    [("latest", 90.0, "r3"), ("min", 70.0, "r2"), ("max", 90.0, "r3"), ("mean", 80.0, None)],
)
def test_numeric_aggregates_in_window_with_units(aggregate: str, expected: float, ref: str | None) -> None:
    item = feature(resourceType="Observation", codes=[WEIGHT], window="P365D", aggregate=aggregate, unit="kg")
    value = one(item, *weights())
    assert value.value == pytest.approx(expected, abs=1e-3)
    assert value.status == "observed"
    assert value.refs == ((ref,) if ref else ("r3", "r2", "r1", "r0"))


def test_latest_in_another_unit_and_all_history() -> None:
    item = feature(resourceType="Observation", codes=[WEIGHT], aggregate="latest", unit="[lb_av]")
    assert one(item, *weights()).value == pytest.approx(198.416, abs=1e-3)  # 90 kg


def test_values_without_a_convertible_unit_or_recorded_absent_are_skipped() -> None:
    item = feature(resourceType="Observation", codes=[WEIGHT], aggregate="mean", unit="kg")
    resources = [
        observation(WEIGHT, 80.0, "kg", 5),
        observation(WEIGHT, 12.0, "{stone}", 4),  # unknown unit: not a guess
        observation(WEIGHT, 70.0, None, 3),  # no unit at all
        observation(WEIGHT, None, None, 2, dataAbsentReason=concept("x|asked-declined")),
    ]
    value = one(item, *resources)
    assert value.value == 80.0 and value.refs == ("r0",)
    raw = one(feature(resourceType="Observation", codes=[WEIGHT], aggregate="mean"), *resources)
    assert raw.value == pytest.approx((80 + 12 + 70) / 3)  # no unit asked: values as sent


def test_slope_per_day_and_per_hour() -> None:
    resources = [observation(WEIGHT, value, "kg", days) for value, days in ((100, 20), (110, 10), (120, 0))]
    item = feature(
        resourceType="Observation", codes=[WEIGHT], aggregate="slope", unit="kg", missing={"impute": 0}
    )
    value = one(item, *resources)
    assert value.value == pytest.approx(1.0)
    assert value.refs == ("r2", "r1", "r0")
    assert one({**item, "time_unit": "h"}, *resources).value == pytest.approx(1 / 24)
    single = one(item, resources[0])
    assert (single.status, single.value, single.observed) == ("imputed", 0.0, None)


def test_least_squares_slope_against_known_values() -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    points = [(start + timedelta(days=d), v) for d, v in ((0, 1.0), (1, 3.0), (2, 2.0), (3, 6.0))]
    assert least_squares_slope(points, unit=86400) == pytest.approx(1.4)  # cov(x,y)/var(x) = 7/5
    assert least_squares_slope(points[:1], unit=86400) is None
    assert least_squares_slope([(start, 1.0), (start, 2.0)], unit=86400) is None


def test_component_codes_blood_pressure_panel() -> None:
    resources = [
        blood_pressure(140, 90, 10),
        blood_pressure(120, 80, 5),
        observation(SYSTOLIC, 130, "mm[Hg]", 1),
    ]
    item = feature(
        resourceType="Observation", codes=[SYSTOLIC], aggregate="mean", unit="mm[Hg]", window="P30D"
    )
    value = one(item, *resources)
    assert value.value == pytest.approx(130.0)
    assert value.refs == ("r2", "r1", "r0")
    count = one(feature(resourceType="Observation", codes=[SYSTOLIC], aggregate="count"), *resources)
    assert count.value == 3.0
    kpa = blood_pressure(0, 0, 2)
    kpa["component"][0]["valueQuantity"] = {"value": 16.0, "code": "kPa"}
    assert one({**item, "aggregate": "latest"}, kpa).value == pytest.approx(120.0, abs=0.01)


# --- what is ignored ----------------------------------------------------------------------------------


def test_withdrawn_resources_are_ignored() -> None:
    flu = f"{CVX}|140"
    heart_failure = f"{SNOMED}|84114007"
    resources = [
        encounter(1, "EMER", status="entered-in-error"),
        encounter(2, "EMER", status="cancelled"),
        encounter(3, "EMER"),
        observation(WEIGHT, 300.0, "kg", 1, status="entered-in-error"),
        observation(WEIGHT, 80.0, "kg", 2),
        blood_pressure(250, 150, 1, status="entered-in-error"),
        {
            "resourceType": "Immunization",
            "status": "not-done",
            "vaccineCode": concept(flu),
            "occurrenceDateTime": at(1),
        },
        {
            "resourceType": "Condition",
            "verificationStatus": concept(
                "http://terminology.hl7.org/CodeSystem/condition-ver-status|refuted"
            ),
            "code": concept(heart_failure),
            "onsetDateTime": at(5),
        },
        {
            "resourceType": "Condition",
            "verificationStatus": concept(
                "http://terminology.hl7.org/CodeSystem/condition-ver-status|confirmed"
            ),
            "code": concept(heart_failure),
            "recordedDate": at(6)[:10],
        },
    ]
    vector = features_extract(
        features(
            {**EMERGENCY, "name": "ed"},
            feature(name="weight", resourceType="Observation", codes=[WEIGHT], aggregate="max", unit="kg"),
            feature(name="sbp", resourceType="Observation", codes=[SYSTOLIC], aggregate="count"),
            feature(name="flu", resourceType="Immunization", codes=[flu], aggregate="present"),
            feature(name="hf", resourceType="Condition", codes=[heart_failure], aggregate="count"),
        ),
        context(*resources),
        as_of=AS_OF,
    )
    assert [v.value for v in vector.values] == [1.0, 80.0, 0.0, 0.0, 1.0]
    assert vector.values[4].refs == ("r8",)


def test_undated_resources_never_count() -> None:
    undated = {"resourceType": "Encounter", "status": "finished", "class": {"system": ACT, "code": "EMER"}}
    assert one(feature(resourceType="Encounter", aggregate="count"), undated).value == 0.0


# --- missing rules ------------------------------------------------------------------------------------


def test_refusing_feature_makes_the_vector_refuse_and_imputed_ones_say_so() -> None:
    vector = features_extract(
        features(
            feature(name="sbp", resourceType="Observation", codes=[SYSTOLIC], aggregate="latest"),
            feature(
                name="wt",
                resourceType="Observation",
                codes=[WEIGHT],
                aggregate="latest",
                missing={"impute": 75},
            ),
            {**EMERGENCY, "name": "ed"},
        ),
        context(patient()),
        as_of=AS_OF,
    )
    sbp, weight, ed = vector.values
    assert (sbp.status, sbp.value, sbp.observed) == ("missing", None, None)
    assert (weight.status, weight.value, weight.observed) == ("imputed", 75.0, None)
    assert (ed.status, ed.value) == ("observed", 0.0)
    assert vector.refused == (sbp,)
    with pytest.raises(ValueError, match="cannot be scored: sbp"):
        _ = vector.row


def test_row_in_manifest_order() -> None:
    vector = features_extract(
        features(
            {**EMERGENCY, "name": "ed"},
            feature(name="age", source="age"),
            feature(name="female", source="sex", equals="female"),
        ),
        context(patient(), encounter(3, "EMER")),
        as_of=AS_OF,
    )
    assert vector.row == [1.0, 54.0, 1.0]


# --- age and sex ----------------------------------------------------------------------------------------


AGE = feature(source="age", missing={"impute": 50})


@pytest.mark.parametrize(
    ("birth", "expected"),
    [
        ("1970-05-15", 54.0),
        ("1970-06-30", 54.0),  # birthday on the prediction day
        ("1970-07-01", 53.0),
        ("1970", 53.0),  # read at 2 July 1970
        ("1970-06", 54.0),  # read at 16 June 1970
        ("1970-07", 53.0),
        ("2024", 0.0),  # born this year: never negative
        ("2024-06-30", 0.0),
        ("1970-05-15T08:00:00Z", 54.0),
    ],
)
def test_age_in_whole_years(birth: str, expected: float) -> None:
    value = one(AGE, patient(birth))
    assert (value.value, value.status, value.refs) == (expected, "observed", ("r0",))


@pytest.mark.parametrize("birth", [None, "2024-07-01", "2025", "15/05/1970", "1970-02-30"])
def test_age_missing_is_imputed(birth: str | None) -> None:
    value = one(AGE, patient(birth))
    assert (value.value, value.status, value.observed) == (50.0, "imputed", None)


def test_age_years_directly() -> None:
    assert age_years("2000-02-29", datetime(2001, 2, 28, 23, 0, tzinfo=UTC)) == 0.0
    assert age_years("2000-02-29", datetime(2001, 3, 1, tzinfo=UTC)) == 1.0
    assert age_years(19700515, AS_OF) is None


def test_age_without_a_patient_or_a_prediction_time_is_missing() -> None:
    assert one(feature(source="age"), encounter(1)).status == "missing"
    assert one(feature(source="age"), patient(), as_of=None).status == "missing"  # nothing dated


def test_sex_equals() -> None:
    female = feature(source="sex", equals="female", missing={"impute": 0.5})
    assert one(female, patient(gender="female")).value == 1.0
    assert one(female, patient(gender="male")).value == 0.0
    assert one(feature(source="sex", equals="other"), patient(gender="other")).value == 1.0
    absent = one(female, patient(gender=None))
    assert (absent.value, absent.status) == (0.5, "imputed")
    assert one(feature(source="sex", equals="male"), patient(gender=None)).status == "missing"


# --- prediction time ----------------------------------------------------------------------------------


def test_as_of_defaults_to_the_newest_event_of_any_type() -> None:
    newest = AS_OF - timedelta(days=2)
    record = context(
        patient(),
        encounter(10, "EMER"),
        {"resourceType": "DocumentReference", "status": "current", "date": newest.isoformat()},
        observation(WEIGHT, 80.0, "kg", 1, status="entered-in-error"),  # newer but withdrawn
        {"resourceType": "Provenance", "recorded": at(-200)},  # when the record was written
        {"resourceType": "Claim", "status": "active", "created": at(-1)},  # billing
        {"resourceType": "Encounter", "status": "finished"},  # undated
    )
    assert context_as_of(record) == newest
    vector = features_extract(features({**EMERGENCY, "window": "P9D"}), record)
    assert vector.as_of == newest
    assert vector.values[0].value == 1.0  # 10 days before AS_OF is 8 days before the newest event


def test_an_explicit_as_of_hides_later_resources() -> None:
    record = context(encounter(100, "EMER"), encounter(10, "EMER"))
    earlier = AS_OF - timedelta(days=50)
    value = features_extract(features(EMERGENCY), record, as_of=earlier).values[0]
    assert (value.value, value.refs, value.window_end) == (1.0, ("r0",), earlier)


def test_nothing_dated_gives_no_prediction_time() -> None:
    record = context(patient())
    assert context_as_of(record) is None
    vector = features_extract(features(EMERGENCY), record)
    assert vector.as_of is None and vector.values[0].value == 0.0


def test_a_naive_as_of_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        features_extract(features(EMERGENCY), context(), as_of=datetime(2024, 1, 1))


@pytest.mark.parametrize(
    "resource",
    [
        {"effectiveDateTime": "2024-01-02T03:04:05+02:00", "issued": "2024-01-03T00:00:00Z"},
        {"effectivePeriod": {"start": "2024-01-01", "end": "2024-01-05T10:00:00Z"}},
        {"effectivePeriod": {"start": "2024-01-01"}},
        {"effectiveInstant": "2024-01-02T03:04:05.123Z"},
        {"issued": "2024-01-03T00:00:00Z"},
        {"effectiveDateTime": "garbage", "issued": "2024-01-03"},
        {"effectiveDateTime": 20240103},
        {},
    ],
)
def test_observation_time_is_observations_rule(resource: dict[str, Any]) -> None:
    full = {"resourceType": "Observation", "status": "final", **resource}
    assert event_time(full) == observation_effective(full)


def test_event_times_per_type() -> None:
    day = "2024-01-02T03:04:05Z"
    expected = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    resources: list[dict[str, Any]] = [
        {"resourceType": "Condition", "onsetPeriod": {"start": day}},
        {"resourceType": "AllergyIntolerance", "recordedDate": day},
        {"resourceType": "MedicationRequest", "authoredOn": day},
        {"resourceType": "MedicationStatement", "effectivePeriod": {"start": day}},
        {"resourceType": "MedicationAdministration", "effectiveDateTime": day},
        {"resourceType": "Procedure", "performedPeriod": {"start": day, "end": "2024-02-01"}},
        {"resourceType": "Immunization", "occurrenceDateTime": day},
        {"resourceType": "DiagnosticReport", "issued": day},
        {"resourceType": "Encounter", "period": {"start": day, "end": "2024-02-01"}},
    ]
    for resource in resources:
        assert event_time(resource) == expected, resource["resourceType"]
    assert event_time({"resourceType": "Patient", "deceasedDateTime": day}) is None


# --- a value set, end to end --------------------------------------------------------------------------


def test_value_set_feature_on_medication_requests(tmp_path: Path) -> None:
    (tmp_path / "anticoagulants.json").write_text(
        json.dumps(
            {
                "resourceType": "ValueSet",
                "compose": {
                    "include": [{"system": RXNORM, "concept": [{"code": "855332"}, {"code": "1364430"}]}]
                },
            }
        ),
        encoding="utf-8",
    )
    item = feature(
        resourceType="MedicationRequest", valueSet="anticoagulants.json", window="P90D", aggregate="present"
    )
    feature_set = features(item, base=tmp_path)

    def request(code: str, days: float, status: str = "active") -> dict[str, Any]:
        return {
            "resourceType": "MedicationRequest",
            "status": status,
            "medicationCodeableConcept": concept(f"{RXNORM}|{code}"),
            "authoredOn": at(days),
        }

    def present(*resources: dict[str, Any]) -> float | None:
        return features_extract(feature_set, context(*resources), as_of=AS_OF).values[0].value

    assert present(request("1364430", 30)) == 1.0
    assert present(request("1364430", 120)) == 0.0
    assert present(request("999", 3)) == 0.0
    assert present(request("855332", 3, status="cancelled")) == 0.0
