"""The suggestion page and the queue on a ward PC, a ward tablet and a phone (issue 15, points 8 and 11).

On a ward PC (1366x900) the decision sits beside the basis: the Sign button is on the first screen, without
scrolling, for a NEWS2 and for a problem-list suggestion. The model card is summed up in plain words taken
from the model's card, the full card one click away. On a phone (390x844) and a ward tablet (820x1180)
neither page scrolls sideways, the tables stay tables for screen readers, and a link near the top takes
the reader to the decision.

``SCREENSHOTS=<folder>`` keeps a screenshot of each page at each width there, to look at.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.browser.conftest import (
    CHROMIUM,
    PHONE,
    WARD_PC,
    WARD_TABLET,
    WHY_SKIPPED,
    BrowserSession,
    ReviewData,
)

if not CHROMIUM.exists():
    pytest.skip(WHY_SKIPPED, allow_module_level=True)

from playwright.sync_api import Page, ViewportSize, expect

from clinical_ai.inference.registry import catalogue
from clinical_ai.review.models import Suggestion
from tests.unit.review.conftest import PASSWORD

pytestmark = pytest.mark.browser

NARROW = {"phone": PHONE, "tablet": WARD_TABLET}
# Words from the developers' side of the model card that a clinician should not meet unless they ask.
DEVELOPER_WORDS = ("test_news2.py", "tests/unit", "sha256", "benchmarks/")


def suggestion_path(suggestion: Suggestion) -> str:
    return f"/review/suggestions/{suggestion.external_id}/"


def problem_suggestion(review_data: ReviewData) -> Suggestion:
    return next(s for s in review_data.suggestions if s.model_id != "news2" and s.status == "pending")


def keep_screenshot(browser: BrowserSession, name: str) -> None:
    folder = os.environ.get("SCREENSHOTS")
    if folder:
        browser.screenshot(Path(folder) / f"{name}.png")


_WIDER_THAN_THE_WINDOW = """() => [...document.querySelectorAll('body *')]
  .filter((element) => element.getBoundingClientRect().right > window.innerWidth + 1)
  .slice(-5).map((element) => element.outerHTML.slice(0, 100))"""


def assert_no_sideways_scroll(page: Page, what: str) -> None:
    """A page wider than the window scrolls sideways; the message names the elements that stick out."""
    width, window = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= window, (
        f"{what}: {width} px wide in a {window} px window: {page.evaluate(_WIDER_THAN_THE_WINDOW)}"
    )


def sign_button_box(page: Page) -> dict[str, float]:
    button = page.get_by_role("button", name="Sign decision")
    expect(button).to_have_count(1)
    box = button.bounding_box()
    assert box is not None, "the Sign button is not displayed"
    return {"top": box["y"], "bottom": box["y"] + box["height"], "left": box["x"]}


@pytest.mark.parametrize("which", ["news2", "problem-list"])
def test_the_sign_button_is_on_a_ward_pcs_first_screen_beside_the_basis(
    browser: BrowserSession, review_data: ReviewData, which: str
) -> None:
    page = browser.page
    assert page.viewport_size == WARD_PC
    suggestion = review_data.sample_news2 if which == "news2" else problem_suggestion(review_data)
    browser.log_in("dr-ward", next_path=suggestion_path(suggestion))
    assert page.evaluate("window.scrollY") == 0
    keep_screenshot(browser, f"suggestion-{which}-1366")
    sign = sign_button_box(page)
    print(f"{which} at 1366x900: the Sign button at {sign['top']:.0f}-{sign['bottom']:.0f} px")
    assert sign["top"] >= 0 and sign["bottom"] <= WARD_PC["height"], (
        f"the Sign button is at {sign['top']:.0f}-{sign['bottom']:.0f} px, below the first screen "
        f"({WARD_PC['height']} px)"
    )
    basis = page.get_by_role("region", name="Basis").bounding_box()
    assert basis is not None
    assert basis["y"] < WARD_PC["height"], "the basis does not start on the first screen"
    assert sign["left"] >= basis["x"] + basis["width"], "the decision is not beside the basis"
    browser.assert_clean()


def test_the_model_card_is_summed_up_in_plain_words_the_full_card_one_click_away(
    browser: BrowserSession, review_data: ReviewData
) -> None:
    page = browser.page
    suggestion = review_data.sample_news2
    manifest = catalogue().manifest(suggestion.model_id, suggestion.model_version)
    assert manifest is not None
    browser.log_in("dr-ward", next_path=suggestion_path(suggestion))
    model = page.get_by_role("region", name="About this model")
    expect(model).to_contain_text(manifest.card["clinical_summary"])
    for words in DEVELOPER_WORDS:  # in the full card only, folded away
        for match in model.get_by_text(words, exact=False).all():
            expect(match).to_be_hidden()
    limitation = manifest.card["limitations"][0]
    expect(model.get_by_text(limitation)).to_be_hidden()
    model.get_by_text("The full model card").click()
    expect(model.get_by_text(limitation)).to_be_visible()
    browser.assert_clean()


@pytest.mark.parametrize("device", NARROW)
def test_the_queue_and_the_suggestion_pages_fit_phones_and_tablets(
    browser: BrowserSession, review_data: ReviewData, device: str
) -> None:
    page = browser.page
    viewport: ViewportSize = NARROW[device]
    page.set_viewport_size(viewport)
    browser.log_in("dr-ward")
    pages = {
        "queue": "/review/",
        "suggestion-news2": suggestion_path(review_data.sample_news2),
        "suggestion-problem-list": suggestion_path(problem_suggestion(review_data)),
    }
    for name, path in pages.items():
        page.goto(browser.url(path))
        keep_screenshot(browser, f"{name}-{viewport['width']}")
        assert_no_sideways_scroll(page, f"{name} on a {device}")
        # Stacked or not, the tables are still tables to a screen reader, with their headers.
        for table in page.get_by_role("table").all():
            if table.is_visible():
                assert table.get_by_role("columnheader").count() > 0

    # A decided suggestion, with its signature, fits too.
    page.goto(browser.url(pages["suggestion-news2"]))
    form = page.get_by_role("region", name="Your decision")
    form.get_by_label("Accept", exact=True).check()
    form.get_by_label("Your password").fill(PASSWORD)
    with page.expect_navigation():
        form.get_by_role("button", name="Sign decision").click()
    page.goto(browser.url(pages["suggestion-news2"]))
    expect(page.get_by_role("region", name="Decision")).to_have_count(1)
    keep_screenshot(browser, f"suggestion-decided-{viewport['width']}")
    assert_no_sideways_scroll(page, f"the decided suggestion on a {device}")
    browser.assert_clean()


@pytest.mark.parametrize("which", ["news2", "problem-list"])
def test_on_a_phone_a_link_near_the_top_takes_you_to_the_decision(
    browser: BrowserSession, review_data: ReviewData, which: str
) -> None:
    page = browser.page
    page.set_viewport_size(PHONE)
    suggestion = review_data.sample_news2 if which == "news2" else problem_suggestion(review_data)
    browser.log_in("dr-ward", next_path=suggestion_path(suggestion))
    link = page.get_by_role("link", name="Go to your decision")
    box = link.bounding_box()
    assert box is not None and box["y"] + box["height"] <= PHONE["height"], (
        "no link to the decision on screen"
    )
    link.click()
    folder = os.environ.get("SCREENSHOTS")
    if folder:
        page.screenshot(path=str(Path(folder) / f"decision-{which}-390.png"))
    sign = sign_button_box(page)
    assert sign["top"] >= 0 and sign["bottom"] <= PHONE["height"], (
        f"after the link, the Sign button is at {sign['top']:.0f} px in an {PHONE['height']} px window"
    )
    # The first field of the form is where the link leaves the reader.
    expect(page.get_by_role("region", name="Your decision")).to_be_in_viewport()
    browser.assert_clean()
