"""Labelled texts: presidio-research's synthetic sentences, the generated clinical notes and the generated
general text.

Both files use presidio-research's layout, ``{full_text, spans: [{entity_type, entity_value,
start_position, end_position (exclusive)}]}``. Gold types are mapped onto evaluation labels
(:mod:`labels`). Adjustments are counted and reported:

- presidio-research's ``TITLE`` ("Mr.", "Dr.") is dropped: a title is not an identifier;
- ``ADDRESS`` spans whose value is ``nan`` are dropped: an artefact of that generator (a pandas NaN printed
  into the text), not part of an address;
- a span whose offsets do not point at its value (one in that file) is moved to the nearest place that does.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinical_ai.deid.evaluation.general_text import general_text_document
from clinical_ai.deid.evaluation.labels import CLINICAL_GOLD, GENERAL_GOLD, RESEARCH_GOLD
from clinical_ai.deid.evaluation.metrics import GoldSpan, TermSpan

RESEARCH_FILE = Path("presidio_research_synthetic_pii") / "generated_small.json"
_NOT_TEXT = frozenset({"nan"})


@dataclass(frozen=True)
class LabelledText:
    id: str
    text: str
    gold: tuple[GoldSpan, ...]
    terms: tuple[TermSpan, ...] = ()


@dataclass(frozen=True)
class Dataset:
    name: str
    texts: tuple[LabelledText, ...]
    adjustments: Mapping[str, int] = field(default_factory=dict)  # gold spans dropped or realigned, by reason

    @property
    def characters(self) -> int:
        return sum(len(item.text) for item in self.texts)


def _realign(text: str, value: str, near: int, slack: int = 8) -> tuple[int, int]:
    """The offsets of ``value`` closest to ``near`` (one presidio-research span is off by one)."""
    candidates = [
        index
        for index in range(max(0, near - slack), min(len(text), near + slack) + 1)
        if text.startswith(value, index)
    ]
    if not candidates:
        raise ValueError(f"gold value {value!r} is not near offset {near}")
    start = min(candidates, key=lambda index: abs(index - near))
    return start, start + len(value)


def _gold(
    record: Mapping[str, Any], mapping: Mapping[str, str], adjustments: Counter[str]
) -> tuple[GoldSpan, ...]:
    text: str = record["full_text"]
    spans: list[GoldSpan] = []
    for span in record.get("spans") or []:
        kind = str(span["entity_type"])
        start, end = int(span["start_position"]), int(span["end_position"])
        expected = str(span.get("entity_value", text[start:end]))
        if text[start:end] != expected:
            start, end = _realign(text, expected, start)
            adjustments[f"{kind} offsets realigned to the value"] += 1
        if kind not in mapping:
            adjustments[f"dropped {kind}"] += 1
        elif expected.strip().lower() in _NOT_TEXT:
            adjustments[f"dropped {kind} {expected.strip()!r}"] += 1
        else:
            spans.append(GoldSpan(start, end, mapping[kind], kind))
    return tuple(sorted(spans, key=lambda s: (s.start, s.end)))


def load_research(path: Path, *, limit: int | None = None) -> Dataset:
    """presidio-research's ``generated_small.json`` (100 general-domain sentences)."""
    records = json.loads(path.read_text(encoding="utf-8-sig"))
    adjustments: Counter[str] = Counter()
    texts = tuple(
        LabelledText(f"sentence-{index:03d}", record["full_text"], _gold(record, RESEARCH_GOLD, adjustments))
        for index, record in enumerate(records[:limit])
    )
    return Dataset("presidio-research synthetic sentences", texts, dict(adjustments))


def load_clinical_notes(path: Path, *, limit: int | None = None) -> Dataset:
    """The generated clinical notes (``fixtures/deid_eval/clinical_notes.json``)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    adjustments: Counter[str] = Counter()
    texts = tuple(
        LabelledText(
            note["id"],
            note["full_text"],
            _gold(note, CLINICAL_GOLD, adjustments),
            tuple(
                TermSpan(term["start_position"], term["end_position"], term["term"])
                for term in note.get("clinical_terms") or []
            ),
        )
        for note in document["notes"][:limit]
    )
    return Dataset("generated clinical notes", texts, dict(adjustments))


def load_general_text(path: Path | None = None, *, limit: int | None = None) -> Dataset:
    """The general-text set (:mod:`general_text`): generated in memory, or read from ``path`` (a file that
    ``python -m clinical_ai.deid.evaluation.general_text`` wrote)."""
    document = general_text_document() if path is None else json.loads(path.read_text(encoding="utf-8"))
    adjustments: Counter[str] = Counter()
    texts = tuple(
        LabelledText(record["id"], record["full_text"], _gold(record, GENERAL_GOLD, adjustments))
        for record in document["records"][:limit]
    )
    return Dataset("generated general text", texts, dict(adjustments))
