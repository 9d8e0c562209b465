"""Signing with the hospital login (step-up): the proof the service takes and checks, what the Decision,
its sealed payload, its Provenance and the audit row say about how the signer was authenticated, the
migration that added it, and the whole flow in the review views against a real OpenID provider
(oidc-provider, tests.sso_harness)."""

from __future__ import annotations

import hashlib
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from django.utils import timezone

from clinical_ai.accounts.models import ExternalIdentity, Organization, Role
from clinical_ai.audit.models import AuditEvent
from clinical_ai.core.sealing import canonical_json
from clinical_ai.fhir.validation_resource import validate_resource
from clinical_ai.pipeline.web import decision_record, suggestion_sign_off
from clinical_ai.review.fhir_decision import (
    AMR_SYSTEM,
    SIGNATURE_METHOD_SYSTEM,
    SIGNER_AUTHENTICATION_EXTENSION,
    provenance_signature_verify,
)
from clinical_ai.review.models import Decision, OutputResource, Suggestion
from clinical_ai.review.selectors.decision import decision_payload
from clinical_ai.review.selectors.signing import step_up_provider
from clinical_ai.review.services import output_resource_body
from clinical_ai.review.signoff import (
    STEP_UP_MAX_AGE_SECONDS,
    PasswordSignature,
    SignatureRefused,
    SignOff,
    StepUpRefused,
    StepUpSignature,
    provenance_signing_key,
)
from tests.sso_harness import CLIENT_ID, CLIENT_SECRET, USER_PASSWORD, OidcProviderProcess
from tests.unit.review.conftest import PASSWORD, make_user, store_finding
from tests.unit.review.findings import news2_finding, news2_manifest

pytestmark = pytest.mark.django_db

ISSUER = "https://login.hospital.example"
SUBJECT = "7c1f0b7e-nurse-okoro"
SIGN = "review.decision.sign"


@pytest.fixture
def sso_on(settings: Any) -> None:
    settings.OIDC_ISSUER = ISSUER
    settings.OIDC_CLIENT_ID = CLIENT_ID
    settings.OIDC_CLIENT_SECRET = CLIENT_SECRET


def sso_clinician(organization: Organization, issuer: str, subject: str = SUBJECT) -> Any:
    """A clinician made by single sign-on: no usable local password, an identity at the provider."""
    user = make_user("nia.okoro", organization, Role.CLINICIAN, first_name="Nia", last_name="Okoro")
    user.set_unusable_password()
    user.save()
    ExternalIdentity.objects.create(user=user, issuer=issuer, subject=subject)
    return user


def proof(**changes: Any) -> StepUpSignature:
    now = int(time.time())
    fields: dict[str, Any] = {
        "issuer": ISSUER,
        "subject": SUBJECT,
        "auth_time": now - 5,
        "requested_at": now - 20,
        "acr": "urn:hospital:loa:2",
        "amr": ("pwd", "otp"),
    }
    return StepUpSignature(**{**fields, **changes})


def sign(suggestion: Suggestion, user: Any, signature: Any) -> Decision:
    return suggestion_sign_off(
        suggestion=suggestion,
        user=user,
        signature=signature,
        sign_off=SignOff(outcome="accepted"),
        request_id="r-1",
    )


def provenance_of(suggestion: Suggestion) -> dict[str, Any]:
    [row] = OutputResource.objects.filter(
        organization_id=suggestion.organization_id, resource_type="Provenance"
    )
    return output_resource_body(row)


def authentication_parts(provenance: dict[str, Any]) -> dict[str, list[Any]]:
    [extension] = provenance["signature"][0]["extension"]
    assert extension["url"] == SIGNER_AUTHENTICATION_EXTENSION
    parts: dict[str, list[Any]] = {}
    for part in extension["extension"]:
        value = next(v for k, v in part.items() if k.startswith("value"))
        parts.setdefault(part["url"], []).append(value)
    return parts


# --- the service: a step-up proof -------------------------------------------------------------------


