"""The allow-list's effect, measured: on the generated clinical notes and the shared Synthea notes no
allow-listed term is removed, while the names beside them still are (text only, no patient record)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from clinical_ai.deid.evaluation.allow_list import (
    PLANTED_LINE,
    NamedText,
    allow_list_effect,
    allow_list_markdown,
    clinical_note_items,
    evaluate_allow_list,
    synthea_note_items,
)

REPO = Path(__file__).resolve().parents[4]
NOTES = REPO / "fixtures" / "deid_eval" / "clinical_notes.json"
SYNTHEA_DIR = "synthea_r4_ms_anonymizer_samples"


@pytest.fixture(scope="module")
def scrubber(ours: Any) -> Any:
    return ours.scrubber


def test_on_the_generated_notes_no_listed_term_is_removed_and_names_still_are(scrubber: Any) -> None:
    items = clinical_note_items(NOTES)
    effect = allow_list_effect("clinical", items, scrubber)
    assert effect.documents == 300
    assert effect.terms > 1000
    assert effect.terms_removed["with"] == 0, effect.removed_terms["with"]
    assert effect.terms_removed["without"] > 50  # NER takes these for names and places without the list
    assert effect.names == 678
    assert effect.names_removed["with"] == effect.names_removed["without"]
    assert effect.names_removed["with"] >= 0.99 * effect.names


def test_names_written_as_listed_terms_only_count_as_kept_when_they_are_terms(scrubber: Any) -> None:
    text = "Dr Graves saw her for Graves' disease; ECG with ST depression."
    name = text.index("Graves")
    effect = allow_list_effect("one", [NamedText(text, ((name, name + 6),))], scrubber)
    assert effect.terms == 2  # "Graves' disease" and "ST"; the titled "Graves" is not a term
    assert effect.terms_removed == {"with": 0, "without": 1}
    assert effect.names_removed == {"with": 1, "without": 1}


@pytest.mark.shared_data
def test_on_the_synthea_notes_no_listed_term_is_removed_and_names_still_are(
    scrubber: Any, shared_data: Path
) -> None:
    items = synthea_note_items(shared_data / SYNTHEA_DIR)
    assert len(items) == 481
    assert all("ST depression" in item.text for item in items)
    effect = allow_list_effect("synthea", items, scrubber)
    assert effect.terms >= 481 * 14
    assert effect.terms_removed["with"] == 0, effect.removed_terms["with"]
    assert effect.terms_removed["without"] >= 481  # "ST" at least, in every note
    assert effect.names >= 2 * 481  # the planted name and the title's, at least
    assert effect.names_removed["with"] == effect.names


@pytest.mark.shared_data
def test_the_report_table(scrubber: Any, shared_data: Path) -> None:
    effects = evaluate_allow_list(scrubber, notes_path=NOTES, synthea_dir=shared_data / SYNTHEA_DIR, limit=2)
    assert effects[0].documents == 2
    table = allow_list_markdown(effects)
    assert "| generated clinical notes | 2 |" in table
    assert "Synthea notes" in table and "PLANTED_LINE" in table
    assert "{given}" in PLANTED_LINE
    assert effects[0].as_dict()["terms_removed"]["with"] == 0
