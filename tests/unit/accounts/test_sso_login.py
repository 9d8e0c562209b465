"""Staff single sign-on against a real OpenID provider (panva's oidc-provider, tests/sso_harness.py): our side
through Django's test client, the person's side at the provider over HTTP (its own sign-in form). Time for
the re-check is moved by replacing ``clinical_ai.accounts.sessions.clock`` rather than by waiting."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from clinical_ai.accounts import sessions
from clinical_ai.accounts.models import ExternalIdentity, GroupRole, Membership, Organization, Role
from clinical_ai.accounts.selectors import SECOND_FACTOR_BY_PROVIDER_ATTRIBUTE
from clinical_ai.accounts.sso import client as sso_client
from clinical_ai.accounts.sso.client import OidcProvider, SsoRefused, id_token_verify
from clinical_ai.accounts.sso.services import (
    RECHECK_GRACE_INTERVALS,
    SSO_SESSION_KEY,
    sso_tokens_open,
)
from clinical_ai.audit.models import AuditEvent
from tests.sso_harness import USER_PASSWORD, OidcProviderProcess
from tests.unit.audit.personas import PASSWORD, make_user

RECHECK = 300
WARD_GROUP = "ward-7-clinicians"
AUDIT_GROUP = "clinical-ai-auditors"


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = int(time.time())
        monkeypatch.setattr(sessions, "clock", lambda: self.now)

    def advance(self, seconds: int) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def idp(oidc_provider: OidcProviderProcess, settings: Any, organization: Organization) -> OidcProviderProcess:
    """The provider, configured as the hospital's, with a ward group giving the clinician role and an audit
    group giving the auditor role at our site."""
    settings.OIDC_ISSUER = oidc_provider.issuer
    settings.OIDC_CLIENT_ID = oidc_provider.client_id
    settings.OIDC_CLIENT_SECRET = oidc_provider.client_secret
    settings.OIDC_RECHECK_SECONDS = RECHECK
    settings.OIDC_PROVIDER_LABEL = "St Elsewhere login"
    GroupRole.objects.create(group=WARD_GROUP, organization=organization, role=Role.CLINICIAN)
    GroupRole.objects.create(group=AUDIT_GROUP, organization=organization, role=Role.AUDITOR)
    oidc_provider.set_user(
        "nurse.ada",
        given_name="Ada",
        family_name="Okafor",
        name="Ada Okafor",
        email="ada.okafor@st-elsewhere.example",
        groups=[WARD_GROUP],
    )
    return oidc_provider


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def _start(client: Client, next_url: str = "") -> str:
    """Press "Sign in with ...": the provider's authorization URL we are sent to."""
    response = client.get("/accounts/sso/login/", {"next": next_url} if next_url else {})
    assert response.status_code == 302, response.content
    return str(response["Location"])


def _sign_in(
    client: Client, idp: OidcProviderProcess, username: str = "nurse.ada", next_url: str = ""
) -> Any:
    """The whole round: our button, the provider's sign-in form, back to our callback. Our last answer."""
    back = idp.authorize(_start(client, next_url), username=username, password=USER_PASSWORD)
    assert back.startswith("http://testserver/accounts/sso/callback/"), back
    return client.get(_path(back))


def _rows(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action).order_by("seq"))


def _no_secrets_in(row: AuditEvent) -> None:
    text = json.dumps(row.detail)
    for secret in ("eyJ", "ada.okafor", "Okafor", USER_PASSWORD):
        assert secret not in text, row.detail


# Signing in ---------------------------------------------------------------------------------------------