def test_a_fresh_step_up_signs_and_everything_says_how(
    sso_on: None, organization: Organization, risk_suggestion: Suggestion
) -> None:
    user = sso_clinician(organization, ISSUER)
    signature = proof()
    decision = sign(risk_suggestion, user, signature)

    assert decision.signature_method == "oidc-step-up"
    assert decision.authenticated_at == datetime.fromtimestamp(signature.auth_time, tz=UTC)
    stored = Decision.objects.get()
    assert (stored.signature_method, stored.authenticated_at) == ("oidc-step-up", decision.authenticated_at)

    # Signed and sealed: the sha256 covers how the signer was authenticated.
    payload = decision_payload(stored)
    assert payload["signature"] == {
        "method": "oidc-step-up",
        "authenticated_at": decision.authenticated_at.isoformat(),
        "issuer": ISSUER,
        "subject": SUBJECT,
        "acr": "urn:hospital:loa:2",
        "amr": ["pwd", "otp"],
    }
    assert hashlib.sha256(canonical_json(payload)).hexdigest() == stored.signature_sha256

    # The Provenance: a signature policy per method, and the detail on the signature; valid R4.
    provenance = provenance_of(risk_suggestion)
    assert provenance["policy"] == ["urn:clinical-ai:signature-policy:oidc-step-up"]
    parts = authentication_parts(provenance)
    assert parts["method"] == [
        {
            "system": SIGNATURE_METHOD_SYSTEM,
            "code": "oidc-step-up",
            "display": "Signed in again at the identity provider (OpenID Connect, prompt=login, max_age=0)",
        }
    ]
    assert datetime.fromisoformat(parts["authenticatedAt"][0]) == decision.authenticated_at
    assert parts["issuer"] == [ISSUER]
    assert parts["acr"] == ["urn:hospital:loa:2"]
    assert parts["amr"] == [{"system": AMR_SYSTEM, "code": "pwd"}, {"system": AMR_SYSTEM, "code": "otp"}]
    assert SUBJECT not in str(provenance)  # the provider's id for the person stays in the sealed payload
    assert validate_resource(provenance) == []
    assert payload["provenance"]["policy"] == provenance["policy"]
    assert payload["provenance"]["signature"] == provenance["signature"]
    risk = output_resource_body(
        OutputResource.objects.get(organization_id=organization.pk, resource_type="RiskAssessment")
    )
    assert provenance_signature_verify(provenance, [risk], key=provenance_signing_key())

    [event] = AuditEvent.objects.filter(action=SIGN)
    assert event.outcome == "success"
    assert event.detail["signature_method"] == "oidc-step-up"
    assert event.detail["authenticated_at"] == decision.authenticated_at.isoformat()
    assert SUBJECT not in str(event.detail)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"subject": "someone-else"}, "step-up-wrong-person"),
        ({"issuer": "https://login.elsewhere.example"}, "step-up-issuer"),
        # Signed in before it was asked for (a sign-in from earlier, replayed into this signature).
        ({"auth_time": int(time.time()) - 100, "requested_at": int(time.time()) - 10}, "step-up-not-fresh"),
        # Asked for and made, but too long ago to be "now".
        (
            {"auth_time": int(time.time()) - STEP_UP_MAX_AGE_SECONDS - 90, "requested_at": 0},
            "step-up-stale",
        ),
        ({"auth_time": int(time.time()) + 3600}, "step-up-claims"),
    ],
)
def test_a_step_up_proof_that_does_not_hold_signs_nothing(
    sso_on: None,
    organization: Organization,
    risk_suggestion: Suggestion,
    changes: dict[str, Any],
    reason: str,
) -> None:
    user = sso_clinician(organization, ISSUER)
    with pytest.raises(StepUpRefused) as refused:
        sign(risk_suggestion, user, proof(**changes))
    assert refused.value.reason == reason
    assert not Decision.objects.exists()
    assert Suggestion.objects.get(pk=risk_suggestion.pk).status == "pending"
    assert not OutputResource.objects.filter(resource_type="Provenance").exists()
    event = AuditEvent.objects.get(action=SIGN)
    assert (event.outcome, event.detail["refused"]) == ("failure", reason)


def test_the_identity_must_be_this_users(
    sso_on: None, organization: Organization, clinician: Any, risk_suggestion: Suggestion
) -> None:
    """A colleague's identity at the provider does not sign for this clinician."""
    sso_clinician(organization, ISSUER)  # Nia holds SUBJECT
    ExternalIdentity.objects.create(user=clinician, issuer=ISSUER, subject="wanda-ward")
    with pytest.raises(StepUpRefused) as refused:
        sign(risk_suggestion, clinician, proof(subject=SUBJECT))
    assert refused.value.reason == "step-up-wrong-person"
    assert not Decision.objects.exists()


