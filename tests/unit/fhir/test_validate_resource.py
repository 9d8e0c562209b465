from __future__ import annotations

from typing import Any

import pytest

from clinical_ai.fhir.validation import validate_resource
from clinical_ai.fhir.validation_resource import MAX_ISSUES_PER_RESOURCE, loc_to_path

from .builders import codes_at, expressions, observation, patient


def test_valid_resources_have_no_issues() -> None:
    assert validate_resource(patient()) == []
    assert validate_resource(observation()) == []
    assert validate_resource({"resourceType": "Basic", "code": {"text": "note"}}) == []


# --- resourceType --------------------------------------------------------------------------------


def test_missing_resource_type() -> None:
    assert codes_at(validate_resource({"id": "x"})) == {("required", "resourceType")}


@pytest.mark.parametrize("value", [5, None, ["Patient"], {"a": 1}, True])
def test_resource_type_must_be_a_string(value: Any) -> None:
    issues = validate_resource({"resourceType": value})
    assert len(issues) == 1
    assert issues[0].code in {"structure", "required"}


@pytest.mark.parametrize("body", [[], [patient()], "Patient", 42, None])
def test_a_body_that_is_not_an_object_is_one_issue(body: Any) -> None:
    issues = validate_resource(body)
    assert [issue.code for issue in issues] == ["structure"]


@pytest.mark.parametrize(
    "name", ["Foo", "patient", "Resource", "DomainResource", "HumanName", "Citation", ""]
)
def test_unknown_resource_types_are_not_supported(name: str) -> None:
    issues = validate_resource({"resourceType": name})
    assert codes_at(issues) == {("not-supported", "resourceType")}
    assert "not a FHIR R4 resource type" in issues[0].diagnostics


@pytest.mark.parametrize(
    "name", ["MedicinalProduct", "SubstanceSpecification", "EffectEvidenceSynthesis", "Evidence"]
)
def test_r4_types_that_r4b_cannot_validate_are_a_clean_issue(name: str) -> None:
    issues = validate_resource({"resourceType": name, "id": "x"})
    assert codes_at(issues) == {("not-supported", "resourceType")}
    assert issues[0].diagnostics == f"R4 resource type {name} is not supported"


def test_unknown_type_text_is_not_echoed() -> None:
    issues = validate_resource({"resourceType": "JohnSmith"})
    assert "John" not in issues[0].diagnostics


# --- model validation and paths -----------------------------------------------------------------


def test_missing_required_element() -> None:
    resource = observation()
    del resource["code"]
    assert codes_at(validate_resource(resource)) == {("required", "Observation.code")}


def test_unknown_element() -> None:
    assert codes_at(validate_resource(patient(favouriteColour="blue"))) == {
        ("structure", "Patient.favouriteColour")
    }


def test_bad_primitive_values() -> None:
    issues = validate_resource(patient(birthDate="1970-13-45", id="not an id", telecom=[{"value": ""}]))
    assert codes_at(issues) == {
        ("value", "Patient.birthDate"),
        ("value", "Patient.id"),
        ("value", "Patient.telecom[0].value"),
    }


@pytest.mark.parametrize(
    ("element", "value"),
    [
        ("active", "yes"),  # the model would coerce these: FHIR JSON does not
        ("active", "true"),
        ("active", 1),
        ("multipleBirthInteger", "3"),
        ("multipleBirthInteger", True),
        ("multipleBirthInteger", 3.0),
        ("birthDate", 0),
        ("deceasedDateTime", 1600000000),
        ("gender", 5),
        ("name", [{"family": 7}]),
        ("name", [{"given": ["Ann", 7]}]),
        ("gender", None),
    ],
)
def test_primitives_must_have_their_json_type(element: str, value: Any) -> None:
    issues = validate_resource(patient(**{element: value}))
    assert len(issues) == 1
    assert issues[0].code == "structure"
    assert issues[0].expression[0].startswith(f"Patient.{element}")


def test_decimal_must_be_a_json_number() -> None:
    assert validate_resource(observation(valueQuantity={"value": 72.5})) == []
    issues = validate_resource(observation(valueQuantity={"value": "72"}))
    assert codes_at(issues) == {("structure", "Observation.valueQuantity.value")}


def test_null_placeholders_in_primitive_arrays_are_allowed() -> None:
    name = {
        "given": ["Ann", None],
        "_given": [None, {"extension": [{"url": "http://x.org", "valueString": "B"}]}],
    }
    assert validate_resource(patient(name=[name])) == []


def test_paths_into_backbone_elements_and_lists() -> None:
    resource = observation(component=[{"code": {"text": "systolic"}}, {"valueQuantity": {"value": 80}}])
    assert codes_at(validate_resource(resource)) == {("required", "Observation.component[1].code")}


