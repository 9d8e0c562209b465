"""Signing a decision: by persona, with the password as electronic signature, once and for good; the
Decision, the FHIR resources it produces and its audit row written together."""

from __future__ import annotations

import hashlib
import re
import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.test import Client

from clinical_ai.audit.models import AuditEvent
from clinical_ai.core.sealing import canonical_json
from clinical_ai.pipeline.web import suggestion_sign_off
from clinical_ai.review.fhir_decision import provenance_signature_verify
from clinical_ai.review.models import Decision, OutputResource, Suggestion
from clinical_ai.review.selectors.decision import decision_payload
from clinical_ai.review.services import output_resource_body, suggestion_payload
from clinical_ai.review.signoff import (
    AlreadyDecided,
    PasswordSignature,
    SignatureRefused,
    SignOff,
    SignOffNotAllowed,
    provenance_signing_key,
)
from tests.unit.review.conftest import PASSWORD, make_user, store_finding
from tests.unit.review.findings import HYPERTENSION, news2_finding, news2_manifest

pytestmark = pytest.mark.django_db

SIGN = "review.decision.sign"


def sign_url(suggestion: Suggestion) -> str:
    return f"/review/suggestions/{suggestion.external_id}/sign/"


def post(client: Any, suggestion: Suggestion, **data: str) -> Any:
    return client.post(sign_url(suggestion), {"password": PASSWORD, **data})


def served(suggestion: Suggestion, resource_type: str) -> list[dict[str, Any]]:
    rows = OutputResource.objects.filter(
        organization_id=suggestion.organization_id, resource_type=resource_type
    )
    return [output_resource_body(row) for row in rows]


def served_one(suggestion: Suggestion, resource_type: str) -> dict[str, Any]:
    [body] = served(suggestion, resource_type)
    return body


# --- who may sign ---------------------------------------------------------------------------------


def test_anonymous_is_sent_to_the_login_page(client: Any, risk_suggestion: Suggestion) -> None:
    response = post(client, risk_suggestion, outcome="accepted")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert not Decision.objects.exists()


def test_a_clinician_of_another_site_gets_a_404(
    client: Any, other_site_clinician: Any, risk_suggestion: Suggestion
) -> None:
    client.force_login(other_site_clinician)
    assert post(client, risk_suggestion, outcome="accepted").status_code == 404
    assert not Decision.objects.exists()


@pytest.mark.parametrize("persona", ["auditor", "admin"])
def test_same_site_auditors_and_admins_get_a_recorded_403(
    request: pytest.FixtureRequest, client: Any, persona: str, risk_suggestion: Suggestion
) -> None:
    user = request.getfixturevalue(persona)
    client.force_login(user)
    assert post(client, risk_suggestion, outcome="accepted").status_code == 403
    assert not Decision.objects.exists()
    event = AuditEvent.objects.get(action=SIGN)
    assert (event.outcome, event.detail["refused"]) == ("failure", "not-allowed")
    assert event.actor_id == str(user.pk)
    assert Suggestion.objects.get(pk=risk_suggestion.pk).status == "pending"


def test_the_service_refuses_a_decision_by_the_wrong_role(auditor: Any, risk_suggestion: Suggestion) -> None:
    with pytest.raises(SignOffNotAllowed):
        suggestion_sign_off(
            suggestion=risk_suggestion,
            user=auditor,
            signature=PasswordSignature(PASSWORD),
            sign_off=SignOff(outcome="accepted"),
            request_id="r-1",
        )
    assert not Decision.objects.exists()
    assert AuditEvent.objects.get(action=SIGN).outcome == "failure"


def test_the_form_needs_a_csrf_token(clinician: Any, risk_suggestion: Suggestion) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(clinician)
    assert post(strict, risk_suggestion, outcome="accepted").status_code == 403
    assert not Decision.objects.exists()