def test_no_step_up_while_single_sign_on_is_off(
    settings: Any, organization: Organization, risk_suggestion: Suggestion
) -> None:
    settings.OIDC_ISSUER = ""
    user = sso_clinician(organization, ISSUER)
    with pytest.raises(StepUpRefused) as refused:
        sign(risk_suggestion, user, proof())
    assert refused.value.reason == "step-up-issuer"


def test_the_claims_must_say_who_and_when() -> None:
    with pytest.raises(StepUpRefused) as refused:
        StepUpSignature.from_claims({"iss": ISSUER, "sub": SUBJECT}, requested_at=1)
    assert refused.value.reason == "step-up-claims"
    with pytest.raises(StepUpRefused):
        StepUpSignature.from_claims({"iss": ISSUER, "auth_time": 5}, requested_at=1)
    made = StepUpSignature.from_claims(
        {"iss": ISSUER, "sub": SUBJECT, "auth_time": 5, "amr": ["pwd"], "acr": "1"}, requested_at=1
    )
    assert (made.issuer, made.subject, made.auth_time, made.requested_at, made.amr) == (
        ISSUER,
        SUBJECT,
        5,
        1,
        ("pwd",),
    )


def test_an_sso_account_has_no_password_to_sign_with(
    sso_on: None, organization: Organization, risk_suggestion: Suggestion
) -> None:
    user = sso_clinician(organization, ISSUER)
    with pytest.raises(SignatureRefused):
        sign(risk_suggestion, user, PasswordSignature("anything"))
    assert not Decision.objects.exists()


def test_a_password_signature_says_so_in_the_provenance(clinician: Any, risk_suggestion: Suggestion) -> None:
    decision = sign(risk_suggestion, clinician, PasswordSignature(PASSWORD))
    assert decision.signature_method == "password"
    provenance = provenance_of(risk_suggestion)
    assert provenance["policy"] == ["urn:clinical-ai:signature-policy:password"]
    parts = authentication_parts(provenance)
    assert parts["method"][0]["code"] == "password"
    assert "issuer" not in parts and "amr" not in parts
    assert validate_resource(provenance) == []
    assert decision_payload(decision)["signature"]["method"] == "password"


def test_cds_hooks_feedback_is_recorded_as_attested_by_the_ehr(
    clinician: Any, risk_suggestion: Suggestion
) -> None:
    attested = timezone.now() - timedelta(seconds=3)
    with transaction.atomic():
        locked = (
            Suggestion.objects.select_for_update().select_related("organization").get(pk=risk_suggestion.pk)
        )
        decision = decision_record(
            suggestion=locked, user=clinician, sign_off=SignOff(outcome="accepted"), request_id="r-1"
        )
    assert decision.signature_method == "cds-hooks-feedback"
    assert decision.authenticated_at is not None
    assert abs(decision.authenticated_at - attested) < timedelta(seconds=30)
    provenance = provenance_of(risk_suggestion)
    assert provenance["policy"] == ["urn:clinical-ai:signature-policy:cds-hooks-feedback"]
    assert validate_resource(provenance) == []
    assert AuditEvent.objects.get(action=SIGN).detail["signature_method"] == "cds-hooks-feedback"


# --- who signs how --------------------------------------------------------------------------------


def test_who_signs_with_the_provider(sso_on: None, organization: Organization, clinician: Any) -> None:
    sso_user = sso_clinician(organization, ISSUER)
    assert step_up_provider(user=sso_user, session_sso=None) is not None
    # A local account types its password.
    assert step_up_provider(user=clinician, session_sso=None) is None
    # With both an identity and a password: the provider when this session was signed in there, the
    # password when it was signed in with the password (break-glass).
    ExternalIdentity.objects.create(user=clinician, issuer=ISSUER, subject="wanda-ward")
    assert step_up_provider(user=clinician, session_sso={"issuer": ISSUER}) is not None
    assert step_up_provider(user=clinician, session_sso=None) is None
    # An identity at another issuer (an EHR's SMART server) does not make a step-up.
    other = make_user("dr-other", organization, Role.CLINICIAN)
    other.set_unusable_password()
    other.save()
    ExternalIdentity.objects.create(user=other, issuer="https://ehr.example/smart", subject="Practitioner/1")
    assert step_up_provider(user=other, session_sso=None) is None


