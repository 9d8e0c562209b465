"""Accessibility of every page a person reaches (issue 15, point 12), checked by axe-core in Chromium.

axe-core is the npm package pinned in tests/browser/package.json and its lock file (``make install`` puts it
under tests/browser/node_modules). Each page is checked against the WCAG 2.0, 2.1 and 2.2 A and AA rules
that axe can test automatically; a serious or critical violation fails the test, which prints each one's
rule id, impact, help text and the elements concerned. Two checks axe leaves to a person are made here as
well: every id that ``aria-describedby``, ``aria-labelledby`` or a label's ``for`` names exists, and the
focus indicator contrasts at least 3:1 with the colours next to it.

The pages: sign-in (and its error), the second-factor pages, home, the review queue with results and empty,
the suggestion page (pending NEWS2, pending problem-list, with a validation error, decided), the audit
console (list, an event, a patient's timeline, the chain check) and the models pages (list, each model),
each at the ward-PC width and at a phone's.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import CHROMIUM, PHONE, WARD_PC, WHY_SKIPPED, BrowserSession, ReviewData

if not CHROMIUM.exists():
    pytest.skip(WHY_SKIPPED, allow_module_level=True)

from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import Page

from clinical_ai.accounts.models import Organization, Role
from clinical_ai.audit.models import AuditEvent
from tests.unit.review.conftest import PASSWORD, make_user

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
BLOCKING = {"serious", "critical"}

# Every id that an ARIA reference or a label names, and which of them the page lacks.
_DANGLING_REFERENCES = """() => {
  const missing = [];
  for (const element of document.querySelectorAll('[aria-describedby], [aria-labelledby], label[for]')) {
    for (const name of ['aria-describedby', 'aria-labelledby', 'for']) {
      for (const id of (element.getAttribute(name) || '').split(/\\s+/).filter(Boolean)) {
        if (!document.getElementById(id)) missing.push(`${element.tagName.toLowerCase()} ${name}="${id}"`);
      }
    }
  }
  return missing;
}"""

# The focus indicator of each focusable element against the colours on either side of it (WCAG 2.2, 2.4.13
# and 1.4.11 ask for 3:1 against the adjacent colours): inside the ring, the element's own background, or
# with an outline offset the halo drawn by a box-shadow, else what lies behind the element; outside it, the
# halo where the shadow reaches beyond the ring, else what lies behind the element.
_FOCUS_CONTRAST = """() => {
  const rgb = (text) => (text.match(/[\\d.]+/g) || []).map(Number);
  const luminance = ([r, g, b]) => {
    const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  };
  const ratio = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const opaque = (colour) => colour.length === 3 || (colour.length === 4 && colour[3] === 1);
  const backdrop = (element) => {
    for (let node = element; node; node = node.parentElement) {
      const colour = rgb(getComputedStyle(node).backgroundColor);
      if (opaque(colour)) return colour.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const weak = [];
  const focusable = document.querySelectorAll('a[href], button, input:not([type=hidden]), select, textarea, summary');
  for (const element of focusable) {
    if (!element.getClientRects().length) continue;
    element.focus();
    if (document.activeElement !== element) continue;
    const style = getComputedStyle(element);
    const width = parseFloat(style.outlineWidth), offset = parseFloat(style.outlineOffset);
    if (style.outlineStyle === 'none' || width < 2) {
      weak.push(`${element.outerHTML.slice(0, 80)}: no outline of 2px or more`);
      element.blur();
      continue;
    }
    const outline = rgb(style.outlineColor).slice(0, 3);
    const behind = backdrop(element.parentElement || element);
    // A solid box-shadow halo, "rgb(r, g, b) 0px 0px 0px <spread>px"
    const shadow = rgb(style.boxShadow);
    const halo = shadow.length >= 7 && opaque(shadow.slice(0, 3)) ? shadow.slice(0, 3) : null;
    const spread = halo ? shadow[shadow.length - 1] : 0;
    const inside = offset <= 0 ? backdrop(element) : (halo && spread >= offset ? halo : behind);
    const outside = halo && spread > offset + width ? halo : behind;
    const against = Math.min(ratio(outline, inside), ratio(outline, outside));
    if (against < 3) weak.push(`${element.outerHTML.slice(0, 80)}: outline ${against.toFixed(2)}:1`);
    element.blur();
  }
  return [...new Set(weak)];
}"""


def axe_run(page: Page) -> list[dict[str, Any]]:
    """The WCAG A/AA violations axe-core finds on the page as it stands. The script is evaluated through
    the DevTools protocol: our pages' Content-Security-Policy (rightly) refuses an injected script tag."""
    if page.evaluate("typeof window.axe") == "undefined":
        page.evaluate(AXE.read_text(encoding="utf-8"))
    result: dict[str, Any] = page.evaluate(
        "(tags) => axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']})",
        WCAG_TAGS,
    )
    violations: list[dict[str, Any]] = result["violations"]
    return violations


def describe(violations: list[dict[str, Any]]) -> str:
    lines = []
    for violation in violations:
        lines.append(f"  {violation['id']} ({violation['impact']}): {violation['help']}")
        for node in violation["nodes"][:8]:
            lines.append(
                f"      {json.dumps(node['target'])}: {node.get('failureSummary', '').splitlines()[-1:]}"
            )
    return "\n".join(lines)


class Audit:
    """Collects every page's problems, so that one run reports them all."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.checked: list[str] = []
        self.failures: list[str] = []

    def check(self, label: str) -> None:
        page = self.page
        width = page.viewport_size["width"] if page.viewport_size else 0
        where = f"{label} at {width}px ({page.url})"
        self.checked.append(where)
        blocking = [v for v in axe_run(page) if v["impact"] in BLOCKING]
        if blocking:
            self.failures.append(f"{where}: axe-core, serious or critical\n{describe(blocking)}")
        dangling = page.evaluate(_DANGLING_REFERENCES)
        if dangling:
            self.failures.append(f"{where}: references to ids that do not exist: {dangling}")
        weak_focus = page.evaluate(_FOCUS_CONTRAST)
        if weak_focus:
            self.failures.append(f"{where}: focus indicator below 3:1: {weak_focus[:5]}")

    def at_both_widths(self, label: str) -> None:
        for viewport in (WARD_PC, PHONE):
            self.page.set_viewport_size(viewport)
            self.check(label)
        self.page.set_viewport_size(WARD_PC)

    def assert_clean(self) -> None:
        assert self.checked, "no page was checked"
        version = self.page.evaluate("window.axe ? axe.version : 'not loaded'")
        print(f"axe-core {version}, {len(self.checked)} pages checked:", *self.checked, sep="\n  ")
        assert not self.failures, "accessibility problems:\n" + "\n".join(self.failures)


@pytest.fixture
def audit(browser: BrowserSession) -> Iterator[Audit]:
    assert AXE.is_file(), f"{AXE} is missing: run `make install` (npm ci in tests/browser)"
    checker = Audit(browser.page)
    yield checker
    browser.assert_clean()


def go(browser: BrowserSession, path: str) -> None:
    response = browser.page.goto(browser.url(path))
    assert response is not None and response.status < 400, f"{path}: {response and response.status}"


def test_the_sign_in_and_second_factor_pages_are_accessible(
    browser: BrowserSession, audit: Audit, organization: Organization
) -> None:
    page = browser.page
    make_user("nurse-otp", organization, Role.CLINICIAN)
    go(browser, "/accounts/login/")
    audit.at_both_widths("sign-in")
    page.get_by_label("Username").fill("nurse-otp")
    page.get_by_label("Password").fill("not the password")
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    audit.at_both_widths("sign-in, refused")

    browser.log_in("nurse-otp", next_path="/")
    audit.at_both_widths("home")
    go(browser, "/accounts/otp/")
    audit.at_both_widths("second factor, enrol")

    user = make_user("nurse-with-code", organization, Role.CLINICIAN)
    TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    browser.context.clear_cookies()
    browser.log_in("nurse-with-code", next_path="/review/")
    assert "/accounts/otp/verify/" in page.url
    audit.at_both_widths("second factor, code")
    audit.assert_clean()


def test_the_review_pages_are_accessible(
    browser: BrowserSession, audit: Audit, review_data: ReviewData
) -> None:
    page = browser.page
    browser.log_in("dr-ward")
    audit.at_both_widths("review queue")
    go(browser, "/review/?patient=zzzzzzzz")
    assert page.locator("#queue-results tbody tr").count() == 0
    audit.at_both_widths("review queue, empty")

    problem = next(s for s in review_data.suggestions if s.model_id != "news2")
    go(browser, f"/review/suggestions/{problem.external_id}/")
    audit.at_both_widths("suggestion, problem list, pending")

    go(browser, f"/review/suggestions/{review_data.sample_news2.external_id}/")
    audit.at_both_widths("suggestion, NEWS2, pending")
    form = page.get_by_role("region", name="Your decision")
    form.get_by_label("Reject", exact=True).check()
    form.get_by_label("Your password").fill("not my password")
    with page.expect_navigation():
        form.get_by_role("button", name="Sign decision").click()
    assert page.get_by_role("alert").count() > 0
    audit.at_both_widths("suggestion, refused sign-off")

    go(browser, f"/review/suggestions/{review_data.second_news2.external_id}/")
    form = page.get_by_role("region", name="Your decision")
    form.get_by_label("Accept", exact=True).check()
    form.get_by_label("Your password").fill(PASSWORD)
    with page.expect_navigation():
        form.get_by_role("button", name="Sign decision").click()
    go(browser, f"/review/suggestions/{review_data.second_news2.external_id}/")
    assert page.get_by_role("region", name="Decision").count() == 1, "the decision was not signed"
    audit.at_both_widths("suggestion, decided")
    audit.assert_clean()


def test_the_audit_console_and_models_pages_are_accessible(
    browser: BrowserSession, audit: Audit, review_data: ReviewData, organization: Organization
) -> None:
    make_user("site-admin", organization, Role.ADMIN)
    make_user("auditor", organization, Role.AUDITOR)
    browser.log_in("auditor", next_path="/audit/")
    audit.at_both_widths("audit log")
    go(browser, "/audit/?action=zzz")
    audit.at_both_widths("audit log, no match")
    latest = AuditEvent.objects.order_by("-seq").first()
    assert latest is not None
    go(browser, f"/audit/events/{latest.seq}/")
    audit.at_both_widths("audit event")
    go(browser, f"/audit/patients/{review_data.sample_news2.patient_pseudonym}/")
    audit.at_both_widths("audit, patient timeline")
    go(browser, "/audit/")
    with browser.page.expect_navigation():
        browser.page.get_by_role("button", name="Verify chain").click()
    audit.at_both_widths("audit, chain check")

    browser.context.clear_cookies()
    browser.log_in("site-admin", next_path="/models/")
    audit.at_both_widths("models")
    for model_id in ("news2", "problem-list-gaps"):
        go(browser, f"/models/{model_id}/")
        audit.at_both_widths(f"model {model_id}")
    audit.assert_clean()
