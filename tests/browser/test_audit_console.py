"""The auditors' console in Chromium: actors shown as people, a search by username and by the start of a
patient's pseudonym, and a patient's timeline whose times each stay on one line, on a phone too."""

from __future__ import annotations

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


# Each time element's height against its own line height: one line, whatever the font.
TIMES_ON_ONE_LINE = """() => [...document.querySelectorAll('td.when time')].map(el => {
    const lineHeight = parseFloat(getComputedStyle(el).lineHeight);
    return {text: el.textContent, height: el.getBoundingClientRect().height, lineHeight};
})"""


def test_an_auditor_finds_a_person_by_username_and_a_patient_by_a_prefix(
    browser: BrowserSession, review_data: ReviewData, organization: Organization, screenshots: Path
) -> None:
    from playwright.sync_api import expect

    make_user("auditor-ann", organization, Role.AUDITOR, first_name="Ann", last_name="Audit")
    page = browser.page
    browser.log_in("dr-ward")  # Wanda Ward's sign-in and queue view go on record
    expect(page.get_by_role("heading", name="Review queue", level=1)).to_be_visible()
    browser.context.clear_cookies()

    browser.log_in("auditor-ann", next_path="/audit/")
    expect(page.get_by_role("heading", name="Audit log", level=1)).to_be_visible()
    page.get_by_label("Who").fill("dr-ward")
    with page.expect_navigation():
        page.get_by_role("button", name="Search").click()
    actors = page.locator("table tbody tr td:nth-child(3)")
    expect(actors.first).to_have_text("Wanda Ward (dr-ward)")
    assert set(actors.all_inner_texts()) == {"Wanda Ward (dr-ward)"}
    browser.screenshots_at_both(screenshots, "audit-who")
    page.set_viewport_size({"width": 1366, "height": 900})

    page.get_by_label("Who").fill("dr-nobody")
    with page.expect_navigation():
        page.get_by_role("button", name="Search").click()
    expect(page.locator("main")).to_contain_text("No such user: “dr-nobody”")
    expect(page.locator("table")).to_have_count(0)

    pseudonym = review_data.sample_news2.patient_pseudonym
    page.get_by_label("Who").fill("")
    page.get_by_label("Patient pseudonym").fill(pseudonym[:8])
    expect(page.locator("main")).to_contain_text("first 6 characters or more")
    with page.expect_navigation():
        page.get_by_role("button", name="Search").click()
    patients = page.locator("table tbody tr td:nth-child(7) a")
    expect(patients.first).to_be_visible()
    hrefs = {patients.nth(i).get_attribute("href") for i in range(patients.count())}
    assert hrefs == {f"/audit/patients/{pseudonym}/"}

    with page.expect_navigation():
        patients.first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(pseudonym)
    for width, height in ((1366, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        times = page.evaluate(TIMES_ON_ONE_LINE)
        assert times, "the timeline shows no times"
        wrapped = [t for t in times if t["height"] > t["lineHeight"] * 1.2]
        assert wrapped == [], f"times wrapped at {width} px: {wrapped[:3]}"
    browser.screenshots_at_both(screenshots, "audit-timeline")
    browser.assert_clean()
