from __future__ import annotations

from typing import Any

import pytest

from clinical_ai.fhir.outcome import FhirError
from clinical_ai.fhir.validation import BundleCheck, EntryResult, Limits, check_intake_bundle

from .builders import bundle, codes_at, entry, observation, patient

PATIENT_URL = "urn:uuid:4f1c5a0e-7d3b-4a43-9d3e-3c1c7e0a9b11"
OBSERVATION_URL = "urn:uuid:9a3b4c5d-1e2f-4a5b-8c7d-0e1f2a3b4c5d"


def good_bundle(bundle_type: str = "transaction") -> dict[str, Any]:
    return bundle(
        [
            entry(patient(), full_url=PATIENT_URL),
            entry(observation(subject={"reference": PATIENT_URL}), full_url=OBSERVATION_URL),
        ],
        bundle_type,
    )


def entry_issues(check: BundleCheck, index: int) -> set[tuple[str, str]]:
    return codes_at(check.entries[index].issues)


@pytest.mark.parametrize("bundle_type", ["transaction", "batch"])
def test_a_good_bundle(bundle_type: str, limits: Limits) -> None:
    check = check_intake_bundle(good_bundle(bundle_type), limits=limits)
    assert check.ok
    assert check.bundle_type == bundle_type
    assert check.bundle_issues == []
    assert check.issues == []
    assert check.entries == [
        EntryResult(index=0, resource_type="Patient", full_url=PATIENT_URL, method="POST", issues=[]),
        EntryResult(index=1, resource_type="Observation", full_url=OBSERVATION_URL, method="POST", issues=[]),
    ]


def test_an_empty_transaction_is_ok(limits: Limits) -> None:
    check = check_intake_bundle({"resourceType": "Bundle", "type": "transaction"}, limits=limits)
    assert check.ok
    assert check.entries == []


# --- refused outright ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bundle_type", ["document", "collection", "searchset", "message", "history", "", None, 5]
)
def test_other_bundle_types_are_422(bundle_type: Any, limits: Limits) -> None:
    body = good_bundle()
    body["type"] = bundle_type
    with pytest.raises(FhirError) as caught:
        check_intake_bundle(body, limits=limits)
    assert caught.value.status == 422
    assert codes_at(caught.value.issues) == {("not-supported", "Bundle.type")}


def test_missing_bundle_type_is_422(limits: Limits) -> None:
    body = good_bundle()
    del body["type"]
    with pytest.raises(FhirError) as caught:
        check_intake_bundle(body, limits=limits)
    assert caught.value.status == 422


@pytest.mark.parametrize("body", [patient(), {"type": "transaction"}, [], "Bundle"])
def test_not_a_bundle_is_422(body: Any, limits: Limits) -> None:
    with pytest.raises(FhirError) as caught:
        check_intake_bundle(body, limits=limits)
    assert caught.value.status == 422


def test_too_many_entries_is_413(limits: Limits) -> None:
    entries = [entry(patient(id=f"p{i}")) for i in range(limits.max_bundle_entries)]
    assert check_intake_bundle(bundle(entries), limits=limits).ok
    entries.append(entry(patient()))
    with pytest.raises(FhirError) as caught:
        check_intake_bundle(bundle(entries), limits=limits)
    assert caught.value.status == 413
    assert caught.value.issues[0].code == "too-costly"


# --- entry.request -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "DELETE", "PATCH", "HEAD"])
def test_only_post_and_put_entries(method: str, limits: Limits) -> None:
    body = good_bundle("batch")
    body["entry"].append({"request": {"method": method, "url": "Patient/1"}})
    check = check_intake_bundle(body, limits=limits)
    assert not check.ok
    assert check.entries[0].issues == [] and check.entries[1].issues == []
    assert entry_issues(check, 2) == {("not-supported", "Bundle.entry[2].request.method")}
    assert check.entries[2].method == method


def test_put_entries(limits: Limits) -> None:
    body = bundle(
        [
            entry(patient(id="123"), method="PUT", url="Patient/123"),
            entry(patient(id="x"), method="PUT", url="Patient?identifier=http://example.org/mrn|4711"),
        ]
    )
    check = check_intake_bundle(body, limits=limits)
    assert check.ok
    assert [result.method for result in check.entries] == ["PUT", "PUT"]


def test_invalid_method_code(limits: Limits) -> None:
    check = check_intake_bundle(bundle([entry(patient(), method="FETCH")]), limits=limits)
    assert entry_issues(check, 0) == {("code-invalid", "Bundle.entry[0].request.method")}