def test_single_sign_on_off_means_passwords(settings: Any, organization: Organization) -> None:
    settings.OIDC_ISSUER = ""
    assert step_up_provider(user=sso_clinician(organization, ISSUER), session_sso=None) is None


# --- the migration ----------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_marks_earlier_decisions_password_and_keeps_them_immutable(
    clinician: Any, organization: Organization
) -> None:
    suggestion = store_finding(
        organization, news2_finding("p-migration"), news2_manifest(), pseudonym="p-migration"
    )
    before, after = ("review", "0003_suggestion_completeness"), ("review", "0004_decision_signature_method")
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    try:
        old_decision = executor.loader.project_state([before]).apps.get_model("review", "Decision")
        row = old_decision.objects.create(
            suggestion_id=suggestion.pk,
            organization_id=organization.pk,
            clinician_id=clinician.pk,
            clinician_display="Wanda Ward",
            outcome="accepted",
            reason_code="",
            key_id="k",
            nonce=b"n",
            ciphertext=b"c",
            signed_at=timezone.now(),
            signature_sha256="0" * 64,
        )
        with pytest.raises(DatabaseError), transaction.atomic():  # still immutable after the reversal
            old_decision.objects.filter(pk=row.pk).update(outcome="rejected", reason_code="other")
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate([after])
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    decision = Decision.objects.get(pk=row.pk)
    assert (decision.signature_method, decision.authenticated_at) == ("password", None)
    with pytest.raises(DatabaseError), transaction.atomic():
        Decision.objects.filter(pk=row.pk).update(signature_method="oidc-step-up")
    assert Decision.objects.get(pk=row.pk).signature_method == "password"


# --- the flow in the review views, against the real provider ---------------------------------------


@pytest.fixture
def idp(settings: Any, oidc_provider: OidcProviderProcess) -> OidcProviderProcess:
    settings.OIDC_ISSUER = oidc_provider.issuer
    settings.OIDC_CLIENT_ID = CLIENT_ID
    settings.OIDC_CLIENT_SECRET = CLIENT_SECRET
    oidc_provider.set_user("nia", name="Nia Okoro")
    oidc_provider.set_user("sam", name="Sam Other")
    return oidc_provider


def sign_url(suggestion: Suggestion) -> str:
    return f"/review/suggestions/{suggestion.external_id}/sign/"


def page_url(suggestion: Suggestion) -> str:
    return f"/review/suggestions/{suggestion.external_id}/"


def start_signing(client: Client, suggestion: Suggestion, **data: str) -> str:
    """Post the decision; returns the provider's authorization URL the browser is sent to."""
    response = client.post(sign_url(suggestion), {"outcome": "accepted", **data})
    assert response.status_code == 302, response.content[:500]
    return str(response["Location"])


def back_path(url: str) -> str:
    parts = urlsplit(url)
    assert parts.path == "/review/signature/callback/"
    return f"{parts.path}?{parts.query}"


@pytest.fixture
def second_suggestion(organization: Organization) -> Suggestion:
    return store_finding(organization, news2_finding("p-second"), news2_manifest(), pseudonym="p-second")