def test_get_on_the_sign_url_goes_to_the_suggestion(
    client: Any, clinician: Any, risk_suggestion: Suggestion
) -> None:
    """Issue 15 point 5: sign-in sending someone back, or a reload, must not answer 405."""
    client.force_login(clinician)
    response = client.get(sign_url(risk_suggestion))
    assert response.status_code == 302
    assert response["Location"] == f"/review/suggestions/{risk_suggestion.external_id}/"
    assert not Decision.objects.exists()


# --- the password as signature ------------------------------------------------------------------


def test_a_wrong_password_signs_nothing_and_is_on_record(
    client: Any, clinician: Any, risk_suggestion: Suggestion
) -> None:
    client.force_login(clinician)
    response = client.post(sign_url(risk_suggestion), {"outcome": "accepted", "password": "guess"})
    assert response.status_code == 400
    assert b"That is not your password. Nothing was signed." in response.content
    assert not Decision.objects.exists()
    assert Suggestion.objects.get(pk=risk_suggestion.pk).status == "pending"
    assert served_one(risk_suggestion, "RiskAssessment")["status"] == "preliminary"
    assert not OutputResource.objects.filter(resource_type="Provenance").exists()
    event = AuditEvent.objects.get(action=SIGN)
    assert (event.outcome, event.detail["refused"]) == ("failure", "wrong-password")
    assert "guess" not in str(event.detail)


def test_the_service_refuses_an_empty_password(clinician: Any, risk_suggestion: Suggestion) -> None:
    with pytest.raises(SignatureRefused):
        suggestion_sign_off(
            suggestion=risk_suggestion,
            user=clinician,
            signature=PasswordSignature(""),
            sign_off=SignOff(outcome="accepted"),
            request_id="r-1",
        )
    assert not Decision.objects.exists()


# --- accepting, rejecting -------------------------------------------------------------------------


def test_accepting_a_risk_writes_one_decision_the_provenance_and_one_audit_row(
    client: Any, clinician: Any, risk_suggestion: Suggestion
) -> None:
    client.force_login(clinician)
    response = post(client, risk_suggestion, outcome="accepted")
    assert response.status_code == 302
    assert response["Location"] == "/review/"  # nothing else is pending: on to the queue

    decision = Decision.objects.get()
    assert decision.suggestion_id == risk_suggestion.pk
    assert (decision.outcome, decision.reason_code) == ("accepted", "")
    assert decision.clinician == clinician and decision.clinician_display == "Wanda Ward"
    assert Suggestion.objects.get(pk=risk_suggestion.pk).status == "accepted"

    risk = served_one(risk_suggestion, "RiskAssessment")
    assert risk["status"] == "final"
    assert risk["meta"]["versionId"] == "2"
    provenance = served_one(risk_suggestion, "Provenance")
    assert provenance["target"] == [{"reference": f"RiskAssessment/{risk['id']}"}]
    assert provenance["agent"][0]["who"]["identifier"]["value"] == "dr-ward"
    assert provenance_signature_verify(provenance, [risk], key=provenance_signing_key())

    [event] = AuditEvent.objects.filter(action=SIGN)
    assert event.outcome == "success"
    assert event.detail == {
        "suggestion": str(risk_suggestion.external_id),
        "model": "news2",
        "version": "1.0.0",
        "outcome": "accepted",
        "reason_code": "",
        "decision": str(decision.external_id),
        "signature_method": "password",
        "authenticated_at": decision.authenticated_at.isoformat() if decision.authenticated_at else None,
    }
    assert event.patient_pseudonym == risk_suggestion.patient_pseudonym
    assert decision.signature_method == "password"
    assert decision.authenticated_at is not None
    assert decision.signed_at - decision.authenticated_at < timedelta(seconds=5)

    payload = decision_payload(decision)
    assert hashlib.sha256(canonical_json(payload)).hexdigest() == decision.signature_sha256
    assert payload["provenance"]["id"] == provenance["id"]
    assert payload["provenance"]["signature"] == provenance["signature"]
    assert payload["resources"] == [
        {k: v for k, v in risk.items() if k != "meta"} | {"meta": payload["resources"][0]["meta"]}
    ]

    assert not AuditEvent.objects.filter(action__in=["deid.reidentify", "review.suggestion.view"]).exists()
    decided = client.get("/review/", {"status": "decided"}).content.decode()
    assert "by Wanda Ward" in decided and "Accepted" in decided
    assert "Signed: accepted (" in decided  # the notice, on the queue: nothing else was waiting

    page = client.get(f"/review/suggestions/{risk_suggestion.external_id}/").content.decode()
    assert "Signed by</dt><dd>Wanda Ward" in page and "intact" in page
    assert 'name="password"' not in page


