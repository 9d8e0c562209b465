"""Launch from the EHR (SMART App Launch 2.x, EHR launch) against the EHR stand-in (``smart_ehr``: Authlib's
authorization server with PKCE, OpenID Connect and the launch context): the clinician lands on the patient's
review page, signed in as the account their ``fhirUser`` is linked to; every bad answer is refused with a
clear page, audited, and signs nobody in."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.conf import settings
from django.test import Client

from clinical_ai.accounts.models import ExternalIdentity, Organization, Role
from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from clinical_ai.review.models import Suggestion
from clinical_ai.vault.pseudonyms import patient_pseudonym
from integrations.smart.launch_services import launch_issuer_register
from integrations.smart.models import SmartLaunchIssuer
from tests.ehr_launch import EhrLaunchStandIn
from tests.unit.review.conftest import make_user, store_finding
from tests.unit.review.findings import news2_finding, news2_manifest

pytestmark = pytest.mark.django_db

CALLBACK = "http://testserver/launch/callback"
PATIENT_ID = "123"
PRACTITIONER = "Practitioner/abc"


@pytest.fixture(autouse=True)
def _project_urls(settings: Any) -> None:
    settings.ROOT_URLCONF = "clinical_ai.urls"  # the launch lands on the review pages


def pseudonym_of(organization: Organization, patient_id: str = PATIENT_ID) -> str:
    """The pseudonym the gateway gives the EHR's Patient/<id> at ``organization`` (no MRN sent)."""
    return patient_pseudonym(
        key=settings.PSEUDONYM_KEY.encode("utf-8"),
        organization=organization.slug,
        identity=f"Patient/{patient_id}",
    )


@pytest.fixture
def ehr(smart_ehr: EhrLaunchStandIn, organization: Organization) -> EhrLaunchStandIn:
    """The EHR of our site, with clinical-ai registered in it (public client) and registered here."""
    smart_ehr.register_client("clinical-ai", [CALLBACK])
    launch_issuer_register(
        organization=organization,
        iss=smart_ehr.fhir_base,
        client_id="clinical-ai",
        actor=Actor.system("tests"),
    )
    return smart_ehr


@pytest.fixture
def linked_clinician(organization: Organization, ehr: EhrLaunchStandIn) -> Any:
    user = make_user("dr-ward", organization, Role.CLINICIAN, first_name="Wanda", last_name="Ward")
    ExternalIdentity.objects.create(user=user, issuer=ehr.fhir_base, subject=PRACTITIONER)
    return user


@pytest.fixture
def pending_suggestion(organization: Organization) -> Suggestion:
    pseudonym = pseudonym_of(organization)
    return store_finding(organization, news2_finding(pseudonym), news2_manifest(), pseudonym=pseudonym)


Launched = Callable[..., Any]
# The stand-in EHR's authorization server (Authlib's grants) logs in this process too.
EHR_SIDE_LOGGERS = ("authlib.oauth2.rfc6749.grants", "authlib.oidc.core.grants", "authlib.oauth2.rfc7636")


def text_of(response: Any) -> str:
    return html.unescape(response.content.decode())


def ehr_answer(authorize_url: str) -> str:
    """The EHR's authorization endpoint approves (its user is signed in there) and answers with a redirect
    to the gateway's callback: the callback's path and query, for the test client."""
    answer = requests.get(authorize_url, allow_redirects=False, timeout=10)
    assert answer.status_code in (302, 303), answer.text
    location = answer.headers["Location"]
    assert location.startswith(CALLBACK), location
    return location.removeprefix("http://testserver")


@pytest.fixture
def launched(client: Client, ehr: EhrLaunchStandIn) -> Launched:
    """``launched(**new_launch arguments)``: the EHR opens clinical-ai; returns the callback's response (and
    keeps the callback URL on it as ``callback``)."""

    def run(http: Client = client, **launch: Any) -> Any:
        launch_id = ehr.new_launch(**{"patient": PATIENT_ID, "fhir_user": PRACTITIONER, **launch})
        started = http.get(
            urlsplit(ehr.launch_url("/launch", launch_id)).path, {"iss": ehr.fhir_base, "launch": launch_id}
        )
        assert started.status_code == 302, started.content
        authorize = started["Location"]
        query = parse_qs(urlsplit(authorize).query)
        assert authorize.startswith(f"{ehr.base_url}/authorize?")
        assert query["aud"] == [ehr.fhir_base] and query["launch"] == [launch_id]
        assert query["scope"] == ["launch openid fhirUser"] and query["code_challenge_method"] == ["S256"]
        assert query["redirect_uri"] == [CALLBACK] and query["nonce"] and query["state"]
        callback = ehr_answer(authorize)
        response = http.get(callback)
        response.callback = callback  # type: ignore[attr-defined]
        return response

    return run


