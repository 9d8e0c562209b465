"""Issue 17 in the browser: "What drove this score" on the suggestion page, for a patient scored by the shipped
ED-visit example (fixtures/models/ed-visit-90d) itself, so the evidence is what the declarative model wrote.
A clinician reads every input in words by the size of its effect, the top 5 in view and the rest one click
away, with no model feature name; a patient without a birth date reads "cannot be scored: age is not
recorded"; a text classifier's weightiest sentences are quoted. axe-core finds no serious or critical
violation, and at 390 pixels nothing scrolls sideways. Screenshots at 1366x900 and 390x844.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone

from clinical_ai.accounts.models import Organization, Role
from clinical_ai.inference.engine.manifest import ModelManifest, manifest_load
from clinical_ai.inference.engine.types import Finding, PatientContext, SourceResource
from clinical_ai.inference.models import ModelDeployment
from clinical_ai.inference.registry import catalogue, model_loaded
from clinical_ai.review.models import Suggestion
from clinical_ai.vault.pseudonyms import date_shift_days
from clinical_ai.vault.services import pseudonym_key
from tests.browser.conftest import CHROMIUM, PHONE, WHY_SKIPPED, BrowserSession
from tests.unit.review.conftest import make_user, store_finding
from tests.unit.review.test_what_drove_this_score import text_finding

ROOT = Path(__file__).resolve().parents[2]
ED_VISIT_MANIFEST = ROOT / "fixtures" / "models" / "ed-visit-90d" / "manifest.json"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=WHY_SKIPPED),
    pytest.mark.skipif(
        not ED_VISIT_MANIFEST.exists(), reason="the ED-visit example model is not in fixtures/"
    ),
    pytest.mark.django_db(transaction=True),
]

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"


def shifted_now(pseudonym: str) -> datetime:
    """Yesterday in this patient's de-identified timeline: the dates the page shows undone to the real
    ones then read as recent, as they would on a ward."""
    shift = date_shift_days(key=pseudonym_key(), pseudonym=pseudonym)
    moment = timezone.now().astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment + timedelta(days=shift - 1)


def _encounter(as_of: datetime, klass: str, days_before: int) -> dict[str, Any]:
    start = as_of - timedelta(days=days_before)
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": ACT_CODE, "code": klass},
        "period": {"start": start.isoformat(), "end": (start + timedelta(hours=4)).isoformat()},
    }


def _condition(code: str, onset: str) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "code": {"coding": [{"system": SNOMED, "code": code}]},
        "onsetDateTime": onset,
    }


def patient_resources(as_of: datetime, *, birth_date: str | None = "1955-03-14") -> list[dict[str, Any]]:
    """A 71-year-old woman: two emergency visits and an admission in the year, diabetes and high blood
    pressure, three prescriptions lately, a weight but no BMI or blood pressure recorded."""
    patient: dict[str, Any] = {"resourceType": "Patient", "gender": "female"}
    if birth_date:
        patient["birthDate"] = birth_date
    prescriptions = [
        {
            "resourceType": "MedicationRequest",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"text": "a medicine"},
            "authoredOn": (as_of - timedelta(days=days)).date().isoformat(),
        }
        for days in (3, 30, 60)
    ]
    weight = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "29463-7"}]},
        "effectiveDateTime": (as_of - timedelta(days=40)).isoformat(),
        "valueQuantity": {"value": 81.5, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"},
    }
    return [
        patient,
        _encounter(as_of, "EMER", 0),
        _encounter(as_of, "EMER", 120),
        _encounter(as_of, "IMP", 119),
        _encounter(as_of, "AMB", 40),
        _condition("44054006", "2015-06-01"),
        _condition("59621000", "2012-02-10"),
        *prescriptions,
        weight,
    ]


def ed_visit_finding(manifest: ModelManifest, resources: list[dict[str, Any]]) -> Finding:
    """The shipped model's own finding for this patient (its evidence and explanation as it writes them)."""
    model, _ = model_loaded(manifest)
    context = PatientContext(
        patient_pseudonym="pt-ed",
        resources=tuple(SourceResource(ref=f"res-{i}", resource=r) for i, r in enumerate(resources)),
    )
    [result] = model.predict([context])
    [finding] = result.findings
    return finding


