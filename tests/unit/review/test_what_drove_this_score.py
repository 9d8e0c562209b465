"""Bring your own model, on the suggestion page (issue 17): "What drove this score" for a declarative
model's risk, as a clinician reads it. Every input by the size of its contribution, in words (never the
model's feature names), raised or lowered, an imputed value marked as not recorded, its newest record in the
page's time convention and its source count; the top 5 shown, the rest behind "All N inputs". A text
classifier's weightiest sentences; a finding that cannot be scored names what is missing. Evidence of odd
shapes never breaks the page."""

from __future__ import annotations

import functools
import html
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from clinical_ai.accounts.models import Organization
from clinical_ai.inference.engine.manifest import ModelManifest, manifest_parse
from clinical_ai.inference.engine.types import Finding
from clinical_ai.inference.registry import catalogue
from clinical_ai.review.models import Suggestion
from clinical_ai.review.selectors.basis import risk_basis
from clinical_ai.review.selectors.explanation import feature_value_text, percent_text
from clinical_ai.vault.pseudonyms import date_shift_days
from clinical_ai.vault.services import pseudonym_key
from tests.unit.review.conftest import PATIENT, store_finding
from tests.unit.review.findings import TEST_CARD

MODEL_ID = "test-ed-visits"
ENCOUNTER_TIME = "2026-10-02T10:00:00+00:00"  # shifted, as the de-identified copy holds it
MEDICATION_DATE = "2026-09-14"

# (name, label, extra evidence keys, contribution); given out of order: the page sorts them.
FEATURES: list[tuple[str, str, dict[str, Any], float]] = [
    (
        "sbp_mean_1y",
        "mean systolic blood pressure, last year",
        {
            "status": "imputed",
            "value": None,
            "imputed": 125.0,
            "unit": "mm[Hg]",
            "aggregate": "mean",
            "window": "last 1 year",
            "resourceType": "Observation",
            "refs": [],
        },
        -0.02,
    ),
    (
        "ed_visits_12m",
        "emergency visits, last 12 months",
        {
            "value": 2.0,
            "aggregate": "count",
            "window": "last 1 year",
            "resourceType": "Encounter",
            "refs": ["enc-1", "enc-2"],
            "effective": ENCOUNTER_TIME,
        },
        0.84,
    ),
    (
        "female",
        "female sex",
        {
            "source": "sex",
            "aggregate": "sex",
            "value": 1.0,
            "window": "at prediction time",
            "resourceType": "Patient",
        },
        -0.05,
    ),
    (
        "age",
        "age",
        {"source": "age", "aggregate": "age", "value": 67.0, "unit": "a", "window": "at prediction time"},
        0.41,
    ),
    (
        "days_since_visit",
        "days since the last visit",
        {
            "value": 45.0,
            "unit": "d",
            "aggregate": "time_since",
            "resourceType": "Encounter",
            "refs": ["enc-2"],
            "effective": ENCOUNTER_TIME,
        },
        -0.30,
    ),
    (
        "on_anticoagulant",
        "anticoagulant prescribed, last 90 days",
        {
            "value": 1.0,
            "aggregate": "present",
            "window": "last 90 days",
            "resourceType": "MedicationRequest",
            "refs": ["med-1"],
            "effective": MEDICATION_DATE,
        },
        0.22,
    ),
    (
        "hba1c_latest",
        "latest HbA1c",
        {
            "value": 7.9,
            "unit": "%",
            "aggregate": "latest",
            "window": "last 1 year",
            "resourceType": "Observation",
            "refs": ["obs-1"],
            "effective": ENCOUNTER_TIME,
        },
        0.10,
    ),
    (
        "admissions_all",
        "hospital admissions, all history",
        {
            "value": 0.0,
            "aggregate": "count",
            "window": "all history",
            "resourceType": "Encounter",
            "refs": [],
        },
        -0.12,
    ),
]
RAW_NAMES = [name for name, *_ in FEATURES if "_" in name]  # "age" and "female" are words of labels too
# Largest |contribution| first.
ORDER = [
    "emergency visits, last 12 months",
    "age",
    "days since the last visit",
    "anticoagulant prescribed, last 90 days",
    "hospital admissions, all history",
    "latest HbA1c",
    "female sex",
    "mean systolic blood pressure, last year",
]


