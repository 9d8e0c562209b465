"""Known identifiers of a patient, and the search for them in de-identified output."""

from __future__ import annotations

import base64

from clinical_ai.deid.evaluation.leaks import find_known, known_identifiers, notes, output_strings

PATIENT = {
    "resourceType": "Patient",
    "id": "d88f994a",
    "name": [{"prefix": ["Mrs."], "given": ["Carolee951"], "family": "Sanford861"}],
    "identifier": [{"value": "999-33-5538"}],
    "telecom": [{"system": "phone", "value": "555-657-5098"}],
    "address": [{"line": ["858 Sawayn Parade"], "city": "Lynn", "state": "MA", "postalCode": "01901"}],
    "birthDate": "1969-03-27",
    "extension": [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
            "valueString": "Salena230 Okuneva707",
        }
    ],
}


def test_known_identifiers_of_a_synthea_patient() -> None:
    known = set(known_identifiers(PATIENT))
    assert {"Carolee951", "Carolee", "Sanford861", "Sanford", "Salena", "Okuneva707"} <= known
    assert {"d88f994a", "999-33-5538", "555-657-5098", "858 Sawayn Parade", "Lynn", "01901"} <= known
    assert {
        "1969-03-27",
        "03/27/1969",
        "27/03/1969",
        "27 March 1969",
        "March 27, 1969",
        "27-Mar-1969",
    } <= known
    assert "Mrs." not in known and "Mrs" not in known
    assert "MA" not in known  # the state stays under Safe Harbor


def test_search_is_by_word_case_insensitive_and_counts_occurrences() -> None:
    known = ("Carolee", "Carolee951", "Lynn")
    found = find_known(["CAROLEE951 and carolee", "Lynnwood is not Lynn.", "[PERSON-3f9a1c]"], known)
    assert found == {"Carolee951": 1, "Carolee": 1, "Lynn": 1}


def test_output_strings_decode_text_attachments_and_skip_others() -> None:
    note = "Carolee951 is a 34 year-old"
    document = {
        "resourceType": "DocumentReference",
        "description": "history\nCarolee951",
        "content": [
            {"attachment": {"contentType": "text/plain", "data": base64.b64encode(note.encode()).decode()}},
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "data": base64.b64encode(b"%PDF Carolee").decode(),
                }
            },
        ],
    }
    strings = list(output_strings([document]))
    assert note in strings and "history\nCarolee951" in strings
    assert not any("%PDF" in text for text in strings)
    assert notes([document]) == [note]
    # a name after an escaped newline is still found: strings are searched one by one, never as JSON text
    assert find_known(strings, ("Carolee951",))["Carolee951"] == 2
