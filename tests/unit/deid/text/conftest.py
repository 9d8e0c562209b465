"""Shared fixtures: the verified spaCy model and the analyzer load once per test session (seconds)."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

from clinical_ai.deid.engine.text.patient_terms import patient_identifiers_from_fhir
from clinical_ai.deid.engine.types import PatientContext

REPO = Path(__file__).resolve().parents[4]
KEY = b"text-scrubber-test-key-0123456789abcdef"
SHIFT = -12


@pytest.fixture(scope="session")
def analyzer() -> Any:
    from clinical_ai.deid.engine.text.nlp import get_analyzer

    return get_analyzer()


@pytest.fixture(scope="session")
def scrubber(analyzer: Any) -> Any:
    from clinical_ai.deid.engine.text.scrubber import PresidioTextScrubber

    return PresidioTextScrubber(pseudonym_key=KEY, analyzer=analyzer)


@pytest.fixture(scope="session")
def sample_bundle() -> dict[str, Any]:
    bundle: dict[str, Any] = json.loads(
        (REPO / "fixtures" / "sample-bundle.json").read_text(encoding="utf-8-sig")
    )
    return bundle


def resources(bundle: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in bundle.get("entry", [])
        if e.get("resource", {}).get("resourceType") == resource_type
    ]


def notes(bundle: dict[str, Any]) -> list[str]:
    """Every DocumentReference attachment that is base64 text/plain, decoded."""
    texts = []
    for document in resources(bundle, "DocumentReference"):
        for content in document.get("content", []):
            attachment = content.get("attachment", {})
            if attachment.get("contentType", "text/plain").startswith("text/plain") and "data" in attachment:
                texts.append(base64.b64decode(attachment["data"]).decode("utf-8"))
    return texts


@pytest.fixture(scope="session")
def sample_patient(sample_bundle: dict[str, Any]) -> dict[str, Any]:
    return resources(sample_bundle, "Patient")[0]


@pytest.fixture(scope="session")
def sample_note(sample_bundle: dict[str, Any]) -> str:
    return notes(sample_bundle)[0]


@pytest.fixture(scope="session")
def sample_context(sample_patient: dict[str, Any]) -> PatientContext:
    return PatientContext(
        pseudonym="patient-pseudonym-1",
        date_shift_days=SHIFT,
        identifiers=patient_identifiers_from_fhir(sample_patient),
    )
