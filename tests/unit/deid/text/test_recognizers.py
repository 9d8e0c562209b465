"""Each clinical recognizer with what it must find and what it must leave; NER's clinical false positives."""

from __future__ import annotations

from typing import Any

import pytest

from clinical_ai.deid.engine.text.clinical_terms import is_eponym_use
from clinical_ai.deid.engine.text.ner_filter import refine_ner_span
from clinical_ai.deid.engine.text.recognizers import MIN_SCORE

# (entities that may report it, text, the substring that must be covered)
POSITIVE = [
    ({"MEDICAL_RECORD_NUMBER"}, "Ward note. MRN 4471-2290, seen today.", "4471-2290"),
    ({"MEDICAL_RECORD_NUMBER"}, "Medical record number: A123456", "A123456"),
    ({"MEDICAL_RECORD_NUMBER"}, "Hospital no. 99887766 on the label", "99887766"),
    ({"MEDICAL_RECORD_NUMBER", "UK_NHS"}, "NHS number 943 476 5919", "943 476 5919"),
    ({"ACCOUNT_NUMBER"}, "Account no. 998877 billed", "998877"),
    ({"ACCOUNT_NUMBER"}, "Acct #: 55-1234-99", "55-1234-99"),
    ({"HEALTH_PLAN_ID"}, "Insurance member ID XZ12345678 verified", "XZ12345678"),
    ({"HEALTH_PLAN_ID"}, "Policy number: POL-99812", "POL-99812"),
    ({"HEALTH_PLAN_ID", "US_MBI"}, "Medicare beneficiary number 1EG4-TE5-MK73", "1EG4-TE5-MK73"),
    ({"DEVICE_ID"}, "Pacemaker serial number SN-44521-B checked", "SN-44521-B"),
    ({"DEVICE_ID"}, "Device S/N: PJN123456", "PJN123456"),
    (
        {"DEVICE_ID"},
        "UDI (01)00884521156783(17)250101(10)LOT1234 implanted",
        "(01)00884521156783(17)250101(10)LOT1234",
    ),
    ({"ID", "US_SSN"}, "SSN 123-45-6789 on file", "123-45-6789"),
    ({"ID", "US_PASSPORT", "US_DRIVER_LICENSE"}, "Passport no. X37176659X", "X37176659X"),
    ({"FAX_NUMBER"}, "Send results to fax: 020 7946 0958 please", "020 7946 0958"),
    ({"FAX_NUMBER"}, "Fax 555-222-3333", "555-222-3333"),
    ({"PHONE_NUMBER"}, "Daughter phone 023 9261 4408.", "023 9261 4408"),
    ({"PHONE_NUMBER"}, "Call 555-657-5098 after 5pm", "555-657-5098"),
    ({"PHONE_NUMBER"}, "mobile +44 7700 900123", "+44 7700 900123"),
    (
        {"URL"},
        "Results at https://portal.example.org/patient/123 today",
        "https://portal.example.org/patient/123",
    ),
    ({"IP_ADDRESS"}, "Logged in from 192.168.10.24 yesterday", "192.168.10.24"),
    ({"EMAIL_ADDRESS"}, "Email m.okafor@example.org for results", "m.okafor@example.org"),
    ({"AGE_OVER_89"}, "A 92 year old man with chest pain", "92"),
    ({"AGE_OVER_89"}, "Woman aged 95 from home", "95"),
    ({"AGE_OVER_89"}, "95yo male", "95"),
    ({"AGE_OVER_89"}, "95 y/o female", "95"),
    ({"AGE_OVER_89"}, "a 101-year-old woman", "101"),
    ({"AGE_OVER_89"}, "a ninety-two year old man", "ninety-two"),
    ({"STREET_ADDRESS"}, "Lives at 12 Harbour View Road, Portsmouth", "12 Harbour View Road"),
    ({"STREET_ADDRESS"}, "Address: 4567 Oak St Apt 3, Springfield", "4567 Oak St Apt 3"),
    ({"STREET_ADDRESS"}, "home 858 Sawayn Parade Unit 61", "858 Sawayn Parade Unit 61"),
    ({"STREET_ADDRESS"}, "clinic at 12040 NE 128TH STREET", "12040 NE 128TH STREET"),
    ({"STREET_ADDRESS"}, "write to P.O. Box 1234", "P.O. Box 1234"),
    ({"POSTAL_CODE"}, "Portsmouth PO1 3AX", "PO1 3AX"),
    ({"POSTAL_CODE"}, "Redmond, WA 98053", "98053"),
    ({"FACILITY"}, "Transferred from St Mary's Hospital overnight", "St Mary's Hospital"),
    ({"FACILITY"}, "Seen at Riverside Medical Center last week", "Riverside Medical Center"),
    ({"FACILITY"}, "Discharged to Oakwood Nursing Home", "Oakwood Nursing Home"),
    ({"PERSON"}, "Reviewed by Dr Okafor on the ward", "Okafor"),
    ({"DATE"}, "Ward note 20 Nov 2026.", "20 Nov 2026"),
    ({"DATE"}, "Admitted 03/14/2026 via ED", "03/14/2026"),
]

