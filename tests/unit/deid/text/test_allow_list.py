"""The allow-list of clinical abbreviations and eponyms: never replaced, while names beside them still are.

Sentences here are written for these tests (issue 18: "ECG with ST depression" became "ECG with [LOCATION]
depression")."""

from __future__ import annotations

import re
from typing import Any

import pytest

from clinical_ai.deid.engine.text.allow_list import DEFAULT_ALLOW_LIST, AllowList
from clinical_ai.deid.engine.text.scrubber import Finding, without_allowed
from clinical_ai.deid.engine.types import TextItem


def allowed(text: str) -> list[str]:
    return [text[a:b] for a, b in DEFAULT_ALLOW_LIST.covered(text)]


def scrub(scrubber: Any, text: str) -> str:
    (out,) = scrubber.scrub_texts([TextItem(text)], patient=None)
    return str(out)


# --- what the list finds -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("ECG with ST depression", ["ST"]),
        ("Hx: MS, PE, AF, MI.", ["MS", "PE", "AF", "MI"]),
        ("CA breast; Ca 2.41 mmol/L (H)", ["CA", "Ca", "mmol/L", "(H)"]),
        ("Known Graves' disease", ["Graves' disease"]),
        ("Right Bell's palsy", ["Bell's palsy"]),
        ("Hashimoto thyroiditis and Cushing syndrome", ["Hashimoto thyroiditis", "Cushing syndrome"]),
        ("Parkinson's, Crohn's, Addison's", ["Parkinson's", "Crohn's", "Addison's"]),
        ("Hoehn and Yahr stage 2", ["Hoehn and Yahr stage"]),
        ("CrCl (Cockcroft-Gault)", ["Cockcroft-Gault"]),
        ("give St Mark's electrolyte mix", ["St Mark's electrolyte mix"]),
        ("ulcer (Forrest IIa)", ["Forrest IIa"]),
        ("fulfil McDonald 2017 criteria", ["McDonald 2017 criteria"]),
        ("ST elevation in II, III, aVF", ["ST", "II", "III", "aVF"]),
    ],
)
def test_the_list_finds_clinical_terms(text: str, terms: list[str]) -> None:
    assert allowed(text) == terms


@pytest.mark.parametrize(
    "text",
    [
        "Dr Graves saw her",  # a title makes a person
        "Mrs Addison on the ward",
        "Seen by Prof. Cushing",
        "Graves reviewed her today",  # no disease word: NER decides
        "Ms Rossi",  # a title, not multiple sclerosis
        "St Mary's Hospital",  # a saint, not an ST segment
        "Bell rang",  # a common surname needs its own word ("palsy")
        "Wells said so",
    ],
)
def test_names_and_titles_are_not_on_the_list(text: str) -> None:
    assert allowed(text) == []


def test_the_list_can_be_replaced() -> None:
    custom = AllowList(abbreviations={"XYZ"}, phrases=[("blue", "bottle")])
    assert [(s.start, s.end) for s in custom.spans("XYZ and a blue bottle; ST")][:2] == [(0, 3), (10, 21)]
    assert "ST" not in [s.term for s in custom.spans("ST")]


def test_only_names_places_and_organisations_are_cut() -> None:
    text = "1c Advanced Parkinson's disease MRN CA12345"
    findings = [
        Finding(3, 21, "ORGANIZATION", 0.85),  # "Advanced Parkinson"
        Finding(36, 43, "MEDICAL_RECORD_NUMBER", 0.95),  # "CA12345": an identifier is never cut
    ]
    kept = without_allowed(text, findings, DEFAULT_ALLOW_LIST.covered(text))
    assert [(text[f.start : f.end], f.entity) for f in kept] == [("CA12345", "MEDICAL_RECORD_NUMBER")]


def test_a_finding_keeps_its_name_outside_the_term() -> None:
    text = "Sofia Rossi MS clinic"
    kept = without_allowed(text, [Finding(0, 14, "PERSON", 0.85)], DEFAULT_ALLOW_LIST.covered(text))
    assert [text[f.start : f.end] for f in kept] == ["Sofia Rossi"]


# --- through the scrubber ---------------------------------------------------------------------------------

KEPT = [
    "ECG with ST depression in V4-V6.",
    "ECG: sinus rhythm, ST elevation in II, III, aVF. Troponin raised.",
    "CA breast 2015, mastectomy. Ca 2.61 mmol/L, corrected Ca 2.55.",
    "Hx: MS, AF, PE, MI. AF with fast ventricular response.",
    "VT at 190 bpm terminated by ATP; no shocks. AF burden 3%",
    "Duodenal ulcer (Forrest IIa), Helicobacter pylori positive.",
    "Give St Mark's electrolyte mix 1 L/day.",
    "1c Advanced Parkinson's disease",
    "Ferric carboxymaltose 1 g IV given.",
    "Structured education (DESMOND) referral. ECOG PS 1.",
    "Bowel preparation: Boston Bowel Preparation Scale 8.",
    "Appearances fulfil McDonald 2017 criteria for dissemination.",
    "CrCl 28 mL/min (Cockcroft-Gault) - apixaban dose.",
    "Repeat OGD for Barrett's surveillance in 3 years.",
    "Urea 14.2 mmol/L (H); creatinine 168 µmol/L.",
    "Known Graves disease. Hashimoto thyroiditis. Cushing syndrome. Addison disease. Crohn disease.",
    "Parkinson's, Crohn's, Addison's and Cushing's in the family.",
    "Right Bell's palsy, treated with prednisolone.",
]


@pytest.mark.parametrize("text", KEPT)
def test_clinical_terms_are_never_replaced(scrubber: Any, text: str) -> None:
    assert scrub(scrubber, text) == text


def test_without_the_list_ner_replaces_them(scrubber: Any) -> None:
    """The list is what keeps them: the same analyzer without it replaces "ST" (the issue's case)."""
    import copy

    bare = copy.copy(scrubber)
    bare.allow_list = None
    assert "[LOCATION]" in scrub(bare, KEPT[0])
    assert scrub(scrubber, KEPT[0]) == KEPT[0]


BESIDE = [
    ("Dr Graves saw the patient with Graves disease.", "Dr [P] saw the patient with Graves disease."),
    ("Mrs Addison has Addison's disease.", "Mrs [P] has Addison's disease."),
    ("Plan: discuss the ST changes with Dr Cushing.", "Plan: discuss the ST changes with Dr [P]."),
    (
        "Endocrinology: Sofia Rossi (seen today): MS, AF, Graves' disease.",
        "Endocrinology: [P] (seen today): MS, AF, Graves' disease.",
    ),
    (
        "Cardiology: Wei Chen, ECG with ST depression, old MI.",
        "Cardiology: [P], ECG with ST depression, old MI.",
    ),
    ("Name: Chen, Wei   PMH: CA breast, PE", "Name: [P]   PMH: CA breast, PE"),
    ("Wife Will Bell has Bell's palsy.", "Wife [P] has Bell's palsy."),
]


@pytest.mark.parametrize(("text", "expected"), BESIDE, ids=[case[0][:24] for case in BESIDE])
def test_names_beside_the_terms_are_still_replaced(scrubber: Any, text: str, expected: str) -> None:
    out = re.sub(r"\[PERSON-[0-9a-f]{6}\]", "[P]", scrub(scrubber, text))
    assert out == expected