@pytest.fixture
def ed_visit(organization: Organization) -> tuple[ModelManifest, Suggestion, Suggestion]:
    """A clinician, the example model switched on, and two suggestions: one scored, one that cannot be."""
    make_user("dr-ward", organization, Role.CLINICIAN, first_name="Wanda", last_name="Ward")
    manifest = manifest_load(ED_VISIT_MANIFEST)
    ModelDeployment.objects.create(model_id=manifest.id, enabled=True)
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    scored = store_finding(
        organization,
        ed_visit_finding(manifest, patient_resources(shifted_now(first))),
        manifest,
        pseudonym=first,
    )
    not_scored = store_finding(
        organization,
        ed_visit_finding(manifest, patient_resources(shifted_now(second), birth_date=None)),
        manifest,
        pseudonym=second,
    )
    assert not_scored.completeness == "not_scored"
    return manifest, scored, not_scored


def _path(suggestion: Suggestion) -> str:
    return f"/review/suggestions/{suggestion.external_id}/"


def _assert_accessible(browser: BrowserSession) -> None:
    """axe-core as the accessibility tests run it: no serious or critical WCAG A/AA violation."""
    from tests.browser.test_accessibility import axe_run, describe

    serious = [v for v in axe_run(browser.page) if v["impact"] in ("serious", "critical")]
    assert serious == [], describe(serious)


def _assert_no_sideways_scroll_on_a_phone(browser: BrowserSession) -> None:
    before = browser.page.viewport_size
    browser.page.set_viewport_size(PHONE)
    width, window = browser.page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= window, f"the page is {width} px wide in a {window} px window"
    if before is not None:
        browser.page.set_viewport_size(before)


def _feature_names(manifest: ModelManifest) -> list[str]:
    """The model's own names for its inputs: never for a clinician's eyes (those with an underscore:
    "age" is a word of its label too)."""
    assert manifest.features is not None
    return [feature.name for feature in manifest.features.features if "_" in feature.name]


def test_a_clinician_reads_what_drove_the_score(
    browser: BrowserSession, ed_visit: tuple[ModelManifest, Suggestion, Suggestion], screenshots: Path
) -> None:
    from playwright.sync_api import expect

    manifest, scored, _ = ed_visit
    page = browser.page
    browser.log_in("dr-ward", next_path=_path(scored))
    section = page.locator("section.explained")
    expect(section.get_by_role("heading", name="What drove this score")).to_be_visible()
    expect(section).to_contain_text("The model's estimate for an average reference patient is")
    expect(section).to_contain_text("These show what the model weighed, not what causes the risk.")

    assert manifest.features is not None
    labels = [feature.label for feature in manifest.features.features]
    top = section.locator("table.drivers").first.locator("tbody tr")
    expect(top).to_have_count(5)
    expect(top.first).to_be_visible()
    # The order is the model's own: by the size of each contribution, largest first.
    contributions = scored_contributions(scored)
    shown = [row.split(". ", 1)[1] for row in top.locator("th").all_inner_texts()]
    assert shown == [label for label, _ in contributions[:5]]
    for row, (_, contribution) in zip(top.all(), contributions[:5], strict=True):
        said = (
            "raised the risk"
            if contribution > 0
            else "lowered the risk"
            if contribution < 0
            else "made no difference"
        )
        expect(row).to_contain_text(said)

    more = section.locator("details.more-drivers")
    expect(more.locator("summary")).to_have_text(
        f"All {len(labels)} inputs: {len(labels) - 5} more, with smaller effects"
    )
    rest = more.locator("tbody tr")
    expect(rest.first).to_be_hidden()
    _assert_accessible(browser)
    _assert_no_sideways_scroll_on_a_phone(browser)
    browser.screenshots_at_both(screenshots, "review-what-drove-this-score")

    more.locator("summary").click()
    expect(rest).to_have_count(len(labels) - 5)
    expect(rest.first).to_be_visible()
    body = page.locator("body").inner_text()
    assert "not recorded — the model used 125 mmHg" in body  # the blood pressure: imputed, and said so
    assert "2 visits, last 12 months" in body
    for name in _feature_names(manifest):
        assert name not in body
    assert "log-odds" not in body and "tree_shap" not in body
    _assert_accessible(browser)
    _assert_no_sideways_scroll_on_a_phone(browser)
    browser.screenshots_at_both(screenshots, "review-what-drove-all-inputs")
    browser.assert_clean()


