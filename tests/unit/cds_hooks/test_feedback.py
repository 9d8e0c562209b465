"""Feedback: accepted and overridden cards become the suggestion's decision, signed through the EHR's
service account and audited; repeated feedback changes nothing; cds-fb-1..3 are enforced."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.test import Client

from clinical_ai.audit.models import AuditEvent
from clinical_ai.review.models import Decision, OutputResource, Suggestion
from integrations.cds_hooks.models import CardFeedback, CdsIssuer
from tests.unit.cds_hooks.conftest import Signer, call, hook_body
from tests.unit.cds_hooks.invariants import check_outcome, check_response

pytestmark = pytest.mark.django_db

SERVICE = "/clinical-ai-patient-view"
FEEDBACK = SERVICE + "/feedback"
WHEN = "2026-11-26T10:05:31Z"


def shown_cards(http: Client, sign: Signer) -> list[dict[str, Any]]:
    return check_response(call(http, SERVICE, hook_body(), sign(SERVICE)).json())


def accepted(card: dict[str, Any]) -> dict[str, Any]:
    return {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
        "outcomeTimestamp": WHEN,
    }


def send(http: Client, sign: Signer, *entries: dict[str, Any]) -> Any:
    return call(http, FEEDBACK, {"feedback": list(entries)}, sign(FEEDBACK))


def test_accepting_a_problem_card_signs_the_suggestion_off(
    client: Client, issuer: CdsIssuer, sign: Signer, problem_suggestion: Suggestion
) -> None:
    (card,) = shown_cards(client, sign)
    response = send(client, sign, accepted(card))
    assert response.status_code == 200, response.content
    problem_suggestion.refresh_from_db()
    assert problem_suggestion.status == Suggestion.Status.ACCEPTED
    decision = Decision.objects.get(suggestion=problem_suggestion)
    assert decision.outcome == "accepted"
    assert decision.clinician_id == issuer.feedback_user_id
    assert decision.clinician_display == "EHR user via St Elsewhere EHR"
    # The same decision machinery as a sign-off in the review UI: the confirmed Condition exists.
    assert OutputResource.objects.filter(suggestion=problem_suggestion, resource_type="Condition").exists()
    assert AuditEvent.objects.filter(action="review.decision.sign", outcome="success").count() == 1
    event = AuditEvent.objects.get(action="cds.feedback", outcome="success")
    assert (
        event.detail["result"] == "decided"
        and event.patient_pseudonym == problem_suggestion.patient_pseudonym
    )
    # The next view labels it signed off.
    (again,) = shown_cards(client, sign)
    assert again["summary"].startswith("Signed off:") and "EHR user via St Elsewhere EHR" in again["detail"]


def test_repeated_feedback_is_idempotent(
    client: Client, issuer: CdsIssuer, sign: Signer, problem_suggestion: Suggestion
) -> None:
    (card,) = shown_cards(client, sign)
    assert send(client, sign, accepted(card)).status_code == 200
    assert send(client, sign, accepted(card)).status_code == 200
    assert CardFeedback.objects.count() == 1
    assert Decision.objects.count() == 1
    assert AuditEvent.objects.filter(action="cds.feedback", outcome="success").count() == 1


def test_overriding_rejects_with_the_reason(
    client: Client, issuer: CdsIssuer, sign: Signer, risk_suggestion: Suggestion
) -> None:
    (card,) = shown_cards(client, sign)
    reason = card["overrideReasons"][0]
    entry = {
        "card": card["uuid"],
        "outcome": "overridden",
        "overrideReason": {"reason": reason, "userComment": "Seen and handled at the bedside."},
        "outcomeTimestamp": WHEN,
    }
    assert send(client, sign, entry).status_code == 200
    decision = Decision.objects.get(suggestion=risk_suggestion)
    assert decision.outcome == "rejected" and decision.reason_code == reason["code"]
    # Overriding after the decision was made changes nothing more, but is recorded.
    assert send(client, sign, {**accepted(card)}).status_code == 200
    assert Decision.objects.count() == 1
    assert CardFeedback.objects.filter(result="already-decided").count() == 1


def test_a_foreign_override_reason_becomes_other(
    client: Client, issuer: CdsIssuer, sign: Signer, risk_suggestion: Suggestion
) -> None:
    (card,) = shown_cards(client, sign)
    entry = {
        "card": card["uuid"],
        "outcome": "overridden",
        "overrideReason": {
            "reason": {"code": "d7ecf885", "system": "https://example.com/cds-hooks/override-reason-system"}
        },
        "outcomeTimestamp": WHEN,
    }
    assert send(client, sign, entry).status_code == 200
    assert Decision.objects.get().reason_code == "other"


def test_a_card_not_shown_to_this_ehr_is_404(client: Client, issuer: CdsIssuer, sign: Signer) -> None:
    entry = {
        "card": str(uuid.uuid4()),
        "outcome": "overridden",
        "overrideReason": {"userComment": "x"},
        "outcomeTimestamp": WHEN,
    }
    response = send(client, sign, entry)
    assert response.status_code == 404
    check_outcome(response.json())


@pytest.mark.parametrize(
    ("change", "rule"),
    [
        ({"acceptedSuggestions": None}, "cds-fb-2"),
        ({"overrideReason": {"userComment": "no"}}, "cds-fb-1"),
        ({"outcome": "overridden"}, "cds-fb-1"),
        ({"outcome": "overridden", "acceptedSuggestions": None, "overrideReason": {}}, "cds-fb-3"),
        ({"outcome": "ignored"}, "outcome"),
        ({"outcomeTimestamp": None}, "outcomeTimestamp"),
        ({"acceptedSuggestions": [{"id": str(uuid.uuid4())}]}, "suggestion this card does not have"),
    ],
)
def test_feedback_invariants(
    client: Client,
    issuer: CdsIssuer,
    sign: Signer,
    problem_suggestion: Suggestion,
    change: dict[str, Any],
    rule: str,
) -> None:
    (card,) = shown_cards(client, sign)
    entry = {k: v for k, v in {**accepted(card), **change}.items() if v is not None}
    response = send(client, sign, entry)
    assert response.status_code == 400, response.content
    assert rule in response.json()["issue"][0]["diagnostics"]
    assert not Decision.objects.exists() and not CardFeedback.objects.exists()


def test_the_spec_feedback_examples_parse(shared_data: Any) -> None:
    import json

    from integrations.cds_hooks.hooks import feedback_parse

    folder = shared_data / "cds_hooks_examples"
    if not folder.is_dir():
        pytest.skip("no examples")
    examples = sorted(folder.glob("*feedback*.json"))
    assert examples
    for path in examples:
        body = json.loads(path.read_text(encoding="utf-8"))
        outcomes = [e.outcome for e in feedback_parse(body)]
        assert outcomes and set(outcomes) <= {"accepted", "overridden"}


def test_feedback_needs_a_jwt_for_the_feedback_url(client: Client, issuer: CdsIssuer, sign: Signer) -> None:
    body: dict[str, Any] = {"feedback": []}
    assert call(client, FEEDBACK, body, None).status_code == 401
    assert call(client, FEEDBACK, body, sign("")).status_code == 401  # a discovery JWT
    assert call(client, FEEDBACK, body, sign(SERVICE)).status_code == 400  # the service URL is accepted
