from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from clinical_ai.deid.engine.fhirpath import FhirPathEvaluationError, FhirPathSyntaxError, compile_expression
from clinical_ai.deid.engine.nodes import Node, build_resource, to_json

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "extension": [
        {"url": "http://example.org/a", "valueString": "A"},
        {"url": "http://example.org/b", "valueAddress": {"city": "Nowhere"}},
    ],
    "name": [{"use": "official", "family": "Doe", "given": ["Jane", "Q"], "_given": [None, {"id": "g2"}]}],
    "birthDate": "1970-05-06",
    "_birthDate": {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                "valueDateTime": "1970-05-06T07:08:09Z",
            }
        ]
    },
    "address": [{"city": "Springfield", "postalCode": "12345", "state": "IL"}],
    "multipleBirthInteger": 2,
    "contained": [{"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Who"}]}],
    "generalPractitioner": [{"reference": "#dr", "display": "Dr Who"}],
}

OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "status": "final",
    "code": {
        "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}],
        "text": "HR",
    },
    "effectiveDateTime": "2020-01-02T03:04:05+01:00",
    "valueQuantity": {"value": 72.5, "unit": "/min"},
    "component": [{"code": {"text": "x"}, "valueInteger": 3}],
}


def _select(expression: str, resource: dict[str, Any]) -> list[Node]:
    return compile_expression(expression).select_nodes(build_resource(resource))


def _values(expression: str, resource: dict[str, Any]) -> list[Any]:
    return [node.value for node in _select(expression, resource)]


def test_nodes_carry_fhir_types_from_the_r4b_models() -> None:
    root = build_resource(OBSERVATION)
    types = {node.location(): node.fhir_type for node in root.self_and_descendants()}
    assert types["Observation"] == "Observation"
    assert types["Observation.code"] == "CodeableConcept"
    assert types["Observation.code.coding[0].system"] == "uri"
    assert types["Observation.effective"] == "dateTime"
    assert types["Observation.value"] == "Quantity"
    assert types["Observation.value.value"] == "decimal"
    assert types["Observation.component[0]"] == "BackboneElement"
    assert types["Observation.component[0].value"] == "integer"


def test_r4_only_resources_are_typed_from_the_r4_tables() -> None:
    product = {
        "resourceType": "MedicinalProduct",
        "name": [{"productName": "X", "namePart": [{"part": "X", "type": {"code": "INV"}}]}],
        "manufacturingBusinessOperation": [
            {"effectiveDate": "2013-03-15", "manufacturer": [{"reference": "Organization/1"}]}
        ],
    }
    assert _values("nodesByType('Coding').code", product) == ["INV"]
    assert _values("nodesByType('dateTime')", product) == ["2013-03-15"]
    assert _values("nodesByType('Reference').reference", product) == ["Organization/1"]


def test_unknown_content_is_kept_untyped() -> None:
    root = build_resource({"resourceType": "NotAThing", "foo": {"bar": "baz"}, "list": [1, 2]})
    assert [node.fhir_type for node in root.descendants()] == [None, None, None, None]
    assert to_json(root) == {"resourceType": "NotAThing", "foo": {"bar": "baz"}, "list": [1, 2]}


def test_json_round_trip_keeps_primitive_extensions() -> None:
    assert to_json(build_resource(PATIENT)) == PATIENT


def test_single_object_for_a_list_element_comes_back_as_a_list() -> None:
    out = to_json(build_resource({"resourceType": "Patient", "name": {"family": "Doe"}}))
    assert out["name"] == [{"family": "Doe"}]


def test_paths_choice_elements_and_type_filters() -> None:
    assert _values("Patient.name.given", PATIENT) == ["Jane", "Q"]
    assert _values("name.family", PATIENT) == ["Doe"]
    assert _values("Resource.id", PATIENT) == ["p1"]
    assert _values("DomainResource.id", PATIENT) == ["p1"]
    assert _values("Observation.id", PATIENT) == []
    assert _values("multipleBirth", PATIENT) == [2]
    assert _values("Observation.value.value", OBSERVATION) == [72.5]
    assert _values("Observation.valueQuantity.unit", OBSERVATION) == ["/min"]
    assert _values("(Observation.value as Quantity).unit", OBSERVATION) == ["/min"]
    assert _values("Observation.value.ofType(Quantity).unit", OBSERVATION) == ["/min"]
    assert _values("Observation.component.value as integer", OBSERVATION) == [3]
    assert _values("name[0].given[1]", PATIENT) == ["Q"]


def test_nodes_by_type_and_name_stay_out_of_nested_resources() -> None:
    assert _values("nodesByType('HumanName').family", PATIENT) == ["Doe"]
    assert _values("nodesByName('family')", PATIENT) == ["Doe"]
    assert _values("nodesByType('date')", PATIENT) == ["1970-05-06"]
    assert _values("nodesByType('dateTime')", PATIENT) == ["1970-05-06T07:08:09Z"]
    assert len(_select("nodesByType('Extension')", PATIENT)) == 3
    assert _values("contained.name.family", PATIENT) == ["Who"]