def test_first_sign_in_creates_the_account_and_maps_roles(
    client: Client, idp: OidcProviderProcess, organization: Organization
) -> None:
    start = _start(client)
    query = parse_qs(urlsplit(start).query)
    assert start.startswith(f"{idp.issuer}/")
    assert query["code_challenge_method"] == ["S256"] and query["nonce"] and query["state"]
    response = client.get(_path(idp.authorize(start, username="nurse.ada", password=USER_PASSWORD)))
    assert response.status_code == 302 and response["Location"] == "/review/"

    user = get_user_model().objects.get(username="nurse.ada")
    assert not user.has_usable_password()
    assert (user.first_name, user.last_name, user.email) == (
        "Ada",
        "Okafor",
        "ada.okafor@st-elsewhere.example",
    )
    assert ExternalIdentity.objects.get(user=user).issuer == idp.issuer
    assert list(Membership.objects.filter(user=user).values_list("organization", "role", "source")) == [
        (organization.pk, Role.CLINICIAN, Membership.Source.IDENTITY_PROVIDER)
    ]
    queue = client.get("/review/")
    assert queue.status_code == 200
    # Its "Sign out" form's answer goes on to the provider: the page's form-action lets it, and only it.
    assert f"form-action 'self' {idp.issuer}" in queue["Content-Security-Policy"]

    session = client.session
    assert session[SSO_SESSION_KEY]["subject"] == "nurse.ada" and session[SSO_SESSION_KEY]["method"] == "oidc"
    # The tokens are sealed: the session holds no JWT in clear, and they open for this person only.
    assert "eyJ" not in json.dumps(dict(session.items()))
    assert sso_tokens_open(session, user_id=str(user.pk))["id_token"].startswith("eyJ")
    assert sso_tokens_open(session, user_id="0") == {}

    [login] = _rows("auth.login")
    assert login.actor_id == str(user.pk)
    assert login.detail["backend"] == "oidc" and login.detail["issuer"] == idp.issuer
    assert (login.detail["roles_added"], login.detail["roles_removed"], login.detail["account_created"]) == (
        1,
        0,
        True,
    )
    _no_secrets_in(login)
    assert _rows("accounts.staff.create")[0].object_id == str(user.pk)


def test_sign_in_returns_to_the_page_asked_for_and_never_elsewhere(
    client: Client, idp: OidcProviderProcess
) -> None:
    response = _sign_in(client, idp, next_url="/review/?urgency=critical")
    assert response["Location"] == "/review/?urgency=critical"
    client.logout()
    response = _sign_in(client, idp, next_url="https://evil.example/phish")
    assert response["Location"] == "/review/"


def test_an_auditor_lands_on_the_audit_console(client: Client, idp: OidcProviderProcess) -> None:
    idp.set_user("auditor.ben", groups=[AUDIT_GROUP])
    response = _sign_in(client, idp, username="auditor.ben")
    assert response.status_code == 302 and response["Location"] == "/audit/"


def test_a_later_sign_in_follows_the_groups_and_keeps_roles_granted_here(
    client: Client, idp: OidcProviderProcess, organization: Organization, other_organization: Organization
) -> None:
    _sign_in(client, idp)
    user = get_user_model().objects.get(username="nurse.ada")
    Membership.objects.create(user=user, organization=other_organization, role=Role.CLINICIAN)  # granted here
    client.logout()
    idp.set_groups("nurse.ada", [AUDIT_GROUP])
    response = _sign_in(client, idp)
    assert response["Location"] == "/review/"  # the granted clinician role elsewhere comes first
    assert set(Membership.objects.filter(user=user).values_list("organization", "role", "source")) == {
        (organization.pk, Role.AUDITOR, Membership.Source.IDENTITY_PROVIDER),
        (other_organization.pk, Role.CLINICIAN, Membership.Source.GRANTED),
    }
    last = _rows("auth.login")[-1]
    assert (last.detail["roles_added"], last.detail["roles_removed"], last.detail["account_created"]) == (
        1,
        1,
        False,
    )
    assert get_user_model().objects.filter(username__startswith="nurse.ada").count() == 1