@functools.cache
def ed_manifest() -> ModelManifest:
    return manifest_parse(
        {
            "id": MODEL_ID,
            "version": "1.0.0",
            "name": "Emergency visit within 90 days (test)",
            "kind": "rules",
            "entrypoint": "tests.unit.review.test_what_drove_this_score:ed_manifest",
            "artifacts": [],
            "inputs": [],
            "thresholds": {"warning": 0.2, "critical": 0.5},
            "card": TEST_CARD,
        },
        source=Path("test-ed-visits.json"),
        sha256="0" * 64,
    )


def _parameter(name: str, label: str, extra: dict[str, Any]) -> dict[str, Any]:
    parameter: dict[str, Any] = {
        "name": name,
        "label": label,
        "source": "resource",
        "status": "scored",
        "unit": "",
        "effective": None,
        "ref": None,
        "refs": [],
        "resourceType": "Patient",
        "required": False,
    }
    parameter.update(extra)
    if parameter.get("refs"):
        parameter["ref"] = parameter["refs"][0]
    return parameter


def explained_evidence() -> dict[str, Any]:
    """A declarative tabular model's evidence as builtin/declarative.py writes it (docs/models.md): an input
    not recorded makes the result "not complete" but still a probability, never a lower bound."""
    parameters = [_parameter(name, label, extra) for name, label, extra, _ in FEATURES]
    contributions = [
        {
            key: parameter[key]
            for key in (
                "name",
                "label",
                "value",
                "unit",
                "status",
                "window",
                "refs",
                "resourceType",
                "effective",
            )
            if key in parameter
        }
        | {"contribution": contribution}
        for parameter, (*_, contribution) in zip(parameters, FEATURES, strict=True)
    ]
    return {
        "parameters": parameters,
        "missing": [],
        "imputed": ["sbp_mean_1y"],
        "stale": [],
        "complete": False,
        "probability": 0.23,
        "band": "medium",
        "thresholds": {"warning": 0.2, "critical": 0.5},
        "as_of": ENCOUNTER_TIME,
        "explanation": {
            "method": "tree_shap_interventional",
            "method_text": "exact Shapley values for this tree model (TreeSHAP), against reference patients",
            "output_space": "log-odds",
            "base_value": -2.09,
            "output_value": -1.21,
            "base_probability": 0.11,
            "references": 32,
            "contributions": contributions,
        },
    }


def explained_finding(evidence: dict[str, Any] | None = None) -> Finding:
    return Finding(
        key="risk",
        kind="risk",
        urgency="warning",
        summary="Emergency visit within 90 days: 23% (medium risk)",
        evidence=evidence if evidence is not None else explained_evidence(),
        score=0.23,
        risk={
            "band": "medium",
            "score": 0.23,
            "probability": 0.23,
            "qualitative_risk": "moderate",
            "outcome": "Emergency visit within 90 days",
        },
        missing_inputs=("mean systolic blood pressure, last year",),
    )


def not_scored_finding() -> Finding:
    parameters = [_parameter(name, label, extra) for name, label, extra, _ in FEATURES]
    for parameter in parameters:
        if parameter["name"] == "days_since_visit":
            parameter.update(status="missing", value=None, refs=[], required=True)
            parameter.pop("effective")
            parameter.pop("ref")
    return Finding(
        key="risk",
        kind="risk",
        urgency="info",
        summary="Emergency visit within 90 days cannot be scored: days since the last visit not recorded",
        evidence={
            "parameters": parameters,
            "missing": ["days_since_visit"],
            "stale": [],
            "complete": False,
            "completeness": "not_scored",
            "clinical_response": "Not enough recorded for this model: this is not a low risk.",
        },
        risk={"outcome": "Emergency visit within 90 days"},
        completeness="not_scored",
        missing_inputs=("days since the last visit",),
    )


