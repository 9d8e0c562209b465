"""The patient's identifiers from FHIR, and the forms in which they are found in text."""

from __future__ import annotations

from typing import Any

import pytest

from clinical_ai.deid.engine.text.patient_terms import PatientTermMatcher, patient_identifiers_from_fhir
from clinical_ai.deid.engine.types import PatientIdentifiers

SYNTHEA_PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "d88f994a-5efa-421d-9c40-5f116d2114a6",
    "extension": [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
            "valueString": "Salena230 Okuneva707",
        },
        {
            "url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
            "valueAddress": {"city": "Lake Stevens", "state": "Washington", "country": "US"},
        },
    ],
    "identifier": [
        {
            "system": "https://github.com/synthetichealth/synthea",
            "value": "d88f994a-5efa-421d-9c40-5f116d2114a6",
        },
        {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-33-5538"},
        {"system": "urn:oid:2.16.840.1.113883.4.3.25", "value": "S99993907"},
    ],
    "name": [
        {"use": "official", "family": "Sanford861", "given": ["Carolee951"], "prefix": ["Mrs."]},
        {"use": "maiden", "family": "Okuneva707", "given": ["Carolee951"], "prefix": ["Mrs."]},
    ],
    "telecom": [
        {"system": "phone", "value": "555-657-5098", "use": "home"},
        {"system": "email", "value": "Carolee.Sanford@example.com"},
        {"system": "fax", "value": "555-657-5099"},
    ],
    "birthDate": "1969-03-27",
    "address": [
        {"line": ["117 Orn Bypass"], "city": "Redmond", "state": "WA", "postalCode": "98053", "country": "US"}
    ],
    "contact": [
        {
            "name": {"given": ["Harold"], "family": "Sanford861"},
            "telecom": [{"system": "phone", "value": "555-111-2222"}],
        }
    ],
}

RELATED_PERSON: dict[str, Any] = {
    "resourceType": "RelatedPerson",
    "name": [{"text": "Zelda Quintero"}],
    "identifier": [{"value": "RP-778899"}],
    "telecom": [{"system": "email", "value": "zelda@example.net"}],
    "address": [{"line": ["9 Elm Close"], "city": "Havant"}],
}


def test_identifiers_from_a_fhir_patient() -> None:
    identifiers = patient_identifiers_from_fhir(SYNTHEA_PATIENT, [RELATED_PERSON])
    assert identifiers.names == ("Mrs. Carolee951 Sanford861", "Mrs. Carolee951 Okuneva707")
    assert identifiers.given_names == ("Carolee951",)
    assert identifiers.family_names == ("Sanford861", "Okuneva707")
    assert identifiers.identifiers == (
        "d88f994a-5efa-421d-9c40-5f116d2114a6",
        "999-33-5538",
        "S99993907",
        "RP-778899",
    )
    assert identifiers.phones == ("555-657-5098", "555-657-5099", "555-111-2222")
    assert identifiers.emails == ("Carolee.Sanford@example.com", "zelda@example.net")
    assert identifiers.address_parts == (
        "117 Orn Bypass",
        "Redmond",
        "98053",
        "Lake Stevens",
        "9 Elm Close",
        "Havant",
    )
    assert identifiers.birth_date == "1969-03-27"
    assert identifiers.other == ("Salena230 Okuneva707", "Harold Sanford861", "Zelda Quintero")


def test_identifiers_from_the_sample_patient(sample_patient: dict[str, Any]) -> None:
    identifiers = patient_identifiers_from_fhir(sample_patient)
    assert identifiers.names == ("Margaret Okafor-Lindqvist",)
    assert identifiers.identifiers == ("4471-2290",)
    assert identifiers.phones == ("023 9261 4407",)
    assert identifiers.address_parts == ("12 Harbour View Road", "Portsmouth", "PO1 3AX")
    assert identifiers.birth_date == "1959-03-14"


def test_a_sparse_patient_gives_empty_identifiers() -> None:
    assert patient_identifiers_from_fhir({"resourceType": "Patient"}) == PatientIdentifiers()


MARGARET = PatientIdentifiers(
    names=("Margaret Okafor-Lindqvist",),
    given_names=("Margaret",),
    family_names=("Okafor-Lindqvist",),
    identifiers=("4471-2290",),
    phones=("023 9261 4407",),
    emails=("m.okafor@example.org",),
    address_parts=("12 Harbour View Road", "Portsmouth", "PO1 3AX"),
    birth_date="1959-03-14",
    other=("Samuel Okafor",),
)


def found(identifiers: PatientIdentifiers, text: str) -> list[tuple[str, str]]:
    return [(m.entity, text[m.start : m.end]) for m in PatientTermMatcher(identifiers).find(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Margaret Okafor-Lindqvist was seen", "Margaret Okafor-Lindqvist"),
        ("MARGARET OKAFOR-LINDQVIST", "MARGARET OKAFOR-LINDQVIST"),
        ("spoke to margaret", "margaret"),
        ("Mrs Okafor's daughter", "Okafor"),
        ("M. Okafor attended", "M. Okafor"),
        ("Okafor, Margaret (DOB withheld)", "Okafor, Margaret"),
        ("Okafor, M. attended", "Okafor, M."),
        ("Ms Lindqvist", "Lindqvist"),
        ("Okafor Lindqvist", "Okafor Lindqvist"),
    ],
)
def test_patient_name_forms(text: str, expected: str) -> None:
    assert ("PERSON", expected) in found(MARGARET, text)