def test_a_group_that_gives_no_role_here_is_refused_and_nothing_is_created(
    client: Client, idp: OidcProviderProcess
) -> None:
    idp.set_user("cook.cal", groups=["kitchen-staff"])
    response = _sign_in(client, idp, username="cook.cal")
    assert response.status_code == 403
    assert b"You have no access to this service yet" in response.content
    assert not get_user_model().objects.filter(username="cook.cal").exists()
    assert not ExternalIdentity.objects.exists()
    assert "_auth_user_id" not in client.session
    [failed] = _rows("auth.login_failed")
    assert failed.detail["reason"] == "no-role" and failed.detail["backend"] == "oidc"
    assert not _rows("auth.login")


def test_an_existing_account_whose_groups_give_no_role_any_more_is_refused(
    client: Client, idp: OidcProviderProcess
) -> None:
    _sign_in(client, idp)
    client.logout()
    idp.set_groups("nurse.ada", [])
    response = _sign_in(client, idp)
    assert response.status_code == 403
    assert not Membership.objects.exists()  # the group's role went with the group
    assert _rows("auth.login_failed")[-1].detail["reason"] == "no-role"


def test_a_local_account_of_the_same_name_is_never_taken_over(
    client: Client, idp: OidcProviderProcess
) -> None:
    local = make_user("ada", None, None, email="ada.okafor@st-elsewhere.example", is_staff=True)
    idp.set_user(
        "ada-at-idp", preferred_username="ada", email="ada.okafor@st-elsewhere.example", groups=[WARD_GROUP]
    )
    response = _sign_in(client, idp, username="ada")
    assert response.status_code == 302
    user = get_user_model().objects.get(identities__subject="ada-at-idp")
    assert user.pk != local.pk and user.username == "ada-2" and not user.is_staff
    assert str(client.session["_auth_user_id"]) == str(user.pk)
    local.refresh_from_db()
    assert local.check_password(PASSWORD) and not local.identities.exists() and not local.memberships.exists()


def test_a_disabled_account_is_refused(client: Client, idp: OidcProviderProcess) -> None:
    _sign_in(client, idp)
    client.logout()
    get_user_model().objects.filter(username="nurse.ada").update(is_active=False)
    response = _sign_in(client, idp)
    assert response.status_code == 403 and b"switched off" in response.content
    assert "_auth_user_id" not in client.session
    assert _rows("auth.login_failed")[-1].detail["reason"] == "disabled"


def test_sso_sessions_are_not_asked_for_our_totp_code(client: Client, idp: OidcProviderProcess) -> None:
    """The provider did the second factor; a TOTP device the person enrolled here is not asked for."""
    _sign_in(client, idp)
    user = get_user_model().objects.get(username="nurse.ada")
    TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    response = client.get("/review/")
    assert response.status_code == 200
    assert getattr(response.wsgi_request.user, SECOND_FACTOR_BY_PROVIDER_ATTRIBUTE) is True


# Bad answers: a clear page, on record, nothing changed ---------------------------------------------------


def _refused(response: Any, reason: str, status: int = 400, *, users: int = 0, logins: int = 0) -> None:
    """A refusal page, on record with ``reason``, and no account or sign-in beyond those there were."""
    assert response.status_code == status, response.content
    if status == 400:
        assert b"Your sign-in could not be completed" in response.content
    assert f"Reference for the IT service desk: {reason}".encode() in response.content
    assert _rows("auth.login_failed")[-1].detail["reason"] == reason
    assert len(_rows("auth.login")) == logins
    assert get_user_model().objects.count() == users
    assert "_auth_user_id" not in response.wsgi_request.session


def test_a_replayed_answer_is_refused(client: Client, idp: OidcProviderProcess) -> None:
    back = idp.authorize(_start(client), username="nurse.ada", password=USER_PASSWORD)
    assert client.get(_path(back)).status_code == 302
    client.logout()
    response = client.get(_path(back))
    _refused(response, "state", users=1, logins=1)
    assert b"Your sign-in could not be completed. Start again." in response.content


