"""Names where notes put them and NER misses them (issue 18): after a label at the start of a line
("Endocrinology: Sofia Rossi (DOB ...)"), in "Family, Given" order, after a family or care role, heading a
note before its identifiers, before "is a 71-year-old", under a letter's closing. Text only, no record.

Sentences here are written for these tests, not taken from the labelled notes."""

from __future__ import annotations

import re
from typing import Any

import pytest

from clinical_ai.deid.engine.text.name_recognizers import LabelledNameRecognizer, name_after
from clinical_ai.deid.engine.types import TextItem

RECOGNIZER = LabelledNameRecognizer(
    entity="PERSON", pattern=re.compile("(?!)"), score=0.85, name="LabelledNameRecognizer"
)


def names(text: str) -> list[str]:
    return [text[a:b] for a, b in RECOGNIZER.spans(text)]


def scrub(scrubber: Any, text: str) -> str:
    (out,) = scrubber.scrub_texts([TextItem(text)], patient=None)
    return re.sub(r"\[PERSON-[0-9a-f]{6}\]", "[P]", str(out))


FOUND = [
    ("Endocrinology: Sofia Rossi (DOB 03/04/1961) reviewed today.", "Sofia Rossi"),
    ("Renal medicine: Tomasz Okonkwo-Reid\nSeen in clinic", "Tomasz Okonkwo-Reid"),
    ("Name: Chen, Wei   Age: 92", "Chen, Wei"),
    ("Name: Ó Briain, Tomasz\nMRN 583 004 7411", "Ó Briain, Tomasz"),
    ("Patient: Declan Szymańska    DOB: 12 May 1950", "Declan Szymańska"),
    ("Surgeon: Rajesh Abernethy   Assistant: Agnieszka Hargreaves", "Rajesh Abernethy"),
    ("Surgeon: Rajesh Abernethy   Assistant: Agnieszka Hargreaves", "Agnieszka Hargreaves"),
    ("Verified by: E. Marsh\n", "E. Marsh"),
    ("Reporting sonographer: Noor Szymańska", "Noor Szymańska"),
    ("Copy provided. Surgeon: Emeka Whitfield. Pre-assessment booked.", "Emeka Whitfield"),
    ("Observations stable. Next of kin: Rosalind Marsh (daughter), tel", "Rosalind Marsh"),
    ("Patient GIORGOS BROOKS  |  MRN: 28480", "GIORGOS BROOKS"),
    ("Eleanor Mbeki  |  MRN B73856", "Eleanor Mbeki"),
    ("6/4/20   Rosalind Hargreaves   MRN T1882252", "Rosalind Hargreaves"),
    ("Björn Szymańska  DOB 3/16/31", "Björn Szymańska"),
    ("Ward 7, 02.03.2021\nQuispe, Irene, MRN 4471-2290", "Quispe, Irene"),
    ("Transport arranged with son-in-law Will Thorsen.", "Will Thorsen"),
    ("Wife Will updated at the bedside.", "Will"),
    ("Partner Eleanor present, consented.", "Eleanor"),
    ("community midwife Yusuf MacLeod, phone", "Yusuf MacLeod"),
    ("History: Yusuf is a 71-year-old man.", "Yusuf"),
    ("Terrie907 is a 29 year-old woman.", "Terrie907"),
    ("Yours sincerely,\nGiorgos Van der Merwe\nAcute Medicine", "Giorgos Van der Merwe"),
]


@pytest.mark.parametrize(("text", "name"), FOUND, ids=[case[1] for case in FOUND])
def test_names_after_labels_roles_and_headings_are_found(text: str, name: str) -> None:
    assert name in names(text)


NOT_NAMES = [
    "Plan: Continue Current Medications",
    "Diagnosis: Acute Pancreatitis",
    "Code status: Full Code",
    "Social: Lives alone, independent.",
    "Procedure: Laparoscopic Cholecystectomy",
    "Oncology: Partial Response",
    "Renal team: Happy with plan.",
    "Neurology: Review In Clinic",
    "Patient: Not Known",
    "Next of kin: None",
    "Patient is a 45 year-old woman.",
    "She is a 71-year-old woman.",
    "Seen with his daughter. She agrees.",
    "Orthopaedic Registrar   Date: 11/1/24",
    "Oluwaseun Castellanos, Consultant Neurologist",
    "Patient: \nDOB 1/1/1950",
    "Springfield, IL 62704",
    "Saarjärve, JN 91851",
]


@pytest.mark.parametrize("text", NOT_NAMES)
def test_fields_that_are_not_names_are_left(text: str) -> None:
    found = names(text)
    assert all(name not in {"Castellanos"} for name in found)
    assert [name for name in found if name != "Oluwaseun Castellanos"] == []


def test_name_after_stops_at_the_next_label_and_a_sentence_end() -> None:
    text = "Clinician: Hope Whitfield Date: 1/2/20"
    start = text.index("Hope")
    assert name_after(text, start, allow_stop=True) is not None
    a, b = name_after(text, start, allow_stop=True) or (0, 0)
    assert text[a:b] == "Hope Whitfield"
    text = "Surgeon: Emeka Whitfield. Pre-assessment"
    a, b = name_after(text, text.index("Emeka")) or (0, 0)
    assert text[a:b] == "Emeka Whitfield"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Endocrinology: Sofia Rossi (DOB 03/04/1961) reviewed today.",
            "Endocrinology: [P] (DOB [DATE]) reviewed today.",
        ),
        ("Referred by: Chen, Wei\nOrthopaedics", "Referred by: [P]\nOrthopaedics"),
        ("Patient: Chen, Wei (MRN 12345)", "Patient: [P] (MRN [MRN-"),
        ("Chen, Wei presented with chest pain.", "[P], [P] presented with chest pain."),
    ],
)
def test_both_parts_of_a_name_are_replaced(scrubber: Any, text: str, expected: str) -> None:
    out = scrub(scrubber, text)
    assert out.startswith(expected), out
    assert "Chen" not in out and "Wei" not in out and "Sofia" not in out and "Rossi" not in out
