"""The review UI in a real browser (issue 5): a clinician signs in through the form, works the queue (htmx
filtering in place), reads a suggestion's basis with the patient re-identified, and signs decisions that
are then locked. The suggestions come from the real pipeline (see ``conftest.review_data``).

``UPDATE_SCREENSHOTS=1`` refreshes docs/screenshots/review-{queue,suggestion,decided}-{1366,390}.png, at a ward PC's
1366x900 and a phone's 390x844 (the other browser modules add theirs beside them).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from tests.browser.conftest import CHROMIUM, WHY_SKIPPED, BrowserSession, ReviewData

if not CHROMIUM.exists():
    pytest.skip(WHY_SKIPPED, allow_module_level=True)

from playwright.sync_api import Locator, Page, expect

from clinical_ai.review.models import Decision, Suggestion
from tests.unit.review.conftest import PASSWORD

pytestmark = pytest.mark.browser

URGENCY_RANK = {"Critical": 0, "Warning": 1, "Info": 2}
# The sample patient's NEWS2 inputs as the basis table shows them: value and unit, as recorded.
SAMPLE_INPUTS = {
    "Respiration rate": ("24 /min", "24 breaths/minute"),
    "SpO2 (scale 1)": ("93 %", "93 %"),
    "Systolic blood pressure": ("98 mmHg", "98 mmHg"),
    "Pulse": ("112 /min", "112 beats/minute"),
    "Temperature": ("38.5 °C", "101.3 degF"),
}
REJECT_COMMENT = "Observations taken during a nebuliser; repeat set ordered."


def suggestion_path(suggestion: Suggestion) -> str:
    return f"/review/suggestions/{suggestion.external_id}/"


def queue_rows(page: Page) -> Locator:
    return page.locator("#queue-results tbody tr")


def sign(page: Page, *, outcome: str, password: str, reason: str = "", comment: str = "") -> int:
    """Fill the sign-off form on ``page`` and send it; the status of the POST's answer, once the page it
    leads to (the refusal, or the suggestion again after a redirect) has loaded."""
    form = page.get_by_role("region", name="Your decision")
    form.get_by_label(outcome, exact=True).check()
    if reason:
        form.get_by_label("Reason for rejecting").select_option(reason)
    if comment:
        form.get_by_label("Comment").fill(comment)
    form.get_by_label("Your password").fill(password)
    posted = page.expect_response(lambda response: response.url.endswith("/sign/"))
    with page.expect_navigation(), posted as answer:
        form.get_by_role("button", name="Sign decision").click()
    return answer.value.status


def expect_locked(page: Page) -> None:
    """A decided suggestion offers no way to decide again."""
    expect(page.get_by_role("region", name="Your decision")).to_have_count(0)
    expect(page.get_by_role("button", name="Sign decision")).to_have_count(0)
    expect(page.locator("input[type=password]")).to_have_count(0)
    expect(page.get_by_role("region", name="Decision")).to_contain_text(
        "A signed decision cannot be changed."
    )


def test_the_browser_cannot_reach_beyond_the_live_server(browser: BrowserSession) -> None:
    """The guard the other tests rely on: a request elsewhere is aborted and recorded. (Our own pages send a
    Content-Security-Policy that already stops such a fetch in the browser, so the guard is shown from a
    blank page, which has none.)"""
    browser.page.goto("about:blank")
    reached = browser.page.evaluate("fetch('https://cdn.example.org/htmx.js').then(() => true, () => false)")
    assert reached is False
    assert browser.blocked == ["https://cdn.example.org/htmx.js"]
    assert browser.problems == []


def test_our_pages_content_security_policy_stops_a_fetch_elsewhere(browser: BrowserSession) -> None:
    """From one of our pages the browser itself refuses: the request never reaches the network guard."""
    browser.page.goto(browser.url("/accounts/login/"))
    reached = browser.page.evaluate("fetch('https://cdn.example.org/htmx.js').then(() => true, () => false)")
    assert reached is False
    assert browser.blocked == []


def test_the_queue_puts_the_most_urgent_first_and_filters_in_place(
    browser: BrowserSession, review_data: ReviewData, screenshots: Path
) -> None:
    page = browser.page
    browser.log_in("dr-ward")
    expect(page).to_have_url(browser.url("/review/"))
    expect(page.get_by_role("heading", name="Review queue", level=1)).to_be_visible()
    expect(page.locator("header")).to_contain_text("Signed in as dr-ward")

    by_urgency = Counter(suggestion.urgency for suggestion in review_data.suggestions)
    assert (by_urgency["critical"], by_urgency["warning"]) == (1, 1)
    counts = page.get_by_role("list", name="By urgency").get_by_role("listitem")
    expected_counts = ["Critical: 1", "Warning: 1", f"Info: {by_urgency['info']}"]
    expect(counts).to_have_text(expected_counts)
    expect(page.get_by_role("status")).to_have_text(f"{len(review_data.suggestions)} suggestions.")

    rows = queue_rows(page)
    expect(rows).to_have_count(len(review_data.suggestions))
    urgencies = [text.strip() for text in rows.locator("td:first-child").all_inner_texts()]
    assert urgencies == sorted(urgencies, key=URGENCY_RANK.__getitem__), urgencies
    assert urgencies[:2] == ["Critical", "Warning"]
    first_link = rows.first.get_by_role("link")
    expect(first_link).to_have_attribute("href", suggestion_path(review_data.sample_news2))
    expect(first_link).to_contain_text("NEWS2")
    main = page.locator("main")
    expect(main).to_contain_text("Margaret Okafor-Lindqvist")  # a clinician's own patients, by name
    browser.screenshots_at_both(screenshots, "review-queue")

    # Choosing an urgency swaps the results in place (htmx): no reload, so the page's state survives.
    page.evaluate("window.sameDocument = true")
    with page.expect_response(lambda response: "urgency=warning" in response.url) as filtered:
        page.get_by_label("Urgency", exact=True).select_option("warning")
    assert filtered.value.request.headers.get("hx-request") == "true"
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td").first).to_have_text("Warning")
    expect(rows.first.get_by_role("link")).to_have_attribute(  # the filters ride along, to come back to
        "href", re.compile(re.escape(f"{suggestion_path(review_data.second_news2)}?queue=urgency%3Dwarning"))
    )
    expect(page.get_by_role("status")).to_have_text("1 suggestion.")
    expect(counts).to_have_text(expected_counts)  # each count says what choosing it would show
    expect(page).to_have_url(re.compile(r"/review/\?.*urgency=warning"))  # pushed: shareable, back works
    assert page.evaluate("window.sameDocument") is True
    browser.assert_clean()


def test_a_clinician_reads_the_basis_and_rejects_and_the_decision_is_locked(
    browser: BrowserSession, review_data: ReviewData, screenshots: Path
) -> None:
    page = browser.page
    suggestion = review_data.sample_news2
    browser.log_in("dr-ward")
    queue_rows(page).first.get_by_role("link").click()
    expect(page).to_have_url(browser.url(suggestion_path(suggestion)))

    # The patient, re-identified for the clinician, and the statement of whose judgement this is.
    patient = page.get_by_role("region", name="Patient")
    expect(patient).to_contain_text("Margaret Okafor-Lindqvist")
    expect(patient).to_contain_text("1959-03-14")
    expect(patient).to_contain_text(suggestion.patient_pseudonym)
    expect(page.get_by_role("note").filter(has_text="suggestion for your clinical judgement")).to_be_visible()

    # The basis: each input with its value and unit, the missing ones named, then the model's card.
    basis = page.get_by_role("region", name="Basis")
    inputs = basis.get_by_role("table")
    expect(inputs).to_contain_text("Inputs used")
    for label, (value, recorded) in SAMPLE_INPUTS.items():
        cells = inputs.get_by_role("row").filter(has=page.get_by_role("rowheader", name=label, exact=True))
        expect(cells.locator("td").nth(0)).to_have_text(value)
        expect(cells.locator("td").nth(1)).to_have_text(recorded)
        expect(cells.locator("td").last).to_contain_text("scored")
    for label in ("Air or oxygen", "Consciousness (ACVPU)"):
        cells = inputs.get_by_role("row").filter(has=page.get_by_role("rowheader", name=label, exact=True))
        expect(cells.locator("td").last).to_contain_text("missing")
    expect(basis.get_by_role("note")).to_contain_text(
        "Missing, not scored: Air or oxygen, Consciousness (ACVPU)."
    )
    expect(basis).to_contain_text("9 (partial: a lower bound)")
    # The model card: a summary in plain words, the full card one click away.
    card = page.get_by_role("region", name="About this model: NEWS2 early warning score")
    expect(card).to_contain_text("to help nurses and doctors spot a patient who may be getting worse")
    card.get_by_text("The full model card (version 1.0.0)").click()
    for heading in ("Intended use", "Intended users", "Limitations", "Validation"):
        expect(card.get_by_role("heading", name=heading, exact=True)).to_be_visible()
    browser.screenshots_at_both(screenshots, "review-suggestion")

    # A second tab keeps the pending form, to be sent after the decision is signed.
    stale = browser.context.new_page()
    stale.goto(page.url)

    # A wrong password signs nothing, and says so.
    status = sign(
        page,
        outcome="Reject",
        reason="disagree-with-evidence",
        comment=REJECT_COMMENT,
        password="not my password",
    )
    assert status == 400
    expect(page.get_by_role("alert")).to_contain_text("That is not your password. Nothing was signed.")
    suggestion.refresh_from_db()
    assert suggestion.status == Suggestion.Status.PENDING
    assert not Decision.objects.filter(suggestion=suggestion).exists()
    form = page.get_by_role("region", name="Your decision")
    expect(form.get_by_label("Reject", exact=True)).to_be_checked()  # the choices survive; not the password
    expect(form.get_by_label("Comment")).to_have_value(REJECT_COMMENT)
    expect(form.get_by_label("Your password")).to_have_value("")

    # Rejected with a coded reason and a comment, signed with the password.
    assert sign(page, outcome="Reject", reason="disagree-with-evidence", password=PASSWORD) == 302
    # Straight on to the next one waiting (no critical one is left: the warning), saying what was signed.
    expect(page).to_have_url(browser.url(suggestion_path(review_data.second_news2)))
    expect(page.get_by_role("status").first).to_contain_text("Signed: rejected (critical, news2).")
    page.goto(browser.url(suggestion_path(suggestion)))
    decision_section = page.get_by_role("region", name="Decision")
    for text in (
        "Rejected",
        "The evidence does not support it",
        REJECT_COMMENT,
        "Wanda Ward",
        "intact",
    ):
        expect(decision_section).to_contain_text(text)
    expect_locked(page)
    decision = Decision.objects.get(suggestion=suggestion)
    assert (decision.outcome, decision.reason_code) == ("rejected", "disagree-with-evidence")
    assert decision.clinician_id == review_data.clinician.pk
    browser.screenshots_at_both(screenshots, "review-decided")

    # The stale tab's form is refused: the suggestion is no longer pending, nothing is signed twice.
    assert sign(stale, outcome="Accept", password=PASSWORD) == 409
    expect(stale.get_by_role("alert")).to_have_text(
        re.compile(
            r"Not signed: this suggestion was already rejected by Wanda Ward at [0-9: -]+ [A-Z][A-Za-z0-9+-]*\. See the decision"
        )
    )
    expect_locked(stale)
    expect(stale.get_by_role("region", name="Decision")).to_contain_text("Rejected")
    suggestion.refresh_from_db()
    assert suggestion.status == Suggestion.Status.REJECTED
    assert Decision.objects.filter(suggestion=suggestion).count() == 1

    # Back in the queue the decided suggestion is gone from the pending ones.
    page.get_by_role("link", name="← Review queue").click()
    expect(page.get_by_role("list", name="By urgency").get_by_role("listitem").first).to_have_text(
        "Critical: 0"
    )
    browser.assert_clean()


def test_a_clinician_accepts_the_second_patients_score(
    browser: BrowserSession, review_data: ReviewData
) -> None:
    page = browser.page
    suggestion = review_data.second_news2
    browser.log_in("dr-ward")
    page.get_by_label("Urgency", exact=True).select_option("warning")
    expect(queue_rows(page)).to_have_count(1)
    queue_rows(page).first.get_by_role("link").click()
    expect(page).to_have_url(re.compile(re.escape(f"{suggestion_path(suggestion)}?queue=urgency%3Dwarning")))
    expect(page.get_by_role("region", name="Patient")).to_contain_text("Tomasz Brennan-Achebe")
    expect(page.get_by_role("region", name="Basis")).to_contain_text(
        "at least medium (at least moderate risk)"
    )

    assert sign(page, outcome="Accept", password=PASSWORD) == 302
    # On to the next one waiting: no warning is left, so the critical one, with the filters kept.
    expect(page).to_have_url(
        re.compile(re.escape(f"{suggestion_path(review_data.sample_news2)}?queue=urgency%3Dwarning"))
    )
    expect(page.get_by_role("status").first).to_contain_text("Signed: accepted (warning, news2).")
    page.goto(browser.url(suggestion_path(suggestion)))
    expect(page.get_by_role("region", name="Decision")).to_contain_text("Accepted")
    expect_locked(page)
    suggestion.refresh_from_db()
    assert suggestion.status == Suggestion.Status.ACCEPTED
    assert Decision.objects.get(suggestion=suggestion).outcome == "accepted"
    assert Suggestion.objects.get(pk=review_data.sample_news2.pk).status == Suggestion.Status.PENDING
    browser.assert_clean()
