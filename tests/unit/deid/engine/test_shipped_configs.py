"""The two shipped configurations on the sample bundle and on Synthea patients.

The scrubber here is a test double that removes the patient's own identifiers from free text (what the
real scrubber guarantees at least); the point is what the structured rules leave and that every free
text goes through the scrubber.
"""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from clinical_ai.deid.engine.rules import StructuredAnonymizer
from clinical_ai.deid.engine.types import PatientContext

from .doubles import SAMPLE_BUNDLE, FakeScrubber, RecordingSink, load_json, patient_identifiers

CONFIGS = ("safe-harbor", "inference")
SECRETS = {"cryptoHashKey": "test-hash-key-0123456789", "dateShiftKey": "test-date-key"}
SYNTHEA = "synthea_r4_ms_anonymizer_samples"
SMALL_SYNTHEA = "Carolee951_Sanford861_d88f994a-5efa-421d-9c40-5f116d2114a6.json"
LARGE_SYNTHEA = "Johnetta529_Marquardt819_abb133fd-5683-45cd-a5c8-137ca2807fbe.json"


def _engine(name: str) -> StructuredAnonymizer:
    path = Path(__file__).resolve().parents[4] / "clinical_ai" / "deid" / "configs" / f"{name}.json"
    return StructuredAnonymizer(path, secrets_override=SECRETS)


