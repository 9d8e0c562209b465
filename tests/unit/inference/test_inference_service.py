"""The inference stage in-process against the database: runs created with the de-identified copy, claimed,
run, finished with their suggestions and audit rows; the stop switch; idempotency."""

from __future__ import annotations

from typing import Any

import pytest

from clinical_ai.audit.models import AuditEvent
from clinical_ai.inference.models import InferenceRun
from clinical_ai.review.models import OutputResource, Suggestion
from clinical_ai.review.services import output_resource_body, suggestion_payload
from tests.pipeline import bundle_process

pytestmark = pytest.mark.django_db


def test_sample_bundle_yields_a_news2_suggestion_with_its_basis(client: Any, ehr_client: Any) -> None:
    suggestions = bundle_process(client, ehr_client)
    news2 = [s for s in suggestions if s.model_id == "news2"]
    assert len(news2) == 1
    suggestion = news2[0]
    assert suggestion.status == Suggestion.Status.PENDING
    payload = suggestion_payload(suggestion)
    assert payload["risk"]["band"]
    names = {p["name"]: p for p in payload["evidence"]["parameters"]}
    assert names["respiratory_rate"]["status"] == "scored"
    run = suggestion.run
    assert run.status == InferenceRun.Status.SUCCEEDED
    assert run.model_version == "1.0.0" and len(run.input_sha256) == 64
    assert run.features["respiratory_rate"] == 24
    types = set(OutputResource.objects.filter(suggestion=suggestion).values_list("resource_type", flat=True))
    assert "RiskAssessment" in types
    risk = next(
        output_resource_body(r)
        for r in OutputResource.objects.filter(suggestion=suggestion, resource_type="RiskAssessment")
    )
    assert risk["status"] == "preliminary"
    assert any(s["code"] == "AIAST" for s in risk["meta"]["security"])
    assert AuditEvent.objects.filter(action="inference.run", object_id=str(run.external_id)).count() == 1
