"""The compiled rules give exactly what the interpreted engine gives.

``StructuredAnonymizer(compiled=False)`` is the interpreted engine (each rule's FHIRPath evaluated on each
resource, the tree built and written element by element); the default, compiled one reads each resource's
index and answers rule paths without the general evaluator where it can. Both run here on every shared
Synthea bundle with every shipped configuration, on every input of the Microsoft reference cases, and on
configurations written to change the tree's shape between rules; the outputs, the pseudonyms reported to
the vault and the texts handed to the scrubber must be identical.
"""

from __future__ import annotations

import copy
import csv
import gc
import json
import os
import random
from collections.abc import Iterator, Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from clinical_ai.deid.engine import methods
from clinical_ai.deid.engine.rules import ProcessingError, StructuredAnonymizer
from clinical_ai.deid.engine.types import PatientContext
from tests.unit.deid.engine.doubles import FakeScrubber, RecordingSink, patient_identifiers

REPO = Path(__file__).resolve().parents[4]
SHARED = REPO.parent / "shared" / "data"
SYNTHEA = SHARED / "synthea_r4_ms_anonymizer_samples"
CASES = SHARED / "ms_fhir_anonymizer_r4_tests"
CONFIGS = REPO / "clinical_ai" / "deid" / "configs"
SAMPLE_BUNDLE = REPO / "fixtures" / "sample-bundle.json"
TODAY = date(2026, 1, 15)
SECRETS = {"cryptoHashKey": "k" * 32, "dateShiftKey": "d" * 32, "encryptKey": "e" * 32}


def _load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8-sig"))


def _engines(config: Any, **kwargs: Any) -> tuple[StructuredAnonymizer, StructuredAnonymizer]:
    interpreted = StructuredAnonymizer(config, compiled=False, **kwargs)
    compiled = StructuredAnonymizer(config, compiled=True, **kwargs)
    return interpreted, compiled


