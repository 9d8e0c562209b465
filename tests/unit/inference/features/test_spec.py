"""Parsing a manifest's declarative ``features``: what loads, and each mistake refused with the feature named."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from clinical_ai.inference.engine.features.spec import FeatureSpecError, feature_set_parse, window_parse
from clinical_ai.inference.engine.features.types import MissingRule

LOINC = "http://loinc.org"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

DESIGN_EXAMPLE: list[dict[str, Any]] = [
    {"name": "age", "label": "age", "source": "age", "missing": {"impute": 50}},
    {"name": "female", "label": "female sex", "source": "sex", "equals": "female", "missing": {"impute": 0}},
    {
        "name": "ed_visits_12m",
        "label": "emergency visits, last 12 months",
        "resourceType": "Encounter",
        "element": "class",
        "codes": [f"{ACT}|EMER"],
        "window": "P365D",
        "aggregate": "count",
    },
    {
        "name": "sbp_mean_1y",
        "label": "mean systolic blood pressure, last year",
        "resourceType": "Observation",
        "codes": [f"{LOINC}|8480-6"],
        "window": "P365D",
        "aggregate": "mean",
        "unit": "mm[Hg]",
        "missing": {"impute": 125},
    },
    {
        "name": "days_since_visit",
        "label": "days since the last visit",
        "resourceType": "Encounter",
        "aggregate": "time_since",
        "time_unit": "d",
        "missing": "refuse",
    },
    {
        "name": "on_anticoagulant",
        "label": "anticoagulant prescribed, last 90 days",
        "resourceType": "MedicationRequest",
        "valueSet": "valuesets/anticoagulants.json",
        "window": "P90D",
        "aggregate": "present",
    },
]

ANTICOAGULANTS = {
    "resourceType": "ValueSet",
    "status": "active",
    "compose": {
        "include": [
            {"system": RXNORM, "concept": [{"code": "855332"}, {"code": "1364430"}, {"code": "1114195"}]}
        ]
    },
}


def write_value_set(base: Path, name: str = "valuesets/anticoagulants.json", document: Any = None) -> None:
    path = base / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ANTICOAGULANTS if document is None else document), encoding="utf-8")


def parse(items: Any, base: Path, extra: tuple[str, ...] = ()) -> Any:
    return feature_set_parse(items, base=base, where="manifest.json", extra_code_systems=extra)


def error(items: Any, base: Path, extra: tuple[str, ...] = ()) -> str:
    with pytest.raises(FeatureSpecError) as caught:
        parse(items, base, extra)
    return str(caught.value)


def sbp(**changes: Any) -> dict[str, Any]:
    item = dict(DESIGN_EXAMPLE[3])
    item.update(changes)
    return {key: value for key, value in item.items() if value is not None}


def test_design_example_parses_in_column_order(tmp_path: Path) -> None:
    write_value_set(tmp_path)
    features = parse(DESIGN_EXAMPLE, tmp_path)
    assert features.names == (
        "age",
        "female",
        "ed_visits_12m",
        "sbp_mean_1y",
        "days_since_visit",
        "on_anticoagulant",
    )
    age, female, ed, mean, since, anticoagulant = features.features
    assert (age.source, age.missing) == ("age", MissingRule("impute", 50.0))
    assert (female.source, female.equals) == ("sex", "female")
    assert ed.codes == frozenset({f"{ACT}|EMER"}) and ed.lookback == timedelta(days=365)
    assert (ed.element, ed.aggregate, ed.missing.policy) == ("class", "count", "refuse")
    assert (mean.unit, mean.element, mean.missing.value) == ("mm[Hg]", "code", 125.0)
    assert (since.lookback, since.time_unit, since.element) == (None, "d", "class")
    assert anticoagulant.codes == {f"{RXNORM}|855332", f"{RXNORM}|1364430", f"{RXNORM}|1114195"}
    assert features.resource_types == {"Patient", "Encounter", "Observation", "MedicationRequest"}
    assert ed.window_text == "last 1 year" and anticoagulant.window_text == "last 90 days"


def test_no_features_key_is_an_empty_set_and_a_non_list_is_refused(tmp_path: Path) -> None:
    assert len(parse(None, tmp_path)) == 0
    assert "must be a list" in error({"name": "age"}, tmp_path)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        (sbp(name="2bad"), "'name' must start with a letter"),
        (sbp(label=None), "features[0] (sbp_mean_1y): 'label' is required"),
        (sbp(label="  "), "'label' is required"),
        (sbp(label="sbp_mean_1y"), "plain words"),
        (sbp(label="<b>systolic</b>"), "plain words"),
        (sbp(label="x" * 121), "plain words"),
        (sbp(source="lab"), "'source' must be one of resource, age, sex"),
        (sbp(resourceType="Claim"), "'resourceType' must be one of"),
        (sbp(aggregate="median"), "'aggregate' must be one of"),
        (sbp(codes=["8480-6"]), "is not 'system|code'"),
        (sbp(codes=[f"{LOINC}|"]), "is not 'system|code'"),
        (sbp(codes=[f"{LOINC}| 8480-6"]), "is not 'system|code'"),
        (sbp(codes=[]), "non-empty list"),
        (sbp(codes=[42]), "must be a 'system|code' string"),
        (sbp(codes=["http://example.org/labs|sbp"]), "unknown code system 'http://example.org/labs'"),
        (sbp(window="90 days"), "window '90 days' is not an ISO 8601 duration"),
        (sbp(window="P0D"), "window 'P0D' is empty"),
        (sbp(window="PT"), "is not an ISO 8601 duration"),
        (sbp(unit="furlong"), "features[0] (sbp_mean_1y): unit 'furlong' cannot be converted"),
        (sbp(missing="zero"), '\'missing\' must be "refuse" or {"impute": <number>}'),
        (sbp(missing={"impute": "125"}), "'missing' must be"),
        (sbp(missing={"impute": True}), "'missing' must be"),
        (sbp(missing={"impute": 1, "also": 2}), "'missing' must be"),
        (sbp(windw="P1D"), "unknown key(s) for a 'resource' feature: 'windw'"),
        (sbp(element="valueQuantity"), "element 'valueQuantity' is not one of the coded elements"),
        (sbp(time_unit="h"), "'time_unit' applies to the aggregates time_since and slope"),
        (sbp(codes=None), "the aggregate 'mean' needs 'codes' or 'valueSet'"),
        (sbp(aggregate="slope", time_unit="wk"), "'time_unit' must be one of d, h"),
        (sbp(codes=[f"{LOINC}|8480-6"], valueSet="v.json"), "give 'codes' or 'valueSet', not both"),
    ],
)
def test_each_mistake_names_the_feature(tmp_path: Path, item: dict[str, Any], message: str) -> None:
    text = error([item], tmp_path)
    assert text.startswith("features[0]")
    assert message in text


def test_position_and_name_are_in_the_message(tmp_path: Path) -> None:
    items = [DESIGN_EXAMPLE[0], DESIGN_EXAMPLE[1], DESIGN_EXAMPLE[2], sbp(unit="furlong")]
    assert error(items, tmp_path).startswith("features[3] (sbp_mean_1y): unit 'furlong' cannot be converted")
    assert error([DESIGN_EXAMPLE[0], "age"], tmp_path) == "features[1]: each feature must be an object"


def test_names_are_unique(tmp_path: Path) -> None:
    text = error([DESIGN_EXAMPLE[0], {**DESIGN_EXAMPLE[1], "name": "age"}], tmp_path)
    assert text == "features[1] (age): the name 'age' is used by an earlier feature"


@pytest.mark.parametrize("aggregate", ["latest", "min", "max", "mean", "slope"])
def test_numeric_aggregates_read_observation_values_only(tmp_path: Path, aggregate: str) -> None:
    item = {**DESIGN_EXAMPLE[2], "aggregate": aggregate}
    assert "only Observation has one" in error([item], tmp_path)
    assert parse([sbp(aggregate=aggregate)], tmp_path).features[0].aggregate == aggregate


def test_unit_is_for_numeric_aggregates_and_missing_never_for_counts(tmp_path: Path) -> None:
    assert "'unit' applies to the numeric aggregates" in error(
        [sbp(aggregate="count", missing=None)], tmp_path
    )
    text = error([{**DESIGN_EXAMPLE[2], "missing": {"impute": 0}}], tmp_path)
    assert "'missing' does not apply: a count is never missing" in text
    present = {**DESIGN_EXAMPLE[2], "aggregate": "present", "missing": "refuse"}
    assert "a present is never missing" in error([present], tmp_path)


@pytest.mark.parametrize("unit", ["mm[Hg]", "kg", "[lb_av]", "mg/dL", "mmol/L", "10*3/uL", "Cel", "%", "a"])
def test_convertible_units_are_accepted(tmp_path: Path, unit: str) -> None:
    assert parse([sbp(unit=unit)], tmp_path).features[0].unit == unit


def test_extra_code_systems_are_declared_by_the_manifest(tmp_path: Path) -> None:
    local = "http://hospital.example.org/fhir/CodeSystem/labs"
    item = sbp(codes=[f"{local}|SBP"])
    assert "unknown code system" in error([item], tmp_path)
    assert parse([item], tmp_path, extra=(local,)).features[0].codes == {f"{local}|SBP"}


def test_elements_per_resource_type(tmp_path: Path) -> None:
    def feature(resource_type: str, element: str | None = None) -> dict[str, Any]:
        item = {"name": "x", "label": "x", "resourceType": resource_type, "aggregate": "count"}
        return item if element is None else {**item, "element": element}

    defaults = {
        "Observation": "code",
        "Condition": "code",
        "Encounter": "class",
        "MedicationRequest": "medicationCodeableConcept",
        "MedicationStatement": "medicationCodeableConcept",
        "MedicationAdministration": "medicationCodeableConcept",
        "Procedure": "code",
        "Immunization": "vaccineCode",
        "DiagnosticReport": "code",
        "AllergyIntolerance": "code",
    }
    for resource_type, element in defaults.items():
        assert parse([feature(resource_type)], tmp_path).features[0].element == element
    for element in ("type", "reasonCode"):
        assert parse([feature("Encounter", element)], tmp_path).features[0].element == element
    assert "not one of the coded elements read on Immunization" in error(
        [feature("Immunization", "code")], tmp_path
    )


def test_age_and_sex_specifics(tmp_path: Path) -> None:
    assert parse([{**DESIGN_EXAMPLE[0], "unit": "a"}], tmp_path).features[0].source == "age"
    assert "whole years" in error([{**DESIGN_EXAMPLE[0], "unit": "mo"}], tmp_path)
    assert "unknown key(s) for a 'age' feature: 'window'" in error(
        [{**DESIGN_EXAMPLE[0], "window": "P1D"}], tmp_path
    )
    assert "'equals' must be one of male, female, other, unknown" in error(
        [{**DESIGN_EXAMPLE[1], "equals": "F"}], tmp_path
    )
    assert "'equals' must be one of" in error(
        [{k: v for k, v in DESIGN_EXAMPLE[1].items() if k != "equals"}], tmp_path
    )
    assert "unknown key(s) for a 'sex' feature: 'codes'" in error(
        [{**DESIGN_EXAMPLE[1], "codes": [f"{LOINC}|1"]}], tmp_path
    )
    assert parse([DESIGN_EXAMPLE[1]], tmp_path).features[0].missing == MissingRule("impute", 0.0)
    refusing = {k: v for k, v in DESIGN_EXAMPLE[0].items() if k != "missing"}
    assert parse([refusing], tmp_path).features[0].missing == MissingRule("refuse")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P365D", timedelta(days=365)),
        ("P1Y", timedelta(days=365)),
        ("P2W", timedelta(days=14)),
        ("PT24H", timedelta(hours=24)),
        ("PT90M", timedelta(minutes=90)),
        ("P1DT12H", timedelta(days=1, hours=12)),
    ],
)
def test_window_durations(text: str, expected: timedelta) -> None:
    assert window_parse(text) == expected


@pytest.mark.parametrize("text", ["", "P", "PT", "P1DT", "P1M", "p1d", "P1.5D", "-P1D", 90, None])
def test_window_durations_refused(text: Any) -> None:
    with pytest.raises(FeatureSpecError):
        window_parse(text)


# --- value sets -------------------------------------------------------------------------------------


def anticoagulant(value_set: str = "valuesets/anticoagulants.json") -> dict[str, Any]:
    return {**DESIGN_EXAMPLE[5], "valueSet": value_set}


def test_value_set_compose_less_exclude_plus_expansion(tmp_path: Path) -> None:
    document = {
        "resourceType": "ValueSet",
        "compose": {
            "include": [{"system": RXNORM, "concept": [{"code": "1"}, {"code": "2"}]}],
            "exclude": [{"system": RXNORM, "concept": [{"code": "2"}]}],
        },
        "expansion": {
            "contains": [
                {"system": RXNORM, "code": "3"},
                {"abstract": True, "code": "group", "contains": [{"system": RXNORM, "code": "4"}]},
            ]
        },
    }
    write_value_set(tmp_path, document=document)
    assert parse([anticoagulant()], tmp_path).features[0].codes == {
        f"{RXNORM}|1",
        f"{RXNORM}|3",
        f"{RXNORM}|4",
    }


def test_value_set_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "vs.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(ANTICOAGULANTS).encode())
    assert len(parse([anticoagulant("vs.json")], tmp_path).features[0].codes) == 3


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("not json", "is not valid JSON"),
        ({"resourceType": "CodeSystem"}, "is not a FHIR ValueSet"),
        ({"resourceType": "ValueSet"}, "lists no codes"),
        (
            {
                "resourceType": "ValueSet",
                "compose": {"include": [{"system": RXNORM, "filter": [{"op": "is-a"}]}]},
            },
            "cannot be expanded here",
        ),
        (
            {"resourceType": "ValueSet", "compose": {"include": [{"system": RXNORM}]}},
            "cannot be expanded here",
        ),
        (
            {"resourceType": "ValueSet", "compose": {"include": [{"concept": [{"code": "1"}]}]}},
            "each concept needs its include's system",
        ),
        (
            {
                "resourceType": "ValueSet",
                "compose": {"include": [{"system": "urn:x", "concept": [{"code": "1"}]}]},
            },
            "unknown code system 'urn:x'",
        ),
        ({"resourceType": "ValueSet", "expansion": {"contains": [{"code": "1"}]}}, "has no system"),
    ],
)
def test_value_set_problems(tmp_path: Path, document: Any, message: str) -> None:
    path = tmp_path / "valuesets" / "anticoagulants.json"
    path.parent.mkdir()
    path.write_text(document if isinstance(document, str) else json.dumps(document), encoding="utf-8")
    text = error([anticoagulant()], tmp_path)
    assert text.startswith("features[0] (on_anticoagulant): ")
    assert message in text


def test_value_set_path_must_exist_and_stay_in_the_manifest_folder(tmp_path: Path) -> None:
    base = tmp_path / "model"
    base.mkdir()
    write_value_set(tmp_path, "outside.json")
    assert "not found" in error([anticoagulant("missing.json")], base)
    assert "lies outside the manifest's folder" in error([anticoagulant("../outside.json")], base)
    assert "relative to the manifest's folder" in error([anticoagulant(str(tmp_path / "outside.json"))], base)
    (base / "link.json").symlink_to(tmp_path / "outside.json")
    assert "lies outside the manifest's folder" in error([anticoagulant("link.json")], base)