def scored_contributions(suggestion: Suggestion) -> list[tuple[str, float]]:
    """(label, contribution) as the model stored them, by size, largest first."""
    from clinical_ai.review.services import suggestion_payload

    evidence = suggestion_payload(suggestion)["evidence"]
    items = [(item["label"], item["contribution"]) for item in evidence["explanation"]["contributions"]]
    return sorted(items, key=lambda pair: -abs(pair[1]))


def test_a_patient_without_a_birth_date_reads_cannot_be_scored(
    browser: BrowserSession, ed_visit: tuple[ModelManifest, Suggestion, Suggestion], screenshots: Path
) -> None:
    from playwright.sync_api import expect

    manifest, _, not_scored = ed_visit
    page = browser.page
    browser.log_in("dr-ward", next_path=_path(not_scored))
    expect(page.locator(".notice.bad").first).to_contain_text("Cannot be scored: age is not recorded.")
    expect(page.locator("section.explained")).to_have_count(0)
    basis = page.locator("section[aria-labelledby=basis-heading]")
    expect(basis).to_contain_text("this is not a low risk")  # the model's own clinical response
    expect(basis).not_to_contain_text("Estimated risk")
    body = page.locator("body").inner_text()
    for name in _feature_names(manifest):
        assert name not in body
    _assert_accessible(browser)
    _assert_no_sideways_scroll_on_a_phone(browser)
    browser.screenshots_at_both(screenshots, "review-what-drove-cannot-be-scored")
    browser.assert_clean()


def readmission_manifest(folder: Path) -> ModelManifest:
    """A hospital's note classifier as its manifest declares it (the page reads the card from the catalogue;
    the checkpoint itself is not needed to show a stored result)."""
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "id": "readmission-30d",
        "version": "1.0.0",
        "name": "Readmission within 30 days (test)",
        "kind": "text_classifier",
        "artifacts": [{"name": "weights", "path": "checkpoint/model.safetensors", "sha256": "0" * 64}],
        "text": {"resourceTypes": ["DocumentReference"], "window": "P30D", "select": "all"},
        "parameters": {"positive_label": "readmitted"},
        "outputs": {"outcome": "an unplanned readmission within 30 days of discharge"},
        "thresholds": {"warning": 0.2, "critical": 0.6},
        "card": {
            "clinical_summary": "A test note classifier: reads the discharge notes of the last 30 days and "
            "estimates the chance of a readmission. Not for care.",
            "intended_use": "Tests of the review page.",
            "intended_users": "Developers.",
            "development": "None: a test fixture.",
            "validation": {"summary": "Not validated.", "figures": []},
            "limitations": ["A test fixture, not a model."],
            "explanation_method": "Each sentence is left out in turn and the notes scored again: the drop "
            "in the estimate is that sentence's weight. It shows what the model reacts to, not causes.",
        },
    }
    path = folder / "manifest.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return manifest_load(path)


def test_a_text_classifier_quotes_the_sentences_that_weigh_most(
    browser: BrowserSession, organization: Organization, screenshots: Path, tmp_path: Path, settings: Any
) -> None:
    from playwright.sync_api import expect

    manifest = readmission_manifest(tmp_path / "models" / "readmission-30d")
    settings.INFERENCE_MODEL_DIRS = [tmp_path / "models"]
    catalogue.cache_clear()
    make_user("dr-ward", organization, Role.CLINICIAN, first_name="Wanda", last_name="Ward")
    suggestion = store_finding(organization, text_finding(), manifest, pseudonym=uuid.uuid4().hex)
    page = browser.page
    browser.log_in("dr-ward", next_path=_path(suggestion))
    section = page.locator("section.explained")
    expect(section.get_by_role("heading", name="Sentences that weigh most")).to_be_visible()
    expect(section.locator("blockquote").first).to_have_text("Two falls at home this month.")
    expect(section).to_contain_text("Raised the estimate: leaving it out lowers it by 12 percentage points.")
    _assert_accessible(browser)
    _assert_no_sideways_scroll_on_a_phone(browser)
    expect(page.locator(".model-card")).to_contain_text("Readmission within 30 days (test)")
    browser.screenshots_at_both(screenshots, "review-sentences-that-weigh-most")
    browser.assert_clean()
    catalogue.cache_clear()
