"""Issue 15, points 2 and 4, in a real browser: the clinician's queue names both patients (name, MRN, age,
sex), finds one by a word of the name and by the MRN, and the suggestion page shows the vital signs' real
times (the bundle's, not the de-identified copy's shifted ones) in the site's time zone, with how long
ago. The data comes from the real pipeline (``conftest.review_data``).
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.browser.conftest import (
    CHROMIUM,
    SECOND_PATIENT_MRN,
    WHY_SKIPPED,
    BrowserSession,
    ReviewData,
)

if not CHROMIUM.exists():
    pytest.skip(WHY_SKIPPED, allow_module_level=True)

from playwright.sync_api import Page, expect

from clinical_ai.accounts.models import Organization, Role
from clinical_ai.vault.pseudonyms import date_shift_days
from clinical_ai.vault.services import pseudonym_key
from tests.factories import sample_bundle
from tests.unit.review.conftest import make_user

pytestmark = pytest.mark.browser


def _vital_sign_times() -> set[str]:
    return {
        str(entry["resource"]["effectiveDateTime"])
        for entry in sample_bundle()["entry"]
        if entry["resource"]["resourceType"] == "Observation"
    }


def _filter(page: Page, text: str) -> None:
    box = page.get_by_label("Patient: name, MRN or pseudonym")
    with page.expect_response(lambda response: "patient=" in response.url):
        box.fill(text)
        box.press("Enter")


def test_a_clinician_finds_patients_by_name_and_mrn_and_reads_real_times(
    browser: BrowserSession, review_data: ReviewData, organization: Organization, screenshots: Path
) -> None:
    organization.time_zone = "America/New_York"
    organization.save()
    page = browser.page
    browser.log_in("dr-ward")
    rows = page.locator("#queue-results tbody tr")
    expect(rows).to_have_count(len(review_data.suggestions))
    results = page.locator("#queue-results")
    expect(results).to_contain_text("Margaret Okafor-Lindqvist")
    expect(results).to_contain_text("MRN 4471-2290")
    expect(results).to_contain_text("Tomasz Brennan-Achebe")
    expect(results).to_contain_text(f"MRN {SECOND_PATIENT_MRN}")
    expect(results).to_contain_text("78 years · Male")  # born 1948-07-02
    expect(results).not_to_contain_text(review_data.sample_news2.patient_pseudonym[:10])
    expect(results).to_contain_text(re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d E[SD]T"))  # created, site's zone

    _filter(page, "brennan")
    expect(results).not_to_contain_text("Okafor-Lindqvist")
    expect(rows).to_have_count(
        sum(
            1
            for s in review_data.suggestions
            if s.patient_pseudonym == review_data.second_news2.patient_pseudonym
        )
    )
    expect(results).to_contain_text("Tomasz Brennan-Achebe")
    _filter(page, SECOND_PATIENT_MRN)
    expect(results).to_contain_text("Tomasz Brennan-Achebe")
    expect(results).not_to_contain_text("Okafor-Lindqvist")
    _filter(page, "4471-2290")
    expect(results).to_contain_text("Margaret Okafor-Lindqvist")
    expect(results).not_to_contain_text("Brennan-Achebe")

    suggestion = review_data.sample_news2
    page.goto(browser.url(f"/review/suggestions/{suggestion.external_id}/"))
    patient = page.get_by_role("region", name="Patient")
    expect(patient).to_contain_text("Margaret Okafor-Lindqvist")
    expect(patient).to_contain_text("4471-2290")
    expect(patient).to_contain_text(re.compile(r"\d+ years, female"))
    inputs = page.get_by_role("region", name="Basis").get_by_role("table")
    # The bundle's vital signs, 2026-11-20T08:15:00+00:00: 03:15 in New York, with how long ago.
    assert _vital_sign_times() == {"2026-11-20T08:15:00+00:00"}
    pulse = inputs.get_by_role("row").filter(has=page.get_by_role("rowheader", name="Pulse", exact=True))
    expect(pulse.locator("td").nth(2)).to_have_text("2026-11-20 03:15 EST")
    expect(pulse.locator("td").nth(3)).to_have_text(re.compile(r"^\d+ (h|days?|weeks?|months?|years?) ago$"))
    expect(inputs.locator("caption")).to_contain_text("newest reading 2026-11-20 03:15 EST")
    shift = date_shift_days(key=pseudonym_key(), pseudonym=suggestion.patient_pseudonym)
    shifted = (date(2026, 11, 20) + timedelta(days=shift)).isoformat()
    expect(page.locator("main")).not_to_contain_text(shifted)
    expect(page.locator("main")).not_to_contain_text("shifted")
    browser.screenshots_at_both(screenshots, "review-suggestion-real-times")
    browser.assert_clean()


def test_an_auditor_sees_pseudonyms_and_times_said_to_be_shifted(
    browser: BrowserSession, review_data: ReviewData, organization: Organization, screenshots: Path
) -> None:
    make_user("auditor-ann", organization, Role.AUDITOR)
    page = browser.page
    browser.log_in("auditor-ann")
    results = page.locator("#queue-results")
    expect(results).to_contain_text(review_data.sample_news2.patient_pseudonym[:10])
    expect(results).not_to_contain_text("Okafor-Lindqvist")
    expect(page.get_by_label("Patient", exact=True)).to_be_visible()  # a pseudonym filter only
    page.goto(browser.url(f"/review/suggestions/{review_data.sample_news2.external_id}/"))
    basis = page.get_by_role("region", name="Basis")
    expect(basis.get_by_role("columnheader", name="Time (shifted)")).to_be_visible()
    expect(basis).to_contain_text("These times are not the real ones.")
    expect(basis).not_to_contain_text("2026-11-20 08:15")
    browser.screenshots_at_both(screenshots, "review-suggestion-auditor")
    browser.assert_clean()