def test_missing_request_parts(limits: Limits) -> None:
    no_request = {"resource": patient()}
    no_method = {"request": {"url": "Patient"}, "resource": patient()}
    no_url = {"request": {"method": "POST"}, "resource": patient()}
    empty_url = {"request": {"method": "POST", "url": "  "}, "resource": patient()}
    check = check_intake_bundle(bundle([no_request, no_method, no_url, empty_url]), limits=limits)
    assert entry_issues(check, 0) == {("required", "Bundle.entry[0].request")}
    assert entry_issues(check, 1) == {("required", "Bundle.entry[1].request.method")}
    assert entry_issues(check, 2) == {("required", "Bundle.entry[2].request.url")}
    assert ("required", "Bundle.entry[3].request.url") in entry_issues(check, 3)
    assert check.bundle_issues == []


@pytest.mark.parametrize(
    ("method", "url", "expected"),
    [
        ("POST", "Observation", ("invalid", "Bundle.entry[0].request.url")),
        ("POST", "Patient/123", ("invalid", "Bundle.entry[0].request.url")),
        ("PUT", "Patient", ("invalid", "Bundle.entry[0].request.url")),
        ("PUT", "Patient/999", ("invalid", "Bundle.entry[0].resource.id")),
        ("POST", "ValueSet/$lookup", ("not-supported", "Bundle.entry[0].request.url")),
    ],
)
def test_request_url_must_fit_the_resource(
    method: str, url: str, expected: tuple[str, str], limits: Limits
) -> None:
    check = check_intake_bundle(bundle([entry(patient(id="123"), method=method, url=url)]), limits=limits)
    assert entry_issues(check, 0) == {expected}


def test_put_without_an_id_in_the_resource(limits: Limits) -> None:
    resource = patient()
    del resource["id"]
    check = check_intake_bundle(bundle([entry(resource, method="PUT", url="Patient/123")]), limits=limits)
    assert entry_issues(check, 0) == {("invalid", "Bundle.entry[0].resource.id")}


def test_absolute_request_urls_are_left_to_the_caller(limits: Limits) -> None:
    body = bundle([entry(patient(), url="http://ehr.example.org/fhir/Patient")])
    assert check_intake_bundle(body, limits=limits).ok


# --- entry.resource ------------------------------------------------------------------------------


def test_resource_is_required(limits: Limits) -> None:
    check = check_intake_bundle(bundle([{"request": {"method": "POST", "url": "Patient"}}]), limits=limits)
    assert entry_issues(check, 0) == {("required", "Bundle.entry[0].resource")}
    assert check.entries[0].resource_type is None


def test_entry_resources_are_validated_with_their_bundle_path(limits: Limits) -> None:
    body = good_bundle()
    body["entry"][1]["resource"]["status"] = "done"
    body["entry"][0]["resource"]["gender"] = "banana"
    check = check_intake_bundle(body, limits=limits)
    assert entry_issues(check, 0) == {("code-invalid", "Bundle.entry[0].resource.gender")}
    assert entry_issues(check, 1) == {("code-invalid", "Bundle.entry[1].resource.status")}
    assert check.bundle_issues == []


def test_unknown_and_r4_only_types_in_entries(limits: Limits) -> None:
    body = bundle(
        [
            entry({"resourceType": "Foo"}),
            entry({"resourceType": "MedicinalProduct", "id": "x"}),
            entry({"resourceType": 5}, url="Patient"),
            entry(patient()),
        ],
        "batch",
    )
    check = check_intake_bundle(body, limits=limits)
    assert entry_issues(check, 0) == {("not-supported", "Bundle.entry[0].resource.resourceType")}
    assert check.entries[0].resource_type is None  # input that names no R4 type is not passed on
    assert check.entries[1].resource_type == "MedicinalProduct"
    assert entry_issues(check, 1) == {("not-supported", "Bundle.entry[1].resource.resourceType")}
    assert check.entries[1].issues[0].diagnostics == "R4 resource type MedicinalProduct is not supported"
    assert entry_issues(check, 2) == {("structure", "Bundle.entry[2].resource.resourceType")}
    assert check.entries[2].resource_type is None
    assert check.entries[3].issues == []


def test_entries_that_are_not_objects(limits: Limits) -> None:
    check = check_intake_bundle(bundle([5, "x", entry(patient())]), limits=limits)
    assert [bool(result.issues) for result in check.entries] == [True, True, False]
    assert all(issue.expression[0].startswith("Bundle.entry[0]") for issue in check.entries[0].issues)