def test_choice_type_given_twice_is_an_invariant_on_the_element() -> None:
    issues = validate_resource(observation(valueString="high"))
    assert codes_at(issues) == {("invariant", "Observation")}


def test_python_keyword_aliases_map_back_to_fhir_names() -> None:
    encounter: dict[str, Any] = {"resourceType": "Encounter", "status": "finished"}
    assert codes_at(validate_resource(encounter)) == {("required", "Encounter.class")}
    encounter["class"] = {"code": 5}
    assert codes_at(validate_resource(encounter)) == {("structure", "Encounter.class.code")}


def test_primitive_extension_paths() -> None:
    resource = observation(_status={"extension": [{"url": 5}]})
    assert codes_at(validate_resource(resource)) == {("structure", "Observation._status.extension[0].url")}


def test_expression_prefix_replaces_the_type_name() -> None:
    issues = validate_resource(observation(status="done"), expression_prefix="Bundle.entry[3].resource")
    assert expressions(issues) == ["Bundle.entry[3].resource.status"]


def test_loc_to_path_drops_parts_that_are_not_elements() -> None:
    data = {"fhir_comments": {"x": 1}, "name": [{"given": ["a"]}]}
    assert loc_to_path(("fhir_comments", "str"), data, "Patient") == "Patient.fhir_comments"
    assert loc_to_path(("name", 0, "given", 0), data, "Patient") == "Patient.name[0].given[0]"
    assert loc_to_path(("name", 5), data, "Patient") == "Patient.name"
    assert loc_to_path(("name", 0, "function-wrap[validate()]", "family"), data, "Patient") == (
        "Patient.name[0].family"
    )
    assert loc_to_path(("class_fhir",), {}, "Encounter") == "Encounter.class"
    assert loc_to_path(("status__ext", "extension"), {"_status": {}}, "Task") == "Task._status.extension"
    assert loc_to_path(("resource_type",), {"resourceType": "X"}, "Patient") == "Patient.resourceType"
    assert loc_to_path((), data, "Patient") == "Patient"


# --- required codes ------------------------------------------------------------------------------


def test_patient_gender_banana() -> None:
    issues = validate_resource(patient(gender="banana"))
    assert codes_at(issues) == {("code-invalid", "Patient.gender")}
    assert "female | male | other | unknown" in issues[0].diagnostics


def test_observation_status_done_is_not_r4() -> None:
    assert codes_at(validate_resource(observation(status="done"))) == {("code-invalid", "Observation.status")}


@pytest.mark.parametrize("status", ["corrected", "cancelled", "entered-in-error", "unknown", "registered"])
def test_observation_status_codes_missing_from_the_truncated_r4b_list_are_accepted(status: str) -> None:
    assert validate_resource(observation(status=status)) == []


@pytest.mark.parametrize(
    ("resource_type", "element", "good", "bad"),
    [
        ("Encounter", "status", "entered-in-error", "completed"),
        ("DiagnosticReport", "status", "appended", "done"),
        ("Procedure", "status", "not-done", "done"),
        ("MedicationRequest", "status", "on-hold", "suspended"),
        ("MedicationRequest", "intent", "original-order", "directive"),
        ("MedicationStatement", "status", "not-taken", "taken"),
        ("MedicationAdministration", "status", "not-done", "given"),
        ("Immunization", "status", "not-done", "given"),
        ("DocumentReference", "status", "superseded", "final"),
        ("CarePlan", "status", "revoked", "cancelled"),
        ("CarePlan", "intent", "option", "order-set"),
        ("ServiceRequest", "status", "revoked", "cancelled"),
        ("ServiceRequest", "intent", "directive", "request"),
        ("Claim", "status", "draft", "final"),
        ("ExplanationOfBenefit", "status", "cancelled", "complete"),
        ("ExplanationOfBenefit", "outcome", "partial", "success"),
        ("ExplanationOfBenefit", "use", "predetermination", "bill"),
        ("Task", "status", "on-hold", "paused"),
        ("DetectedIssue", "status", "corrected", "open"),
        ("RiskAssessment", "status", "unknown", "done"),
    ],
)
def test_required_codes(resource_type: str, element: str, good: str, bad: str) -> None:
    resource: dict[str, Any] = {"resourceType": resource_type, element: good}
    assert ("code-invalid", f"{resource_type}.{element}") not in codes_at(validate_resource(resource))
    resource[element] = bad
    assert ("code-invalid", f"{resource_type}.{element}") in codes_at(validate_resource(resource))


