"""The allow-list's effect: clinical terms kept and names still removed, with and without it.

The scrubber drops the parts of person, place, organisation and facility findings that fall on an allow-listed
clinical term (:mod:`clinical_ai.deid.engine.text.allow_list`). Keeping terms is worth nothing if it costs
names, so each text set is scored both ways from one analysis (the same Presidio results, ``find`` with and
without the list):

- **terms**: occurrences of allow-listed terms in the texts, and how many a finding overlaps (removed);
- **names**: person names in the texts (gold spans of the generated clinical notes; the patient's names
  from the record in the Synthea notes), and how many have every letter inside a finding (removed).

Two sets: the generated clinical notes (``fixtures/deid_eval/clinical_notes.json``, gold names) and the
shared Synthea notes, text only (no patient record). Synthea's notes contain none of the listed
abbreviations or eponyms, so each note there also gets one line written for this measure that puts the
patient's own name beside them (:data:`PLANTED_LINE`); the report says so.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinical_ai.deid.engine.text.allow_list import DEFAULT_ALLOW_LIST, AllowList
from clinical_ai.deid.engine.text.scrubber import Finding, PresidioTextScrubber
from clinical_ai.deid.evaluation.datasets import load_clinical_notes
from clinical_ai.deid.evaluation.leaks import notes, patient_bundles

# One line added to each Synthea note: the patient's name beside the listed terms, the way a clinic letter
# heads a note ("Endocrinology: <name> ..."), and a clinician named with a title.
PLANTED_LINE = (
    "Endocrinology: {given} {family} (seen today). ECG with ST depression; known MS, PE in 2019, AF and old "
    "MI; CA breast; Ca 2.41 mmol/L. Graves' disease, Hashimoto's thyroiditis, Cushing's syndrome, "
    "Addison's disease, Crohn's, Parkinson's disease and Bell's palsy. Reviewed by Dr {family}.\n"
)
_DIGITS = re.compile(r"\d+")


@dataclass(frozen=True)
class NamedText:
    """A text and the person names in it (character ranges)."""

    text: str
    names: tuple[tuple[int, int], ...]


@dataclass
class AllowListEffect:
    dataset: str
    documents: int
    terms: int
    names: int
    terms_removed: dict[str, int]  # "with" / "without" the allow-list
    names_removed: dict[str, int]
    removed_terms: dict[str, Counter[str]] = field(default_factory=dict)  # which terms, both ways
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "documents": self.documents,
            "terms": self.terms,
            "names": self.names,
            "terms_removed": dict(self.terms_removed),
            "names_removed": dict(self.names_removed),
            "removed_terms": {key: dict(value.most_common()) for key, value in self.removed_terms.items()},
            "note": self.note,
        }


def _removed(text: str, start: int, end: int, findings: Sequence[Finding]) -> bool:
    """Every letter and digit of ``text[start:end]`` inside a finding."""
    return all(
        any(f.start <= index < f.end for f in findings)
        for index in range(start, end)
        if text[index].isalnum()
    )


def allow_list_effect(
    dataset: str,
    items: Sequence[NamedText],
    scrubber: PresidioTextScrubber,
    *,
    allow_list: AllowList = DEFAULT_ALLOW_LIST,
    note: str = "",
) -> AllowListEffect:
    """Terms and names removed by ``scrubber`` (text only) with ``allow_list`` and without any."""
    texts = [item.text for item in items]
    results = scrubber.analyze_texts(texts)
    variants = {"with": copy.copy(scrubber), "without": copy.copy(scrubber)}
    variants["with"].allow_list = allow_list
    variants["without"].allow_list = None
    terms_removed = dict.fromkeys(variants, 0)
    names_removed = dict.fromkeys(variants, 0)
    removed_terms: dict[str, Counter[str]] = {key: Counter() for key in variants}
    terms = names = 0
    for item, found in zip(items, results, strict=True):
        spans = allow_list.spans(item.text)
        terms += len(spans)
        names += len(item.names)
        for key, variant in variants.items():
            findings = variant.find(item.text, found, None)
            for span in spans:
                if any(f.start < span.end and span.start < f.end for f in findings):
                    terms_removed[key] += 1
                    removed_terms[key][span.term] += 1
            names_removed[key] += sum(_removed(item.text, a, b, findings) for a, b in item.names)
    return AllowListEffect(
        dataset, len(items), terms, names, terms_removed, names_removed, removed_terms, note
    )


def clinical_note_items(path: Path, *, limit: int | None = None) -> list[NamedText]:
    """The generated clinical notes with their gold person names."""
    dataset = load_clinical_notes(path, limit=limit)
    return [
        NamedText(item.text, tuple((g.start, g.end) for g in item.gold if g.label == "PERSON"))
        for item in dataset.texts
    ]


def synthea_note_items(folder: Path, *, limit: int | None = None) -> list[NamedText]:
    """Each Synthea patient's notes with :data:`PLANTED_LINE` after the note's first line, its name ranges
    being the planted name (digits dropped, as a note would write it) and every mention of the patient's
    given and family names (with Synthea's digits, "Terrie907", or without)."""
    items: list[NamedText] = []
    for path in patient_bundles(folder)[:limit]:
        bundle = json.loads(path.read_text(encoding="utf-8-sig"))
        resources = [entry.get("resource", {}) for entry in bundle.get("entry", [])]
        patient = next(r for r in resources if r.get("resourceType") == "Patient")
        name = (patient.get("name") or [{}])[0]
        given = _DIGITS.sub("", " ".join(name.get("given") or []))
        family = _DIGITS.sub("", name.get("family") or "")
        for note in notes(resources):
            head, _, rest = note.partition("\n")
            text = f"{head}\n{PLANTED_LINE.format(given=given, family=family)}{rest}"
            ranges = [
                (match.start(), match.end())
                for value in {given, family}
                if value
                for match in re.finditer(rf"(?<!\w){re.escape(value)}\d*(?!\w)", text)
            ]
            items.append(NamedText(text, tuple(sorted(ranges))))
    return items


def evaluate_allow_list(
    scrubber: PresidioTextScrubber,
    *,
    notes_path: Path | None,
    synthea_dir: Path | None,
    limit: int | None = None,
) -> list[AllowListEffect]:
    """The allow-list's effect on the generated clinical notes and on the Synthea notes (where present)."""
    effects: list[AllowListEffect] = []
    if notes_path is not None and notes_path.is_file():
        effects.append(
            allow_list_effect(
                "generated clinical notes", clinical_note_items(notes_path, limit=limit), scrubber
            )
        )
    if synthea_dir is not None and synthea_dir.is_dir():
        effects.append(
            allow_list_effect(
                "Synthea notes (one line planted per note)",
                synthea_note_items(synthea_dir, limit=limit),
                scrubber,
                note="Synthea's notes hold none of the listed terms: each note gets one line naming the "
                "patient beside them (allow_list.PLANTED_LINE); names are the patient's given and family "
                "names wherever they stand in the note.",
            )
        )
    return effects


def allow_list_markdown(effects: Sequence[AllowListEffect]) -> str:
    """A table of the effects for the report."""
    lines = [
        "Allow-list of clinical abbreviations and eponyms (text only; removed = a finding overlaps the term / "
        "covers every letter of the name):",
        "",
        "| texts | documents | listed terms | removed with list | removed without | names | names removed "
        "with list | names removed without |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for effect in effects:
        lines.append(
            f"| {effect.dataset} | {effect.documents} | {effect.terms} | {effect.terms_removed['with']} | "
            f"{effect.terms_removed['without']} | {effect.names} | {effect.names_removed['with']} | "
            f"{effect.names_removed['without']} |"
        )
    for effect in effects:
        worst = ", ".join(f"{term} {count}" for term, count in effect.removed_terms["without"].most_common(8))
        if worst:
            lines.append(f"\n{effect.dataset}, removed without the list: {worst}.")
        kept = ", ".join(f"{term} {count}" for term, count in effect.removed_terms["with"].most_common(8))
        if kept:
            lines.append(f"{effect.dataset}, still removed with the list: {kept}.")
        if effect.note:
            lines.append(f"{effect.dataset}: {effect.note}")
    return "\n".join(lines) + "\n"