def test_entry_that_is_not_a_list_is_a_bundle_issue(limits: Limits) -> None:
    check = check_intake_bundle({"resourceType": "Bundle", "type": "batch", "entry": {"a": 1}}, limits=limits)
    assert not check.ok
    assert check.entries == []
    assert check.bundle_issues


def test_problems_with_the_bundle_itself(limits: Limits) -> None:
    body = good_bundle()
    body["timestamp"] = "yesterday"
    body["colour"] = "blue"
    check = check_intake_bundle(body, limits=limits)
    assert codes_at(check.bundle_issues) == {("value", "Bundle.timestamp"), ("structure", "Bundle.colour")}
    assert all(not result.issues for result in check.entries)
    assert not check.ok


# --- fullUrl and references ----------------------------------------------------------------------


def test_full_urls_must_be_unique(limits: Limits) -> None:
    body = bundle(
        [entry(patient(id="a"), full_url=PATIENT_URL), entry(patient(id="b"), full_url=PATIENT_URL)]
    )
    check = check_intake_bundle(body, limits=limits)
    assert check.entries[0].issues == []
    assert entry_issues(check, 1) == {("duplicate", "Bundle.entry[1].fullUrl")}


def test_urn_uuid_full_url_must_hold_a_uuid(limits: Limits) -> None:
    check = check_intake_bundle(bundle([entry(patient(), full_url="urn:uuid:not-a-uuid")]), limits=limits)
    assert entry_issues(check, 0) == {("value", "Bundle.entry[0].fullUrl")}


def test_unresolved_urn_uuid_reference(limits: Limits) -> None:
    body = good_bundle()
    body["entry"][1]["resource"]["subject"] = {"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"}
    check = check_intake_bundle(body, limits=limits)
    assert entry_issues(check, 1) == {("not-found", "Bundle.entry[1].resource.subject.reference")}
    assert check.entries[0].issues == []


def test_unresolved_urn_oid_reference(limits: Limits) -> None:
    body = bundle(
        [
            entry(patient(), full_url="urn:oid:1.2.3.4"),
            entry(
                observation(
                    subject={"reference": "urn:oid:1.2.3.4"}, performer=[{"reference": "urn:oid:1.2.3.5"}]
                )
            ),
        ]
    )
    check = check_intake_bundle(body, limits=limits)
    assert entry_issues(check, 1) == {("not-found", "Bundle.entry[1].resource.performer[0].reference")}


def test_urn_references_anywhere_in_the_resource(limits: Limits) -> None:
    missing = "urn:uuid:11111111-2222-4333-8444-555555555555"
    resource = observation(
        subject={"reference": PATIENT_URL},
        extension=[{"url": "http://example.org/x", "valueReference": {"reference": missing}}],
        contained=[
            {
                "resourceType": "Provenance",
                "id": "prov",
                "recorded": "2020-01-01T00:00:00Z",
                "agent": [{"who": {"reference": missing}}],
                "target": [{"reference": "#"}],
            }
        ],
    )
    check = check_intake_bundle(
        bundle([entry(patient(), full_url=PATIENT_URL), entry(resource)]), limits=limits
    )
    assert entry_issues(check, 1) == {
        ("not-found", "Bundle.entry[1].resource.extension[0].valueReference.reference"),
        ("not-found", "Bundle.entry[1].resource.contained[0].agent[0].who.reference"),
    }


def test_relative_and_absolute_references_may_stay_unresolved(limits: Limits) -> None:
    resource = observation(
        subject={"reference": "Patient/123"},
        performer=[{"reference": "http://ehr.example.org/fhir/Practitioner/9"}, {"display": "Dr. Who"}],
    )
    assert check_intake_bundle(bundle([entry(resource)]), limits=limits).ok


def test_references_to_entries_later_in_the_bundle_resolve(limits: Limits) -> None:
    body = good_bundle()
    body["entry"].reverse()
    assert check_intake_bundle(body, limits=limits).ok


def test_batch_entries_stand_alone(limits: Limits) -> None:
    body = good_bundle("batch")
    body["entry"].append(entry(patient(gender="banana")))
    check = check_intake_bundle(body, limits=limits)
    assert not check.ok
    assert [bool(result.issues) for result in check.entries] == [False, False, True]
    assert check.bundle_issues == []