def test_where_and_boolean_logic() -> None:
    assert _values("nodesByType('Extension').where(url = 'http://example.org/b').value.city", PATIENT) == [
        "Nowhere"
    ]
    assert _values("Patient.address.where(city='Springfield' and state = 'IL').postalCode", PATIENT) == [
        "12345"
    ]
    assert _values("Patient.where(id.exists()).id", PATIENT) == ["p1"]
    assert _values("Patient.where(id.empty()).id", PATIENT) == []
    assert _values("name.where(given.count() > 1).family", PATIENT) == ["Doe"]
    assert _values("name.given.where($this.startsWith('J'))", PATIENT) == ["Jane"]
    assert _values("address.postalCode | name.family", PATIENT) == ["12345", "Doe"]


@pytest.mark.parametrize(
    ("expression", "value", "expected"),
    [
        ("$this in ('en-AU' | 'en-GB')", "en-GB", [True]),
        ("('es-AR' | 'es-ES') contains $this", "en-GB", [False]),
        ("$this.startsWith('123')", "12345", [True]),
        ("$this.substring(0,3)+'****'", "12345", ["123****"]),
        ("$this.length()", "12345", [5]),
        ("$this.upper()", "ab", ["AB"]),
        ("$this.matches('^[0-9]+$')", "12345", [True]),
        ("$this.replaceMatches('(?<a>\\\\d{3})\\\\d+', '${a}00')", "12345", ["12300"]),
        ("$this ~ 'ABC  '", "abc", [True]),
        ("iif($this = 'x', 'yes', 'no')", "x", ["yes"]),
        ("$this & '-' & {}", "a", ["a-"]),
    ],
)
def test_string_expressions(expression: str, value: str, expected: list[Any]) -> None:
    node = Node(name="code", json_key="code", fhir_type="code", parent=None, primitive=True, value=value)
    assert compile_expression(expression).evaluate(node) == expected


@pytest.mark.parametrize(
    ("fhir_type", "value", "expression", "expected"),
    [
        ("date", "2010-05-07", "$this <= @2020-01-01 and $this >= @1990-01-01", True),
        ("date", "1989-12-31", "$this >= @1990-01-01", False),
        # Partial values compare as if at their start, as the reference anonymizer does.
        ("dateTime", "2002", "$this <= @2020-01-01T00:00:00Z and $this >= @1990-01-01T00:00:00Z", True),
        ("dateTime", "2017-01-01T01:01:01-01:00", "$this > @2017-01-01T01:00:00Z", True),
        ("integer", 18, "$this >= 0 and $this < 20", True),
        ("decimal", 19.5, "($this div 10) * 10 = 10", True),
        ("decimal", 7.25, "$this.round(1) = 7.2", True),
        ("boolean", False, "$this.not()", True),
        ("time", "10:30:00", "$this < @T11:00", True),
    ],
)
def test_typed_comparisons(fhir_type: str, value: Any, expression: str, expected: bool) -> None:
    node = Node(name="v", json_key="v", fhir_type=fhir_type, parent=None, primitive=True, value=value)
    assert compile_expression(expression).is_true(node) is expected


def test_date_equality_needs_the_same_precision() -> None:
    node = Node(name="d", json_key="d", fhir_type="date", parent=None, primitive=True, value="2002")
    assert compile_expression("$this = @2002-01-01").evaluate(node) == []
    assert compile_expression("$this = @2002").evaluate(node) == [True]
    assert compile_expression("$this ~ @2002-05-01").evaluate(node) == [True]


def test_arithmetic_and_literals() -> None:
    node = Node(name="v", json_key="v", fhir_type="integer", parent=None, primitive=True, value=7)
    assert compile_expression("$this * 2 + 1").evaluate(node) == [15]
    assert compile_expression("$this / 2").evaluate(node) == [Decimal("3.5")]
    assert compile_expression("$this mod 4").evaluate(node) == [3]
    assert compile_expression("-$this").evaluate(node) == [-7]
    assert compile_expression("{}").evaluate(node) == []
    assert str(compile_expression("5 'mg'").evaluate(node)[0]) == "5 'mg'"


def test_comparing_incompatible_types_is_an_evaluation_error() -> None:
    node = Node(
        name="family", json_key="family", fhir_type="string", parent=None, primitive=True, value="Doe"
    )
    with pytest.raises(FhirPathEvaluationError, match="cannot compare"):
        compile_expression("$this >= 0").evaluate(node)


@pytest.mark.parametrize(
    "expression",
    [
        "Patient.name.",
        "Patient..name",
        "nodesByType('x'",
        "a b",
        "name.resolve()",
        "%undefined",
        "$total",
        "@2020-13",
    ],
)
def test_syntax_errors(expression: str) -> None:
    with pytest.raises(FhirPathSyntaxError):
        compile_expression(expression)


def test_environment_variables() -> None:
    root = build_resource(PATIENT)
    name = compile_expression("name").select_nodes(root)[0]
    assert [n.value for n in compile_expression("%resource.id").evaluate(name)] == ["p1"]
    contained = compile_expression("contained.name.family").select_nodes(root)[0]
    assert [n.value for n in compile_expression("%rootResource.id").evaluate(contained)] == ["p1"]
    assert [n.value for n in compile_expression("%resource.id").evaluate(contained)] == ["dr"]
