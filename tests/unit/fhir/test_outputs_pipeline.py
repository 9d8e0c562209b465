"""End to end on the real pipeline: the sample bundle as an EHR sends it (its own ids, PUT entries), through
de-identification and the models, then read back over FHIR with the EHR's ids."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from clinical_ai.review.models import OutputResource
from tests.factories import EhrIdentity, obtain_token, sample_bundle
from tests.pipeline import bundle_process

pytestmark = pytest.mark.django_db


def _as_the_ehr_sends_it() -> tuple[dict[str, Any], dict[str, str]]:
    """The sample bundle with EHR ids: ``PUT Type/id`` entries, references by ``Type/id``. Returns it and a
    map from each resource's id to its type."""
    bundle = sample_bundle()
    ids: dict[str, str] = {}
    renamed: dict[str, str] = {}
    for index, entry in enumerate(bundle["entry"]):
        resource = entry["resource"]
        resource_type = resource["resourceType"]
        resource["id"] = "pat-123" if resource_type == "Patient" else f"{resource_type.lower()}-{index}"
        renamed[entry["fullUrl"]] = f"{resource_type}/{resource['id']}"
        ids[resource["id"]] = resource_type
        entry["fullUrl"] = f"http://ehr.example.org/fhir/{resource_type}/{resource['id']}"
        entry["request"] = {"method": "PUT", "url": f"{resource_type}/{resource['id']}"}

    def rename(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: renamed.get(v, v) if k == "reference" else rename(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rename(item) for item in node]
        return node

    return rename(bundle), ids


def test_the_models_results_come_back_with_the_ehrs_ids(
    client: Client, ehr_client: EhrIdentity, settings: Any
) -> None:
    settings.PUBLIC_BASE_URL = ""
    bundle, ids = _as_the_ehr_sends_it()
    suggestions = bundle_process(client, ehr_client, bundle)
    assert any(s.model_id == "news2" for s in suggestions)
    token = obtain_token(client, ehr_client, scope="system/*.read")
    headers = {"Authorization": f"Bearer {token}"}

    risks = client.get("/fhir/RiskAssessment?patient=pat-123", headers=headers).json()
    assert risks["total"] >= 1
    risk = risks["entry"][0]["resource"]
    assert risk["subject"] == {"reference": "Patient/pat-123", "type": "Patient"}
    cited = [b["reference"] for b in risk["basis"]]
    assert cited and all(r.split("/")[1] in ids and ids[r.split("/")[1]] == r.split("/")[0] for r in cited)

    guidance = client.get("/fhir/GuidanceResponse?subject=Patient/pat-123", headers=headers).json()
    assert guidance["total"] >= 1
    assert all(e["resource"]["subject"]["reference"] == "Patient/pat-123" for e in guidance["entry"])

    device = OutputResource.objects.filter(resource_type="Device").first()
    assert device is not None
    read = client.get(f"/fhir/Device/{device.resource_id}", headers=headers)
    assert read.status_code == 200 and read.json()["resourceType"] == "Device"