def test_synthea_names_with_and_without_digits() -> None:
    identifiers = patient_identifiers_from_fhir(SYNTHEA_PATIENT)
    text = "Carolee951 is a 34 year-old. Carolee said Sanford's dog; CAROLEE; Mrs. Sanford861; Okuneva."
    names = {value for entity, value in found(identifiers, text) if entity == "PERSON"}
    assert names == {"Carolee951", "Carolee", "Sanford", "CAROLEE", "Sanford861", "Okuneva"}


def test_names_are_matched_on_word_boundaries_only() -> None:
    assert found(MARGARET, "Margaretta and Okaforian are other people") == []


def test_a_name_that_is_a_common_word_only_counts_capitalised() -> None:
    will = PatientIdentifiers(names=("Will Hope",), given_names=("Will",), family_names=("Hope",))
    assert found(will, "Patient will return; Will called.") == [("PERSON", "Will")]


def test_a_patient_named_after_a_disease_keeps_the_disease() -> None:
    parkinson = PatientIdentifiers(
        names=("James Parkinson",), given_names=("James",), family_names=("Parkinson",)
    )
    assert found(parkinson, "Mr Parkinson has Parkinson's disease") == [("PERSON", "Parkinson")]


def test_contacts_names_are_found_too() -> None:
    assert ("PERSON", "Samuel Okafor") in found(MARGARET, "Son Samuel Okafor visited")


@pytest.mark.parametrize("text", ["MRN 4471-2290", "MRN 44712290", "MRN 4471 2290", "ref MRN4471-2290"])
def test_identifiers_with_or_without_separators(text: str) -> None:
    assert [entity for entity, _ in found(MARGARET, text)] == ["ID"]


def test_identifiers_are_not_found_inside_longer_numbers() -> None:
    assert found(MARGARET, "lot 144712290 and 44712290123") == []


@pytest.mark.parametrize(
    "text", ["023 9261 4407", "02392614407", "(023) 9261-4407", "+44 23 9261 4407", "+44 (0)23 9261 4407"]
)
def test_phone_numbers_by_their_digits(text: str) -> None:
    assert [entity for entity, _ in found(MARGARET, f"call {text} today")] == ["PHONE_NUMBER"]


def test_us_phone_numbers_with_country_code() -> None:
    identifiers = PatientIdentifiers(phones=("555-657-5098",))
    for text in ("555-657-5098", "(555) 657 5098", "+1 555 657 5098", "5556575098"):
        assert [entity for entity, _ in found(identifiers, text)] == ["PHONE_NUMBER"], text


def test_emails_case_insensitive() -> None:
    # The name inside the address is found too; the longer e-mail wins when the scrubber merges them.
    assert ("EMAIL_ADDRESS", "M.Okafor@Example.org") in found(MARGARET, "write to M.Okafor@Example.org.")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lives at 12 Harbour View Road", "12 Harbour View Road"),
        ("12 harbour view rd.", "12 harbour view rd."),
        ("on Harbour View Road", "Harbour View Road"),
        ("PORTSMOUTH", "PORTSMOUTH"),
        ("postcode PO1 3AX", "PO1 3AX"),
        ("po13ax", "po13ax"),
    ],
)
def test_address_parts(text: str, expected: str) -> None:
    assert expected in [value for _, value in found(MARGARET, text)]


def test_unit_designators_and_zip_plus_four() -> None:
    identifiers = PatientIdentifiers(address_parts=("858 Sawayn Parade Unit 61", "98028-1830"))
    text = "858 Sawayn Parade, moved from Sawayn Parade; zip 98028"
    assert [value for _, value in found(identifiers, text)] == ["858 Sawayn Parade", "Sawayn Parade", "98028"]


@pytest.mark.parametrize(
    "written",
    [
        "1959-03-14",
        "03/14/1959",
        "14/03/1959",
        "14 March 1959",
        "March 14, 1959",
        "Mar 14 1959",
        "14-Mar-1959",
        "3/14/59",
        "14th March 1959",
        "14 march 1959",
        "19590314",
    ],
)
def test_birth_date_in_written_formats(written: str) -> None:
    matches = list(PatientTermMatcher(MARGARET).find(f"DOB: {written}."))
    assert [(m.entity, f"DOB: {written}."[m.start : m.end]) for m in matches] == [("DATE", written)]
    assert matches[0].birth_date is not None and matches[0].birth_date.isoformat() == "1959-03-14"


def test_a_partial_birth_date() -> None:
    identifiers = PatientIdentifiers(birth_date="1959-03")
    assert [value for _, value in found(identifiers, "born March 1959, in 1959")] == ["March 1959"]
    assert found(PatientIdentifiers(birth_date="1959"), "born 1959") == []
