"""Issue 15, point 1 in the browser: a bundle with one blood pressure reading, through the real pipeline,
reads "cannot be scored" on the queue and on the suggestion page, and nothing there says low risk or
routine monitoring."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from clinical_ai.accounts.models import Organization, Role
from clinical_ai.review.models import Suggestion
from tests.browser.conftest import CHROMIUM, WHY_SKIPPED, BrowserSession, ReviewData
from tests.factories import EhrIdentity, sample_bundle
from tests.pipeline import bundle_process
from tests.unit.review.conftest import make_user

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=WHY_SKIPPED),
    pytest.mark.django_db(transaction=True),
]

BLOOD_PRESSURE_PANEL = "85354-9"
REASSURANCE = re.compile(r"low risk|routine", re.IGNORECASE)


def one_blood_pressure_bundle() -> dict[str, Any]:
    """The sample patient with a single observation, the blood pressure panel: no other vital sign, no note."""
    bundle = sample_bundle()
    bundle["identifier"]["value"] = f"urn:uuid:{uuid.uuid4()}"
    kept = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        codes = [c.get("code") for c in resource.get("code", {}).get("coding", [])]
        if resource["resourceType"] in ("Patient", "Encounter") or BLOOD_PRESSURE_PANEL in codes:
            kept.append(entry)
    bundle["entry"] = kept
    return bundle


@pytest.fixture
def not_scored(client: Client, ehr_client: EhrIdentity, organization: Organization) -> Suggestion:
    make_user("dr-ward", organization, Role.CLINICIAN, first_name="Wanda", last_name="Ward")
    [suggestion] = bundle_process(client, ehr_client, one_blood_pressure_bundle())
    assert (suggestion.model_id, suggestion.completeness) == ("news2", "not_scored")
    return suggestion


def _assert_accessible(browser: BrowserSession) -> None:
    """axe-core as the accessibility tests run it: no serious or critical WCAG A/AA violation."""
    from tests.browser.test_accessibility import axe_run, describe

    serious = [v for v in axe_run(browser.page) if v["impact"] in ("serious", "critical")]
    assert serious == [], describe(serious)


def test_one_blood_pressure_reading_reads_cannot_be_scored(
    browser: BrowserSession, not_scored: Suggestion, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    page = browser.page
    browser.log_in("dr-ward")
    row = page.locator("#queue-results tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Cannot be scored")
    expect(row).to_contain_text("NEWS2 cannot be scored: not enough observations (6 of 7 parameters missing)")
    expect(page.locator("#queue-results .counts-not-scored")).to_contain_text("Cannot be scored: 1")
    assert not REASSURANCE.search(page.locator("body").inner_text())
    _assert_accessible(browser)
    browser.screenshots_at_both(screenshots, "review-queue-cannot-be-scored")

    page.get_by_label("Result").select_option(label="Cannot be scored")
    expect(page).to_have_url(re.compile(r"result=not_scored"))
    expect(page.locator("#queue-results tbody tr")).to_have_count(1)
    page.get_by_label("Result").select_option(label="Scored (full or partial)")
    expect(page.locator("#queue-results")).to_contain_text("No suggestions match these filters.")
    page.get_by_label("Result").select_option(label="Any")

    with page.expect_navigation():
        page.locator("#queue-results tbody tr a").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("NEWS2 cannot be scored")
    basis = page.locator("section", has=page.get_by_role("heading", name="Basis", level=2))
    expect(basis).to_contain_text("Cannot be scored: not enough observations. This is not a low score")
    expect(basis).to_contain_text("Take and record a full set of observations now")
    expect(basis).to_contain_text("Missing, not scored: Respiration rate, SpO2 (scale 1), Air or oxygen")
    expect(basis.get_by_text("Risk band")).to_have_count(0)
    assert not REASSURANCE.search(page.locator("body").inner_text())
    _assert_accessible(browser)
    browser.screenshots_at_both(screenshots, "review-suggestion-cannot-be-scored")
    browser.assert_clean()


def test_a_partial_score_that_reaches_a_trigger_reads_at_least(
    browser: BrowserSession, review_data: ReviewData, screenshots: Path
) -> None:
    """The sample patients miss two parameters: NEWS2 at least 9 is high, at least 5 is at least medium."""
    from playwright.sync_api import expect

    page = browser.page
    browser.log_in("dr-ward")
    high = page.locator("#queue-results tbody tr", has_text="NEWS2 at least 9")
    expect(high).to_contain_text("Incomplete data")
    expect(high).to_contain_text("— high risk")
    medium = page.locator("#queue-results tbody tr", has_text="NEWS2 at least 5")
    expect(medium).to_contain_text("Incomplete data")
    expect(medium).to_contain_text("— at least medium risk")
    with page.expect_navigation():
        medium.locator("a").first.click()
    basis = page.locator("section", has=page.get_by_role("heading", name="Basis", level=2))
    expect(basis.locator("dd", has_text="at least medium (at least moderate risk)")).to_have_count(1)
    expect(basis).to_contain_text("Key threshold for urgent response")
    browser.screenshots_at_both(screenshots, "review-suggestion-at-least-medium")
    browser.assert_clean()