SENTENCES = [
    ("Two falls at home this month.", 0.12),
    ("Lives alone.", 0.03),
    ("Walks with a frame.", -0.04),
]


def text_finding() -> Finding:
    return Finding(
        key="risk",
        kind="risk",
        urgency="warning",
        summary="Readmission within 30 days: 31%",
        evidence={
            "probability": 0.31,
            "band": "medium",
            "thresholds": {"warning": 0.2},
            "as_of": "2026-10-02",
            "notes": [
                {"ref": "doc-1", "effective": "2026-10-02"},
                {"ref": "doc-2", "effective": "2026-09-20"},
            ],
            "explanation": {
                "method": "sentence_occlusion",
                "output_space": "probability",
                "base_value": 0.31,
                "output_value": 0.31,
                "sentences": [
                    {"ref": "doc-1", "text": text, "weight": weight, "effective": "2026-10-02"}
                    for text, weight in SENTENCES
                ],
            },
        },
        score=0.31,
        risk={"band": "medium", "probability": 0.31},
    )


def url(suggestion: Suggestion) -> str:
    return f"/review/suggestions/{suggestion.external_id}/"


def section(page: str, heading_id: str) -> str:
    start = page.index(f'id="{heading_id}"')
    return page[start : page.index("</section>", start)]


def row_labels(html: str) -> list[str]:
    return [
        re.sub(r"\s+", " ", label).strip()
        for label in re.findall(r'<th scope="row"><span class="rank">\d+\.</span>(.*?)</th>', html)
    ]


def real_date(shifted: str, suggestion: Suggestion) -> str:
    shift = date_shift_days(key=pseudonym_key(), pseudonym=suggestion.patient_pseudonym)
    return (date.fromisoformat(shifted[:10]) - timedelta(days=shift)).isoformat()


@pytest.fixture
def explained(organization: Organization) -> Suggestion:
    return store_finding(organization, explained_finding(), ed_manifest())


# --- without a database: the values in words -----------------------------------------------------


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (
            {"aggregate": "count", "value": 2, "resourceType": "Encounter", "window": "last 1 year"},
            "2 visits, last 12 months",
        ),
        (
            {"aggregate": "count", "value": 1, "resourceType": "Condition", "window": "all history"},
            "1 diagnosis, all history",
        ),
        ({"aggregate": "present", "value": 0, "window": "last 90 days"}, "no, last 90 days"),
        ({"aggregate": "time_since", "value": 45, "unit": "d"}, "45 days"),
        ({"aggregate": "time_since", "value": 0, "unit": "d", "window": "all history"}, "0 days"),
        ({"aggregate": "latest", "value": 81.5, "unit": "kg", "window": "all history"}, "81.5 kg"),
        (
            {"aggregate": "count", "value": 3, "resourceType": "Procedure", "window": "last 7 days"},
            "3 procedures, last 7 days",
        ),
        (
            {"aggregate": "mean", "value": 131.6667, "unit": "mm[Hg]", "window": "last 1 year"},
            "132 mmHg, last 12 months",
        ),
        (
            {"aggregate": "latest", "value": 7.25, "unit": "%", "window": "last 30 days"},
            "7.25 %, last 30 days",
        ),
        (
            {"aggregate": "slope", "value": -1.5, "unit": "mm[Hg]/d", "window": "last 1 year"},
            "change of -1.5 mmHg per day, last 12 months",
        ),
        ({"aggregate": "slope", "value": 0.25, "unit": "1/h"}, "change of +0.25 per hour"),
        (
            {"source": "age", "aggregate": "age", "value": 67, "unit": "a", "window": "at prediction time"},
            "67 years",
        ),
        ({"source": "sex", "aggregate": "sex", "value": 0.0}, "no"),
        ({"source": "sex", "value": 1, "window": "at prediction time"}, "yes"),
        (
            {"status": "imputed", "aggregate": "mean", "value": None, "imputed": 125, "unit": "mm[Hg]"},
            "not recorded — the model used 125 mmHg",
        ),
        ({"status": "missing", "aggregate": "time_since", "value": None}, "not recorded"),
        ({"aggregate": "count", "value": "two", "window": {"odd": 1}}, "two"),
        ({"aggregate": "count", "value": None}, "—"),
    ],
)
def test_a_features_value_reads_in_words_with_its_unit_and_window(
    item: dict[str, Any], expected: str
) -> None:
    assert feature_value_text(item).text == expected