def refusal(reason: str) -> AuditEvent:
    event = AuditEvent.objects.get(action="auth.launch_failed")
    assert event.detail["reason"] == reason, event.detail
    assert event.actor_type == "anonymous"
    return event


def assert_nobody_signed_in(client: Client) -> None:
    assert "_auth_user_id" not in client.session
    assert "sso" not in client.session
    assert not AuditEvent.objects.filter(action__in=("auth.login", "auth.launch")).exists()


def test_launch_signs_the_clinician_in_on_the_patients_review_page(
    client: Client,
    launched: Launched,
    linked_clinician: Any,
    pending_suggestion: Suggestion,
    organization: Organization,
    ehr: EhrLaunchStandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    response = launched()
    pseudonym = pseudonym_of(organization)
    assert response.status_code == 302
    assert response["Location"] == f"/review/?patient={pseudonym}"
    assert client.session["_auth_user_id"] == str(linked_clinician.pk)
    sso = client.session["sso"]
    assert sso["method"] == "smart" and sso["issuer"] == ehr.fhir_base and sso["subject"] == PRACTITIONER
    assert sso["provider"] == f"smart-{SmartLaunchIssuer.objects.get().pk}"
    assert "sso_tokens" not in client.session  # the EHR's tokens are used for nothing after the launch

    page = client.get(response["Location"])
    assert page.status_code == 200
    body = page.content.decode()
    assert "Opened from the EHR for this patient: 1 suggestion waiting for review." in body
    assert f"/review/suggestions/{pending_suggestion.external_id}/" in body

    login = AuditEvent.objects.get(action="auth.login")
    assert login.actor_id == str(linked_clinician.pk)
    assert login.detail["backend"] == "smart" and login.detail["issuer"] == ehr.fhir_base
    launch = AuditEvent.objects.get(action="auth.launch")
    assert launch.actor_type == "user" and launch.actor_id == str(linked_clinician.pk)
    assert launch.patient_pseudonym == pseudonym and launch.organization == organization.slug
    assert launch.detail == {"issuer": ehr.fhir_base, "pending": 1, "pseudonyms": 1}
    identity = ExternalIdentity.objects.get(user=linked_clinician)
    assert identity.last_login_at is not None
    # Neither the EHR's patient id nor any token is on record or in the log.
    (issued,) = ehr.tokens
    for event in AuditEvent.objects.all():
        text = str(event.detail) + event.object_id
        assert "Patient/123" not in text and issued["access_token"] not in text
    # (The stand-in's own Authlib server logs what it issues; the gateway's side must log nothing of it.)
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith(EHR_SIDE_LOGGERS)]
    assert ours and not any(issued["access_token"] in m or "id_token" in m for m in ours)


def test_nothing_to_review_is_said_plainly(client: Client, launched: Launched, linked_clinician: Any) -> None:
    response = launched()
    assert response.status_code == 302
    page = client.get(response["Location"])
    body = page.content.decode()
    assert "there is nothing to review for this patient" in body
    assert "No suggestions match these filters." in body


def test_app_context_opens_the_suggestion(
    client: Client, launched: Launched, linked_clinician: Any, pending_suggestion: Suggestion
) -> None:
    response = launched(app_context=f"suggestion={pending_suggestion.external_id}")
    assert response.status_code == 302
    assert response["Location"] == f"/review/suggestions/{pending_suggestion.external_id}/"
    assert client.get(response["Location"]).status_code == 200
    launch = AuditEvent.objects.get(action="auth.launch")
    assert launch.object_type == "review.suggestion" and launch.object_id == str(
        pending_suggestion.external_id
    )


def test_confidential_client(
    client: Client, ehr: EhrLaunchStandIn, launched: Launched, linked_clinician: Any
) -> None:
    ehr.register_client("clinical-ai", [CALLBACK], secret="an-ehr-issued-secret")
    issuer = SmartLaunchIssuer.objects.get()
    launch_issuer_register(
        organization=issuer.organization,
        iss=issuer.iss,
        client_id="clinical-ai",
        client_secret="an-ehr-issued-secret",
        actor=Actor.system("tests"),
    )
    assert launched().status_code == 302
    assert client.session["_auth_user_id"] == str(linked_clinician.pk)


def test_replayed_state_is_refused(client: Client, launched: Launched, linked_clinician: Any) -> None:
    first = launched()
    assert first.status_code == 302
    # The same answer again, in another browser (someone who copied the URL) and in the same one.
    for http in (Client(), client):
        again = http.get(first.callback)
        assert again.status_code == 400
        assert "already been used or has expired" in text_of(again)
    assert [e.detail["reason"] for e in AuditEvent.objects.filter(action="auth.launch_failed")] == [
        "state",
        "state",
    ]
    assert AuditEvent.objects.filter(action="auth.login").count() == 1


