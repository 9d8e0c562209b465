"""The general-text recognizers: each form they exist for is found, and the numbers clinical notes are full
of (doses, lab values, times, scores, dates) are not taken for ZIP codes, streets or towns."""

from __future__ import annotations

import pytest

from clinical_ai.deid.engine.text.general_recognizers import (
    AddressTownRecognizer,
    GeneralPostalCodeRecognizer,
    StreetLineRecognizer,
    general_recognizers,
)


def found(kind: type, text: str) -> list[str]:
    recognizer = next(r for r in general_recognizers() if isinstance(r, kind))
    results = recognizer.analyze(text, [])
    return sorted({text[r.start : r.end] for r in results})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Forwarding address:\nPSC 0413, Box 8144\nAPO AE 09612", "PSC 0413, Box 8144"),
        ("now at Unit 2050 Box 4190, DPO AP 96522.", "Unit 2050 Box 4190"),
        ("Tidewater Legal Aid\nUSNS Comfort\nFPO AA 34278", "USNS Comfort"),
        ("I'll meet you at Lindenstraße 121\n81748 Kassel", "Lindenstraße 121"),
        ("Correspondence address: Lindengracht 256, 5678 AB Utrecht.", "Lindengracht 256"),
        ("Referral from Orion Freight GmbH, Am Mühlbach 11, 34945 Bamberg.", "Am Mühlbach 11"),
        ("Please post it to\n24 chemin des Vignes\n58001 Colmar", "24 chemin des Vignes"),
        ("51 rue des Lilas, 23504 Annecy, France", "51 rue des Lilas"),
        ("80 avenue Jean Jaurès\n31802 Annecy", "80 avenue Jean Jaurès"),
        ("Billing address\nFlat 19\n57 Rosebank Crescent", "Flat 19"),
        ("25 W Ironwood Place\nApt. 397\nBrookhaven", "Apt. 397"),
        ("85 S. Lakeshore Avenue\n> #356\n> Oban", "#356"),
        ("Mrs. Ulla Bergstrom Apartment 12 11308 East Sandpiper Dr", "Apartment 12"),
        ("Can you validate the following? Flat 8\n2 Victoria Terrace", "Flat 8"),
        ("Ignacio lives on N Quarry Ln street.", "N Quarry Ln"),
        ("He lives on the north side of S. Elmhurst Lane.", "S. Elmhurst Lane"),
    ],
)
def test_street_lines(text: str, expected: str) -> None:
    assert expected in found(StreetLineRecognizer, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PSC 4141, Box 2335\nAPO AP 96606\nHe is there until May.", "96606"),
        ("it is USNS Brunswick, APO AA 34565", "34565"),
        ("25 W Ironwood Place\nApt. 397\nBrookhaven\n69816", "69816"),  # ZIP alone on its line
        ("Billing address: Ana Ruiz\n  12 Oak St\n  Riverton\n  OH\n  44102-1234\n", "44102-1234"),
        ("I'll meet you at Lindenstraße 121\n81748 Kassel\nGermany", "81748"),
        ("Ship to: Spoorlaan 160, 5450 UW Utrecht. Deliver after 3 May.", "5450 UW"),
        ("of 327 Chestnut Street, Wollongong NSW 5052, who has asked", "5052"),
        ("84 Fairview Avenue, Kelowna BC  K8A 0L6 on the 25th", "K8A 0L6"),
        ("65 Quay Street\nAthlone\nD02 P821\n", "D02 P821"),
        ("Mr MacAllister gave his ZIP as 37541 and his phone", "37541"),
        ("Postcode for the housing search: 26893.", "26893"),
        ("Reading 63046 as the postcode, the parcel went", "63046"),
        ("Looking to support Ashgrove Food Bank in Pine Bluff 79710 in its mission", "79710"),
        ("85 S. Lakeshore Avenue\n#135\nNîmes\n\nPoland 77924", "77924"),
    ],
)
def test_postal_codes(text: str, expected: str) -> None:
    assert expected in found(GeneralPostalCodeRecognizer, text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I'll meet you at Lindenstraße 121\n81748 Kassel\nGermany", "Kassel"),
        ("8 Rosebank Crescent, Peterhead LL10 2FS, United Kingdom", "Peterhead"),
        ("74 Tamarack Lane, New Carlisle, GA 29470, who", "New Carlisle"),
        ("217 Church Road\nPeterhead CF16 7DA\nUnited Kingdom", "Peterhead"),
        ("12 Oak St\nApt 4\nRiverton\n44102", "Riverton"),
    ],
)
def test_towns_in_an_address_block(text: str, expected: str) -> None:
    assert expected in found(AddressTownRecognizer, text)


