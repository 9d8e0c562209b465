"""The gaps the evaluation found, closed: record-number labels, clinical abbreviations and scores taken for
organisations or people, spans merged across line breaks or into the wrong kind, Safe Harbor's dates.

Values and sentences here are written for these tests, not taken from the labelled notes."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from clinical_ai.deid.engine.rules import StructuredAnonymizer
from clinical_ai.deid.engine.text.clinical_terms import is_clinical_term, is_eponym_use
from clinical_ai.deid.engine.text.ner_filter import refine_ner_span
from clinical_ai.deid.engine.text.scrubber import split_at_line_breaks
from clinical_ai.deid.engine.types import PatientContext, TextItem

CONFIGS = Path(__file__).resolve().parents[4] / "clinical_ai" / "deid" / "configs"
IDENTIFIER_ENTITIES = {"MEDICAL_RECORD_NUMBER", "ACCOUNT_NUMBER", "ID", "UK_NHS"}
NER_ENTITIES = {"PERSON", "ORGANIZATION", "LOCATION"}


@pytest.fixture(scope="module")
def detect(scrubber: Any) -> Any:
    def run(text: str) -> list[tuple[str, int, int]]:
        (results,) = scrubber.analyze_texts([text])
        return [(r.entity_type, r.start, r.end) for r in results]

    return run


def scrub(scrubber: Any, text: str, patient: PatientContext | None) -> str:
    (out,) = scrubber.scrub_texts([TextItem(text)], patient=patient)
    return str(out)


# --- 1. record numbers behind labels the recognizers did not know --------------------------------------------

LABELLED = [
    ("Patient: A Person  Hosp No: QX781204  DOB", "QX781204"),
    ("Age: 71   Hosp. No. 55120987   Ward 4", "55120987"),
    ("Hosp no 7731-0042\n", "7731-0042"),
    ("Hospital number 66120431 on the wristband", "66120431"),
    ("Hospital number (local): RT-88210", "RT-88210"),
    ("Arrived 02:10  ED no. K4410982\nTriage", "K4410982"),
    ("A&E no: 30019876", "30019876"),
    ("MRN on file: ZP902113\n", "ZP902113"),
    ("MRN (sending) 41-22-0913\nReason", "41-22-0913"),
    ("MRN (receiving site): HB557120", "HB557120"),
    ("UR number 00412987", "00412987"),
    ("Exam: CT chest   Accession: RAD-5512098\n", "RAD-5512098"),
    ("Accession no 8812004471", "8812004471"),
    ("Lab no: W88120034   MRN", "W88120034"),
    ("Specimen ID: SP-22-018812", "SP-22-018812"),
    ("Sample no. 77120455 received", "77120455"),
    ("Request ID R-2209911 (urgent)", "R-2209911"),
]


@pytest.mark.parametrize(("text", "value"), LABELLED, ids=[case[1] for case in LABELLED])
def test_record_numbers_behind_more_labels_are_found(detect: Any, text: str, value: str) -> None:
    start = text.index(value)
    end = start + len(value)
    found = detect(text)
    assert any(entity in IDENTIFIER_ENTITIES and a <= start and end <= b for entity, a, b in found), found


@pytest.mark.parametrize(
    "text",
    [
        "Seen in the ED, no chest pain; ED nurse reviewed",
        "Hospital no longer required; hosp stay 3 days",
        "MRN (pending), accession pending, lab no abnormality",
        "Specimen sent, 2 samples; order no 5 of the set",
        "ed no. 12345 in lower case is not the department",
    ],
)
def test_labels_without_an_identifier_after_them_find_nothing(detect: Any, text: str) -> None:
    assert [found for found in detect(text) if found[0] in IDENTIFIER_ENTITIES] == []


def test_a_qualifier_is_short_and_on_the_label(detect: Any) -> None:
    text = "MRN (see the letter from the other hospital dated last week) 4471"
    assert [found for found in detect(text) if found[0] in IDENTIFIER_ENTITIES] == []


# --- 2. clinical abbreviations and scores are not organisations or people ------------------------------------

ABBREVIATIONS = [
    "U&E",
    "ABVD",
    "FIT",
    "SMA",
    "EMR",
    "NIHSS",
    "CURB-65",
    "qSOFA",
    "APACHE",
    "MUST",
    "CHA2DS2-VASc",
    "HAS-BLED",
    "GCS",
    "FBC",
    "LFT",
    "CRP",
    "eGFR",
    "TTE",
    "NSTEMI",
    "STEMI",
    "PCI",
    "CABG",
    "DVT",
    "PE",
    "AKI",
    "CKD",
    "UTI",
    "MRSA",
    "NT-proBNP",
    "G-CSF",
]


@pytest.mark.parametrize("term", ABBREVIATIONS)
def test_clinical_abbreviations_are_clinical_terms(term: str) -> None:
    assert is_clinical_term(term)
    text = f"Noted: {term} today"
    assert refine_ner_span(text, 7, 7 + len(term)) == []


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("GRACE score 142, high risk", "GRACE"),
        ("Hoehn and Yahr stage 2", "Hoehn"),
        ("Hoehn and Yahr stage 2", "Yahr"),
        ("Harvey-Bradshaw index 9", "Harvey-Bradshaw"),
        ("Kellgren-Lawrence grade 4 changes", "Kellgren-Lawrence"),
        ("modified Duke criteria met", "Duke"),
        ("Wells score 4", "Wells"),
    ],
)
def test_named_scores_are_not_people(text: str, name: str) -> None:
    start = text.index(name)
    assert is_eponym_use(text, start, start + len(name), allow_bare=True)
    assert refine_ner_span(text, start, start + len(name)) == []


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Grace Harvey called the ward", "Grace Harvey"),
        ("Mr Wells and his daughter Grace", "Wells"),
        ("Dr Duke reviewed her", "Duke"),
        ("Lawrence Hoehn visited", "Lawrence Hoehn"),
    ],
)
def test_names_that_are_also_score_words_stay_names(text: str, name: str) -> None:
    start = text.index(name)
    assert not is_eponym_use(text, start, start + len(name), allow_bare=False)
    assert refine_ner_span(text, start, start + len(name)) == [(start, start + len(name))]


@pytest.mark.parametrize("text", ["R.A.", "P. D.", "Ms A.C. Jones"])
def test_initials_are_not_read_as_joined_abbreviations(text: str) -> None:
    assert not is_clinical_term(text)


def test_a_clinical_paragraph_of_abbreviations_keeps_them(detect: Any) -> None:
    text = (
        "NSTEMI: GRACE score 142, troponin rising; PCI to LAD, TTE LVEF 45%. CHA2DS2-VASc 3, HAS-BLED 1. "
        "Bloods: FBC, U&E, LFT, CRP 12, eGFR 48. Stroke: NIHSS 4. Parkinson's: Hoehn and Yahr stage 2. "
        "CURB-65 score 1, qSOFA 0. Lymphoma treated with ABVD; FIT negative; EMR of a polyp."
    )
    assert [(entity, text[a:b]) for entity, a, b in detect(text) if entity in NER_ENTITIES] == []


def test_people_beside_abbreviations_are_still_found(detect: Any) -> None:
    text = "Dr Okafor reviewed the U&E and CRP; Grace Abernethy, her daughter, was told."
    people = [text[a:b] for entity, a, b in detect(text) if entity == "PERSON"]
    assert "Okafor" in people
    assert any("Abernethy" in person for person in people)


# --- 3. spans do not run across line breaks or take the wrong kind ------------------------------------------


def test_split_at_line_breaks() -> None:
    text = "0117 555 0100\n\n20.07.2016 and more"
    assert split_at_line_breaks(text, 0, 24) == [(0, 13), (15, 24)]
    assert split_at_line_breaks("a\n\n\nb", 0, 5) == [(0, 1), (4, 5)]
    assert split_at_line_breaks("abc", 0, 3) == [(0, 3)]
    assert split_at_line_breaks("ab\n -\ncd", 0, 8) == [(0, 2), (6, 8)]


@pytest.mark.parametrize(
    "text",
    [
        "Fax: 0117 555 0100\n\n20.07.2016\n",
        "Fax 206.555.0173\n\n01/22/2019\n",
        "Fax: +1 312 555 0148\n\n02/17/2016\n",
    ],
)
def test_a_fax_number_does_not_take_the_date_on_the_next_line(
    scrubber: Any, sample_context: PatientContext, text: str
) -> None:
    out = scrub(scrubber, text, sample_context)
    first, _, rest = out.partition("\n\n")
    assert first.endswith("[FAX]")
    assert re.fullmatch(r"\d{2}[./]\d{2}[./]\d{4}\n", rest), out  # the date is shifted, not removed


@pytest.mark.parametrize("number", ["+1 206 555 9952", "+1 503 735 1707", "+44 20 7946 0958"])
def test_a_phone_with_a_country_code_is_not_an_nhs_number(scrubber: Any, detect: Any, number: str) -> None:
    text = f"She can be contacted on {number}."
    assert not [found for found in detect(text) if found[0] == "UK_NHS"]
    assert scrub(scrubber, text, None) == "She can be contacted on [PHONE]."


@pytest.mark.parametrize(
    "text",
    [
        "Tel 206 555 9952 (home)",
        "Call 0890 515 5693",
        "reference 1206 342 9952 1",
    ],
)
def test_ten_digits_that_are_a_phone_or_part_of_a_number_are_not_nhs(detect: Any, text: str) -> None:
    assert not [found for found in detect(text) if found[0] == "UK_NHS"]


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("NHS number 943 476 5919", "943 476 5919"),
        ("NHS: 9434765919", "9434765919"),
        ("Patient details 943-476-5919 confirmed", "943-476-5919"),
    ],
)
def test_nhs_numbers_in_their_shape_are_still_found(detect: Any, text: str, number: str) -> None:
    start = text.index(number)
    found = detect(text)
    assert ("UK_NHS", start, start + len(number)) in found


def test_mixed_separators_are_not_an_nhs_number(detect: Any) -> None:
    assert not [found for found in detect("ref 943 476-5919") if found[0] == "UK_NHS"]


def test_a_date_and_the_name_under_it_are_not_an_address(
    scrubber: Any, detect: Any, sample_context: PatientContext
) -> None:
    text = "December 1, 2024\nSamuel Fields\nConsultant"
    assert not [found for found in detect(text) if found[0] == "STREET_ADDRESS"]
    out = scrub(scrubber, text, sample_context)
    assert "[ADDRESS]" not in out
    assert out.startswith("November 19, 2024\n")  # shifted by -12 days


def test_street_addresses_on_one_line_are_still_found(detect: Any) -> None:
    text = "Lives at 14 Elm Fields, Leeds\n2 Harbour View Road\nCare plan"
    streets = [text[a:b] for entity, a, b in detect(text) if entity == "STREET_ADDRESS"]
    assert streets == ["14 Elm Fields", "2 Harbour View Road"]


def test_a_unit_on_the_next_line_is_still_part_of_the_address(scrubber: Any) -> None:
    assert scrub(scrubber, "Lives at 230 Wit Rd\n Suite 246\nCare plan", None) == (
        "Lives at [ADDRESS]\n [ADDRESS]\nCare plan"
    )


@pytest.mark.parametrize(
    "text",
    [
        "Seen by Dr Lindqvist\n\nPresenting complaint: cough",
        "Referred to Riverside Hospital\nClinic letter follows",
        "Phone 0161 555 0303\n11-Nov-2022 review",
    ],
)
def test_no_finding_runs_across_a_line_break(scrubber: Any, text: str) -> None:
    (results,) = scrubber.analyze_texts([text])
    findings = scrubber.find(text, results, None)
    assert findings
    assert all("\n" not in text[f.start : f.end] for f in findings), [
        (f.entity, text[f.start : f.end]) for f in findings
    ]


# --- 4. Safe Harbor keeps only the year of a date in free text -----------------------------------------------


def test_dates_are_reduced_to_the_year_when_the_patient_context_asks(
    scrubber: Any, sample_context: PatientContext
) -> None:
    year_only = replace(sample_context, free_text_dates="year")
    text = "Seen 14 March 2026; reviewed 03/04/2025, next 3 April, scan 2026-05-01; smoker since 2019."
    assert scrub(scrubber, text, year_only) == (
        "Seen 2026; reviewed 2025, next [DATE], scan 2026; smoker since 2019."
    )
    shifted = scrub(scrubber, text, sample_context)
    assert "2 March 2026" in shifted  # the default is still the shift


def test_a_year_that_may_show_an_age_over_89_is_removed_too(
    scrubber: Any, sample_context: PatientContext
) -> None:
    year_only = replace(sample_context, free_text_dates="year")
    old = date.today().year - 95
    recent = date.today().year - 80
    out = scrub(scrubber, f"Born 12 May {old}. Married 12 May {recent}.", year_only)
    assert out == f"Born [DATE]. Married {recent}."


class RecordingScrubber:
    def __init__(self) -> None:
        self.patients: list[PatientContext | None] = []

    def scrub_texts(self, items: Any, *, patient: PatientContext | None) -> list[str]:
        self.patients.append(patient)
        return [item.text for item in items]


@pytest.mark.parametrize(("config", "expected"), [("safe-harbor", "year"), ("inference", "shift")])
def test_the_configuration_tells_the_scrubber_how_to_write_dates(config: str, expected: str) -> None:
    engine = StructuredAnonymizer(CONFIGS / f"{config}.json")
    recording = RecordingScrubber()
    patient = PatientContext(pseudonym="p", date_shift_days=-12)
    observation = {"resourceType": "Observation", "status": "final", "note": [{"text": "Seen 14 March 2026"}]}
    engine.anonymize(observation, patient=patient, scrubber=recording)
    (seen,) = recording.patients
    assert seen is not None and seen.free_text_dates == expected
    assert seen.date_shift_days == -12 and seen.pseudonym == "p"
    assert patient.free_text_dates == "shift"  # the caller's context is not changed


def test_without_a_patient_dates_are_removed_under_either_configuration(scrubber: Any) -> None:
    assert scrub(scrubber, "Seen 14 March 2026", None) == "Seen [DATE]"