def test_an_answer_for_another_browser_is_refused(client: Client, idp: OidcProviderProcess) -> None:
    back = idp.authorize(_start(client), username="nurse.ada", password=USER_PASSWORD)
    _refused(Client().get(_path(back)), "state")


def test_a_wrong_nonce_is_refused(client: Client, idp: OidcProviderProcess) -> None:
    start = _start(client)
    session = client.session
    [key] = [key for key in session.keys() if key.startswith("_state_")]  # noqa: SIM118 (a session is not iterable)
    kept = session[key]
    kept["data"]["nonce"] = "a-nonce-this-browser-never-sent"
    session[key] = kept
    session.save()
    back = idp.authorize(start, username="nurse.ada", password=USER_PASSWORD)
    _refused(client.get(_path(back)), "nonce")


def test_an_error_from_the_provider_is_refused(client: Client, idp: OidcProviderProcess) -> None:
    query = parse_qs(urlsplit(_start(client)).query)
    response = client.get("/accounts/sso/callback/", {"state": query["state"][0], "error": "access_denied"})
    _refused(response, "idp-error")
    assert b"did not sign you in" in response.content


def test_a_provider_announcing_another_issuer_is_refused(
    client: Client, idp: OidcProviderProcess, settings: Any
) -> None:
    # The same server by another name: its discovery document names the issuer it really is.
    settings.OIDC_ISSUER = idp.issuer.replace("127.0.0.1", "localhost")
    response = client.get("/accounts/sso/login/")
    _refused(response, "metadata", status=503)


def test_an_id_token_of_another_issuer_is_refused(client: Client, idp: OidcProviderProcess) -> None:
    """A real id_token checked as if another issuer were registered, with that provider's keys: the
    ``iss`` claim alone refuses it."""
    _sign_in(client, idp)
    tokens = sso_tokens_open(client.session, user_id=str(get_user_model().objects.get().pk))
    other = OidcProvider(
        key="mix-up",
        issuer="https://login.elsewhere.example",
        client_id=idp.client_id,
        client_secret=idp.client_secret,
        metadata_url=idp.metadata_url,
        allowed_hosts=frozenset({"127.0.0.1"}),
    )
    with pytest.raises(SsoRefused) as refused:
        id_token_verify(provider=other, token={"id_token": tokens["id_token"]}, nonce=None)
    assert refused.value.reason == "issuer"


