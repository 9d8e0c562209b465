"""Model off, no word no more: an admin switches NEWS2 off on its model page, and the clinician's queue and
the NEWS2 suggestion page say so (since when, why, what the silence means)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clinical_ai.accounts.models import Organization, Role
from tests.browser.conftest import CHROMIUM, WHY_SKIPPED, BrowserSession, ReviewData
from tests.unit.review.conftest import make_user

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=WHY_SKIPPED),
    pytest.mark.django_db(transaction=True),
]

REASON = "oxygen scale under review"


def test_an_admin_switches_news2_off_and_the_clinicians_queue_says_so(
    browser: BrowserSession, review_data: ReviewData, organization: Organization, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    make_user("admin-abe", organization, Role.ADMIN, is_staff=True)
    page = browser.page
    browser.log_in("dr-ward")
    expect(page.get_by_role("heading", name="Review queue", level=1)).to_be_visible()
    expect(page.get_by_role("status", name="Models switched off")).to_have_count(0)
    browser.context.clear_cookies()

    browser.log_in("admin-abe", next_path="/models/news2/")
    page.locator("#stop-reason").fill(REASON)
    with page.expect_navigation():
        page.get_by_role("button", name="Switch NEWS2 early warning score off now").click()
    browser.context.clear_cookies()

    browser.log_in("dr-ward")
    banner = page.get_by_role("status", name="Models switched off")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(
        re.compile(
            rf"NEWS2 early warning score is switched off since \d\d:\d\d \({REASON}\)\. It gives no new "
            r"scores: no NEWS2 early warning score alert does not mean a low score\."
        )
    )
    box = banner.bounding_box()
    assert box is not None and box["y"] < 300  # at the top, before the queue itself
    browser.screenshots_at_both(screenshots, "review-queue-model-off")

    page.goto(browser.url(f"/review/suggestions/{review_data.sample_news2.external_id}/"))
    banner = page.get_by_role("status", name="Models switched off")
    expect(banner).to_contain_text(
        "This score may be out of date, and no newer one will come while it is off."
    )
    browser.screenshots_at_both(screenshots, "review-suggestion-model-off")
    browser.assert_clean()