def test_an_sso_clinician_signs_by_signing_in_again(
    client: Client,
    idp: OidcProviderProcess,
    organization: Organization,
    risk_suggestion: Suggestion,
    second_suggestion: Suggestion,
) -> None:
    user = sso_clinician(organization, idp.issuer, subject="nia")
    client.force_login(user)
    shown = client.get(page_url(risk_suggestion))
    # The form's answer redirects to the provider: the page lets it go there, and only there.
    assert f"form-action 'self' {idp.issuer}" in shown["Content-Security-Policy"]
    page = shown.content.decode()
    assert 'type="password"' not in page
    assert "Sign with your hospital login" in page
    assert "When you press Sign, your hospital login asks for your password again" in page

    authorize = start_signing(client, risk_suggestion, comment="Seen on the ward round")
    query = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(idp.issuer)
    assert (query["prompt"], query["max_age"]) == (["login"], ["0"])
    assert not Decision.objects.exists()  # nothing is signed before the person comes back

    started = int(time.time())
    back = idp.authorize(authorize, username="nia", password=USER_PASSWORD)
    response = client.get(back_path(back))
    assert response.status_code == 302
    assert response["Location"].startswith(page_url(second_suggestion))  # the next one waiting

    decision = Decision.objects.get()
    assert (decision.suggestion_id, decision.signature_method) == (risk_suggestion.pk, "oidc-step-up")
    assert decision.authenticated_at is not None
    assert decision.authenticated_at.timestamp() >= started - 2
    assert decision_payload(decision)["comment"] == "Seen on the ward round"
    assert decision_payload(decision)["signature"]["subject"] == "nia"
    assert AuditEvent.objects.get(action=SIGN, outcome="success").detail["signature_method"] == "oidc-step-up"
    next_page = client.get(response["Location"]).content.decode()
    assert "Signed: accepted" in next_page

    # The provider's answer cannot be used twice: a replay signs nothing and is on record.
    replay = client.get(back_path(back))
    assert replay.status_code == 302
    assert Decision.objects.count() == 1
    failed = AuditEvent.objects.get(action="auth.stepup_failed")
    assert failed.detail["reason"] == "state"
    assert "code" not in str(failed.detail)

    # prompt=login: the provider asks for the password again even though its own session is alive.
    second = start_signing(client, second_suggestion)
    assert "Sign in" in idp.sign_in_page(second).text


def test_someone_else_signing_in_at_the_provider_is_refused_and_the_draft_kept(
    client: Client, idp: OidcProviderProcess, organization: Organization, risk_suggestion: Suggestion
) -> None:
    user = sso_clinician(organization, idp.issuer, subject="nia")
    client.force_login(user)
    authorize = start_signing(client, risk_suggestion, comment="Kept while signing in")
    back = idp.authorize(authorize, username="sam", password=USER_PASSWORD)
    response = client.get(back_path(back))
    assert response.status_code == 302
    assert response["Location"] == f"{page_url(risk_suggestion)}#decision"
    assert not Decision.objects.exists()
    event = AuditEvent.objects.get(action=SIGN)
    assert (event.outcome, event.detail["refused"]) == ("failure", "step-up-wrong-person")

    page = client.get(response["Location"]).content.decode()
    assert "Not signed: your hospital login was signed in as someone else, not as you." in page
    assert "Kept while signing in" in page  # the draft is back in the form
    assert re.search(r'<input[^>]*value="accepted"[^>]*checked', page)


def test_a_cancelled_sign_in_at_the_provider_signs_nothing(
    client: Client, idp: OidcProviderProcess, organization: Organization, risk_suggestion: Suggestion
) -> None:
    user = sso_clinician(organization, idp.issuer, subject="nia")
    client.force_login(user)
    authorize = start_signing(client, risk_suggestion)
    state = parse_qs(urlsplit(authorize).query)["state"][0]
    response = client.get("/review/signature/callback/", {"error": "access_denied", "state": state})
    assert response["Location"] == f"{page_url(risk_suggestion)}#decision"
    assert not Decision.objects.exists()
    assert AuditEvent.objects.get(action="auth.stepup_failed").detail["reason"] == "idp-error"
    page = client.get(response["Location"]).content.decode()
    assert "Not signed: the sign-in was cancelled or refused." in page


def test_a_colleague_who_signed_meanwhile_wins(
    client: Client,
    idp: OidcProviderProcess,
    organization: Organization,
    clinician: Any,
    risk_suggestion: Suggestion,
) -> None:
    user = sso_clinician(organization, idp.issuer, subject="nia")
    client.force_login(user)
    authorize = start_signing(client, risk_suggestion)
    sign(risk_suggestion, clinician, PasswordSignature(PASSWORD))  # Wanda signs while Nia signs in
    back = idp.authorize(authorize, username="nia", password=USER_PASSWORD)
    response = client.get(back_path(back))
    assert response.status_code == 409
    assert "already accepted by Wanda Ward at" in response.content.decode()
    assert Decision.objects.get().clinician == clinician
