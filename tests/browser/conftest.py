"""Browser tests: Debian's Chromium, driven by Playwright, against pytest-django's live server.

The test modules here are marked ``browser`` and skip themselves, with the reason, where
/usr/bin/chromium is absent (Playwright's own browser downloads are never used). Nothing may leave the
machine: the browser resolves no host name but localhost, every request not addressed to the live server
is aborted and recorded, and each test asserts that none was made (``BrowserSession.assert_clean``).

The data is made by the real pipeline: the sample bundle posted by our EHR, de-identified and scored in
process (``tests.pipeline.bundle_process``), plus a second, less ill patient.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from django.db import connection, connections, transaction
from django.test import Client

from clinical_ai.accounts.models import Organization, Role
from clinical_ai.audit.models import AuditPurgePermit
from clinical_ai.review.models import Suggestion
from tests.factories import ROOT, EhrIdentity, sample_bundle
from tests.pipeline import bundle_process
from tests.unit.review.conftest import PASSWORD, make_user

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Page, Response, Route, ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
WHY_SKIPPED = f"browser tests drive Debian's Chromium, and {CHROMIUM} is absent"
# The default window: a ward PC's 1366x900 screen (issue 15: the decision must be on the first screen there).
WIDTH = 1366
HEIGHT = 900
WARD_PC: ViewportSize = {"width": WIDTH, "height": HEIGHT}
PHONE: ViewportSize = {"width": 390, "height": 844}
WARD_TABLET: ViewportSize = {"width": 820, "height": 1180}
_EVERY_SEQ = 2**62

SECOND_PATIENT_NAME = ("Tomasz", "Brennan-Achebe")
SECOND_PATIENT_MRN = "5582-3301"
# The second patient's vital signs: NEWS2 5 (respiratory rate 22: 2, SpO2 95 %: 1, systolic 108: 1,
# pulse 95: 1, temperature 37.4 °C: 0), the "medium" band, which the manifest makes a warning.
SECOND_PATIENT_VITALS = {"9279-1": 22, "59408-5": 95, "8480-6": 108, "8867-4": 95, "8310-5": 99.3}


def _set_vital(resource: dict[str, Any], values: dict[str, float]) -> None:
    codes = [coding["code"] for coding in resource.get("code", {}).get("coding", [])]
    for code in codes:
        if code in values and "valueQuantity" in resource:
            resource["valueQuantity"]["value"] = values[code]
    for component in resource.get("component", []):
        for coding in component.get("code", {}).get("coding", []):
            if coding["code"] in values:
                component["valueQuantity"]["value"] = values[coding["code"]]


def second_patient_bundle() -> dict[str, Any]:
    """The sample bundle as another patient: a new bundle identifier and full URLs; another MRN, name,
    birth date and contact details, in the Patient and in the nurse's note; calmer vital signs."""
    given, family = SECOND_PATIENT_NAME
    original = sample_bundle()
    text = json.dumps(original)
    for entry in original["entry"]:  # fresh urn:uuid full URLs, and the references to them
        text = text.replace(entry["fullUrl"], f"urn:uuid:{uuid.uuid4()}")
    bundle: dict[str, Any] = json.loads(text)
    bundle["identifier"]["value"] = f"urn:uuid:{uuid.uuid4()}"  # the EHR's idempotency key: a new bundle
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            resource["identifier"][0]["value"] = SECOND_PATIENT_MRN
            resource["name"] = [{"use": "official", "family": family, "given": [given]}]
            resource["birthDate"] = "1948-07-02"
            resource["gender"] = "male"
            resource["telecom"] = [{"system": "phone", "value": "023 9261 7715", "use": "home"}]
            resource["address"][0]["line"] = ["4 Quay Lane"]
        elif resource["resourceType"] == "Observation":
            _set_vital(resource, SECOND_PATIENT_VITALS)
        elif resource["resourceType"] == "DocumentReference":
            attachment = resource["content"][0]["attachment"]
            note = base64.b64decode(attachment["data"]).decode("utf-8")
            note = (
                note.replace("Margaret Okafor-Lindqvist", f"{given} {family}")
                .replace("4471-2290", SECOND_PATIENT_MRN)
                .replace("12 Harbour View Road", "4 Quay Lane")
                .replace("67 years old", "78 years old")
                .replace("023 9261 4408", "023 9261 7716")
                .replace(" she ", " he ")
            )
            attachment["data"] = base64.b64encode(note.encode("utf-8")).decode("ascii")
    return bundle


@dataclass(frozen=True)
class ReviewData:
    clinician: Any
    sample_news2: Suggestion  # Margaret Okafor-Lindqvist: NEWS2 >= 9 (2 of 7 missing), critical
    second_news2: Suggestion  # Tomasz Brennan-Achebe: NEWS2 >= 5 (the same 2 missing), warning
    suggestions: list[Suggestion]  # every suggestion the two bundles made, problem-list ones included


@pytest.fixture
def review_data(client: Client, ehr_client: EhrIdentity, organization: Organization) -> ReviewData:
    """A clinician of our site and the suggestions the real pipeline made from two patients' bundles."""
    clinician = make_user("dr-ward", organization, Role.CLINICIAN, first_name="Wanda", last_name="Ward")
    first = bundle_process(client, ehr_client)
    second = bundle_process(client, ehr_client, second_patient_bundle())
    [sample_news2] = [s for s in first if s.model_id == "news2"]
    [second_news2] = [s for s in second if s.model_id == "news2"]
    return ReviewData(clinician, sample_news2, second_news2, [*first, *second])


