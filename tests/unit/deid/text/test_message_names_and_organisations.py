"""Names and organisations where messages, letters and forms put them (issue 18, general text): greetings and
sign-offs, a name line at the head of an address block or above a phone/e-mail, dialogue speakers, people
introduced or asked for, account-holder labels; organisations by legal form or kind; NER's field-name false
positives ("SSN", "IBAN", "Address:") dropped. Each with clinical negatives.

Names, companies and sentences here are written for these tests, not taken from the evaluation sets."""

from __future__ import annotations

import re
from typing import Any

import pytest

from clinical_ai.deid.engine.text.general_recognizers import OrganisationRecognizer, starts_street_line
from clinical_ai.deid.engine.text.name_recognizers import LabelledNameRecognizer
from clinical_ai.deid.engine.text.patterns import is_not_an_entity
from clinical_ai.deid.engine.types import TextItem

NAMES = LabelledNameRecognizer(
    entity="PERSON", pattern=re.compile("(?!)"), score=0.85, name="LabelledNameRecognizer"
)
ORGANISATIONS = OrganisationRecognizer(
    entity="ORGANIZATION", pattern=re.compile("(?!)"), score=0.85, name="OrganisationRecognizer"
)


def names(text: str) -> list[str]:
    return [text[a:b] for a, b in NAMES.spans(text)]


def organisations(text: str) -> list[str]:
    return [text[a:b] for a, b in ORGANISATIONS.spans(text)]


NAMES_FOUND = [
    ("Dear Torvald,\nThank you for the forms.", "Torvald"),
    ("Hi Wanjiru Kamau, your parcel is ready.", "Wanjiru Kamau"),
    ("> Hello Basia\n> see below", "Basia"),
    ("See you on Monday.\nThanks, Oluwaseun", "Oluwaseun"),
    ("Ingrid Solberg\n14 Copse Road\nDerby DE1 2AB", "Ingrid Solberg"),
    ("> Tamsin Ravel\n> Marsh Valley Housing Trust\n> 8 Mill Lane\n> Leeds", "Tamsin Ravel"),
    ("Contact card\nBenedek Farkas\n+36 1 555 0142\n", "Benedek Farkas"),
    ("Contact card\nBenedek Farkas\nb.farkas@example.org\n", "Benedek Farkas"),
    ('Ottavio: "Where did you put the keys?"', "Ottavio"),
    ("Marisol: You found it! Thank you so much", "Marisol"),
    ("Ask for Radomir at the reception, 12 Fen Road.", "Radomir"),
    ("Hi, this is Keziah Ambrose. I moved in May.", "Keziah Ambrose"),
    ("Met Ilse Vandamme at the housing office on Friday.", "Ilse Vandamme"),
    ("Contact Tiago Mendes on 0161 496 0000 with questions.", "Tiago Mendes"),
    ("My friends call me Pim", "Pim"),
    ("Account holder: Saskia J. Verhoef", "Saskia J. Verhoef"),
    ("Beneficiary: Kofi Mensah\nIBAN: GB33BUKB20201555555555", "Kofi Mensah"),
    ("Directed By:    Anouk Lemaire", "Anouk Lemaire"),
    ("Call me on 07700 900123 or lena@example.org. Lena Varga", "Lena Varga"),
]


@pytest.mark.parametrize(("text", "name"), NAMES_FOUND)
def test_names_in_messages_letters_and_forms(text: str, name: str) -> None:
    assert name in names(text)


NAMES_NOT_FOUND = [
    "Dear Colleague,\nI saw this patient today.",
    "Dear Sir or Madam,",
    "Thanks, will do.",
    "Plan: ?PE - CTPA today",
    "Impression: possible cellulitis? abscess",
    "Bloods: Hb 121, WCC 9.8",
    "Bot: What is the name on the account?",
    "Contact Dermatology if the rash spreads.",
    "Called Pharmacy about the dose.",
    "Patient met criteria for sepsis.",
    "Cardiology Clinic\nFollow-up in six weeks",
    "Discussed with the family. Renal Team",
    "Diabetes Clinic\nRoom 4\n",
]


@pytest.mark.parametrize("text", NAMES_NOT_FOUND)
def test_clinical_and_generic_lines_are_not_names(text: str) -> None:
    assert names(text) == []


def test_a_street_line_starts_after_a_quote_mark() -> None:
    text = "Ingrid\n> 14 Copse Road\n"
    assert starts_street_line(text, text.index(">"))
    assert not starts_street_line(text, 0)


ORGANISATIONS_FOUND = [
    ("Referral from Haldane Brothers GmbH, 3 Ring Road", "Haldane Brothers GmbH"),
    ("Invoices go to Quill & Ferrer LLP.", "Quill & Ferrer LLP"),
    ("The Maison Aubert SARL choir sang.", "Maison Aubert SARL"),
    ("suppliers Brouwer Techniek BV and Kessler Druck AG", "Brouwer Techniek BV"),
    ("suppliers Brouwer Techniek BV and Kessler Druck AG", "Kessler Druck AG"),
    ("Landlord: Ashgrove Housing Association, phone 0113 496 0000", "Ashgrove Housing Association"),
    (">Pennant Legal Aid\n>Suite 4", "Pennant Legal Aid"),
    ("Staff of Greyfriars Credit Union attended.", "Greyfriars Credit Union"),
]


@pytest.mark.parametrize(("text", "organisation"), ORGANISATIONS_FOUND)
def test_organisations_by_legal_form_or_kind(text: str, organisation: str) -> None:
    assert organisation in organisations(text)


ORGANISATIONS_NOT_FOUND = [
    "Referred to the Diabetes Association for education.",
    "Home Care Services to visit twice daily.",
    "Seen by Social Services today.",
    "anion gap AG 14, bicarbonate 18",
    "Blood group AB positive; SA node normal",
    "NHS Trust policy followed.",
]


@pytest.mark.parametrize("text", ORGANISATIONS_NOT_FOUND)
def test_generic_or_clinical_runs_are_not_organisations(text: str) -> None:
    assert organisations(text) == []


@pytest.mark.parametrize(
    ("text", "value", "entity", "dropped"),
    [
        ("SSN: 078-05-1120", "SSN", "ORGANIZATION", True),
        ("using this IBAN GB33 BUKB", "IBAN", "ORGANIZATION", True),
        ("Address: 4 Elm Road", "Address", "PERSON", True),
        ("Our ref: letter of May", "ref", "ORGANIZATION", True),
        ("Kettering Ltd: invoices", "Kettering Ltd", "ORGANIZATION", True),
        ("invoices from Kettering Ltd today", "Kettering Ltd", "ORGANIZATION", False),
        ("Seen by Halvorsen: stable", "Halvorsen", "PERSON", False),
        ("Marisol: hello", "Marisol", "PERSON", False),
    ],
)
def test_field_names_are_not_entities(text: str, value: str, entity: str, dropped: bool) -> None:
    start = text.index(value)
    assert is_not_an_entity(text, start, start + len(value), entity) is dropped


def test_scrubber_removes_names_and_organisations_of_a_message(scrubber: Any) -> None:
    text = (
        "Dear Torvald,\nWe met Ilse Vandamme at Haldane Brothers GmbH.\nSSN: 078-05-1120\nThanks, Oluwaseun"
    )
    (out,) = scrubber.scrub_texts([TextItem(text)], patient=None)
    for value in ("Torvald", "Ilse Vandamme", "Haldane Brothers", "Oluwaseun", "078-05-1120"):
        assert value not in str(out)
    assert "SSN:" in str(out)