def test_an_expired_id_token_is_refused(
    client: Client,
    oidc_provider_for: Any,
    settings: Any,
    organization: Organization,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The provider issues id_tokens that live one second; by the time the answer is taken, with no clock
    leeway allowed in this test, the id_token has expired."""

    def short_lived(provider: OidcProviderProcess) -> None:
        provider.ttl = {"IdToken": 1}

    short = oidc_provider_for(configure=short_lived)
    settings.OIDC_ISSUER = short.issuer
    settings.OIDC_CLIENT_ID = short.client_id
    settings.OIDC_CLIENT_SECRET = short.client_secret
    GroupRole.objects.create(group=WARD_GROUP, organization=organization, role=Role.CLINICIAN)
    short.set_user("nurse.ada", groups=[WARD_GROUP])
    monkeypatch.setattr(sso_client, "CLOCK_LEEWAY_SECONDS", 0)
    back = short.authorize(_start(client), username="nurse.ada", password=USER_PASSWORD)
    original = sso_client.id_token_verify

    def late(**kwargs: Any) -> dict[str, Any]:
        # The id_token is made at the token request, just before this check: it is checked two seconds
        # after, as an answer held up on a slow network would be.
        time.sleep(2.1)
        return original(**kwargs)

    monkeypatch.setattr(sso_client, "id_token_verify", late)
    _refused(client.get(_path(back)), "expired")


# The re-check -------------------------------------------------------------------------------------------


def test_removed_from_the_group_loses_access_after_the_recheck_interval(
    client: Client, idp: OidcProviderProcess, clock: Clock
) -> None:
    _sign_in(client, idp)
    idp.set_groups("nurse.ada", [])
    clock.advance(RECHECK - 10)
    assert client.get("/review/").status_code == 200  # not due yet: the provider is not asked
    assert Membership.objects.exists()
    clock.advance(10)
    response = client.get("/review/?urgency=critical")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=%2Freview%2F%3Furgency%3Dcritical"
    assert not Membership.objects.exists()
    [ended] = _rows("auth.sso.recheck")
    assert ended.outcome == "failure"
    assert ended.detail == {"ended": True, "reason": "no-role", "roles_added": 0, "roles_removed": 1}
    page = client.get(response["Location"])
    assert b"no longer gives you access" in page.content
    assert b"Sign in with St Elsewhere login" in page.content


def test_a_group_change_is_followed_and_recorded(
    client: Client, idp: OidcProviderProcess, clock: Clock
) -> None:
    _sign_in(client, idp)
    idp.set_groups("nurse.ada", [WARD_GROUP, AUDIT_GROUP])
    clock.advance(RECHECK)
    assert client.get("/review/").status_code == 200
    [changed] = _rows("auth.sso.recheck")
    assert changed.outcome == "success" and changed.detail == {"roles_added": 1, "roles_removed": 0}
    assert set(Membership.objects.values_list("role", flat=True)) == {Role.CLINICIAN, Role.AUDITOR}
    clock.advance(RECHECK)
    assert client.get("/review/").status_code == 200
    assert len(_rows("auth.sso.recheck")) == 1  # nothing changed, nothing written
    assert client.session[SSO_SESSION_KEY]["recheck_at"] == clock.now + RECHECK


def test_a_person_removed_at_the_provider_is_signed_out(
    client: Client, idp: OidcProviderProcess, clock: Clock
) -> None:
    _sign_in(client, idp)
    idp.remove_user("nurse.ada")
    clock.advance(RECHECK)
    response = client.get("/review/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    [ended] = _rows("auth.sso.recheck")
    assert ended.detail["reason"] == "refused" and ended.detail["code"] == "token"
    assert b"session has ended" in client.get("/accounts/login/").content


def test_without_a_refresh_token_userinfo_is_asked(
    client: Client, oidc_provider_for: Any, settings: Any, organization: Organization, clock: Clock
) -> None:
    """A client registered without the refresh grant: the re-check asks the userinfo endpoint with the
    access token instead."""
    no_refresh = oidc_provider_for(
        configure=lambda idp: idp.add_client(
            "clinical-ai-no-refresh",
            client_secret="another-test-secret",
            redirect_uris=["http://testserver/accounts/sso/callback/"],
            grant_types=["authorization_code"],
        )
    )
    settings.OIDC_ISSUER = no_refresh.issuer
    settings.OIDC_CLIENT_ID = "clinical-ai-no-refresh"
    settings.OIDC_CLIENT_SECRET = "another-test-secret"
    settings.OIDC_RECHECK_SECONDS = RECHECK
    GroupRole.objects.create(group=WARD_GROUP, organization=organization, role=Role.CLINICIAN)
    no_refresh.set_user("nurse.ada", groups=[WARD_GROUP])
    _sign_in(client, no_refresh)
    tokens = sso_tokens_open(client.session, user_id=str(get_user_model().objects.get().pk))
    assert "refresh_token" not in tokens and tokens["access_token"]
    no_refresh.set_groups("nurse.ada", [WARD_GROUP, AUDIT_GROUP, "kitchen-staff"])
    GroupRole.objects.create(group=AUDIT_GROUP, organization=organization, role=Role.AUDITOR)
    clock.advance(RECHECK)
    assert client.get("/review/").status_code == 200
    assert _rows("auth.sso.recheck")[-1].detail == {"roles_added": 1, "roles_removed": 0}
    no_refresh.set_groups("nurse.ada", [])
    clock.advance(RECHECK)
    assert client.get("/review/").status_code == 302
    assert _rows("auth.sso.recheck")[-1].detail["reason"] == "no-role"


def test_an_unreachable_provider_keeps_the_session_for_a_grace_period(
    client: Client, idp: OidcProviderProcess, clock: Clock
) -> None:
    _sign_in(client, idp)
    idp.stop()
    clock.advance(RECHECK)
    assert client.get("/review/").status_code == 200  # kept: the provider may be back in a minute
    failing_since = client.session[SSO_SESSION_KEY]["failing_since"]
    assert failing_since == clock.now
    clock.advance(RECHECK_GRACE_INTERVALS * RECHECK - 1)
    assert client.get("/review/").status_code == 200
    clock.advance(1)
    response = client.get("/review/")
    assert response.status_code == 302
    [ended] = _rows("auth.sso.recheck")
    assert ended.detail["reason"] == "unreachable"
    assert b"could not be reached" in client.get("/accounts/login/").content


# The sign-in page and signing out ------------------------------------------------------------------------


def test_the_sign_in_page_offers_the_hospital_login_first(client: Client, idp: OidcProviderProcess) -> None:
    page = client.get("/accounts/login/?next=/review/").content.decode()
    assert 'href="/accounts/sso/login/?next=%2Freview%2F"' in page
    assert page.index("Sign in with St Elsewhere login") < page.index("Local account (break-glass)")
    assert page.index("Local account (break-glass)") < page.index('name="password"')


def test_without_single_sign_on_the_page_is_as_before(client: Client, db: None, settings: Any) -> None:
    settings.OIDC_ISSUER = ""
    settings.LOCAL_LOGIN_ENABLED = False  # cannot switch passwords off without another way in
    page = client.get("/accounts/login/").content.decode()
    assert "Sign in with" not in page and "break-glass" not in page and 'name="password"' in page
    assert client.get("/accounts/sso/login/").status_code == 404
    assert client.get("/accounts/sso/callback/").status_code == 404


def test_local_passwords_switched_off(
    client: Client, idp: OidcProviderProcess, settings: Any, clinician: Any
) -> None:
    settings.LOCAL_LOGIN_ENABLED = False
    page = client.get("/accounts/login/").content.decode()
    assert "Sign in with St Elsewhere login" in page and 'name="password"' not in page
    response = client.post("/accounts/login/", {"username": "dr-ward", "password": PASSWORD})
    assert response.status_code == 403
    assert b"switched off" in response.content
    assert "_auth_user_id" not in client.session
    [refused] = _rows("auth.login_failed")
    assert refused.detail == {"reason": "local-login-off"}
    # The admin site's sign-in is the same view.
    assert client.post("/admin/login/", {"username": "dr-ward", "password": PASSWORD}).status_code == 403


def test_signing_out_ends_the_providers_session_too(client: Client, idp: OidcProviderProcess) -> None:
    _sign_in(client, idp)
    id_token = sso_tokens_open(client.session, user_id=str(get_user_model().objects.get().pk))["id_token"]
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    end_session = str(response["Location"])
    query = parse_qs(urlsplit(end_session).query)
    assert end_session.startswith(f"{idp.issuer}/")
    assert query["id_token_hint"] == [id_token]
    assert query["post_logout_redirect_uri"] == ["http://testserver/accounts/login/"]
    assert "_auth_user_id" not in client.session and SSO_SESSION_KEY not in client.session
    assert _rows("auth.logout")[-1].detail == {"idp_logout": True}
    assert idp.end_session(end_session).startswith("http://testserver/accounts/login/")
    # Signed out there too: the next sign-in asks for the password again.
    assert "Sign in" in idp.sign_in_page(_start(client)).text


def test_a_local_sign_out_stays_here(client: Client, idp: OidcProviderProcess, clinician: Any) -> None:
    client.post("/accounts/login/", {"username": "dr-ward", "password": PASSWORD})
    response = client.post("/accounts/logout/")
    assert response["Location"] == "/accounts/login/"
    assert _rows("auth.logout")[-1].detail == {"idp_logout": False}