def _patient(bundle: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    return resource


def _context(bundle: dict[str, Any], shift: int = 37) -> PatientContext:
    return PatientContext(
        pseudonym="pseudo", date_shift_days=shift, identifiers=patient_identifiers(_patient(bundle))
    )


def _phi(patient: dict[str, Any]) -> list[str]:
    """The Patient's name parts, identifiers, phones and address lines, cities and postal codes."""
    ids = patient_identifiers(patient)
    values = [*ids.given_names, *ids.family_names, *ids.identifiers, *ids.phones, *ids.address_parts]
    return sorted({v for v in values if len(v) >= 3})


def _searchable(output: dict[str, Any]) -> str:
    """The serialized output plus every base64 attachment decoded."""
    text = json.dumps(output, ensure_ascii=False)
    decoded = []
    for data in re.findall(r'"data": "([A-Za-z0-9+/=]+)"', text):
        decoded.append(base64.b64decode(data).decode("utf-8", errors="replace"))
    return text + "\n" + "\n".join(decoded)


def _observations(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]


def _clinical(observation: dict[str, Any]) -> tuple[Any, ...]:
    codes = tuple((c.get("system"), c.get("code")) for c in observation["code"]["coding"])
    quantity = observation.get("valueQuantity") or {}
    concept = tuple(c.get("code") for c in (observation.get("valueCodeableConcept") or {}).get("coding", []))
    components = tuple(
        (tuple(c.get("code") for c in comp["code"]["coding"]), (comp.get("valueQuantity") or {}).get("value"))
        for comp in observation.get("component", [])
    )
    return (
        codes,
        quantity.get("value"),
        quantity.get("unit"),
        quantity.get("code"),
        concept,
        observation.get("status"),
        components,
    )


def _references_resolve(output: dict[str, Any]) -> None:
    full_urls = {entry.get("fullUrl") for entry in output["entry"]}
    references = re.findall(r'"reference": "(urn:uuid:[^"]+)"', json.dumps(output))
    assert references
    assert all(reference in full_urls for reference in references)


def _bundle(shared_data: Path | None, name: str | None) -> dict[str, Any]:
    if name is None:
        data: dict[str, Any] = load_json(SAMPLE_BUNDLE)
        return data
    assert shared_data is not None
    synthea: dict[str, Any] = load_json(shared_data / SYNTHEA / name)
    return synthea


@pytest.fixture(params=["sample", "synthea"])
def bundle(request: pytest.FixtureRequest) -> dict[str, Any]:
    if request.param == "sample":
        return _bundle(None, None)
    shared_data: Path = request.getfixturevalue("shared_data")
    return _bundle(shared_data, SMALL_SYNTHEA)


@pytest.mark.parametrize("config", CONFIGS)
def test_no_patient_identifier_survives(config: str, bundle: dict[str, Any]) -> None:
    scrubber = FakeScrubber()
    output = _engine(config).anonymize(bundle, patient=_context(bundle), scrubber=scrubber)
    assert len(scrubber.calls) == 1  # every free text of the bundle in one batch
    text = _searchable(output)
    for value in _phi(_patient(bundle)):
        assert value not in text, f"{value!r} survived {config}"
    assert _patient(bundle)["birthDate"] not in text


@pytest.mark.parametrize("config", CONFIGS)
def test_without_a_scrubber_nothing_identifying_is_left_either(config: str, bundle: dict[str, Any]) -> None:
    output = _engine(config).anonymize(bundle)
    text = _searchable(output)
    for value in _phi(_patient(bundle)):
        assert value not in text
    assert all(
        "data" not in c.get("attachment", {})
        for e in output["entry"]
        for c in e["resource"].get("content", [])
    )


@pytest.mark.parametrize("config", CONFIGS)
def test_clinical_content_survives(config: str, bundle: dict[str, Any]) -> None:
    output = _engine(config).anonymize(bundle, patient=_context(bundle), scrubber=FakeScrubber())
    assert [e["resource"]["resourceType"] for e in output["entry"]] == [
        e["resource"]["resourceType"] for e in bundle["entry"]
    ]
    assert [_clinical(o) for o in _observations(output)] == [_clinical(o) for o in _observations(bundle)]
    conditions = [e["resource"] for e in output["entry"] if e["resource"]["resourceType"] == "Condition"]
    originals = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Condition"]
    assert [c["code"]["coding"] for c in conditions] == [c["code"]["coding"] for c in originals]
    assert [c.get("clinicalStatus") for c in conditions] == [c.get("clinicalStatus") for c in originals]
    assert _patient(output)["gender"] == _patient(bundle)["gender"]


@pytest.mark.parametrize("config", CONFIGS)
def test_references_still_resolve(config: str, bundle: dict[str, Any]) -> None:
    output = _engine(config).anonymize(bundle, patient=_context(bundle), scrubber=FakeScrubber())
    _references_resolve(output)


def _moments(bundle: dict[str, Any]) -> list[str]:
    moments = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        moments += [
            resource[k] for k in ("effectiveDateTime", "recordedDate", "onsetDateTime") if k in resource
        ]
        if "period" in resource and "start" in resource["period"]:
            moments.append(resource["period"]["start"])
    return moments


def _instant(value: str) -> datetime:
    moment = datetime.fromisoformat(value) if "T" in value else datetime.fromisoformat(value + "T00:00:00")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_inference_keeps_every_interval_of_the_patient(bundle: dict[str, Any]) -> None:
    output = _engine("inference").anonymize(
        bundle, patient=_context(bundle, shift=-45), scrubber=FakeScrubber()
    )
    before, after = _moments(bundle), _moments(output)
    assert len(before) == len(after) >= 2
    assert all((_instant(a) - _instant(b)).days == -45 for a, b in zip(after, before, strict=True))
    first, last = _instant(before[0]), _instant(before[-1])
    assert _instant(after[-1]) - _instant(after[0]) == last - first
    born, born_after = _patient(bundle)["birthDate"], _patient(output)["birthDate"]
    assert (date.fromisoformat(born_after) - date.fromisoformat(born)).days == -45


def test_safe_harbor_keeps_only_years_and_three_digit_zip(sample_bundle: dict[str, Any]) -> None:
    output = _engine("safe-harbor").anonymize(sample_bundle, scrubber=FakeScrubber())
    patient = _patient(output)
    assert patient["birthDate"] == "1959"
    assert patient["address"] == [{"postalCode": "PO1 0AX", "country": "GB"}]
    assert "name" not in patient and "telecom" not in patient
    assert all(i.keys() <= {"system", "type"} for i in patient["identifier"])
    observation = _observations(output)[0]
    assert observation["effectiveDateTime"] == "2026"


def test_inference_reports_pseudonyms_for_the_vault(sample_bundle: dict[str, Any]) -> None:
    sink = RecordingSink()
    _engine("inference").anonymize(
        sample_bundle, patient=_context(sample_bundle), scrubber=FakeScrubber(), sink=sink
    )
    originals = {original for _, _, original in sink.records}
    assert "4471-2290" in originals
    kinds = {kind for kind, _, _ in sink.records}
    assert "Patient.identifier.value" in kinds and "Observation.subject.reference" in kinds


@pytest.mark.shared_data
@pytest.mark.parametrize("config", CONFIGS)
def test_largest_synthea_bundle_is_fast(config: str, shared_data: Path) -> None:
    bundle = load_json(shared_data / SYNTHEA / LARGE_SYNTHEA)
    engine = _engine(config)
    started = time.perf_counter()
    output = engine.anonymize(bundle, patient=_context(bundle), scrubber=FakeScrubber())
    elapsed = time.perf_counter() - started
    assert len(output["entry"]) == len(bundle["entry"]) > 800
    assert elapsed < 10, f"{elapsed:.1f}s"
    text = _searchable(output)
    for value in _phi(_patient(bundle)):
        assert value not in text