@pytest.mark.parametrize(
    ("probability", "expected"),
    [
        (0.23, "23%"),
        (0.005, "0.5%"),
        (0.0004, "under 0.1%"),
        (0.9995, "over 99.9%"),
        (0.105, "10.5%"),
        (0.0678, "6.8%"),
        (1.0, "100%"),
        (1.5, ""),
        (None, ""),
    ],
)
def test_a_probability_reads_as_a_percentage(probability: float | None, expected: str) -> None:
    assert percent_text(probability) == expected


def test_the_drivers_are_ordered_by_size_with_bars_against_the_largest() -> None:
    basis = risk_basis(explained_evidence(), {"probability": 0.23})
    drivers = basis.drivers
    assert drivers is not None
    assert [row.label for row in drivers.rows] == ORDER
    assert [row.size for row in drivers.rows] == [100, 49, 36, 26, 14, 12, 6, 2]
    assert [row.direction for row in drivers.rows[:3]] == ["raised", "raised", "lowered"]
    assert (drivers.probability, drivers.base_probability, drivers.references) == ("23%", "11%", 32)
    assert len(drivers.top) == 5 and len(drivers.rest) == 3
    assert basis.imputed == ["mean systolic blood pressure, last year"]
    assert basis.missing == [] and basis.probability == "23%"
    assert basis.thresholds == [("Warning", "20%"), ("Critical", "50%")]


@pytest.mark.parametrize(
    "evidence",
    [
        {"explanation": "not a mapping"},
        {"explanation": {"contributions": "no"}},
        {"explanation": {"contributions": [None, 3, {"name": ["odd"], "contribution": "big", "refs": "x"}]}},
        {"explanation": {"contributions": [{"contribution": True}, {"contribution": float("nan")}]}},
        {"explanation": {"sentences": [{"text": None}, {"text": "ok", "weight": "high"}, 7]}},
        {"parameters": [{"name": "x", "status": "imputed", "imputed": "odd", "aggregate": 3}], "notes": "no"},
    ],
)
def test_odd_evidence_reads_as_something_without_raising(evidence: dict[str, Any]) -> None:
    basis = risk_basis(evidence, None)
    for row in basis.drivers.rows if basis.drivers else []:
        assert row.direction in ("unknown", "none") and row.size == 0
        assert row.label == "an input of the model (no label given)"


# --- the page, as a clinician of the site reads it ------------------------------------------------


