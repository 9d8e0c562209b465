"""The note generator: deterministic, gold spans on the values it put in, the committed set up to date."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pytest

from clinical_ai.deid.evaluation.notes import (
    NOTES_PATH,
    PLACEHOLDER_TYPES,
    Template,
    TemplateError,
    TemplateSet,
    dump_notes,
    generate_notes,
    load_templates,
    render_note,
)


@pytest.fixture(scope="module")
def templates() -> TemplateSet:
    return load_templates()


def test_templates_are_many_varied_and_use_every_placeholder(templates: TemplateSet) -> None:
    assert len(templates.templates) >= 40
    kinds = Counter(template.kind for template in templates.templates)
    for kind in ("admission note", "discharge summary", "nursing note", "referral letter"):
        assert kinds[kind] >= 4, kind
    used = {match.group(1) for t in templates.templates for match in re.finditer(r"\{([A-Z_0-9]+)", t.text)}
    assert used == PLACEHOLDER_TYPES
    literal = "\n".join(re.sub(r"\{[^}]*\}", "\0", t.text) for t in templates.templates)
    for term in templates.clinical_terms:  # every vocabulary term is in the templates' own words
        assert re.search(rf"(?<![\w]){re.escape(term)}(?![\w])", literal), term
    for eponym in ("Parkinson's disease", "Alzheimer's disease", "Crohn's disease", "Hodgkin's lymphoma"):
        assert eponym in templates.clinical_terms


def test_generation_is_deterministic(templates: TemplateSet) -> None:
    first = generate_notes(templates, count=60, seed=7)
    assert first == generate_notes(templates, count=60, seed=7)
    assert first != generate_notes(templates, count=60, seed=8)
    # note i does not depend on how many notes are generated
    assert first["notes"][:10] == generate_notes(templates, count=10, seed=7)["notes"]


def test_gold_spans_point_at_the_inserted_values(templates: TemplateSet) -> None:
    notes = generate_notes(templates, count=len(templates.templates), seed=3)["notes"]
    for note in notes:
        text = note["full_text"]
        assert "{" not in text and "}" not in text
        covered: set[int] = set()
        for span in note["spans"]:
            assert text[span["start_position"] : span["end_position"]] == span["entity_value"]
            assert span["entity_value"] and span["entity_value"] == span["entity_value"].strip()
            covered.update(range(span["start_position"], span["end_position"]))
        for term in note["clinical_terms"]:
            assert text[term["start_position"] : term["end_position"]] == term["term"]
            assert covered.isdisjoint(range(term["start_position"], term["end_position"]))


def test_keyed_placeholders_repeat_one_value_in_its_forms() -> None:
    template = Template(
        "t", "test", "{PERSON:pt} ({DATE:dob|iso}) - Mrs {PERSON:pt|family}, born {DATE:dob|long}; {PERSON}"
    )
    note = render_note(template, random.Random(1))
    full, dob_iso, family, dob_long, other = (span["entity_value"] for span in note["spans"])
    assert full.endswith(" " + family)
    year, _month, day = dob_iso.split("-")
    assert dob_long.startswith(f"{int(day)} ") and dob_long.endswith(year)
    assert [span["entity_type"] for span in note["spans"]] == ["PERSON", "DATE", "PERSON", "DATE", "PERSON"]
    assert other  # an unkeyed placeholder gets a fresh person (maybe, by chance, the same name)


def test_malformed_templates_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "templates.json"
    for text in ("{SSN}", "{PERSON|nickname}", "a { brace"):
        path.write_text(json.dumps({"templates": [{"id": "x", "kind": "k", "text": text}]}), encoding="utf-8")
        with pytest.raises(TemplateError):
            load_templates(path)


def test_the_committed_note_set_is_what_the_templates_generate(templates: TemplateSet) -> None:
    committed = json.loads(NOTES_PATH.read_text(encoding="utf-8"))
    assert committed["templates_sha256"] == templates.sha256, "regenerate: see fixtures/deid_eval/README.md"
    regenerated = generate_notes(templates, count=committed["count"], seed=committed["seed"])
    assert NOTES_PATH.read_text(encoding="utf-8") == dump_notes(regenerated)
    assert committed["count"] >= 300
