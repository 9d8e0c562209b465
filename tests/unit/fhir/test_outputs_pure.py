"""The output search parameters, the reference rewriting and the CapabilityStatement, as plain Python."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clinical_ai.fhir.search import SearchParameterError
from clinical_ai.inference.engine.fhir_output import PSEUDONYM_SYSTEM, SOURCE_SYSTEM
from integrations.fhir.capability import capability_statement
from integrations.fhir.output_references import patient_reference_from_vault, references_restore
from integrations.fhir.output_search import (
    DEFAULT_COUNT,
    MAX_COUNT,
    OUTPUT_TYPES,
    OutputSearch,
    PatientCriterion,
    cursor_text,
    parse_output_search,
)


def _query(params: Mapping[str, str | list[str]]) -> dict[str, list[str]]:
    return {k.replace("__", ":"): v if isinstance(v, list) else [v] for k, v in params.items()}


def _parse(**params: str | list[str]) -> OutputSearch:
    return parse_output_search("RiskAssessment", _query(params))


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"patient": "Patient/123"}, PatientCriterion(reference="Patient/123")),
        ({"patient": "123"}, PatientCriterion(reference="Patient/123")),
        (
            {"subject": "https://ehr.example.org/fhir/Patient/a.b-1"},
            PatientCriterion(reference="Patient/a.b-1"),
        ),
        (
            {"patient__identifier": "urn:oid:1.2|MRN-1"},
            PatientCriterion(identity="identifier:urn:oid:1.2|MRN-1"),
        ),
        ({"subject__identifier": f"{PSEUDONYM_SYSTEM}|abc"}, PatientCriterion(pseudonym="abc")),
    ],
)
def test_patient_forms(params: dict[str, str], expected: PatientCriterion) -> None:
    assert _parse(**params).patient == expected


@pytest.mark.parametrize(
    ("resource_type", "params", "parameter"),
    [
        ("RiskAssessment", {"unknown": "x"}, "unknown"),
        ("RiskAssessment", {"_sort": "-_lastUpdated"}, "_sort"),
        ("DetectedIssue", {"subject": "123"}, "subject"),  # DetectedIssue has patient only
        ("Device", {"patient": "123"}, "patient"),
        ("Provenance", {"status": "final"}, "status"),
        ("RiskAssessment", {"patient": "Group/1"}, "patient"),
        ("RiskAssessment", {"patient": ["1", "2"]}, "patient"),
        ("RiskAssessment", {"patient": "1", "subject": "1"}, "subject"),
        ("RiskAssessment", {"patient__identifier": "MRN-1"}, "patient:identifier"),
        ("RiskAssessment", {"_lastUpdated": "yesterday"}, "_lastUpdated"),
        ("RiskAssessment", {"_lastUpdated": "ne2026-01-01"}, "_lastUpdated"),
        ("RiskAssessment", {"_count": "-1"}, "_count"),
        ("RiskAssessment", {"_cursor": "abc"}, "_cursor"),
        ("RiskAssessment", {"_id": "a b"}, "_id"),
        ("RiskAssessment", {"_format": "xml"}, "_format"),
        ("RiskAssessment", {"status": "a,,b"}, "status"),
    ],
)
def test_unknown_or_unreadable_parameters_are_refused_by_name(
    resource_type: str, params: dict[str, str | list[str]], parameter: str
) -> None:
    with pytest.raises(SearchParameterError) as caught:
        parse_output_search(resource_type, _query(params))
    assert caught.value.parameter == parameter


def test_lenient_handling_ignores_unknown_names_only() -> None:
    search = parse_output_search("RiskAssessment", _query({"_sort": "x", "patient": "123"}), lenient=True)
    assert search.ignored == ("_sort",) and search.patient == PatientCriterion(reference="Patient/123")
    assert ("_sort", "x") not in search.used
    with pytest.raises(SearchParameterError):
        parse_output_search("RiskAssessment", {"_count": ["many"]}, lenient=True)


def test_last_updated_prefixes_become_bounds_and_combine() -> None:
    day = datetime(2026, 3, 2, tzinfo=UTC)
    eq = _parse(_lastUpdated="2026-03-02")
    assert (eq.updated_from, eq.updated_before) == (day, day + timedelta(days=1))
    assert _parse(_lastUpdated="gt2026-03-02").updated_from == day + timedelta(days=1)
    assert _parse(_lastUpdated="le2026-03-02").updated_before == day + timedelta(days=1)
    assert _parse(_lastUpdated="lt2026-03-02T10:00:00Z").updated_before == day.replace(hour=10)
    both = _parse(_lastUpdated=["ge2026-03-01", "ge2026-03-02", "lt2026-04-01", "lt2026-03-20"])
    assert (both.updated_from, both.updated_before) == (day, datetime(2026, 3, 20, tzinfo=UTC))


def test_count_defaults_caps_and_allows_zero_and_lists_split() -> None:
    assert _parse().count == DEFAULT_COUNT
    assert _parse(_count="100000").count == MAX_COUNT
    assert _parse(_count="0").count == 0
    search = _parse(status="preliminary,final", _id="a,b")
    assert search.statuses == ("preliminary", "final") and search.ids == ("a", "b")


def test_cursor_round_trips_to_the_microsecond() -> None:
    moment = datetime(2026, 3, 2, 10, 15, 30, 123456, tzinfo=UTC)
    assert _parse(_cursor=cursor_text(moment, 42)).cursor == (moment, 42)


def test_references_restore_rewrites_only_what_it_knows() -> None:
    resource: dict[str, Any] = {
        "resourceType": "RiskAssessment",
        "id": "r1",
        # An Identifier, not a Reference: never rewritten.
        "identifier": [{"system": SOURCE_SYSTEM, "value": "not-a-reference"}],
        "subject": {"type": "Patient", "identifier": {"system": PSEUDONYM_SYSTEM, "value": "p1"}},
        "basis": [
            {"identifier": {"system": SOURCE_SYSTEM, "value": "d1"}, "type": "Observation", "display": "RR"},
            {"identifier": {"system": SOURCE_SYSTEM, "value": "d2"}, "type": "Observation"},
        ],
        "performer": {
            "reference": "Device/x",
            "identifier": {"system": "urn:clinical-ai:model", "value": "m"},
        },
        "contained": [
            {
                "resourceType": "Condition",
                "id": "c",
                "subject": {"type": "Patient", "identifier": {"system": PSEUDONYM_SYSTEM, "value": "p2"}},
            }
        ],
    }
    restored = references_restore(
        resource, {"p1": {"reference": "Patient/123", "type": "Patient"}}, {"d1": "Observation/obs-1"}
    )
    assert restored["subject"] == {"reference": "Patient/123", "type": "Patient"}
    assert restored["basis"][0] == {"reference": "Observation/obs-1", "type": "Observation", "display": "RR"}
    assert restored["basis"][1] == resource["basis"][1]  # no original id: the identifier form stays
    assert restored["performer"] == resource["performer"]
    assert restored["identifier"] == resource["identifier"]
    # A reference to a patient the map does not name is never rewritten to another patient.
    assert restored["contained"][0]["subject"] == resource["contained"][0]["subject"]
    assert resource["subject"]["identifier"]["value"] == "p1"  # the input is not modified


def test_vault_entries_become_references_the_ehr_can_resolve() -> None:
    assert patient_reference_from_vault("patient_reference", "Patient/123") == {
        "reference": "Patient/123",
        "type": "Patient",
    }
    assert patient_reference_from_vault("patient_identity", "identifier:urn:oid:1|MRN-1") == {
        "type": "Patient",
        "identifier": {"system": "urn:oid:1", "value": "MRN-1"},
    }
    assert patient_reference_from_vault("patient_identity", "fullUrl:urn:uuid:1") is None


def test_capability_statement_offers_read_and_search_of_the_outputs() -> None:
    statement = capability_statement(base_url="http://x/fhir", token_url="http://x/auth/token")
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    for resource_type in OUTPUT_TYPES:
        codes = [i["code"] for i in by_type[resource_type]["interaction"]]
        assert codes == ["create", "read", "search-type"], resource_type
    risk = {p["name"]: p["type"] for p in by_type["RiskAssessment"]["searchParam"]}
    assert risk == {
        "_id": "token",
        "_lastUpdated": "date",
        "patient": "reference",
        "subject": "reference",
        "status": "token",
    }
    assert "patient" not in {p["name"] for p in by_type["Device"]["searchParam"]}
    assert by_type["Observation"]["interaction"] == [{"code": "create"}]