@pytest.mark.django_db
def test_a_clinician_reads_what_drove_the_score_in_words(
    client: Any, clinician: Any, explained: Suggestion
) -> None:
    client.force_login(clinician)
    response = client.get(url(explained))
    assert response.status_code == 200
    page = response.content.decode()
    drove = section(page, "drivers-heading")
    assert "The model's estimate for an average reference patient is 11%; for this patient 23%." in drove
    assert "These show what the model weighed, not what causes the risk." in drove
    assert "exact Shapley values for this tree model (TreeSHAP), against reference patients" in drove
    assert "(32 of them)" in drove
    # Every input, largest effect first: the top 5 in view, the other 3 behind "All 8 inputs".
    top, rest = drove.split("<details", 1)
    assert row_labels(top) == ORDER[:5]
    assert row_labels(rest) == ORDER[5:]
    assert "<summary>All 8 inputs: 3 more, with smaller effects</summary>" in rest
    # The values in words, with their units and windows; raised or lowered in words beside each bar.
    visits = top[top.index("emergency visits") :]
    visits = visits[: visits.index("</tr>")]
    assert '<td data-label="Value">2 visits, last 12 months</td>' in visits
    assert "raised the risk" in visits and 'class="bar-fill" style="width: 100%"' in visits
    assert "from 2 records" in visits
    since = top[top.index("days since the last visit") :]
    assert "45 days" in since[: since.index("</tr>")] and "lowered the risk" in since[: since.index("</tr>")]
    assert '<td data-label="Value">67 years</td>' in top
    assert '<td data-label="Value">yes, last 90 days</td>' in top
    assert '<td data-label="Value">0 visits, all history</td>' in top
    assert '<span class="imputed">not recorded — the model used 125 mmHg</span>' in rest
    assert '<td data-label="Value">7.9 %, last 12 months</td>' in rest
    assert "no record" in rest
    # Not a raw feature name anywhere on the page, nor the explainer's own words.
    for name in RAW_NAMES:
        assert name not in page
    assert "log-odds" not in page and "tree_shap" not in page and "contribution" not in page
    # The estimate, the imputed input said apart; the inputs are not listed a second time.
    assert "<dt>Estimated risk</dt><dd>23%</dd>" in page
    assert "<dt>Risk band</dt><dd>medium (moderate risk)</dd>" in page and "at least" not in page
    assert (
        "<strong>Not recorded, so the model used a stand-in value:</strong> mean systolic blood pressure"
        in page
    )
    assert "<caption>Inputs used" not in page
    assert "<dt>Warning</dt><dd>20%</dd>" in page


@pytest.mark.django_db
def test_a_clinician_sees_the_records_real_times_and_an_auditor_the_shifted_ones(
    client: Any, clinician: Any, auditor: Any, explained: Suggestion
) -> None:
    client.force_login(clinician)
    drove = section(client.get(url(explained)).content.decode(), "drivers-heading")
    real = real_date(MEDICATION_DATE, explained)
    assert f'<time datetime="{real}">{real}</time> (' in drove  # with how long ago
    assert MEDICATION_DATE not in drove
    assert '<th scope="col">Newest record</th>' in drove

    client.force_login(auditor)
    page = client.get(url(explained)).content.decode()
    drove = section(page, "drivers-heading")
    assert f'<time datetime="{MEDICATION_DATE}">{MEDICATION_DATE}</time>' in drove
    assert '<time datetime="2026-10-02T10:00:00+00:00">2026-10-02 10:00</time>' in drove
    assert '<th scope="col">Newest record (shifted time)</th>' in drove
    assert "<strong>These times are not the real ones.</strong>" in page


@pytest.mark.django_db
def test_a_clinician_of_another_site_gets_a_404(
    client: Any, other_site_clinician: Any, explained: Suggestion
) -> None:
    client.force_login(other_site_clinician)
    response = client.get(url(explained))
    assert response.status_code == 404
    assert b"What drove this score" not in response.content


