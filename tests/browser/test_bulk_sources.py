"""The EHR sources page as a hospital admin sees it: a source pulled once for real (through the EHR stand-in),
another one mid-download, a file loaded on the server; the progress in words and bars, Pull now and its
polite refusal while a pull runs; screenshots at a ward PC's and a phone's width; axe-core when installed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from clinical_ai.accounts.models import Organization, Role
from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from clinical_ai.intake.bulk import BatchWriter, batch_open
from clinical_ai.intake.models import BulkBatch
from integrations.bulk.models import BulkExport, EhrSource
from integrations.bulk.services import export_request, export_run, source_create, source_jwks, source_switch
from tests.browser.conftest import CHROMIUM, WHY_SKIPPED, BrowserSession
from tests.browser.test_accessibility import AXE, Audit
from tests.bulk_data import ndjson_bytes, patient_bundle_paths, resources_by_type, shared_bundle_paths
from tests.ehr_standin import EhrStandIn, outcome
from tests.factories import make_organization
from tests.unit.review.conftest import make_user

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=WHY_SKIPPED),
    pytest.mark.django_db(transaction=True),
]

ACTOR = Actor.system("tests")


def _sources(organization: Organization) -> None:
    """st-epic pulled once, for real; st-lab-system mid-download; a file loaded by an admin on the server."""
    resources = resources_by_type(patient_bundle_paths(2) + shared_bundle_paths())
    with EhrStandIn(resources, client_id="gateway", client_jwks={"keys": []}) as ehr:
        epic = source_create(
            organization=organization, name="st-epic", fhir_base_url=ehr.base_url, client_id="gateway",
            actor=ACTOR, interval_minutes=1440,
        )  # fmt: skip
        ehr.client_jwks = source_jwks(epic)
        ehr.error_file_lines = [outcome("not-found"), outcome("not-found"), outcome("too-costly")]
        ehr.add_malformed_line("Observation", b'{"resourceType": "Observation", "id": ', at=3)
        export = export_request(source=epic, actor=ACTOR, requested_by="schedule", dispatch=False)
        finished = export_run(export_id=str(export.external_id), task_id="t", worker="w", actor=ACTOR)
        assert finished is not None and finished.status == BulkExport.Status.SUCCEEDED, finished
    lab = source_create(
        organization=organization, name="st-lab-system", fhir_base_url="https://lab.st-elsewhere.example/fhir",
        client_id="clinical-ai", actor=ACTOR, level="group", group_id="diabetes-clinic",
        resource_types=["Patient", "Observation", "DiagnosticReport"], interval_minutes=60,
    )  # fmt: skip
    running = export_request(source=lab, actor=ACTOR, requested_by="schedule", dispatch=False)
    batch = batch_open(organization=organization, origin=BulkBatch.Origin.EXPORT, label=lab.name, actor=ACTOR)
    BatchWriter(batch, actor=ACTOR).feed("Patient file 1", [ndjson_bytes(resources["Patient"])])
    BulkExport.objects.filter(pk=running.pk).update(
        status=BulkExport.Status.RUNNING,
        phase=BulkExport.Phase.DOWNLOADING,
        batch=batch,
        status_url="https://lab.st-elsewhere.example/bulkstatus/1",
        files=[
            {"kind": "output", "type": "Patient", "count": 2, "status": "done", "lines_done": 2, "bytes": 1},
            {"kind": "output", "type": "Observation", "count": 409, "status": "pending", "lines_done": 0,
             "bytes": 0},
            {"kind": "output", "type": "DiagnosticReport", "count": 123, "status": "pending", "lines_done": 0,
             "bytes": 0},
        ],
    )  # fmt: skip
    backfill = batch_open(
        organization=organization, origin=BulkBatch.Origin.FILE, label="backfill-2026-11.ndjson", actor=ACTOR
    )
    BatchWriter(backfill, actor=ACTOR).feed("backfill-2026-11.ndjson", [ndjson_bytes(resources["Condition"])])


def test_an_admin_follows_the_pulls_and_asks_for_one(
    browser: BrowserSession, organization: Organization, screenshots: Path, settings: Any
) -> None:
    from playwright.sync_api import expect

    settings.PUBLIC_BASE_URL = ""
    make_user("admin-abe", organization, Role.ADMIN, is_staff=True)
    other = make_organization("county-hospital", "County Hospital")
    source_create(
        organization=other, name="county-cerner", fhir_base_url="https://ehr.county.example/fhir",
        client_id="gw", actor=ACTOR,
    )  # fmt: skip
    _sources(organization)
    page = browser.page
    browser.log_in("admin-abe", next_path="/bulk/sources/")
    expect(page.get_by_role("heading", name="EHR sources", level=1)).to_be_visible()
    expect(page.get_by_role("link", name="EHR sources")).to_be_visible()  # in the menu
    expect(page.get_by_text("county-cerner")).to_have_count(0)

    epic = page.get_by_role("region", name="st-epic")
    expect(epic).to_contain_text("Every day")
    # No de-identification worker runs in this test: the files are in, the patients wait for it.
    expect(epic.get_by_role("status")).to_have_text(
        "Files stored. Preparing the patients' records: 0 of 2 done"
    )
    expect(epic).to_contain_text("0 of 2 patients prepared (0%)")
    expect(epic).to_contain_text("2 × the EHR reported: not-found")  # noqa: RUF001 - as shown
    expect(epic).to_contain_text("1 × not readable (not JSON)")  # noqa: RUF001
    expect(epic).to_contain_text("Patients prepared")
    jwks = epic.get_by_label("Key address for the EHR")
    expect(jwks).to_have_value(re.compile(r"^http://.+/bulk/sources/[0-9a-f-]{36}/jwks\.json$"))

    lab = page.get_by_role("region", name="st-lab-system")
    expect(lab.get_by_role("status")).to_have_text("Receiving and storing the files")
    expect(lab.locator("progress")).to_have_attribute("max", "534")
    expect(lab).to_contain_text("2 of 534 records received (0%)")
    expect(lab).to_contain_text(
        "The patients of group diabetes-clinic: Patient, Observation, DiagnosticReport"
    )
    expect(page.get_by_role("row", name=re.compile("backfill-2026-11.ndjson"))).to_contain_text("NDJSON file")
    if AXE.is_file():
        checker = Audit(page)
        checker.at_both_widths("EHR sources")
        checker.assert_clean()
    browser.screenshots_at_both(screenshots, "bulk-sources")

    # Pull now: asked for once; a second ask while it waits is refused, politely, and both are on record.
    with page.expect_navigation():
        epic.get_by_role("button", name="Pull now").click()
    expect(page.get_by_text("Pull from st-epic asked for; its progress shows below.")).to_be_visible()
    expect(page.get_by_role("region", name="st-epic").get_by_role("status")).to_have_text(
        "Waiting for a worker to start it"
    )
    with page.expect_navigation():
        page.get_by_role("region", name="st-epic").get_by_role("button", name="Pull now").click()
    expect(page.get_by_text("A pull from st-epic is already under way")).to_be_visible()
    browser.screenshots_at_both(screenshots, "bulk-sources-pull-refused")
    assert BulkExport.objects.filter(source__name="st-epic").count() == 2
    assert list(
        AuditEvent.objects.filter(action="bulk.export.request", actor_type="user").values_list(
            "outcome", flat=True
        )
    ) == ["success", "failure"]

    # Switched off on the server: the page says so and how to undo it, with no Pull now to press.
    source_switch(
        source=EhrSource.objects.get(name="st-epic"), enabled=False, actor=ACTOR, reason="contract ended"
    )
    page.reload()
    off = page.get_by_role("region", name=re.compile(r"^st-epic"))
    expect(off.get_by_role("heading", level=2)).to_have_text("st-epic (switched off)")
    expect(off).to_contain_text("Switched off: nothing is pulled from this source")
    expect(off).to_contain_text("python manage.py source_switch st-epic --on")
    expect(off.get_by_role("button", name="Pull now")).to_have_count(0)
    expect(off.get_by_role("button", name="Stop this pull")).to_have_count(0)  # the queued pull was stopped
    expect(off).to_contain_text("Cancelled: source switched off: contract ended")
    expect(off.get_by_label("Key address for the EHR")).to_have_count(0)  # it answers 404 now
    browser.screenshots_at_both(screenshots, "bulk-sources-switched-off")
    browser.assert_clean()