def test_encounter_status_history_uses_the_full_r4_list() -> None:
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "statusHistory": [
            {"status": "entered-in-error", "period": {"start": "2020-01-01"}},
            {"status": "done", "period": {"start": "2020-01-02"}},
        ],
    }
    assert codes_at(validate_resource(encounter)) == {("code-invalid", "Encounter.statusHistory[1].status")}


def test_list_of_codes_is_checked_item_by_item() -> None:
    allergy = {"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/1"}}
    allergy["category"] = ["food", "pollen"]
    assert codes_at(validate_resource(allergy)) == {("code-invalid", "AllergyIntolerance.category[1]")}


def test_codes_inside_data_types_and_backbone_elements() -> None:
    resource = observation(
        valueQuantity={"value": 5, "comparator": "~"},
        component=[
            {"code": {"text": "a"}, "valueQuantity": {"value": 1, "comparator": "<"}},
            {"code": {"text": "b"}, "valueQuantity": {"value": 1, "comparator": "about"}},
        ],
        identifier=[{"use": "primary", "value": "x"}],
    )
    assert codes_at(validate_resource(resource)) == {
        ("code-invalid", "Observation.valueQuantity.comparator"),
        ("code-invalid", "Observation.component[1].valueQuantity.comparator"),
        ("code-invalid", "Observation.identifier[0].use"),
    }


def test_codes_in_contained_resources() -> None:
    resource = observation(contained=[patient(id="p1", gender="banana")], subject={"reference": "#p1"})
    assert codes_at(validate_resource(resource)) == {("code-invalid", "Observation.contained[0].gender")}


def test_codes_are_checked_even_when_the_model_rejects_something_else() -> None:
    issues = validate_resource(patient(gender="banana", birthDate="yesterday"))
    assert codes_at(issues) == {("code-invalid", "Patient.gender"), ("value", "Patient.birthDate")}


def condition(clinical: dict[str, Any], verification: dict[str, Any] | None = None) -> dict[str, Any]:
    resource = {
        "resourceType": "Condition",
        "subject": {"reference": "Patient/1"},
        "clinicalStatus": clinical,
    }
    if verification is not None:
        resource["verificationStatus"] = verification
    return resource


CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


def test_condition_clinical_and_verification_status_codings() -> None:
    good = condition(
        {"coding": [{"system": CLINICAL, "code": "remission"}]},
        {"coding": [{"system": VERIFICATION, "code": "differential"}]},
    )
    assert validate_resource(good) == []
    bad = condition(
        {
            "coding": [
                {"system": "http://example.org/local", "code": "whatever"},
                {"system": CLINICAL, "code": "cured"},
            ]
        },
        {"coding": [{"system": VERIFICATION, "code": "suspected"}]},
    )
    assert codes_at(validate_resource(bad)) == {
        ("code-invalid", "Condition.clinicalStatus.coding[1].code"),
        ("code-invalid", "Condition.verificationStatus.coding[0].code"),
    }


def test_allergy_intolerance_status_codings() -> None:
    allergy = {
        "resourceType": "AllergyIntolerance",
        "patient": {"reference": "Patient/1"},
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "code": "gone",
                }
            ]
        },
        "verificationStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "code": "confirmed",
                }
            ]
        },
        "reaction": [{"manifestation": [{"text": "rash"}], "severity": "lethal"}],
    }
    assert codes_at(validate_resource(allergy)) == {
        ("code-invalid", "AllergyIntolerance.clinicalStatus.coding[0].code"),
        ("code-invalid", "AllergyIntolerance.reaction[0].severity"),
    }


# --- contained resources and local references ---------------------------------------------------


def test_local_references_resolve_to_contained_resources() -> None:
    resource = observation(
        contained=[patient(id="p1"), {"resourceType": "Practitioner", "id": "dr"}],
        subject={"reference": "#p1"},
        performer=[{"reference": "#dr"}, {"reference": "Practitioner/123"}],
    )
    assert validate_resource(resource) == []


def test_unresolved_local_reference() -> None:
    resource = observation(contained=[patient(id="p1")], subject={"reference": "#p2"})
    assert codes_at(validate_resource(resource)) == {("not-found", "Observation.subject.reference")}
    assert codes_at(validate_resource(observation(subject={"reference": "#p1"}))) == {
        ("not-found", "Observation.subject.reference")
    }


def test_contained_resources_may_refer_to_siblings_and_to_the_container() -> None:
    resource = {
        "resourceType": "MedicationRequest",
        "status": "active",
        "intent": "order",
        "subject": {"reference": "Patient/1"},
        "medicationReference": {"reference": "#med"},
        "contained": [
            {"resourceType": "Medication", "id": "med", "manufacturer": {"reference": "#org"}},
            {"resourceType": "Organization", "id": "org", "partOf": {"reference": "#"}},
        ],
    }
    assert validate_resource(resource) == []