@pytest.fixture
def deterministic_randomness(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """perturb's noise and encrypt's IV, made repeatable so that two runs can be compared."""
    monkeypatch.setattr(os, "urandom", lambda size: bytes(size))
    yield


def _run(engine: StructuredAnonymizer, resource: Mapping[str, Any], **kwargs: Any) -> Any:
    """Output, or the error, of one run; perturb's noise restarted from the same seed for each run."""
    methods._random = random.Random(19)  # type: ignore[assignment]
    try:
        return engine.anonymize(resource, **kwargs)
    except ProcessingError as error:
        return ("ProcessingError", str(error))
    finally:
        methods._random = random.SystemRandom()


# --- every shared Synthea bundle, every shipped configuration ---------------------------------------------


def _synthea_params() -> list[Any]:
    if not SYNTHEA.is_dir():
        return [pytest.param(None, None, id="shared-data-absent")]
    return [
        pytest.param(config.stem, bundle.name, id=f"{config.stem}-{bundle.stem[:24]}")
        for config in sorted(CONFIGS.glob("*.json"))
        for bundle in sorted(SYNTHEA.glob("*.json"))
    ]


def _patient_context(bundle: Mapping[str, Any]) -> PatientContext | None:
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "Patient":
            return PatientContext(
                pseudonym="p-1", date_shift_days=-41, identifiers=patient_identifiers(resource)
            )
    return None


@pytest.mark.shared_data
@pytest.mark.parametrize(("config", "bundle_name"), _synthea_params())
def test_synthea_bundle_same_output(config: str | None, bundle_name: str | None, shared_data: Path) -> None:
    assert config is not None and bundle_name is not None
    bundle = _load(SYNTHEA / bundle_name)
    untouched = copy.deepcopy(bundle)
    interpreted, compiled = _engines(
        CONFIGS / f"{config}.json", secrets_override=SECRETS, today=lambda: TODAY
    )
    results = []
    for engine in (interpreted, compiled):
        scrubber, sink = FakeScrubber(), RecordingSink()
        output = engine.anonymize(bundle, patient=_patient_context(bundle), scrubber=scrubber, sink=sink)
        results.append((output, sink.records, [[(i.text, i.kind) for i in call] for call in scrubber.calls]))
    (expected, expected_records, expected_texts), (actual, records, texts) = results
    assert actual == expected
    assert records == expected_records and len(records) > 10
    assert texts == expected_texts
    assert bundle == untouched  # neither engine changes its input


# --- the Microsoft reference cases' inputs and configurations ----------------------------------------------


def _case_params() -> list[Any]:
    pairs = CASES / "pairs.csv"
    if not pairs.is_file():
        return [pytest.param(None, None, id="shared-data-absent")]
    with pairs.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    params = []
    for number, row in enumerate(rows):
        config = (
            row["config"]
            if row["config"].startswith("Configurations/")
            else "Configurations/common-config.json"
        )
        params.append(pytest.param(row["input"], config, id=f"{number:02d}-{Path(row['input']).stem}"))
    return params


@pytest.mark.shared_data
@pytest.mark.parametrize(("input_path", "config_path"), _case_params())
def test_reference_case_same_output(
    input_path: str | None, config_path: str | None, shared_data: Path, deterministic_randomness: None
) -> None:
    assert input_path is not None and config_path is not None
    interpreted, compiled = _engines(CASES / config_path, today=lambda: date(2024, 6, 1))
    resource = _load(CASES / input_path)
    assert _run(compiled, resource) == _run(interpreted, resource)


# --- the tree changing shape between rules -------------------------------------------------------------------


def _rules(*rules: tuple[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "fhirPathRules": [{"path": path, "method": method, **extra.get(path, {})} for path, method in rules],
        "parameters": {"cryptoHashKey": "k", "dateShiftKey": "d", "enablePartialDatesForRedact": True},
        "processingErrors": "raise",
    }


def _shape_bundle() -> dict[str, Any]:
    """Names, nested and contained resources, extensions on primitives, text and PDF attachments."""
    pdf_extension = {"extension": [{"url": "http://example.org/source", "valueString": "scanner 7"}]}
    return {
        "resourceType": "Bundle",
        "id": "b1",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:7f1a2b3c-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "Patient",
                    "id": "p1",
                    "extension": [{"url": "http://example.org/race", "valueString": "r"}],
                    "name": [
                        {
                            "family": "Smith",
                            "given": ["Ann", "Bea"],
                            "_family": {"extension": [{"url": "http://example.org/e", "valueString": "s"}]},
                        }
                    ],
                    "birthDate": "1950-02-03",
                    "address": [{"city": "Town", "line": ["1 Way"], "postalCode": "12345"}],
                    "contained": [{"resourceType": "Patient", "id": "c1", "name": [{"family": "Inner"}]}],
                },
            },
            {
                "fullUrl": "urn:uuid:7f1a2b3c-0000-4000-8000-000000000002",
                "resource": {
                    "resourceType": "Observation",
                    "id": "o1",
                    "status": "final",
                    "subject": {
                        "reference": "urn:uuid:7f1a2b3c-0000-4000-8000-000000000001",
                        "display": "Ann",
                    },
                    "effectiveDateTime": "2020-01-01T10:00:00Z",
                    "valueQuantity": {"value": 12.5, "unit": "kg"},
                    "note": [{"text": "Ann said hi"}],
                },
            },
            {
                "fullUrl": "urn:uuid:7f1a2b3c-0000-4000-8000-000000000003",
                "resource": {
                    "resourceType": "DocumentReference",
                    "id": "d1",
                    "status": "current",
                    "subject": {"reference": "Patient/p1"},
                    "content": [
                        {
                            "attachment": {
                                "contentType": "text/plain",
                                "data": "QW5uIFNtaXRoIG5vdGU=",
                                "size": 14,
                            }
                        },
                        {
                            "attachment": {
                                "contentType": "application/pdf",
                                "data": "JVBERi0=",
                                "_data": pdf_extension,
                            }
                        },
                    ],
                },
            },
        ],
    }