@pytest.mark.django_db
def test_a_finding_that_cannot_be_scored_names_what_is_missing_and_explains_nothing(
    client: Any, clinician: Any, organization: Organization
) -> None:
    suggestion = store_finding(organization, not_scored_finding(), ed_manifest(), pseudonym=PATIENT)
    client.force_login(clinician)
    page = client.get(url(suggestion)).content.decode()
    assert (
        "<strong>Cannot be scored: days since the last visit is not recorded.</strong> The model gives no "
        "estimate without it." in page
    )
    assert "<strong>Missing, not scored:</strong> days since the last visit." in page
    assert "<dt>Score</dt><dd>Cannot be scored: days since the last visit not recorded</dd>" in page
    assert "What drove this score" not in page and "Estimated risk" not in page
    assert "not enough observations" not in page
    # The inputs it had, in words, in the inputs table: no empty band or score columns, no feature names.
    inputs = page[page.index("<caption>Inputs used") :]
    inputs = inputs[: inputs.index("</table>")]
    assert '<td data-label="Value">2 visits, last 12 months</td>' in inputs
    assert '<span class="imputed">not recorded — the model used 125 mmHg</span>' in inputs
    assert "Band" not in inputs and "Score" not in inputs and "As recorded" not in inputs
    assert "from 2 records" in inputs
    for name in RAW_NAMES:
        assert name not in page


@pytest.mark.django_db
def test_a_text_classifier_shows_the_sentences_that_weigh_most(
    client: Any, clinician: Any, organization: Organization
) -> None:
    suggestion = store_finding(organization, text_finding(), ed_manifest())
    client.force_login(clinician)
    page = client.get(url(suggestion)).content.decode()
    sentences = section(page, "sentences-heading")
    quoted = re.findall(r'<blockquote class="excerpt">(.*?)</blockquote>', sentences)
    assert quoted == ["Two falls at home this month.", "Walks with a frame.", "Lives alone."]
    assert "Raised the estimate: leaving it out lowers it by 12 percentage points." in sentences
    assert "Lowered the estimate: leaving it out raises it by 4 percentage points." in sentences
    assert "how much the score drops when each sentence is left out" in sentences
    assert "These show what the model weighed, not what causes the risk." in sentences
    real = real_date("2026-10-02", suggestion)
    assert f'Note of <time datetime="{real}">{real}</time> (' in sentences
    assert "The model read 2 notes, dated" in page
    assert "2026-10-02" not in page


@pytest.mark.django_db
def test_sentence_text_is_escaped(client: Any, clinician: Any, organization: Organization) -> None:
    finding = text_finding()
    evidence = dict(finding.evidence)
    evidence["explanation"] = {"sentences": [{"text": "<script>alert(1)</script> & more", "weight": 0.2}]}
    suggestion = store_finding(
        organization, Finding(**{**finding.__dict__, "evidence": evidence}), ed_manifest()
    )
    client.force_login(clinician)
    page = client.get(url(suggestion)).content.decode()
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page


@pytest.mark.django_db
@pytest.mark.parametrize(
    "explanation",
    [
        "odd",
        {"contributions": [{"name": "x", "contribution": "big"}, None], "base_probability": "low"},
        {"contributions": [{"label": 5, "value": [1], "refs": {"a": 1}, "effective": "yesterday"}]},
        {"sentences": "none", "contributions": {}},
    ],
)
def test_odd_explanations_do_not_break_the_page(
    client: Any, clinician: Any, organization: Organization, explanation: Any
) -> None:
    evidence = explained_evidence() | {"explanation": explanation}
    suggestion = store_finding(organization, explained_finding(evidence), ed_manifest())
    client.force_login(clinician)
    response = client.get(url(suggestion))
    assert response.status_code == 200
    assert b"Basis" in response.content


@pytest.mark.django_db
def test_the_model_card_says_how_the_explanation_is_worked_out(
    client: Any, clinician: Any, organization: Organization
) -> None:
    shipped = catalogue().manifest("ed-visit-90d")
    assert shipped is not None
    suggestion = store_finding(organization, explained_finding(), shipped)
    client.force_login(clinician)
    method = html.escape(str(shipped.card["explanation_method"])[:60])
    page = client.get(url(suggestion)).content.decode()
    assert 'How "what drove this score" is worked out' in page and method in page
    model_page = client.get("/models/ed-visit-90d/").content.decode()
    assert "How each result is explained" in model_page and method in model_page
