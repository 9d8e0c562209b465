"""Launch from the EHR in a real browser: Chromium follows the EHR stand-in's launch
(``/launch?iss=...&launch=...``), the EHR's authorization server (``smart_ehr``) and the callback, and ends on
the review page of the patient open in the EHR, signed in as the clinician their ``fhirUser`` is linked to.
A practitioner nobody linked gets a plain refusal page. The patients come from the real pipeline; the EHR's
``Patient/<id>`` reaches the pseudonym through the vault's reference index.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from tests.browser.conftest import CHROMIUM, WHY_SKIPPED, BrowserSession, second_patient_bundle

if not CHROMIUM.exists():
    pytest.skip(WHY_SKIPPED, allow_module_level=True)

from playwright.sync_api import expect

from clinical_ai.accounts.models import ExternalIdentity, Organization, Role
from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from integrations.smart.launch_services import launch_issuer_register
from tests.ehr_launch import EhrLaunchStandIn
from tests.factories import EhrIdentity, sample_bundle
from tests.pipeline import bundle_process
from tests.unit.review.conftest import make_user

pytestmark = pytest.mark.browser

EHR_PATIENT_ID = "pt-4471"  # the EHR's own id of the sample bundle's patient
PRACTITIONER = "Practitioner/wanda-ward"


def _bundle_with_patient_id() -> dict[str, Any]:
    bundle = sample_bundle()
    for entry in bundle["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            entry["resource"]["id"] = EHR_PATIENT_ID
    return bundle


def test_a_clinician_arrives_from_the_ehr_on_the_patients_review_page(
    browser: BrowserSession,
    smart_ehr: EhrLaunchStandIn,
    client: Client,
    ehr_client: EhrIdentity,
    organization: Organization,
    screenshots: Path,
) -> None:
    clinician = make_user("dr-ward", organization, Role.CLINICIAN, first_name="Wanda", last_name="Ward")
    theirs = bundle_process(client, ehr_client, _bundle_with_patient_id())
    others = bundle_process(client, ehr_client, second_patient_bundle())
    assert theirs and others
    smart_ehr.register_client("clinical-ai", [browser.url("/launch/callback")])
    launch_issuer_register(
        organization=organization,
        iss=smart_ehr.fhir_base,
        client_id="clinical-ai",
        actor=Actor.system("tests"),
    )
    ExternalIdentity.objects.create(user=clinician, issuer=smart_ehr.fhir_base, subject=PRACTITIONER)
    browser.allow_origin(smart_ehr.base_url)
    page = browser.page

    # A practitioner nobody linked to a clinical-ai account: refused, in plain words.
    launch = smart_ehr.new_launch(patient=EHR_PATIENT_ID, fhir_user="Practitioner/locum-17")
    page.goto(smart_ehr.launch_url(browser.url("/launch"), launch))
    expect(page.get_by_role("heading", level=1)).to_have_text("Your EHR account is not linked to clinical-ai")
    expect(page.get_by_role("alert")).to_contain_text("you were not signed in")
    expect(page.locator("main code")).to_have_text("Practitioner/locum-17")
    expect(page.get_by_role("link", name="Sign in to clinical-ai directly")).to_be_visible()
    assert page.url.startswith(browser.url("/launch/callback"))
    browser.screenshots_at_both(screenshots, "ehr-launch-refused")

    # The linked clinician, from the same patient's record.
    launch = smart_ehr.new_launch(patient=EHR_PATIENT_ID, fhir_user=PRACTITIONER)
    page.goto(smart_ehr.launch_url(browser.url("/launch"), launch))
    pseudonym = theirs[0].patient_pseudonym
    expect(page).to_have_url(browser.url(f"/review/?patient={pseudonym}"))
    expect(page.locator("header .who")).to_contain_text("Signed in as dr-ward")
    pending = [s for s in theirs if s.status == "pending"]
    expect(page.get_by_role("status").first).to_contain_text(
        f"Opened from the EHR for this patient: {len(pending)} suggestion"
    )
    rows = page.locator("#queue-results tbody tr")
    expect(rows).to_have_count(len(pending))
    # Only this patient: the other patient's suggestions are not on the page.
    for suggestion in others:
        expect(page.locator(f'a[href*="{suggestion.external_id}"]')).to_have_count(0)
    browser.screenshots_at_both(screenshots, "ehr-launch-landing")
    browser.assert_clean()

    launched = AuditEvent.objects.get(action="auth.launch")
    assert launched.actor_id == str(clinician.pk) and launched.patient_pseudonym == pseudonym
    assert AuditEvent.objects.get(action="auth.launch_failed").detail["reason"] == "unknown-user"
