"""One suggestion's page by persona: the patient re-identified for a clinician of its site only (and on
record), the basis of a risk and of a problem, the model card, escaping, defensive rendering."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from clinical_ai.audit.models import AuditEvent
from clinical_ai.review.models import Suggestion
from clinical_ai.vault.pseudonyms import date_shift_days
from clinical_ai.vault.services import pseudonym_key
from tests.unit.review.conftest import store_finding
from tests.unit.review.findings import problem_finding, problem_manifest

pytestmark = pytest.mark.django_db


def url(suggestion: Suggestion) -> str:
    return f"/review/suggestions/{suggestion.external_id}/"


def test_anonymous_is_sent_to_the_login_page(client: Any, risk_suggestion: Suggestion) -> None:
    response = client.get(url(risk_suggestion))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_a_clinician_of_another_site_gets_a_404(
    client: Any, other_site_clinician: Any, risk_suggestion: Suggestion
) -> None:
    client.force_login(other_site_clinician)
    assert client.get(url(risk_suggestion)).status_code == 404
    assert not AuditEvent.objects.filter(action__in=["deid.reidentify", "review.suggestion.view"]).exists()


def test_an_unknown_suggestion_is_a_404(client: Any, clinician: Any) -> None:
    client.force_login(clinician)
    assert client.get("/review/suggestions/00000000-0000-4000-8000-000000000000/").status_code == 404


def test_a_clinician_gets_the_risk_basis_and_the_sign_off_form(
    client: Any, clinician: Any, risk_suggestion: Suggestion
) -> None:
    client.force_login(clinician)
    response = client.get(url(risk_suggestion))
    assert response.status_code == 200
    page = response.content.decode()
    assert "This is a suggestion for your clinical judgement." in page
    assert "it is not a diagnosis" in page and "you remain responsible" in page
    assert "Respiration rate" in page and "25 /min" in page
    assert "<strong>Missing, not scored:</strong> Systolic blood pressure, Consciousness (ACVPU)." in page
    assert "<strong>Out of date, not scored:</strong> Temperature." in page
    assert "older than 24 h before the latest vital sign" in page
    assert "Aggregate score</dt><dd>8 (partial: a lower bound)" in page
    assert "Clinical response" in page
    assert "NEWS2 early warning score 1.0.0" in page
    assert "Intended use" in page and "Limitations" in page and "Chart boundary cases checked" in page
    assert 'href="/models/news2/"' in page
    assert 'action="/review/suggestions/' in page and 'name="password"' in page
    assert 'name="reason_code"' in page and 'name="code"' not in page  # a risk has no condition to edit


def test_a_clinician_gets_the_patient_re_identified_on_record(
    client: Any, clinician: Any, risk_suggestion: Suggestion
) -> None:
    client.force_login(clinician)
    client.get(url(risk_suggestion))
    reidentify = AuditEvent.objects.get(action="deid.reidentify")
    assert reidentify.outcome == "success"
    assert reidentify.detail == {"purpose": "review"}
    assert reidentify.patient_pseudonym == risk_suggestion.patient_pseudonym
    view = AuditEvent.objects.get(action="review.suggestion.view")
    assert view.object_id == str(risk_suggestion.external_id)
    assert view.detail["model"] == "news2"


@pytest.mark.parametrize("persona", ["auditor", "admin"])
def test_auditors_and_admins_read_without_re_identification_or_a_form(
    request: pytest.FixtureRequest, client: Any, persona: str, risk_suggestion: Suggestion
) -> None:
    client.force_login(request.getfixturevalue(persona))
    response = client.get(url(risk_suggestion))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Your role sees patients by pseudonym only." in page
    assert risk_suggestion.patient_pseudonym in page
    assert 'name="password"' not in page
    assert "Read only" in page
    assert not AuditEvent.objects.filter(action="deid.reidentify").exists()
    assert AuditEvent.objects.filter(action="review.suggestion.view").count() == 1


def test_the_problem_basis_highlights_the_evidence(
    client: Any, clinician: Any, problem_suggestion: Suggestion
) -> None:
    client.force_login(clinician)
    page = client.get(url(problem_suggestion)).content.decode()
    assert (
        '<blockquote class="excerpt">Known <mark>type 2 diabetes</mark>, on metformin.</blockquote>' in page
    )
    # The note's date is the real one (the de-identified copy's, unshifted), for this clinician.
    shift = date_shift_days(key=pseudonym_key(), pseudonym=problem_suggestion.patient_pseudonym)
    real = (date(2026, 10, 2) - timedelta(days=shift)).isoformat()
    assert f'Note of <time datetime="{real}">{real}</time> (' in page
    assert "section “assessment”; similarity 1.00" in page
    assert "2026-10-02" not in page
    assert "<li>negated: 1</li>" in page and "<li>family: 2</li>" in page and "<li>historical" not in page
    assert "Similarity threshold</dt><dd>0.8" in page
    assert 'name="code"' in page and 'name="clinical_status"' in page


def test_an_excerpt_with_markup_is_escaped(client: Any, clinician: Any, organization: Any) -> None:
    text = 'Pt has <script>alert("x")</script> diabetes & <b>HTN</b>'
    start = text.index("diabetes")
    suggestion = store_finding(
        organization, problem_finding(text=text, highlight=(start, start + 8)), problem_manifest()
    )
    client.force_login(clinician)
    page = client.get(url(suggestion)).content.decode()
    assert "<script>alert" not in page and "<b>HTN" not in page
    assert (
        "Pt has &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; <mark>diabetes</mark> &amp; "
        "&lt;b&gt;HTN&lt;/b&gt;" in page
    )


@pytest.mark.parametrize("highlight", [None, (5, 2), (0, 999), ("a", "b"), (True, 3), (0,)])
def test_a_bad_highlight_shows_the_excerpt_unmarked(
    client: Any, clinician: Any, organization: Any, highlight: Any
) -> None:
    suggestion = store_finding(organization, problem_finding(highlight=highlight), problem_manifest())
    client.force_login(clinician)
    page = client.get(url(suggestion)).content.decode()
    assert '<blockquote class="excerpt">Known type 2 diabetes, on metformin.</blockquote>' in page


@pytest.mark.parametrize(
    "evidence",
    [
        {},
        {"concept": "diabetes", "excerpts": "not a list", "skipped": ["x", {"assertion": "negated"}]},
        {"excerpts": [None, 3, {"text": None, "similarity": "high"}], "threshold": {"odd": True}},
    ],
)
def test_malformed_evidence_does_not_break_the_page(
    client: Any, clinician: Any, organization: Any, evidence: dict[str, Any]
) -> None:
    suggestion = store_finding(organization, problem_finding(evidence=evidence), problem_manifest())
    client.force_login(clinician)
    response = client.get(url(suggestion))
    assert response.status_code == 200
    assert b"Basis" in response.content


def test_a_model_missing_from_the_catalogue_is_said_so(
    client: Any, clinician: Any, problem_suggestion: Suggestion
) -> None:
    client.force_login(clinician)
    page = client.get(url(problem_suggestion)).content.decode()
    assert "card is not in the catalogue of this server any more" in page
    assert 'href="/models/test-problems/"' in page
