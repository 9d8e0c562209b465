"""Results from too few observations in the review loop (issue 15, point 1): stored with their completeness,
labelled, counted and filterable in the queue, and worded on the suggestion page and the CDS Hooks card
without a band or a routine response."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from clinical_ai.accounts.models import Organization
from clinical_ai.review.models import Suggestion
from clinical_ai.review.services import suggestion_payload
from integrations.cds_hooks.cards import CardSource, suggestion_card
from tests.unit.inference.test_news2 import respiratory_rate, run, systolic
from tests.unit.review.conftest import store_finding
from tests.unit.review.findings import news2_manifest

pytestmark = pytest.mark.django_db

QUEUE = "/review/"
REASSURANCE = ("low risk", "routine", "every 12 hours")


def _news2(organization: Organization, resources: list[dict[str, Any]], pseudonym: str) -> Suggestion:
    finding = run(resources).findings[0]
    return store_finding(organization, finding, news2_manifest(), pseudonym=pseudonym)


@pytest.fixture
def not_scored(organization: Organization) -> Suggestion:
    return _news2(organization, [systolic(120)], "a" * 32)


@pytest.fixture
def at_least_medium(organization: Organization) -> Suggestion:
    return _news2(organization, [respiratory_rate(25), systolic(120)], "b" * 32)


def _rows(page: str) -> list[str]:
    return re.findall(r"<tr[^>]*>(.*?)</tr>", page, flags=re.DOTALL)[1:]  # the first is the header


def test_the_suggestion_keeps_the_findings_completeness(
    not_scored: Suggestion, at_least_medium: Suggestion
) -> None:
    assert (not_scored.completeness, not_scored.score) == ("not_scored", None)
    assert at_least_medium.completeness == "lower_bound"
    payload = suggestion_payload(not_scored)
    assert payload["completeness"] == "not_scored"
    assert payload["missing_inputs"][0] == "Respiration rate"


def test_the_queue_labels_and_counts_results_that_cannot_be_scored(
    client: Any, clinician: Any, not_scored: Suggestion, at_least_medium: Suggestion
) -> None:
    client.force_login(clinician)
    page = client.get(QUEUE).content.decode()
    rows = _rows(page)
    assert len(rows) == 2
    warning, info = rows  # most urgent first: the lower bound escalates, "cannot be scored" does not
    assert 'class="result-lower_bound">Incomplete data</span>' in warning
    assert "at least medium risk" in warning
    assert 'class="result-not_scored">Cannot be scored</span>' in info
    assert "NEWS2 cannot be scored: not enough observations" in info
    assert not any(word in info.lower() for word in REASSURANCE)
    assert re.search(r'<span class="result-not_scored">Cannot be scored</span>: 1</p>', page)


def test_the_queue_filters_results_that_cannot_be_scored(
    client: Any, clinician: Any, not_scored: Suggestion, at_least_medium: Suggestion
) -> None:
    client.force_login(clinician)
    only = client.get(QUEUE, {"result": "not_scored"}).content.decode()
    assert [str(not_scored.external_id) in row for row in _rows(only)] == [True]
    others = client.get(QUEUE, {"result": "scored"}).content.decode()
    assert [str(at_least_medium.external_id) in row for row in _rows(others)] == [True]
    # The count of results that cannot be scored stays within the other filters (urgency here).
    warnings = client.get(QUEUE, {"urgency": "warning"}).content.decode()
    assert "Cannot be scored: none</p>" in warnings


def test_the_suggestion_page_says_cannot_be_scored_and_what_is_missing(
    client: Any, clinician: Any, not_scored: Suggestion
) -> None:
    client.force_login(clinician)
    page = client.get(f"/review/suggestions/{not_scored.external_id}/").content.decode()
    assert "<strong>Cannot be scored: not enough observations.</strong>" in page
    assert "<dt>Score</dt><dd>Cannot be scored: not enough observations</dd>" in page
    assert "Risk band" not in page and "Aggregate score" not in page
    assert "Take and record a full set of observations now" in page
    assert "<strong>Missing, not scored:</strong> Respiration rate, SpO2 (scale 1)" in page
    basis = page[page.index('id="basis-heading"') :]
    basis = basis[: basis.index("</section>")]
    assert not any(word in basis.lower() for word in REASSURANCE)


def test_the_suggestion_page_says_at_least_for_a_lower_bound(
    client: Any, clinician: Any, at_least_medium: Suggestion
) -> None:
    client.force_login(clinician)
    page = client.get(f"/review/suggestions/{at_least_medium.external_id}/").content.decode()
    assert "<dt>Risk band</dt><dd>at least medium (at least moderate risk)</dd>" in page


# --- the CDS Hooks card ---------------------------------------------------------------------------


def _card(suggestion: Suggestion) -> dict[str, Any]:
    return suggestion_card(
        CardSource(
            card_uuid=uuid.uuid4(),
            kind=suggestion.kind,
            urgency=suggestion.urgency,
            status="pending",
            model_id=suggestion.model_id,
            model_version=suggestion.model_version,
            model_name="NEWS2 early warning score",
            payload=suggestion_payload(suggestion),
            review_url="https://gateway.example/review/x/",
            model_card_url="https://gateway.example/models/news2/",
            patient_reference="Patient/123",
        )
    )


def test_the_card_of_a_result_that_cannot_be_scored(not_scored: Suggestion) -> None:
    card = _card(not_scored)
    assert card["summary"] == (
        "Pending review: NEWS2 cannot be scored: not enough observations (6 of 7 parameters missing)"
    )
    assert card["indicator"] == "info"
    detail = card["detail"]
    assert "**Cannot be scored: not enough observations.** This is not a low score" in detail
    assert "**Missing:** Respiration rate (not recorded)" in detail
    assert "Take and record a full set of observations now" in detail
    assert "**Score:**" not in detail
    assert not any(word in detail.lower() for word in ("low risk", "routine", "every 12 hours"))


def test_the_card_of_a_lower_bound_says_at_least(at_least_medium: Suggestion) -> None:
    card = _card(at_least_medium)
    assert card["indicator"] == "warning"
    assert "at least medium risk" in card["summary"]
    assert "**Score:** at least 3 (partial score, at least medium risk)" in card["detail"]