def test_accepting_a_risk_with_changes_needs_a_comment_and_keeps_it_out_of_the_audit(
    client: Any, clinician: Any, risk_suggestion: Suggestion
) -> None:
    client.force_login(clinician)
    response = post(client, risk_suggestion, outcome="modified")
    assert response.status_code == 400
    assert b"Accepting a risk with changes means adding your comment." in response.content
    assert not Decision.objects.exists()

    comment = "Mrs Okafor-Lindqvist reviewed at bedside; escalated."
    assert post(client, risk_suggestion, outcome="modified", comment=comment).status_code == 302
    decision = Decision.objects.get()
    assert decision.outcome == "modified"
    assert decision_payload(decision)["comment"] == comment
    risk = served_one(risk_suggestion, "RiskAssessment")
    assert risk["status"] == "final" and risk["note"][-1]["text"] == comment
    assert "Okafor" not in str(AuditEvent.objects.get(action=SIGN, outcome="success").detail)
    assert comment in client.get(f"/review/suggestions/{risk_suggestion.external_id}/").content.decode()


def test_rejecting_stores_the_reason_and_cancels(
    client: Any, clinician: Any, problem_suggestion: Suggestion
) -> None:
    client.force_login(clinician)
    assert post(client, problem_suggestion, outcome="rejected").status_code == 400
    response = post(client, problem_suggestion, outcome="rejected", reason_code="other")
    assert response.status_code == 400
    assert b"the reason &#x27;Other&#x27; needs a comment" in response.content
    assert not Decision.objects.exists()

    assert (
        post(client, problem_suggestion, outcome="rejected", reason_code="already-known").status_code == 302
    )
    decision = Decision.objects.get()
    assert (decision.outcome, decision.reason_code) == ("rejected", "already-known")
    assert Suggestion.objects.get(pk=problem_suggestion.pk).status == "rejected"
    assert served_one(problem_suggestion, "DetectedIssue")["status"] == "cancelled"
    assert served_one(problem_suggestion, "RequestGroup")["status"] == "revoked"
    assert served(problem_suggestion, "Condition") == []
    provenance = served_one(problem_suggestion, "Provenance")
    assert provenance["reason"][0]["coding"][0]["code"] == "already-known"
    event = AuditEvent.objects.get(action=SIGN, outcome="success")
    assert (event.detail["outcome"], event.detail["reason_code"]) == ("rejected", "already-known")
    page = client.get(f"/review/suggestions/{problem_suggestion.external_id}/").content.decode()
    assert "Reason</dt><dd>Already known or already acted on" in page


