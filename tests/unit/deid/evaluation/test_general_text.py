"""The general-text set: deterministic, gold spans on the values put in, Safe Harbor's choices of what is
gold, the committed file up to date, and ``deid_eval`` scoring both detectors on a subset."""

from __future__ import annotations

import random
from collections import Counter
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from clinical_ai.deid.evaluation import general_values as v
from clinical_ai.deid.evaluation.datasets import load_general_text
from clinical_ai.deid.evaluation.general_text import (
    DEFAULT_COUNT,
    FILLS,
    OWN_TEMPLATES,
    PLACEHOLDER,
    dump_records,
    general_text_document,
    generate_records,
    render_record,
)
from clinical_ai.deid.evaluation.labels import GENERAL_GOLD
from clinical_ai.deid.evaluation.runner import evaluate_spans

RESEARCH_SAMPLE = ("My card {{credit_card_number}} was lost.", "{{name}} lives at {{address}}")


def _luhn_valid(number: str) -> bool:
    digits = [int(char) for char in number if char.isdigit()]
    total = 0
    for index, digit in enumerate(reversed(digits)):
        if index % 2 == 1:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def test_generation_is_deterministic_and_record_i_stands_alone() -> None:
    first = generate_records(research_templates=RESEARCH_SAMPLE, count=40, seed=5)
    assert first == generate_records(research_templates=RESEARCH_SAMPLE, count=40, seed=5)
    assert first != generate_records(research_templates=RESEARCH_SAMPLE, count=40, seed=6)
    assert (
        first["records"][:7]
        == generate_records(research_templates=RESEARCH_SAMPLE, count=7, seed=5)["records"]
    )


def test_every_own_placeholder_has_a_fill() -> None:
    used = {match.group("name") for template in OWN_TEMPLATES for match in PLACEHOLDER.finditer(template)}
    assert used <= set(FILLS)


def test_gold_spans_point_at_the_values_and_map_onto_labels() -> None:
    records = generate_records(research_templates=RESEARCH_SAMPLE, count=300, seed=11)["records"]
    kinds: Counter[str] = Counter()
    for record in records:
        text = record["full_text"]
        assert "{{" not in text
        for span in record["spans"]:
            assert text[span["start_position"] : span["end_position"]] == span["entity_value"]
            assert span["entity_type"] in GENERAL_GOLD
            kinds[span["entity_type"]] += 1
    for kind in (v.STREET, v.ZIP, v.CITY, v.PHONE, v.CARD, v.DATE, v.PERSON):
        assert kinds[kind] >= 10, kind


def test_safe_harbor_decides_what_is_gold() -> None:
    rng = random.Random(1)
    # an age up to 89, a state, a country and a year stay: no gold span
    for template in ("I am {{age}} years old", "{{state_abbr}} {{country}} {{year}} {{nationality}}"):
        assert render_record(template, rng)["spans"] == []
    record = render_record("She is {{age_over_89}}.", rng)
    assert [span["entity_type"] for span in record["spans"]] == [v.AGE_OVER_89]


def test_addresses_come_as_parts_with_the_zip_on_its_own_line_sometimes() -> None:
    rng = random.Random(3)
    alone = 0
    for _ in range(200):
        record = render_record("{{address_block}}", rng)
        text = record["full_text"]
        kinds = [span["entity_type"] for span in record["spans"]]
        assert kinds[0] == v.STREET and v.ZIP in kinds
        zip_span = next(span for span in record["spans"] if span["entity_type"] == v.ZIP)
        line = text[: zip_span["start_position"]].rsplit("\n", 1)[-1]
        alone += not line.strip()
    assert alone >= 10


def test_cards_pass_luhn_and_ibans_their_check_digits() -> None:
    rng = random.Random(9)
    for _ in range(200):
        assert _luhn_valid(v.credit_card(rng))
        iban = v.iban(rng).replace(" ", "")
        rearranged = iban[4:] + iban[:4]
        assert int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


@pytest.mark.shared_data
def test_the_set_is_the_same_every_time_and_mixes_both_kinds_of_template(shared_data: Path) -> None:
    path = shared_data / "presidio_research_synthetic_pii" / "templates.txt"
    document = general_text_document(path)
    assert dump_records(document) == dump_records(general_text_document(path))
    dataset = load_general_text()
    assert len(dataset.texts) == DEFAULT_COUNT and not dataset.adjustments
    sources = Counter(record["source"] for record in document["records"])
    assert sources["own"] > 600 and sources["presidio-research"] > 400


def test_without_the_shared_templates_the_set_holds_our_own_only(tmp_path: Path) -> None:
    document = general_text_document(tmp_path / "absent.txt", count=50)
    assert {record["source"] for record in document["records"]} == {"own"}
    written = tmp_path / "general.json"
    written.write_text(dump_records(document), encoding="utf-8")
    assert [t.text for t in load_general_text(written).texts] == [r["full_text"] for r in document["records"]]


def test_ours_finds_more_addresses_zips_and_phones_than_bare_presidio(ours: Any, bare: Any) -> None:
    dataset = load_general_text(limit=80)
    evaluation = evaluate_spans("general", dataset, [ours, bare])
    mine, theirs = (evaluation.scores[name].by_gold_type for name in ("ours", "bare Presidio"))
    for kind in (v.STREET, v.ZIP, v.CITY):
        ours_recall, bare_recall = mine[kind].recall, theirs[kind].recall
        assert ours_recall is not None and bare_recall is not None
        assert ours_recall >= 0.9 > bare_recall, kind
    for kind in mine:
        assert (mine[kind].redaction_recall or 0) >= (theirs[kind].redaction_recall or 0) - 1e-9, kind


def test_deid_eval_runs_the_general_set(ours: Any, bare: Any) -> None:
    out = StringIO()
    call_command("deid_eval", "--only", "general", "--limit", "8", stdout=out)
    output = out.getvalue()
    assert "(d) generated general text: 8 texts" in output
    assert "ZIP_CODE" in output and "bare R" in output
