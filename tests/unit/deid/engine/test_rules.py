"""The engine: free-text batching, processing errors, bundles, contained resources, labels."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from clinical_ai.deid.engine.rules import InvalidResourceError, ProcessingError, StructuredAnonymizer
from clinical_ai.deid.engine.types import PatientContext, PatientIdentifiers

from .doubles import FakeScrubber, UpperScrubber


def _engine(*rules: dict[str, Any], errors: str = "raise") -> StructuredAnonymizer:
    return StructuredAnonymizer(
        {"processingErrors": errors, "fhirPathRules": list(rules), "parameters": {"cryptoHashKey": "k"}}
    )


def _b64(text: str, encoding: str = "utf-8") -> str:
    return base64.b64encode(text.encode(encoding)).decode()


def _codes(resource: dict[str, Any]) -> list[str]:
    return [label["code"] for label in resource.get("meta", {}).get("security", [])]


SCRUB_ALL = (
    {"path": "nodesByType('Narrative')", "method": "scrub"},
    {"path": "nodesByType('Attachment')", "method": "scrub"},
    {"path": "Binary", "method": "scrub"},
    {"path": "nodesByType('Annotation')", "method": "scrub"},
    {"path": "nodesByType('CodeableConcept').text", "method": "scrub"},
    {"path": "Observation.value", "method": "scrub"},
    {"path": "nodesByType('dateTime')", "method": "redact"},
)

BUNDLE: dict[str, Any] = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {
            "resource": {
                "resourceType": "Observation",
                "text": {
                    "status": "generated",
                    "div": '<div xmlns="http://www.w3.org/1999/xhtml">Jane Doe</div>',
                },
                "code": {"coding": [{"code": "x"}], "text": "note about jane"},
                "valueString": "Jane is well",
                "note": [{"text": "seen by jane", "time": "2020-01-01T10:00:00Z"}],
            }
        },
        {
            "resource": {
                "resourceType": "DocumentReference",
                "content": [
                    {
                        "attachment": {
                            "contentType": "text/plain; charset=utf-8",
                            "data": _b64("Jane Doe, MRN 123"),
                            "size": 17,
                            "hash": "stale",
                            "title": "note for jane",
                        }
                    },
                    {"attachment": {"contentType": "text/html", "data": _b64("<p>Jane</p>")}},
                    {
                        "attachment": {
                            "contentType": "text/plain; charset=iso-8859-1",
                            "data": _b64("Zoë Jane", "latin-1"),
                        }
                    },
                    {"attachment": {"contentType": "application/pdf", "data": _b64("%PDF Jane"), "size": 9}},
                ],
            }
        },
        {"resource": {"resourceType": "Binary", "contentType": "text/plain", "data": _b64("Jane again")}},
    ],
}


def test_scrub_collects_every_text_of_the_bundle_into_one_call() -> None:
    scrubber = UpperScrubber()
    out = _engine(*SCRUB_ALL).anonymize(BUNDLE, scrubber=scrubber)
    assert scrubber.calls == 1
    observation = out["entry"][0]["resource"]
    assert observation["text"]["div"] == '<DIV XMLNS="HTTP://WWW.W3.ORG/1999/XHTML">JANE DOE</DIV>'
    assert observation["code"]["text"] == "NOTE ABOUT JANE"
    assert observation["valueString"] == "JANE IS WELL"
    # scrub takes the text of an Annotation; its time is left to the later dateTime rule
    assert observation["note"] == [{"text": "SEEN BY JANE"}]
    assert observation["code"]["coding"] == [{"code": "x"}]
    content = out["entry"][1]["resource"]["content"]
    plain = content[0]["attachment"]
    new_bytes = b"JANE DOE, MRN 123"
    assert base64.b64decode(plain["data"]) == new_bytes
    assert plain["size"] == len(new_bytes)
    assert plain["hash"] == base64.b64encode(hashlib.sha1(new_bytes).digest()).decode()  # noqa: S324
    assert plain["title"] == "NOTE FOR JANE"
    assert base64.b64decode(content[1]["attachment"]["data"]) == b"<P>JANE</P>"
    assert base64.b64decode(content[2]["attachment"]["data"]).decode("latin-1") == "ZOË JANE"
    # content that cannot be read is removed (fail closed)
    assert content[3]["attachment"] == {"contentType": "application/pdf"}
    binary = out["entry"][2]["resource"]
    assert base64.b64decode(binary["data"]) == b"JANE AGAIN"
    assert _codes(observation) == ["REDACTED"]
    assert _codes(out) == ["REDACTED"]


def test_scrub_items_carry_their_kind_and_the_patient(fake_scrubber: FakeScrubber) -> None:
    patient = PatientContext(
        pseudonym="p", date_shift_days=3, identifiers=PatientIdentifiers(names=["Jane Doe"])
    )
    _engine(*SCRUB_ALL).anonymize(BUNDLE, scrubber=fake_scrubber, patient=patient)
    (items,) = fake_scrubber.calls
    kinds = [(item.kind, item.text) for item in items]
    assert ("xhtml", '<div xmlns="http://www.w3.org/1999/xhtml">Jane Doe</div>') in kinds
    assert ("plain", "Jane Doe, MRN 123") in kinds
    assert ("xhtml", "<p>Jane</p>") in kinds
    assert ("plain", "Jane again") in kinds
    assert len(items) == 9


def test_without_a_scrubber_free_text_is_removed() -> None:
    out = _engine(*SCRUB_ALL).anonymize(BUNDLE)
    observation = out["entry"][0]["resource"]
    assert "text" not in observation and "valueString" not in observation and "note" not in observation
    assert observation["code"] == {"coding": [{"code": "x"}]}
    attachments = [c["attachment"] for c in out["entry"][1]["resource"]["content"]]
    assert all("data" not in a and "size" not in a and "hash" not in a for a in attachments)
    assert "data" not in out["entry"][2]["resource"]
    assert "Jane" not in str(out)


def test_a_scrubber_that_loses_texts_is_an_error() -> None:
    class Broken:
        def scrub_texts(self, items: Any, *, patient: Any) -> list[str]:
            return []

    with pytest.raises(ProcessingError, match="returned 0 texts"):
        _engine(*SCRUB_ALL).anonymize(BUNDLE, scrubber=Broken())


def test_attachment_that_is_not_base64_text_is_a_processing_error() -> None:
    document = {
        "resourceType": "DocumentReference",
        "content": [
            {"attachment": {"contentType": "text/plain; charset=utf-8", "data": _b64("caf\u00e9", "latin-1")}}
        ],
    }
    with pytest.raises(ProcessingError, match="is not utf-8 text"):
        _engine(*SCRUB_ALL).anonymize(document, scrubber=UpperScrubber())


GENERALIZE_FAILS = {
    "path": "nodesByType('HumanName').family",
    "method": "generalize",
    "cases": {"$this >= 0": "1"},
}
PATIENT = {"resourceType": "Patient", "id": "p", "name": [{"family": "Doe"}], "gender": "female"}


def test_processing_errors_raise_by_default() -> None:
    with pytest.raises(ProcessingError, match="cannot compare"):
        _engine(GENERALIZE_FAILS).anonymize(PATIENT)


def test_processing_errors_skip_gives_an_empty_resource() -> None:
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": PATIENT}]}
    out = _engine(GENERALIZE_FAILS, errors="skip").anonymize(bundle)
    assert out == {"resourceType": "Bundle", "meta": {"security": [_redacted()]}}


def test_processing_errors_keep_leaves_the_failing_node() -> None:
    out = _engine(GENERALIZE_FAILS, {"path": "Patient.gender", "method": "redact"}, errors="keep").anonymize(
        PATIENT
    )
    assert out["name"] == [{"family": "Doe"}] and "gender" not in out


def test_generalize_on_a_complex_node_is_a_processing_error() -> None:
    with pytest.raises(ProcessingError, match="primitive values only"):
        _engine({"path": "Patient.name", "method": "generalize", "cases": {"true": "'x'"}}).anonymize(PATIENT)


def _redacted() -> dict[str, str]:
    return {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "code": "REDACTED",
        "display": "redacted",
    }


def test_contained_resources_are_processed_and_labelled_on_their_container() -> None:
    condition = {
        "resourceType": "Condition",
        "meta": {"security": [{"code": "redacted"}], "tag": [{"code": "t"}]},
        "contained": [{"resourceType": "Practitioner", "id": "p1", "name": [{"family": "Who"}]}],
        "asserter": {"reference": "#p1"},
    }
    out = _engine(
        {"path": "nodesByType('HumanName')", "method": "redact"},
        {"path": "Resource.id", "method": "cryptoHash"},
        {"path": "nodesByType('Reference').reference", "method": "cryptoHash"},
    ).anonymize(condition)
    contained = out["contained"][0]
    assert "meta" not in contained and "name" not in contained
    assert out["asserter"]["reference"] == f"#{contained['id']}"
    # an existing label with the same code (any case) is not repeated
    assert _codes(out) == ["redacted", "CRYTOHASH"]
    assert out["meta"]["tag"] == [{"code": "t"}]


def test_bundle_entries_are_labelled_and_the_bundle_gathers_their_labels() -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": "urn:uuid:1", "resource": PATIENT}, {"resource": {"resourceType": "Basic"}}],
    }
    out = _engine({"path": "Patient.id", "method": "cryptoHash"}).anonymize(bundle)
    assert _codes(out) == ["CRYTOHASH"]
    assert _codes(out["entry"][0]["resource"]) == ["CRYTOHASH"]
    assert out["entry"][1] == {"resource": {"resourceType": "Basic"}}
    assert out["entry"][0]["fullUrl"] == "urn:uuid:1"


def test_rules_for_other_resource_types_do_not_apply() -> None:
    out = _engine(
        {"path": "Observation.status", "method": "redact"}, {"path": "TestResource", "method": "redact"}
    ).anonymize(PATIENT)
    assert out == PATIENT


@pytest.mark.parametrize("bad", [None, [], {"id": "x"}, {"resourceType": 3}])
def test_input_must_be_a_resource(bad: Any) -> None:
    with pytest.raises(InvalidResourceError):
        _engine({"path": "Resource", "method": "keep"}).anonymize(bad)


def test_engine_accepts_a_path_a_mapping_or_a_config() -> None:
    from clinical_ai.deid.engine.config import shipped_config

    config = shipped_config("inference")
    for source in (config, "clinical_ai/deid/configs/inference.json"):
        engine = StructuredAnonymizer(source, secrets_override={"cryptoHashKey": "s"})
        assert engine.config.parameters.crypto_hash_key == "s"
    generated = StructuredAnonymizer(config)
    assert generated.config.parameters.crypto_hash_key  # a random per-process key, never empty
    assert generated.config.parameters.date_shift_key