@dataclass
class BrowserSession:
    """One Chromium profile confined to the live server, with the page the test drives."""

    context: BrowserContext
    page: Page
    base_url: str
    blocked: list[str] = field(default_factory=list)  # requests aborted: not to the live server
    problems: list[str] = field(default_factory=list)  # script errors, failed scripts and fetches
    # The origins the browser may reach: the live server's, and loopback servers the test started and allowed
    # (the test identity provider, the EHR stand-in).
    allowed_origins: list[str] = field(default_factory=list)

    def allow_origin(self, origin: str) -> None:
        """Let the browser reach ``origin`` too (``http://127.0.0.1:PORT`` of a server the test started);
        every other request stays blocked."""
        split = urlsplit(origin)
        if split.hostname not in ("127.0.0.1", "localhost") or split.path not in ("", "/"):
            raise ValueError(f"only a loopback origin may be allowed, not {origin!r}")
        self.allowed_origins.append(f"{split.scheme}://{split.netloc}")

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def log_in(self, username: str, password: str = PASSWORD, next_path: str = "/review/") -> None:
        """Through the sign-in form, as a person would."""
        self.page.goto(self.url(f"/accounts/login/?next={next_path}"))
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(password)
        with self.page.expect_navigation():
            self.page.get_by_role("button", name="Sign in").click()

    def screenshot(self, path: Path) -> None:
        """The whole page, as wide as the window (the ward PC's 1366 pixels unless the test changed it)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")

    def screenshots_at_both(self, folder: Path, name: str) -> None:
        """The whole page at a ward PC's size and a phone's, as ``NAME-1366.png`` and ``NAME-390.png`` in
        ``folder`` (the ``screenshots`` fixture); the window is then set back as it was."""
        before = self.page.viewport_size
        for size in (WARD_PC, PHONE):
            self.page.set_viewport_size(size)
            self.screenshot(folder / f"{name}-{size['width']}.png")
        if before is not None:
            self.page.set_viewport_size(before)

    def assert_clean(self) -> None:
        assert self.blocked == [], f"the browser tried to reach beyond the live server: {self.blocked}"
        assert self.problems == [], f"script errors or failed requests: {self.problems}"


def _note_failure(response: Response, problems: list[str]) -> None:
    """A script, style sheet or fetch that failed leaves a broken page, whatever the page's own status
    (a refused sign-off is rightly a 400 page)."""
    request = response.request
    if response.status >= 400 and request.resource_type != "document":
        problems.append(f"{response.status} {request.method} {request.url}")


def _audit_rows_cleared_for_the_flush() -> None:
    """The flush that ends a live-server test is row-by-row DELETEs on SQLite, which the audit table's
    append-only trigger refuses; delete its rows first the one way the trigger allows, the purge permit
    opened and closed again in one transaction. PostgreSQL flushes with TRUNCATE, which the trigger does
    not see."""
    if connection.vendor != "sqlite":
        return
    with transaction.atomic(), connection.cursor() as cursor:
        AuditPurgePermit.objects.filter(pk=1).update(below_seq=_EVERY_SEQ)
        cursor.execute("DELETE FROM audit_auditevent")
        AuditPurgePermit.objects.filter(pk=1).update(below_seq=0)


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the tests' screenshots go: docs/screenshots with UPDATE_SCREENSHOTS=1 (to refresh the
    documentation's), else the test's temporary folder, so a plain run leaves the checkout alone."""
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        return ROOT / "docs" / "screenshots"
    return tmp_path / "screenshots"


@pytest.fixture
def browser(live_server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[BrowserSession]:
    """A fresh headless Chromium profile (under tmp_path) with one page, a ward PC's 1366x900 window."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an asyncio loop in this thread, and Django's ORM refuses to run in a
    # thread with a running loop. The ORM calls made meanwhile are the tests' own synchronous set-up and
    # checks, so tell Django they are safe; for these tests only (the variable is read at each call).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    base_url = str(live_server.url)
    blocked: list[str] = []
    problems: list[str] = []
    allowed_origins = [base_url]  # BrowserSession.allow_origin adds to it

    def confine(route: Route) -> None:
        url = route.request.url
        if any(url == origin or url.startswith(f"{origin}/") for origin in allowed_origins):
            route.continue_()
        else:
            blocked.append(url)
            route.abort("blockedbyclient")

    playwright = sync_playwright().start()
    try:
        context = playwright.chromium.launch_persistent_context(
            user_data_dir=str(tmp_path / "profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            viewport=WARD_PC,
            locale="en-GB",
            timezone_id="UTC",
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-sync",
                "--no-first-run",
                "--no-pings",
                # No name resolves but localhost (and the loopback address, where allow_origin's servers
                # listen): nothing the page or Chromium itself asks for can leave.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
            ],
        )
        context.route("**/*", confine)
        context.on("weberror", lambda error: problems.append(f"script error: {error.error}"))
        context.on("response", lambda response: _note_failure(response, problems))
        context.set_default_timeout(15_000)
        page = context.pages[0] if context.pages else context.new_page()
        yield BrowserSession(context, page, base_url, blocked, problems, allowed_origins)
        context.close()
    finally:
        # While the loop runs, Django keeps this thread's connections per context (asgiref's Local), so
        # the ORM calls made meanwhile opened a connection of their own: close it before the loop stops
        # hiding it, or it outlives the test and blocks dropping the test database.
        connections.close_all()
        playwright.stop()
        _audit_rows_cleared_for_the_flush()
