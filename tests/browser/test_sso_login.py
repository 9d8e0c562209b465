"""Signing in with the hospital login, in Chromium, against the real OpenID provider (tests.sso_harness): a
clinician lands on the review queue and an auditor on the audit console, each with the role their group
gives; removed from the group, the next page after the re-check interval sends the person to sign in again
with a notice; signing out goes through the provider's own sign-out; a person whose groups give no role
here is told so. Screenshots of the sign-in page with single sign-on and of the refusal page, at a ward
PC's size and a phone's."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import CHROMIUM, WHY_SKIPPED, BrowserSession

if not CHROMIUM.exists():
    pytest.skip(WHY_SKIPPED, allow_module_level=True)

from playwright.sync_api import expect

from clinical_ai.accounts.models import GroupRole, Membership, Organization, Role
from clinical_ai.audit.models import AuditEvent
from tests.sso_harness import USER_PASSWORD, OidcProviderProcess

pytestmark = pytest.mark.browser

LABEL = "St Elsewhere login"
BUTTON = f"Sign in with {LABEL}"
RECHECK_SECONDS = 3


@pytest.fixture
def idp(
    settings: Any,
    live_server: Any,
    organization: Organization,
    oidc_provider_for: Callable[..., OidcProviderProcess],
    browser: BrowserSession,
) -> OidcProviderProcess:
    provider = oidc_provider_for(str(live_server.url))
    settings.OIDC_ISSUER = provider.issuer
    settings.OIDC_CLIENT_ID = provider.client_id
    settings.OIDC_CLIENT_SECRET = provider.client_secret
    settings.OIDC_PROVIDER_LABEL = LABEL
    settings.OIDC_RECHECK_SECONDS = RECHECK_SECONDS
    GroupRole.objects.create(group="ward-7", organization=organization, role=Role.CLINICIAN)
    GroupRole.objects.create(group="audit-team", organization=organization, role=Role.AUDITOR)
    provider.set_user("nia", given_name="Nia", family_name="Okoro", groups=["ward-7"])
    provider.set_user("ben", given_name="Ben", family_name="Adeyemi", groups=["audit-team"])
    provider.set_user("cal", given_name="Cal", family_name="Kitchen", groups=["kitchen"])
    browser.allow_origin(provider.issuer)
    return provider


def sign_in_at_provider(browser: BrowserSession, username: str) -> None:
    """From our sign-in page, through the provider's, as a person would."""
    page = browser.page
    page.goto(browser.url("/accounts/login/"))
    with page.expect_navigation():
        page.get_by_role("link", name=BUTTON).click()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(USER_PASSWORD)
    with page.expect_navigation(url=re.compile(r"^" + re.escape(browser.base_url))):
        page.get_by_role("button", name="Sign in").click()


def test_a_clinician_signs_in_at_the_provider_and_loses_access_with_the_group(
    browser: BrowserSession, idp: OidcProviderProcess, screenshots: Path
) -> None:
    page = browser.page
    page.goto(browser.url("/accounts/login/"))
    expect(page.get_by_role("link", name=BUTTON)).to_be_visible()
    expect(page.get_by_role("heading", name="Local account (break-glass)")).to_be_visible()
    browser.screenshots_at_both(screenshots, "sso-sign-in")

    sign_in_at_provider(browser, "nia")
    assert page.url == browser.url("/review/")
    expect(page.get_by_role("heading", name="Review queue")).to_be_visible()
    assert list(Membership.objects.values_list("user__username", "role", "source")) == [
        ("nia", Role.CLINICIAN, Membership.Source.IDENTITY_PROVIDER)
    ]

    idp.set_groups("nia", [])
    time.sleep(RECHECK_SECONDS + 0.5)
    page.goto(browser.url("/review/?urgency=critical"))
    assert page.url.startswith(browser.url("/accounts/login/?next="))
    expect(page.get_by_role("status")).to_contain_text("no longer gives you access to this service")
    assert not Membership.objects.exists()
    assert AuditEvent.objects.filter(action="auth.sso.recheck", detail__reason="no-role").exists()
    browser.assert_clean()


def test_an_auditor_lands_on_the_audit_console_and_signs_out_at_the_provider_too(
    browser: BrowserSession, idp: OidcProviderProcess
) -> None:
    page = browser.page
    sign_in_at_provider(browser, "ben")
    assert page.url == browser.url("/audit/")
    with page.expect_navigation(url=re.compile(r"^" + re.escape(idp.issuer))):
        page.get_by_role("button", name="Sign out").click()
    with page.expect_navigation(url=re.compile(r"^" + re.escape(browser.base_url))):
        page.get_by_role("button", name="Yes, sign me out").click()
    assert page.url.startswith(browser.url("/accounts/login/"))
    expect(page.get_by_role("link", name=BUTTON)).to_be_visible()
    assert AuditEvent.objects.filter(action="auth.logout", detail__idp_logout=True).exists()
    # Signed out at the provider as well: the button leads to its password page again.
    with page.expect_navigation():
        page.get_by_role("link", name=BUTTON).click()
    expect(page.get_by_label("Password")).to_be_visible()
    browser.assert_clean()


def test_someone_whose_groups_give_no_role_here_is_told_so(
    browser: BrowserSession, idp: OidcProviderProcess, screenshots: Path
) -> None:
    page = browser.page
    sign_in_at_provider(browser, "cal")
    expect(page.get_by_role("heading", name="You have no access to this service yet")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("not in a group that gives access")
    browser.screenshots_at_both(screenshots, "sso-no-role")
    assert not Membership.objects.exists()
    # An answer that is not this browser's (here, made up) gets the plain "start again" page.
    page.goto(browser.url("/accounts/sso/callback/?state=not-from-here&code=made-up"))
    expect(page.get_by_role("alert")).to_contain_text("Your sign-in could not be completed. Start again.")
    browser.screenshots_at_both(screenshots, "sso-refused")
    browser.assert_clean()
