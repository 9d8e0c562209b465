"""Every official FHIR R4 example and every Synthea bundle through the HTTP intake: accepted or refused
with an OperationOutcome, never a 500."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from clinical_ai.audit.selectors import audit_chain_verify
from clinical_ai.intake.models import IngestJob
from tests.factories import post_fhir

pytestmark = [pytest.mark.django_db, pytest.mark.shared_data]


def _target(raw: bytes) -> str:
    try:
        document = json.loads(raw.decode("utf-8-sig"))
    except ValueError:
        return "/fhir"
    if not isinstance(document, dict):
        return "/fhir"
    resource_type = str(document.get("resourceType", ""))
    if resource_type == "Bundle" and document.get("type") in ("transaction", "batch"):
        return "/fhir"
    return f"/fhir/{resource_type}" if resource_type.isalpha() else "/fhir"


def _send_all(client: Client, token: str, files: list[Path]) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    for path in files:
        raw = path.read_bytes()
        response = post_fhir(client, token, raw, path=_target(raw))
        assert response.status_code < 500, f"{path.name}: {response.status_code}"
        if response.status_code >= 400:
            body: Any = response.json()
            assert body["resourceType"] == "OperationOutcome", path.name
            outcomes[f"refused {response.status_code} {body['issue'][0]['code']}"] += 1
        else:
            outcomes[f"accepted {response.status_code}"] += 1
    return outcomes


def test_official_r4_examples(client: Client, ehr_token: str, shared_data: Path) -> None:
    files = sorted((shared_data / "hl7_fhir_r4_official_examples").glob("*.json"))
    assert len(files) > 600
    outcomes = _send_all(client, ehr_token, files)
    print(f"\nofficial R4 examples through intake ({len(files)}): {dict(sorted(outcomes.items()))}")
    accepted = sum(n for k, n in outcomes.items() if k.startswith("accepted"))
    assert accepted > 0.9 * len(files)
    assert audit_chain_verify().ok


def test_synthea_bundles(client: Client, ehr_token: str, shared_data: Path) -> None:
    folder = shared_data / "synthea_r4_ms_anonymizer_samples"
    patients = sorted(f for f in folder.glob("*.json") if not f.stem.startswith(("hospital", "practitioner")))
    assert len(patients) >= 10
    outcomes = _send_all(client, ehr_token, [*patients, *folder.glob("hospitalInformation*.json")])
    print(f"\nSynthea patient + hospital bundles through intake: {dict(outcomes)}")
    assert set(outcomes) == {"accepted 200"}
    assert IngestJob.objects.filter(kind="transaction").count() == len(patients) + 1
    # The practitioner bundle points at Organizations by urn:uuid that only the hospital bundle holds:
    # a transaction cannot resolve them, so it is refused, naming each dangling reference.
    practitioners = next(folder.glob("practitionerInformation*.json"))
    response = post_fhir(client, ehr_token, practitioners.read_bytes())
    assert response.status_code == 422
    issues = response.json()["issue"]
    assert {i["code"] for i in issues} == {"not-found"}
    assert all(i["expression"][0].endswith("organization.reference") for i in issues)
