"""An admin sends an NDJSON file from the EHR sources page in real Chromium: picks the file, sends it, reads
what became of it (lines read, records stored, the refused line by number) and finds the batch in the list;
screenshots at a ward PC's and a phone's width; axe-core when installed."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from clinical_ai.accounts.models import Organization, Role
from clinical_ai.audit.models import AuditEvent
from clinical_ai.intake.models import BulkBatch
from tests.browser.conftest import CHROMIUM, WHY_SKIPPED, BrowserSession
from tests.browser.test_accessibility import AXE, Audit
from tests.unit.review.conftest import make_user

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=WHY_SKIPPED),
    pytest.mark.django_db(transaction=True),
]


def _lines() -> bytes:
    resources: list[Any] = []
    for number in (1, 2):
        resources += [
            {"resourceType": "Patient", "id": f"p{number}", "name": [{"family": f"Doe{number}"}]},
            {"resourceType": "Observation", "id": f"o{number}", "status": "final",
             "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
             "subject": {"reference": f"Patient/p{number}"}},
        ]  # fmt: skip
    lines = [json.dumps(resource).encode() for resource in resources]
    lines.insert(2, b'{"resourceType": "Observation", "id": ')  # line 3: cut short
    return b"\n".join(lines) + b"\n"


def test_an_admin_sends_a_file_and_sees_what_became_of_it(
    browser: BrowserSession, organization: Organization, screenshots: Path, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    make_user("admin-abe", organization, Role.ADMIN, is_staff=True)
    ndjson = tmp_path / "ward-7-export.ndjson"
    ndjson.write_bytes(_lines())
    page = browser.page
    browser.log_in("admin-abe", next_path="/bulk/sources/")
    upload = page.get_by_role("region", name="Send an NDJSON file")
    expect(upload).to_contain_text("one FHIR R4 record per line")
    if AXE.is_file():
        checker = Audit(page)
        checker.at_both_widths("EHR sources")
        checker.assert_clean()
    upload.get_by_label("File").set_input_files(str(ndjson))
    with page.expect_navigation():
        upload.get_by_role("button", name="Send the file").click()
    expect(
        page.get_by_text(re.compile(r"^ward-7-export\.ndjson: 5 lines read, 4 records stored for 2 patients"))
    ).to_be_visible()
    expect(
        page.get_by_text(re.compile(r"1 line refused \(line 3: not readable \(not JSON\)\)"))
    ).to_be_visible()
    row = page.get_by_role("row", name=re.compile("File sent by admin-abe"))
    expect(row).to_contain_text("NDJSON file")
    expect(row).to_contain_text("0 of 2")
    browser.screenshots_at_both(screenshots, "bulk-upload-sent")
    batch = BulkBatch.objects.get()
    assert batch.organization == organization and batch.lines_refused == 1
    event = AuditEvent.objects.get(action="bulk.upload")
    assert event.outcome == "success" and "ward-7" not in json.dumps(event.detail)
    browser.assert_clean()
