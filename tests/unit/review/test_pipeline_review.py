"""The review UI on the real pipeline: the sample bundle posted by the EHR, de-identified, scored by NEWS2,
then reviewed by a clinician who sees the patient re-identified and signs the decision."""

from __future__ import annotations

from typing import Any

import pytest

from clinical_ai.audit.models import AuditEvent
from clinical_ai.review.models import Decision, OutputResource, Suggestion
from clinical_ai.review.services import output_resource_body
from tests.pipeline import bundle_process
from tests.unit.review.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_a_clinician_reviews_and_accepts_the_sample_patients_news2(
    client: Any, ehr_client: Any, clinician: Any, auditor: Any
) -> None:
    [suggestion] = [s for s in bundle_process(client, ehr_client) if s.model_id == "news2"]
    page_url = f"/review/suggestions/{suggestion.external_id}/"

    client.force_login(auditor)
    as_auditor = client.get(page_url).content.decode()
    assert "Okafor-Lindqvist" not in as_auditor
    assert not AuditEvent.objects.filter(action="deid.reidentify").exists()

    client.force_login(clinician)
    queue = client.get("/review/").content.decode()
    assert page_url in queue
    # The queue names the clinician's own patients (re-identified for the page, on record once).
    assert "Margaret Okafor-Lindqvist" in queue and "MRN 4471-2290" in queue
    [queue_reidentified] = AuditEvent.objects.filter(action="deid.reidentify")
    assert queue_reidentified.detail["patients"] == [suggestion.patient_pseudonym]
    page = client.get(page_url).content.decode()
    assert "Margaret Okafor-Lindqvist" in page and "1959-03-14" in page
    assert AuditEvent.objects.filter(action="deid.reidentify").latest("seq").detail == {"purpose": "review"}

    response = client.post(f"{page_url}sign/", {"outcome": "accepted", "password": PASSWORD})
    assert response.status_code == 302
    assert Suggestion.objects.get(pk=suggestion.pk).status == "accepted"
    assert Decision.objects.get().suggestion_id == suggestion.pk
    risk = OutputResource.objects.get(suggestion=suggestion, resource_type="RiskAssessment")
    assert (risk.status, risk.version) == ("final", 2)
    assert output_resource_body(risk)["status"] == "final"
    provenance = OutputResource.objects.get(suggestion=suggestion, resource_type="Provenance")
    assert output_resource_body(provenance)["target"] == [{"reference": f"RiskAssessment/{risk.resource_id}"}]
    assert AuditEvent.objects.filter(action="review.decision.sign", outcome="success").count() == 1
