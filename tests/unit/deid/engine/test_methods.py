"""Methods one by one, through the engine with small configurations."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
from datetime import date
from typing import Any

import pytest

from clinical_ai.deid.engine import dates
from clinical_ai.deid.engine.methods import decrypt_text, encrypt_text, partial_zip, transform_reference
from clinical_ai.deid.engine.rules import StructuredAnonymizer

TODAY = date(2024, 6, 1)


def _engine(*rules: dict[str, Any], **parameters: Any) -> StructuredAnonymizer:
    config = {
        "fhirPathRules": list(rules),
        "parameters": {"cryptoHashKey": "123", "dateShiftKey": "123", **parameters},
    }
    return StructuredAnonymizer(config, today=lambda: TODAY)


def _codes(resource: dict[str, Any]) -> list[str]:
    return [label["code"] for label in resource.get("meta", {}).get("security", [])]


# --- dates -----------------------------------------------------------------------------------------------


def test_shift_offset_reproduces_the_reference_algorithm() -> None:
    # Offsets seen in the reference tool's expected outputs.
    assert dates.shift_offset("123", "example") == 41
    assert dates.shift_offset("123", "bundle-transaction") == 7
    assert all(-50 <= dates.shift_offset("key", f"id-{i}") <= 50 for i in range(500))


@pytest.mark.parametrize(
    ("value", "instant", "keep_time", "expected"),
    [
        ("2000-01-01T01:01:01-01:00", False, False, "2000-02-11T00:00:00-01:00"),
        ("2015-02-07T13:28:17.239+02:00", False, False, "2015-03-20T00:00:00.000+02:00"),
        ("2014-08-18T01:43:30Z", True, False, "2014-09-28T00:00:00+00:00"),
        ("2014-08-18T01:43:30Z", False, False, "2014-09-28T00:00:00Z"),
        ("2014-08-18T01:43:30Z", False, True, "2014-09-28T01:43:30Z"),
        ("2001-01-01", False, False, "2001-02-11"),
        ("2014", False, False, "2014"),
        ("2014-05", False, False, "2014"),
        ("1930-06-01T00:00:00Z", False, False, None),
    ],
)
def test_shift_date_time(value: str, instant: bool, keep_time: bool, expected: str | None) -> None:
    outcome = dates.shift_date_time(
        value, 41, partial=True, today=TODAY, instant=instant, keep_time=keep_time
    )
    assert outcome.value == expected


def test_date_redaction_keeps_the_year_unless_over_89() -> None:
    assert dates.redact_date("1960-03-04", partial=True, today=TODAY).value == "1960"
    assert dates.redact_date("1934-06-02", partial=True, today=TODAY).value == "1934"  # 89 until tomorrow
    assert dates.redact_date("1934-06-01", partial=True, today=TODAY).value is None  # 90 today
    assert dates.redact_date("1934", partial=True, today=TODAY).value is None  # 1934-01-01: 90
    assert dates.redact_date("1960-03-04", partial=False, today=TODAY).value is None


def test_date_shift_uses_root_id_fixed_offset_or_patient() -> None:
    from clinical_ai.deid.engine.types import PatientContext

    patient = {"resourceType": "Patient", "id": "example", "birthDate": "2000-01-01"}
    rule = {"path": "nodesByType('date')", "method": "dateShift"}
    assert _engine(rule).anonymize(patient)["birthDate"] == "2000-02-11"
    assert _engine(rule, dateShiftFixedOffsetInDays=-3).anonymize(patient)["birthDate"] == "1999-12-29"
    shifted = _engine(rule).anonymize(patient, patient=PatientContext(pseudonym="p", date_shift_days=100))
    assert shifted["birthDate"] == "2000-04-10"
    file_scoped = _engine(rule, dateShiftScope="file").anonymize(patient, scope_key="a.ndjson")
    expected = date(2000, 1, 1).toordinal() + dates.shift_offset("123", "a.ndjson")
    assert file_scoped["birthDate"] == date.fromordinal(expected).isoformat()
    assert _codes(shifted) == ["PERTURBED"]


def test_one_offset_for_a_whole_bundle_keeps_intervals() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "resource": {
                    "resourceType": "Encounter",
                    "id": "e1",
                    "period": {"start": "2020-01-01T10:00:00Z"},
                }
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "id": "o1",
                    "effectiveDateTime": "2020-01-03T12:30:00Z",
                }
            },
        ],
    }
    out = _engine(
        {"path": "nodesByType('dateTime')", "method": "dateShift"}, dateShiftKeepTime=True
    ).anonymize(bundle)
    start = out["entry"][0]["resource"]["period"]["start"]
    effective = out["entry"][1]["resource"]["effectiveDateTime"]
    assert start != "2020-01-01T10:00:00Z"
    assert start[10:] == "T10:00:00Z" and effective[10:] == "T12:30:00Z"
    assert (date.fromisoformat(effective[:10]) - date.fromisoformat(start[:10])).days == 2


# --- redact ----------------------------------------------------------------------------------------------


def test_partial_zip_codes() -> None:
    assert partial_zip("12345", ()) == "12300"
    assert partial_zip("12345-6789", ()) == "12300-0000"
    assert partial_zip("03601", ("036",)) == "00000"
    assert partial_zip("12", ()) == "12"


def test_redact_with_partial_ages_and_zip() -> None:
    condition = {
        "resourceType": "Condition",
        "onsetAge": {"value": 45, "unit": "a"},
        "abatementAge": {"value": 93, "unit": "a"},
    }
    out = _engine(
        {"path": "nodesByType('Age').unit", "method": "keep"},
        {"path": "nodesByType('Age')", "method": "redact"},
        enablePartialAgesForRedact=True,
    ).anonymize(condition)
    assert out["onsetAge"] == {"value": 45, "unit": "a"}
    assert out["abatementAge"] == {"unit": "a"}
    patient = {"resourceType": "Patient", "address": [{"city": "X", "postalCode": "12345", "state": "S"}]}
    out = _engine(
        {"path": "Patient.address.state", "method": "keep"},
        {"path": "Patient.address", "method": "redact"},
        enablePartialZipCodesForRedact=True,
    ).anonymize(patient)
    assert out["address"] == [{"postalCode": "12300", "state": "S"}]
    assert _codes(out) == ["REDACTED", "ABSTRED"]


def test_redacting_everything_leaves_resource_type_and_label() -> None:
    out = _engine({"path": "Resource", "method": "redact"}).anonymize(
        {"resourceType": "Patient", "id": "x", "active": True}
    )
    assert out == {
        "resourceType": "Patient",
        "meta": {
            "security": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
                    "code": "REDACTED",
                    "display": "redacted",
                }
            ]
        },
    }


def test_first_matching_rule_wins() -> None:
    patient = {"resourceType": "Patient", "name": [{"family": "Doe", "given": ["Jane"]}]}
    out = _engine(
        {"path": "Patient.name.family", "method": "keep"},
        {"path": "Patient.name", "method": "redact"},
        {"path": "Patient.name.family", "method": "substitute", "replaceWith": "X"},
    ).anonymize(patient)
    assert out["name"] == [{"family": "Doe"}]


# --- cryptoHash, encrypt ---------------------------------------------------------------------------------


def test_crypto_hash_is_hmac_sha256_and_keeps_reference_types(sink: Any) -> None:
    expected = hmac.new(b"123", b"example", hashlib.sha256).hexdigest()
    assert expected.startswith("698d54f0")
    observation = {
        "resourceType": "Observation",
        "id": "example",
        "subject": {"reference": "Patient/example"},
        "performer": [
            {"reference": "urn:uuid:04121321-4af5-424c-a0e1-ed3aab1c349d"},
            {"reference": "#example"},
            {"reference": "http://x.org/fhir/Practitioner/example/_history/2"},
            {"reference": "Practitioner?identifier=abc"},
        ],
        "identifier": [{"value": "MRN-1"}],
    }
    out = _engine(
        {"path": "Resource.id", "method": "cryptoHash"},
        {"path": "nodesByType('Reference').reference", "method": "cryptoHash"},
        {"path": "nodesByType('Identifier').value", "method": "cryptoHash"},
    ).anonymize(observation, sink=sink)
    assert out["id"] == expected
    assert out["subject"]["reference"] == f"Patient/{expected}"
    uuid_hash = hmac.new(b"123", b"04121321-4af5-424c-a0e1-ed3aab1c349d", hashlib.sha256).hexdigest()
    assert [p["reference"] for p in out["performer"]] == [
        f"urn:uuid:{uuid_hash}",
        f"#{expected}",
        f"http://x.org/fhir/Practitioner/{expected}/_history/2",
        hmac.new(b"123", b"Practitioner?identifier=abc", hashlib.sha256).hexdigest(),
    ]
    assert ("Observation.id", expected, "example") in sink.records
    assert ("Observation.subject.reference", expected, "example") in sink.records
    mrn = hmac.new(b"123", b"MRN-1", hashlib.sha256).hexdigest()
    assert ("Observation.identifier.value", mrn, "MRN-1") in sink.records
    assert _codes(out) == ["CRYTOHASH"]


def test_transform_reference_reports_the_transformed_part() -> None:
    assert transform_reference("Patient/1", str.upper) == ("Patient/1", "1")
    assert transform_reference("urn:oid:1.2.3", lambda s: "x") == ("urn:oid:x", "1.2.3")
    assert transform_reference("nonsense", lambda s: "x") == ("x", "nonsense")


def test_bundle_full_urls_are_hashed_like_references() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:5d3f0a9e-1c2b-4e7a-9f00-0a1b2c3d4e01",
                "resource": {"resourceType": "Patient"},
                "request": {"method": "PUT", "url": "Patient/123"},
            },
            {
                "fullUrl": "urn:uuid:5d3f0a9e-1c2b-4e7a-9f00-0a1b2c3d4e02",
                "request": {"method": "POST", "url": "Observation"},
                "resource": {
                    "resourceType": "Observation",
                    "subject": {"reference": "urn:uuid:5d3f0a9e-1c2b-4e7a-9f00-0a1b2c3d4e01"},
                },
            },
        ],
    }
    out = _engine(
        {"path": "Bundle.entry.fullUrl", "method": "cryptoHash"},
        {"path": "Bundle.entry.request.url", "method": "cryptoHash"},
        {"path": "nodesByType('Reference').reference", "method": "cryptoHash"},
    ).anonymize(bundle)
    full_url = out["entry"][0]["fullUrl"]
    assert full_url.startswith("urn:uuid:") and "5d3f0a9e" not in full_url
    assert out["entry"][1]["resource"]["subject"]["reference"] == full_url
    put_url = out["entry"][0]["request"]["url"]
    assert put_url.startswith("Patient/") and "123" not in put_url
    assert out["entry"][1]["request"]["url"] == "Observation"  # a bare type names nobody


def test_encrypt_matches_the_reference_format() -> None:
    key = "0123456789abcdef0123456789abcdef"
    cipher_text = encrypt_text("Jane Doe", key)
    raw = base64.b64decode(cipher_text)
    assert len(raw) == 16 + 16  # IV + one AES block
    assert decrypt_text(cipher_text, key) == "Jane Doe"
    assert encrypt_text("Jane Doe", key) != cipher_text  # random IV
    out = _engine({"path": "Patient.name.family", "method": "encrypt"}, encryptKey=key).anonymize(
        {"resourceType": "Patient", "name": [{"family": "Doe"}]}
    )
    assert decrypt_text(out["name"][0]["family"], key) == "Doe"
    assert _codes(out) == ["ENCRYPT"]


# --- substitute, perturb, generalize ---------------------------------------------------------------------


def test_substitute_primitive_and_complex() -> None:
    patient = {
        "resourceType": "Patient",
        "name": [{"use": "official", "family": "Doe", "given": ["Jane"]}],
        "gender": "female",
    }
    out = _engine({"path": "Patient.gender", "method": "substitute", "replaceWith": "unknown"}).anonymize(
        patient
    )
    assert out["gender"] == "unknown"
    out = _engine(
        {"path": "Patient.name.use", "method": "keep"},
        {"path": "Patient.name", "method": "substitute", "replaceWith": {"family": "X", "given": ["A", "B"]}},
    ).anonymize(patient)
    assert out["name"] == [{"use": "official", "family": "X", "given": ["A", "B"]}]
    assert _codes(out) == ["SUBSTITUTED"]


def test_perturb_stays_in_range() -> None:
    observation = {
        "resourceType": "Observation",
        "valueQuantity": {"value": 100, "unit": "mg"},
        "component": [{"valueInteger": 10}],
    }
    engine = _engine(
        {"path": "Observation.value", "method": "perturb", "span": 10, "rangeType": "fixed", "roundTo": 1},
        {
            "path": "Observation.component.value",
            "method": "perturb",
            "span": 0.5,
            "rangeType": "proportional",
        },
    )
    for _ in range(50):
        out = engine.anonymize(observation)
        value = out["valueQuantity"]["value"]
        assert 95 <= value <= 105 and round(value, 1) == value
        assert out["valueQuantity"]["unit"] == "mg"
        component = out["component"][0]["valueInteger"]
        assert isinstance(component, int) and 8 <= component <= 12
        assert _codes(out) == ["PERTURBED"]


def test_generalize_cases_and_other_values() -> None:
    patient = {
        "resourceType": "Patient",
        "birthDate": "1995-06-01",
        "communication": [{"language": {"coding": [{"code": "en-GB"}, {"code": "fr-FR"}]}}],
    }
    out = _engine(
        {
            "path": "Patient.communication.language.coding.code",
            "method": "generalize",
            "cases": {"$this in ('en-GB' | 'en-US')": "'en'"},
            "otherValues": "keep",
        },
        {"path": "Patient.birthDate", "method": "generalize", "cases": {"$this >= @1990-01-01": "@1990"}},
    ).anonymize(patient)
    assert [c["code"] for c in out["communication"][0]["language"]["coding"]] == ["en", "fr-FR"]
    assert out["birthDate"] == "1990"
    assert _codes(out) == ["GENERALIZED"]


def test_input_is_never_mutated(sample_bundle: dict[str, Any]) -> None:
    before = copy.deepcopy(sample_bundle)
    StructuredAnonymizer("clinical_ai/deid/configs/safe-harbor.json").anonymize(sample_bundle)
    assert sample_bundle == before