SHAPE_CONFIGS = {
    # substitute removes the given names; the lookup rules after it read the index taken at the first of
    # them (before the substitution: the removed names are still processed and reported), FHIRPath reads
    # the tree as it is (they are not). Both exactly as the interpreted engine.
    "substitute-then-lookup": _rules(
        ("nodesByType('HumanName')", "substitute"),
        ("nodesByType('string')", "cryptoHash"),
        **{"nodesByType('HumanName')": {"replaceWith": {"family": "Doe"}}},
    ),
    "substitute-then-fhirpath": _rules(
        ("nodesByType('HumanName')", "substitute"),
        ("nodesByType('string').where(true)", "cryptoHash"),
        ("nodesByName('given').where(true)", "redact"),
        **{"nodesByType('HumanName')": {"replaceWith": {"family": "Doe"}}},
    ),
    "substitute-first": _rules(
        ("Patient.address", "substitute"),
        ("nodesByType('Address').city", "redact"),
        ("nodesByType('Address').where(city.exists())", "cryptoHash"),
        ("Resource.id", "cryptoHash"),
        **{"Patient.address": {"replaceWith": {"city": "Nowhere", "line": ["1 Road"]}}},
    ),
    # PDF content is dropped with its extensions; FHIRPath after it must not find them.
    "dropped-attachment": _rules(
        ("nodesByType('Attachment')", "scrub"),
        ("nodesByType('Extension').where(true)", "cryptoHash"),
        ("nodesByType('string')", "scrub"),
    ),
    # a head that finds nothing: iif() answers from $this (the resource), where() gives nothing
    "empty-head": _rules(
        ("nodesByType('Coverage').iif(true, %resource.id)", "redact"),
        ("nodesByType('Coverage').where(true) | Patient.name", "redact"),
        ("nodesByName('nothing').select(%resource.meta)", "redact"),
        ("nodesByType('Extension').ofType(Extension).where(url.exists()).url", "cryptoHash"),
    ),
    # names and types that resources carry: nested resources are left out of FHIRPath's nodesByType and
    # nodesByName (the resource itself is in), and are elements of the lookup rules' index.
    "resource-names": _rules(
        ("nodesByName('resource').where(true)", "redact"),
        ("nodesByName('contained').where(true)", "cryptoHash"),
        ("nodesByType('Patient').name", "redact"),
        ("nodesByType('Patient').where(true)", "keep"),
        ("nodesByName('contained')", "cryptoHash"),
        ("Bundle.entry.fullUrl", "cryptoHash"),
        ("Bundle.entry.resource.Patient.id", "redact"),
        ("nodesByName('entry').resource.id", "cryptoHash"),
        ("nodesByType('Reference').reference", "cryptoHash"),
        ("nodesByType('dateTime')", "dateShift"),
        ("Observation.value", "perturb"),
        ("(Patient.name | Patient.name).family", "redact"),
        **{"Observation.value": {"span": 2, "roundTo": 1}},
    ),
}


@pytest.mark.parametrize("name", sorted(SHAPE_CONFIGS))
def test_shape_changing_rules_same_output(name: str, deterministic_randomness: None) -> None:
    interpreted, compiled = _engines(SHAPE_CONFIGS[name], today=lambda: TODAY)
    outputs = []
    for engine in (interpreted, compiled):
        sink, scrubber = RecordingSink(), FakeScrubber()
        output = _run(engine, _shape_bundle(), sink=sink, scrubber=scrubber)
        outputs.append((output, sink.records, [[item.text for item in call] for call in scrubber.calls]))
    assert outputs[1] == outputs[0]
    assert isinstance(outputs[0][0], dict) and outputs[0][0] != _shape_bundle()


def test_collector_is_resumed_after_each_input_even_on_error() -> None:
    assert gc.isenabled()
    engine = StructuredAnonymizer(
        _rules(("Patient.name", "generalize"), **{"Patient.name": {"cases": {"true": "'x'"}}})
    )
    engine.anonymize({"resourceType": "Patient", "id": "x"})
    assert gc.isenabled()
    with pytest.raises(ProcessingError):
        engine.anonymize({"resourceType": "Patient", "name": [{"family": "A"}], "birthDate": "2000"})
    assert gc.isenabled()
    gc.disable()
    try:
        engine.anonymize({"resourceType": "Patient", "id": "x"})
        assert not gc.isenabled()  # a caller's own choice is kept
    finally:
        gc.enable()