NEGATIVE = [
    ("MEDICAL_RECORD_NUMBER", "MRN pending, medical record reviewed"),
    ("ACCOUNT_NUMBER", "On account of pain, took 2 tablets"),
    ("HEALTH_PLAN_ID", "Policy of the ward is to review in 2 weeks; group therapy 3 times"),
    ("DEVICE_ID", "Serial ECGs and serial troponins 12 and 15 ng/L"),
    ("FAX_NUMBER", "Letter faxed to the GP"),
    ("PHONE_NUMBER", "BP 150/90, HR 110, Hb 120 g/L, platelets 250, 2003-06-12"),
    ("AGE_OVER_89", "A 67 years old woman, an 89 year old man, aged 45, 92 mg daily, for 92 days"),
    (
        "STREET_ADDRESS",
        "Take 2 tablets twice daily; 10 units Insulin Glargine at night; 3 Paracetamol Tablets",
    ),
    ("POSTAL_CODE", "HbA1c 48 mmol/mol, troponin 15234, T2DM"),
    ("FACILITY", "Refer to the Diabetes Clinic; General Hospital policy; Fracture Clinic in 2 weeks"),
    ("DATE", "Smoker in 2019, cough for three days, seen 3 days ago"),
    ("DATE_TIME", "Smoker in 2019, cough for three days, seen 3 days ago, at 10:30"),
    ("URL", "e.g. metformin 500 mg, i.e. twice daily"),
    ("IP_ADDRESS", "Version 1.2.3 of the score"),
]


@pytest.fixture(scope="module")
def detect(scrubber: Any) -> Any:
    def run(text: str) -> list[tuple[str, int, int]]:
        (results,) = scrubber.analyze_texts([text])
        return [(r.entity_type, r.start, r.end) for r in results]

    return run


@pytest.mark.parametrize(("entities", "text", "expected"), POSITIVE, ids=[case[2] for case in POSITIVE])
def test_recognizer_finds(detect: Any, entities: set[str], text: str, expected: str) -> None:
    found = detect(text)
    start = text.index(expected)
    end = start + len(expected)
    assert any(entity in entities and a <= start and end <= b for entity, a, b in found), [
        (entity, text[a:b]) for entity, a, b in found
    ]


@pytest.mark.parametrize(("entity", "text"), NEGATIVE, ids=[case[0] for case in NEGATIVE])
def test_recognizer_leaves(detect: Any, entity: str, text: str) -> None:
    assert [found for found in detect(text) if found[0] == entity] == []


def test_presidio_built_ins_stay_on(analyzer: Any) -> None:
    names = {recognizer.name for recognizer in analyzer.registry.recognizers}
    assert {
        "UrlRecognizer",
        "IpRecognizer",
        "EmailRecognizer",
        "UsSsnRecognizer",
        "ShapedNhsRecognizer",
    } <= names
    assert {"ClinicalSpacyRecognizer", "ScreenedPhoneRecognizer", "ClinicalDateRecognizer"} <= names
    assert "DateRecognizer" not in names and "SpacyRecognizer" not in names
    assert MIN_SCORE > 0.3  # Presidio's weak patterns need context


CLINICAL_WORDS = [
    "ICU",
    "ECG",
    "EKG",
    "CT",
    "MRI",
    "COPD",
    "CHF",
    "HbA1c",
    "BP",
    "HR",
    "SpO2",
    "NEWS2",
    "Metformin",
    "Lisinopril",
    "Amoxicillin",
    "Atorvastatin",
    "Insulin",
    "Warfarin",
    "Simvastatin",
    "Diabetes Mellitus",
    "Hypertension",
    "Pneumonia",
    "Sepsis",
    "Social History\nPatient",
    "Present Illness",
    "Blue Cross Blue Shield",
]


@pytest.mark.parametrize("word", CLINICAL_WORDS)
def test_ner_spans_of_clinical_vocabulary_are_dropped(word: str) -> None:
    text = f"Noted: {word} today"
    assert refine_ner_span(text, 7, 7 + len(word)) == []


def test_ner_spans_are_split_at_line_breaks_and_trimmed() -> None:
    text = "# History of Present Illness\nSunny31 is a 20 year-old"
    start = text.index("Present")
    pieces = refine_ner_span(text, start, text.index(" is a"))
    assert [text[a:b] for a, b in pieces] == ["Sunny31"]
    text = "Patient John Smith was seen"
    assert [text[a:b] for a, b in refine_ner_span(text, 0, 18)] == ["John Smith"]


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("History of Parkinson's disease", "Parkinson"),
        ("History of Parkinson's disease", "Parkinson's disease"),
        ("early Alzheimer's", "Alzheimer's"),
        ("Crohn's disease flare", "Crohn"),
        ("Glasgow Coma Scale 14", "Glasgow Coma Scale"),
        ("Bell's palsy on the left", "Bell"),
        ("Wells score 4", "Wells"),
        ("Wolff-Parkinson-White syndrome", "Wolff-Parkinson-White"),
        ("Hodgkin lymphoma", "Hodgkin"),
    ],
)
def test_eponyms_are_diseases_not_people(text: str, name: str) -> None:
    start = text.index(name)
    assert is_eponym_use(text, start, start + len(name), allow_bare=True)


@pytest.mark.parametrize(
    "text",
    [
        "Mr Smith's test results were normal",
        "Mr Parkinson's wife called",
        "Dr Wilson reviewed",
        "Parkinson Smith",
    ],
)
def test_surnames_that_are_also_eponyms_stay_names(text: str) -> None:
    name = next(word for word in ("Smith", "Parkinson", "Wilson") if word in text)
    start = text.index(name)
    assert not is_eponym_use(text, start, start + len(name), allow_bare=False)


def test_clinical_paragraph_keeps_its_clinical_words(detect: Any) -> None:
    text = (
        "Admitted to ICU with sepsis. ECG showed AF, CT head normal, MRI pending. History of COPD, CHF, "
        "Parkinson's disease and Alzheimer's. HbA1c 8.1%, BP 150/90, HR 110, SpO2 91%, NEWS2 score 7. "
        "Started metformin, lisinopril, amoxicillin, atorvastatin, insulin and warfarin."
    )
    assert detect(text) == []