@pytest.mark.parametrize(
    ("knob", "value", "reason"),
    [
        ("wrong_nonce", True, "nonce"),
        ("id_token_ttl", -600, "expired"),
        ("issuer_override", "http://127.0.0.1:9/other", "issuer"),
    ],
)
def test_bad_id_tokens_are_refused(
    client: Client,
    ehr: EhrLaunchStandIn,
    launched: Launched,
    linked_clinician: Any,
    knob: str,
    value: Any,
    reason: str,
) -> None:
    setattr(ehr, knob, value)
    response = launched()
    assert response.status_code == 400
    assert "The EHR's sign-in could not be checked" in text_of(response)
    event = refusal(reason)
    assert event.organization == linked_clinician.memberships.get().organization.slug
    (issued,) = ehr.tokens
    assert issued["access_token"] not in str(event.detail)
    assert_nobody_signed_in(client)


def test_unknown_fhir_user_is_refused(client: Client, launched: Launched, linked_clinician: Any) -> None:
    response = launched(fhir_user="Practitioner/<b>zzz</b>")
    assert response.status_code == 400
    assert "Your EHR account is not linked to clinical-ai" in text_of(response)
    refusal("unknown-user")  # not a FHIR reference: not echoed at all
    assert_nobody_signed_in(client)


def test_unlinked_practitioner_is_told_what_to_ask_for(
    client: Client, launched: Launched, linked_clinician: Any
) -> None:
    response = launched(fhir_user="Practitioner/zzz")
    assert response.status_code == 400
    body = text_of(response)
    assert "Your EHR account is not linked to clinical-ai" in body and "<code>Practitioner/zzz</code>" in body
    assert refusal("unknown-user").detail["ehr_user"] == "Practitioner/zzz"
    assert_nobody_signed_in(client)


def test_disabled_account_is_refused(client: Client, launched: Launched, linked_clinician: Any) -> None:
    linked_clinician.is_active = False
    linked_clinician.save()
    assert launched().status_code == 400
    refusal("unknown-user")
    assert_nobody_signed_in(client)


def test_clinician_of_another_site_is_refused(
    client: Client, launched: Launched, other_organization: Organization, ehr: EhrLaunchStandIn
) -> None:
    user = make_user("dr-county", other_organization, Role.CLINICIAN)
    ExternalIdentity.objects.create(user=user, issuer=ehr.fhir_base, subject=PRACTITIONER)
    response = launched()
    assert response.status_code == 403
    assert "You have no review role at this site" in text_of(response)
    assert refusal("no-role").object_id == str(user.pk)
    assert_nobody_signed_in(client)


def test_suggestion_of_another_site_is_refused(
    client: Client, launched: Launched, linked_clinician: Any, other_organization: Organization
) -> None:
    pseudonym = pseudonym_of(other_organization)
    theirs = store_finding(
        other_organization, news2_finding(pseudonym), news2_manifest(), pseudonym=pseudonym
    )
    response = launched(app_context=f"suggestion={theirs.external_id}")
    assert response.status_code == 403
    assert "This link is for another patient or another site" in text_of(response)
    assert refusal("other-site").patient_pseudonym == pseudonym_of(
        linked_clinician.memberships.get().organization
    )
    assert_nobody_signed_in(client)


def test_suggestion_of_another_patient_is_refused(
    client: Client, launched: Launched, linked_clinician: Any, pending_suggestion: Suggestion
) -> None:
    response = launched(patient="456", app_context=f"suggestion={pending_suggestion.external_id}")
    assert response.status_code == 403
    refusal("other-site")
    assert_nobody_signed_in(client)


def test_token_answer_without_patient_is_refused(
    client: Client, launched: Launched, linked_clinician: Any
) -> None:
    response = launched(patient="")
    assert response.status_code == 400
    assert "No patient was open in the EHR" in text_of(response)
    refusal("no-patient")
    assert_nobody_signed_in(client)


def test_issuer_disabled_between_launch_and_answer(
    client: Client, ehr: EhrLaunchStandIn, linked_clinician: Any
) -> None:
    launch_id = ehr.new_launch(patient=PATIENT_ID, fhir_user=PRACTITIONER)
    started = client.get("/launch", {"iss": ehr.fhir_base, "launch": launch_id})
    callback = ehr_answer(started["Location"])
    SmartLaunchIssuer.objects.update(enabled=False)
    response = client.get(callback)
    assert response.status_code == 400 and "switched off" in text_of(response)
    refusal("issuer-disabled")
    assert_nobody_signed_in(client)
