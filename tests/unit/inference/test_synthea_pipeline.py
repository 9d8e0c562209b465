"""The shared Synthea bundles through the whole service path (FHIR POST, de-identification, both models):
NEWS2 results for patients with vital signs, and problem-list suggestions with their evidence once the
coded Conditions the notes mention are taken off the problem list (the evaluation's protocol)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from clinical_ai.review.models import Suggestion
from clinical_ai.review.services import suggestion_payload
from tests.pipeline import bundle_process

pytestmark = [pytest.mark.django_db, pytest.mark.shared_data]

PATIENTS = ("Antonia30_Ruelas156", "Todd315_Stamm704")


def _transaction(bundle: dict[str, Any]) -> dict[str, Any]:
    """A Synthea bundle as an EHR would POST it (a batch), without its coded Conditions."""
    entries = [e for e in bundle["entry"] if e["resource"]["resourceType"] != "Condition"]
    for entry in entries:
        resource = entry["resource"]
        entry.setdefault("request", {"method": "POST", "url": resource["resourceType"]})
    return {
        "resourceType": "Bundle",
        "type": "batch",  # entries stand alone: the removed Conditions leave references unresolved
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "entry": entries,
    }


@pytest.mark.parametrize("name", PATIENTS)
def test_a_synthea_patient_gets_news2_and_problem_list_suggestions(
    client: Any, ehr_client: Any, shared_data: Path, name: str
) -> None:
    path = next((shared_data / "synthea_r4_ms_anonymizer_samples").glob(f"{name}_*.json"))
    suggestions = bundle_process(client, ehr_client, _transaction(json.loads(path.read_text())))
    news2 = [s for s in suggestions if s.model_id == "news2"]
    assert len(news2) == 1  # Synthea records blood pressure: a partial NEWS2, labelled as such
    evidence = suggestion_payload(news2[0])["evidence"]
    assert evidence["complete"] is False and evidence["missing"]
    problems = [s for s in suggestions if s.model_id == "problem-list-gaps"]
    assert problems, "the notes assert conditions no longer on the problem list"
    for suggestion in problems:
        assert suggestion.status == Suggestion.Status.PENDING and suggestion.kind == "problem"
        payload = suggestion_payload(suggestion)
        excerpt = payload["evidence"]["excerpts"][0]
        start, end = excerpt["highlight"]
        assert excerpt["text"][start:end] and excerpt["ref"]
        assert payload["proposal"]["verificationStatus"]["coding"][0]["code"] == "provisional"
        types = [r["resourceType"] for r in payload["resources"]]
        assert types == ["DetectedIssue", "RequestGroup"]