def test_countries_are_not_towns() -> None:
    text = "12 Oak St\nRiverton\nUnited Kingdom\n"
    assert "United Kingdom" not in found(AddressTownRecognizer, text)


# Clinical text: numbers, codes and capitalised words that none of these may take.
CLINICAL_NEGATIVES = [
    "Heparin 25000 units in 500 mL at 12 mL/h.\nPlatelets 15000\nWBC 12000",
    "Hb 102 g/L, creatinine 12345 umol/L, eGFR 45.\n10000\nunits given",
    "Seen in Unit 4 at 14:30. Transferred to Ward 7B.\nBed 12",
    "Dose: 5000 IU\nCRP 12 mg/L\nGlucose 5.4 mmol/L",
    "ECOG PS 1, NYHA class II, Child-Pugh A, CURB-65 score 2. T2N0M0 tumour, ICD-10 C50.9.",
    "Started apixaban 5 mg twice daily on 12/03/2025; INR 2.5.",
    "Referred to the Cardiology Clinic, 2nd floor. Review in 6 weeks.",
    "SpO2 94% on room air, RR 22, HR 104, BP 132/84, temp 37.9.",
    "The patient lives on the ground floor with her husband and uses a stick.",
    "Lot 12345 expiring 2027. Batch 67890.",
    "Stage IV disease; 1500 mL fluid restriction; 2000 kcal diet.",
]


@pytest.mark.parametrize("text", CLINICAL_NEGATIVES)
def test_clinical_text_is_left_alone(text: str) -> None:
    for recognizer in general_recognizers():
        assert recognizer.analyze(text, []) == [], recognizer.label


def test_the_analyzer_registry_holds_them() -> None:
    from clinical_ai.deid.engine.text.nlp import get_analyzer

    names = {
        getattr(recognizer, "label", type(recognizer).__name__)
        for recognizer in get_analyzer().registry.recognizers
    }
    assert {recognizer.label for recognizer in general_recognizers()} <= names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("IBAN: GB26JNRA95892873220167\nPhone: 5585405686", "5585405686"),
        ("he gave his phone as 9748388103.", "9748388103"),
        ("Please call me on 4777643075 if anything is missing.", "4777643075"),
        ("Tel. +49 621 123456", "+49 621 123456"),
    ],
)
def test_labelled_phones(text: str, expected: str) -> None:
    recognizer = next(r for r in general_recognizers() if r.label == "LabelledPhoneRecognizer")
    assert expected in {text[r.start : r.end] for r in recognizer.analyze(text, [])}


def test_labelled_phone_needs_eight_digits() -> None:
    recognizer = next(r for r in general_recognizers() if r.label == "LabelledPhoneRecognizer")
    assert recognizer.analyze("Call 111 or phone 999 if worse; tel 2 doses at 14:30.", []) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("website http://blog.example.co.uk/u/86006. Last login", "http://blog.example.co.uk/u/86006"),
        ("and website blog.example.co.uk.", "blog.example.co.uk"),
        (
            "Results: https://myhealth.example.nhs.uk/results?id=463952.",
            "https://myhealth.example.nhs.uk/results?id=463952",
        ),
        ("see www.example.com/contact today", "www.example.com/contact"),
    ],
)
def test_links(text: str, expected: str) -> None:
    recognizer = next(r for r in general_recognizers() if r.label == "LinkRecognizer")
    assert [text[r.start : r.end] for r in recognizer.analyze(text, [])] == [expected]


def test_an_email_domain_is_not_a_link() -> None:
    recognizer = next(r for r in general_recognizers() if r.label == "LinkRecognizer")
    assert recognizer.analyze("write to greta.xiong9@post.example.org today", []) == []
