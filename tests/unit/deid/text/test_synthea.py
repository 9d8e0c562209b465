"""On the Synthea patients: no identifier of the Patient resource survives in its clinical notes."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import pytest

from clinical_ai.deid.engine.text.patient_terms import patient_identifiers_from_fhir
from clinical_ai.deid.engine.types import PatientContext, PatientIdentifiers, TextItem

from .conftest import notes, resources

pytestmark = pytest.mark.shared_data


def birth_date_forms(iso: str) -> set[str]:
    date = dt.date.fromisoformat(iso)
    month, abbreviated = f"{date:%B}", f"{date:%b}"
    return {
        date.isoformat(),
        f"{date:%m/%d/%Y}",
        f"{date:%d/%m/%Y}",
        f"{date.month}/{date.day}/{date.year}",
        f"{date.day} {month} {date.year}",
        f"{date:%d} {month} {date.year}",
        f"{month} {date.day}, {date.year}",
        f"{abbreviated} {date.day} {date.year}",
        f"{date:%d}-{abbreviated}-{date.year}",
    }


def known_identifiers(identifiers: PatientIdentifiers) -> set[str]:
    """Every string of the record that must not be left in a note: names with and without Synthea's
    digits, identifiers, phones, address parts and the birth date in its usual written forms."""
    known: set[str] = set()
    for name in (*identifiers.names, *identifiers.given_names, *identifiers.family_names, *identifiers.other):
        for token in name.split():
            if token.rstrip(".").lower() in {"mr", "mrs", "ms", "miss", "dr"}:
                continue
            known |= {token, re.sub(r"\d+$", "", token)}
    known |= {*identifiers.identifiers, *identifiers.phones, *identifiers.emails, *identifiers.address_parts}
    if identifiers.birth_date:
        known |= birth_date_forms(identifiers.birth_date)
    return {value for value in known if len(value) > 1}


def survivors(text: str, known: set[str]) -> list[str]:
    return [value for value in known if re.search(rf"(?<!\w){re.escape(value)}(?!\w)", text, re.IGNORECASE)]


def patient_bundles(shared_data: Path) -> list[Path]:
    folder = shared_data / "synthea_r4_ms_anonymizer_samples"
    return sorted(
        path for path in folder.glob("*.json") if not path.name.startswith(("hospital", "practitioner"))
    )


def test_no_identifier_of_the_patient_survives_in_the_notes(scrubber: Any, shared_data: Path) -> None:
    bundles = patient_bundles(shared_data)
    assert len(bundles) == 11
    leaks: list[tuple[str, str]] = []
    notes_seen = 0
    mentions = 0
    for path in bundles:
        bundle: dict[str, Any] = json.loads(path.read_text(encoding="utf-8-sig"))
        patient = resources(bundle, "Patient")[0]
        identifiers = patient_identifiers_from_fhir(patient)
        known = known_identifiers(identifiers)
        texts = notes(bundle)
        notes_seen += len(texts)
        mentions += sum(len(survivors(text, known)) for text in texts)
        context = PatientContext(pseudonym=patient["id"], date_shift_days=-17, identifiers=identifiers)
        for out in scrubber.scrub_texts([TextItem(text) for text in texts], patient=context):
            leaks += [(path.name, value) for value in survivors(out, known)]
            assert "year-old" in out and "# Chief Complaint" in out  # the clinical note is still there
    assert notes_seen == 481
    assert mentions >= notes_seen  # every note names its patient (and starts with a date)
    assert leaks == []