def test_accepting_a_problem_creates_the_confirmed_condition(
    client: Any, clinician: Any, problem_suggestion: Suggestion
) -> None:
    client.force_login(clinician)
    assert post(client, problem_suggestion, outcome="accepted").status_code == 302
    condition = served_one(problem_suggestion, "Condition")
    assert condition["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert condition["code"]["coding"][0]["code"] == "44054006"
    assert condition["meta"]["versionId"] == "1"
    assert served_one(problem_suggestion, "RequestGroup")["status"] == "completed"
    provenance = served_one(problem_suggestion, "Provenance")
    targets = [served_one(problem_suggestion, t) for t in ("DetectedIssue", "RequestGroup", "Condition")]
    assert provenance_signature_verify(provenance, targets, key=provenance_signing_key())


def test_accept_refuses_an_edited_condition(
    client: Any, clinician: Any, problem_suggestion: Suggestion
) -> None:
    client.force_login(clinician)
    response = post(client, problem_suggestion, outcome="accepted", clinical_status="resolved")
    assert response.status_code == 400
    assert b"choose &#x27;Accept with changes&#x27;" in response.content
    assert not Decision.objects.exists()


def test_accepting_a_problem_with_changes(
    client: Any, clinician: Any, problem_suggestion: Suggestion
) -> None:
    client.force_login(clinician)
    response = post(
        client,
        problem_suggestion,
        outcome="modified",
        code=f"{HYPERTENSION['system']}|{HYPERTENSION['code']}",
        clinical_status="active",
        verification_status="provisional",
        onset="2025-03-01",
    )
    assert response.status_code == 302, response.content
    condition = served_one(problem_suggestion, "Condition")
    assert condition["code"]["coding"][0]["code"] == HYPERTENSION["code"]
    assert condition["verificationStatus"]["coding"][0]["code"] == "provisional"
    assert condition["onsetDateTime"] == "2025-03-01"
    decision = Decision.objects.get()
    assert decision.outcome == "modified"
    assert decision_payload(decision)["changes"]["onset"] == "2025-03-01"


@pytest.mark.parametrize(
    "data",
    [
        {"code": "http://snomed.info/sct|not-in-the-vocabulary"},
        {"clinical_status": "cured"},
        {"onset": "2999-01-01"},
        {"onset": "yesterday"},
    ],
)
def test_changes_outside_the_allowed_values_are_refused(
    client: Any, clinician: Any, problem_suggestion: Suggestion, data: dict[str, str]
) -> None:
    client.force_login(clinician)
    assert post(client, problem_suggestion, outcome="modified", **data).status_code == 400
    assert not Decision.objects.exists()


# --- once and for good ----------------------------------------------------------------------------


def test_a_second_decision_is_refused_with_who_decided_first(
    client: Any, clinician: Any, organization: Any, risk_suggestion: Suggestion
) -> None:
    colleague = make_user("dr-second", organization, "clinician")
    client.force_login(clinician)
    assert post(client, risk_suggestion, outcome="accepted").status_code == 302
    client.force_login(colleague)
    response = post(client, risk_suggestion, outcome="rejected", reason_code="duplicate")
    assert response.status_code == 409
    assert re.search(
        r"Not signed: this suggestion was already accepted by Wanda Ward at \d{4}-\d\d-\d\d \d\d:\d\d \w+\.",
        response.content.decode(),
    )
    assert Decision.objects.count() == 1
    assert Decision.objects.get().outcome == "accepted"


def test_a_decision_racing_with_another_one_loses_and_says_to_whom(
    clinician: Any, organization: Any, risk_suggestion: Suggestion
) -> None:
    colleague = make_user("dr-second", organization, "clinician")
    stale = Suggestion.objects.get(pk=risk_suggestion.pk)  # read while still pending
    suggestion_sign_off(
        suggestion=risk_suggestion,
        user=clinician,
        signature=PasswordSignature(PASSWORD),
        sign_off=SignOff(outcome="accepted"),
        request_id="r-1",
    )
    with pytest.raises(AlreadyDecided, match=r"already decided by Wanda Ward at \d{4}-\d\d-\d\dT"):
        suggestion_sign_off(
            suggestion=stale,
            user=colleague,
            signature=PasswordSignature(PASSWORD),
            sign_off=SignOff(outcome="rejected", reason_code="duplicate"),
            request_id="r-2",
        )
    assert Decision.objects.count() == 1
    refused = AuditEvent.objects.get(action=SIGN, outcome="failure")
    assert refused.detail["refused"] == "already-decided"
    assert refused.actor_id == str(colleague.pk)


def test_a_withdrawn_suggestion_cannot_be_decided(clinician: Any, risk_suggestion: Suggestion) -> None:
    Suggestion.objects.filter(pk=risk_suggestion.pk).update(status=Suggestion.Status.WITHDRAWN)
    with pytest.raises(AlreadyDecided, match="no longer pending review"):
        suggestion_sign_off(
            suggestion=risk_suggestion,
            user=clinician,
            signature=PasswordSignature(PASSWORD),
            sign_off=SignOff(outcome="accepted"),
            request_id="r-1",
        )
    assert not Decision.objects.exists()


def test_the_database_refuses_a_second_decision_and_any_update(
    clinician: Any, risk_suggestion: Suggestion
) -> None:
    decision = suggestion_sign_off(
        suggestion=risk_suggestion,
        user=clinician,
        signature=PasswordSignature(PASSWORD),
        sign_off=SignOff(outcome="accepted"),
        request_id="r-1",
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Decision.objects.create(
            suggestion=risk_suggestion,
            organization_id=decision.organization_id,
            clinician=clinician,
            clinician_display="x",
            outcome="accepted",
            key_id=decision.key_id,
            nonce=decision.nonce,
            ciphertext=decision.ciphertext,
            signed_at=decision.signed_at,
            signature_sha256="0" * 64,
        )
    with pytest.raises(DatabaseError), transaction.atomic():
        Decision.objects.filter(pk=decision.pk).update(outcome="rejected", reason_code="other")
    assert Decision.objects.get(pk=decision.pk).outcome == "accepted"


def test_a_rejection_without_a_reason_is_refused_by_the_database(
    clinician: Any, risk_suggestion: Suggestion
) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Decision.objects.create(
            suggestion=risk_suggestion,
            organization_id=risk_suggestion.organization_id,
            clinician=clinician,
            clinician_display="x",
            outcome="rejected",
            reason_code="",
            key_id="k",
            nonce=b"",
            ciphertext=b"",
            signed_at=risk_suggestion.created_at,
            signature_sha256="0" * 64,
        )


def test_the_suggestions_own_payload_is_unchanged_by_the_decision(
    clinician: Any, risk_suggestion: Suggestion
) -> None:
    before = suggestion_payload(risk_suggestion)
    suggestion_sign_off(
        suggestion=risk_suggestion,
        user=clinician,
        signature=PasswordSignature(PASSWORD),
        sign_off=SignOff(outcome="accepted"),
        request_id="r-1",
    )
    assert suggestion_payload(Suggestion.objects.get(pk=risk_suggestion.pk)) == before


@pytest.mark.skipif(connection.vendor != "postgresql", reason="row locks need PostgreSQL")
def test_two_clinicians_signing_at_once_make_one_decision(transactional_db: None, organization: Any) -> None:
    first = make_user("dr-first", organization, "clinician")
    second = make_user("dr-second", organization, "clinician")
    suggestion = store_finding(organization, news2_finding(), news2_manifest())
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def sign(user: Any, sign_off: SignOff) -> None:
        try:
            barrier.wait()
            suggestion_sign_off(
                suggestion=suggestion,
                user=user,
                signature=PasswordSignature(PASSWORD),
                sign_off=sign_off,
                request_id="r",
            )
            outcomes[user.username] = "signed"
        except AlreadyDecided:
            outcomes[user.username] = "refused"
        finally:
            connection.close()

    threads = [
        threading.Thread(target=sign, args=(first, SignOff(outcome="accepted"))),
        threading.Thread(target=sign, args=(second, SignOff(outcome="rejected", reason_code="duplicate"))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes.values()) == ["refused", "signed"]
    assert Decision.objects.count() == 1
    assert AuditEvent.objects.filter(action=SIGN, outcome="success").count() == 1
    assert AuditEvent.objects.get(action=SIGN, outcome="failure").detail["refused"] == "already-decided"
