"""Signing with the hospital login, in Chromium, against the real OpenID provider (tests.sso_harness): a
clinician whose account came from single sign-on has no password field to type in; "Sign with your
hospital login" takes them to the provider's sign-in page (asked again, even though they are signed in
there), and back to the next suggestion with the decision recorded as a step-up signature. Someone else
signing in at the provider signs nothing, and the decision is still there to sign.

The clinician's review session is made directly (Django's force_login, its cookie given to Chromium):
what is tested here is the signature, not the sign-in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from tests.browser.conftest import CHROMIUM, PHONE, WARD_PC, WHY_SKIPPED, BrowserSession, ReviewData

if not CHROMIUM.exists():
    pytest.skip(WHY_SKIPPED, allow_module_level=True)

from playwright.sync_api import Page, expect

from clinical_ai.accounts.models import ExternalIdentity, Organization, Role
from clinical_ai.audit.models import AuditEvent
from clinical_ai.review.models import Decision, Suggestion
from tests.browser.test_accessibility import AXE, Audit
from tests.sso_harness import CLIENT_ID, CLIENT_SECRET, USER_PASSWORD, OidcProviderProcess
from tests.unit.review.conftest import make_user

pytestmark = pytest.mark.browser

SIGN_BUTTON = "Sign with your hospital login"


def suggestion_path(suggestion: Suggestion) -> str:
    return f"/review/suggestions/{suggestion.external_id}/"


def decision_form(page: Page) -> Any:
    return page.get_by_role("region", name="Your decision")


@pytest.fixture
def idp(
    settings: Any, live_server: Any, oidc_provider_for: Callable[..., OidcProviderProcess]
) -> OidcProviderProcess:
    provider = oidc_provider_for(str(live_server.url))
    settings.OIDC_ISSUER = provider.issuer
    settings.OIDC_CLIENT_ID = CLIENT_ID
    settings.OIDC_CLIENT_SECRET = CLIENT_SECRET
    provider.set_user("nia", name="Nia Okoro")
    provider.set_user("sam", name="Sam Other")
    return provider


def signed_in_by_sso(browser: BrowserSession, organization: Organization, idp: OidcProviderProcess) -> Any:
    """Nia, a clinician whose account single sign-on made (no local password), signed in to the review."""
    user = make_user("nia.okoro", organization, Role.CLINICIAN, first_name="Nia", last_name="Okoro")
    user.set_unusable_password()
    user.save()
    ExternalIdentity.objects.create(user=user, issuer=idp.issuer, subject="nia")
    client = Client()
    client.force_login(user)
    browser.context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": browser.base_url,
            }
        ]
    )
    browser.allow_origin(idp.issuer)
    return user


def box_shots(browser: BrowserSession, folder: Path, name: str) -> None:
    """The signing box alone (with the page's notices above it on a phone), at both sizes."""
    page = browser.page
    for size in (WARD_PC, PHONE):
        page.set_viewport_size(size)
        folder.mkdir(parents=True, exist_ok=True)
        page.locator("#decision").screenshot(path=str(folder / f"{name}-{size['width']}.png"))
    page.set_viewport_size(WARD_PC)


def sign_in_at_the_provider(page: Page, username: str) -> None:
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(USER_PASSWORD)
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()


def test_an_sso_clinician_signs_by_signing_in_again_at_the_provider(
    browser: BrowserSession,
    review_data: ReviewData,
    organization: Organization,
    idp: OidcProviderProcess,
    screenshots: Path,
) -> None:
    page = browser.page
    signed_in_by_sso(browser, organization, idp)
    suggestion = review_data.sample_news2
    page.goto(browser.url(suggestion_path(suggestion)))
    form = decision_form(page)
    expect(form.get_by_role("button", name=SIGN_BUTTON)).to_be_visible()
    expect(form).to_contain_text("When you press Sign, your hospital login asks for your password again")
    expect(form.locator('input[type="password"]')).to_have_count(0)
    form.get_by_label("Accept", exact=True).check()
    browser.screenshots_at_both(screenshots, "review-sign-with-hospital-login")
    box_shots(browser, screenshots, "review-sign-with-hospital-login-box")
    if AXE.is_file():  # the accessibility checks of test_accessibility, on this form
        checks = Audit(page)
        checks.at_both_widths("suggestion, signing with the hospital login")
        checks.assert_clean()
    with page.expect_navigation():
        form.get_by_role("button", name=SIGN_BUTTON).click()
    assert page.url.startswith(idp.issuer)  # the provider's own sign-in page
    assert not Decision.objects.exists()
    sign_in_at_the_provider(page, "nia")

    # Back, signed, and on to the next suggestion waiting.
    expect(page.get_by_role("status").first).to_contain_text("Signed: accepted")
    expect(page).to_have_url(re.compile(r"/review/suggestions/[0-9a-f-]{36}/"))
    assert suggestion_path(suggestion) not in page.url
    decision = Decision.objects.get()
    assert (decision.suggestion_id, decision.outcome) == (suggestion.pk, "accepted")
    assert decision.signature_method == "oidc-step-up"
    assert decision.authenticated_at is not None

    # The decision says how it was signed.
    page.goto(browser.url(suggestion_path(suggestion)))
    expect(page.get_by_role("region", name="Decision")).to_contain_text(
        "Signed in again with the hospital login"
    )
    browser.assert_clean()


def test_someone_else_signing_in_at_the_provider_signs_nothing(
    browser: BrowserSession,
    review_data: ReviewData,
    organization: Organization,
    idp: OidcProviderProcess,
    screenshots: Path,
) -> None:
    page = browser.page
    signed_in_by_sso(browser, organization, idp)
    suggestion = review_data.second_news2
    page.goto(browser.url(suggestion_path(suggestion)))
    form = decision_form(page)
    form.get_by_label("Reject", exact=True).check()
    form.get_by_label("Reason for rejecting").select_option("already-known")
    with page.expect_navigation():
        form.get_by_role("button", name=SIGN_BUTTON).click()
    sign_in_at_the_provider(page, "sam")  # a colleague's login at the same screen

    expect(page).to_have_url(browser.url(f"{suggestion_path(suggestion)}#decision"))
    expect(decision_form(page).get_by_role("alert")).to_contain_text(
        "Not signed: your hospital login was signed in as someone else, not as you."
    )
    assert not Decision.objects.exists()
    refused = AuditEvent.objects.get(action="review.decision.sign")
    assert refused.detail["refused"] == "step-up-wrong-person"
    # The decision is still there to sign.
    form = decision_form(page)
    expect(form.get_by_label("Reject", exact=True)).to_be_checked()
    expect(form.get_by_label("Reason for rejecting")).to_have_value("already-known")
    browser.screenshots_at_both(screenshots, "review-sign-with-hospital-login-refused")
    box_shots(browser, screenshots, "review-sign-with-hospital-login-refused-box")
    if AXE.is_file():
        checks = Audit(page)
        checks.at_both_widths("suggestion, step-up refused")
        checks.assert_clean()

    # Signed in as herself this time (the provider asks for the password again): signed.
    with page.expect_navigation():
        form.get_by_role("button", name=SIGN_BUTTON).click()
    sign_in_at_the_provider(page, "nia")
    expect(page.get_by_role("status").first).to_contain_text("Signed: rejected")
    decision = Decision.objects.get()
    assert (decision.outcome, decision.reason_code, decision.signature_method) == (
        "rejected",
        "already-known",
        "oidc-step-up",
    )
    browser.assert_clean()