def test_references_in_extensions_are_checked_too() -> None:
    resource = patient(
        extension=[{"url": "http://example.org/x", "valueReference": {"reference": "#nowhere"}}],
    )
    assert codes_at(validate_resource(resource)) == {
        ("not-found", "Patient.extension[0].valueReference.reference")
    }


def test_each_resource_in_a_bundle_has_its_own_contained_scope() -> None:
    document = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": observation(contained=[patient(id="p1")], subject={"reference": "#p1"})},
            {"resource": observation(subject={"reference": "#p1"})},
        ],
    }
    assert codes_at(validate_resource(document)) == {
        ("not-found", "Bundle.entry[1].resource.subject.reference")
    }


@pytest.mark.parametrize(
    ("contained", "code"),
    [
        ({"resourceType": "Foo", "id": "x"}, "not-supported"),
        ({"resourceType": "MedicinalProduct", "id": "x"}, "not-supported"),
        ({"resourceType": 5, "id": "x"}, "structure"),
        ({"resourceType": None, "id": "x"}, "required"),
        ({"id": "x"}, "required"),
    ],
)
def test_contained_resources_of_unknown_types_are_issues_not_exceptions(
    contained: dict[str, Any], code: str
) -> None:
    issues = validate_resource(patient(contained=[contained]))
    assert codes_at(issues) == {(code, "Patient.contained[0].resourceType")}


def test_unknown_type_nested_in_a_bundle_entry() -> None:
    document = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": {"resourceType": "Foo"}}],
    }
    assert codes_at(validate_resource(document)) == {
        ("not-supported", "Bundle.entry[0].resource.resourceType")
    }


def test_parameters_resource_values_are_validated() -> None:
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "patient", "resource": patient(gender="banana")}],
    }
    assert codes_at(validate_resource(parameters)) == {
        ("code-invalid", "Parameters.parameter[0].resource.gender")
    }


# --- robustness ----------------------------------------------------------------------------------


def test_issue_count_is_capped() -> None:
    resource = patient(**{f"unknown{i}": i for i in range(MAX_ISSUES_PER_RESOURCE + 20)})
    issues = validate_resource(resource)
    assert len(issues) == MAX_ISSUES_PER_RESOURCE + 1
    assert issues[-1].code == "too-costly"


def test_deeply_nested_input_is_an_issue_not_a_recursion_error() -> None:
    extension: dict[str, Any] = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(3000):
        extension = {"url": "http://example.org/x", "extension": [extension]}
    issues = validate_resource(patient(extension=[extension]))
    assert issues  # whatever the library makes of it, the answer is issues
    assert all(issue.code for issue in issues)


def test_diagnostics_never_quote_resource_values() -> None:
    secret = "SECRETJANEDOE"
    resource = {
        "resourceType": "Patient",
        "id": f"{secret} with spaces",
        "gender": secret,
        "birthDate": secret,
        "active": secret,
        "multipleBirthInteger": secret,
        "telecom": [{"system": secret, "value": 5}],
        "name": [{"use": secret, "family": [secret]}],
        "maritalStatus": {"coding": secret},
        "contained": [{"resourceType": secret}],
        secret: secret,
    }
    for issues in (
        validate_resource(resource),
        validate_resource(patient(gender=secret, photo=[{"data": secret}])),
    ):
        assert issues
        for issue in issues:
            assert secret not in issue.diagnostics


def test_contained_resources_cannot_contain_resources() -> None:
    inner = patient(id="p1", contained=[{"resourceType": "Practitioner", "id": "dr"}])
    issues = validate_resource(observation(contained=[inner], subject={"reference": "#p1"}))
    assert codes_at(issues) == {("invariant", "Observation.contained[0].contained[0]")}


def test_issues_found_by_the_walk_come_in_document_order() -> None:
    resource = observation(
        status="done",
        component=[
            {"code": {"text": "a"}, "valueQuantity": {"value": 1, "comparator": "~"}},
            {"code": {"text": "b"}, "valueQuantity": {"value": 1, "comparator": "~"}},
        ],
        interpretation=[{"coding": [{"code": "H"}]}],
        note=[{"text": "x", "authorReference": {"reference": "#gone"}}],
    )
    assert expressions(validate_resource(resource)) == [
        "Observation.status",
        "Observation.component[0].valueQuantity.comparator",
        "Observation.component[1].valueQuantity.comparator",
        "Observation.note[0].authorReference.reference",
    ]
