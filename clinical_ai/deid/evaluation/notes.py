"""The labelled clinical note set: notes written from templates, filled with fictional values, gold spans
recorded where each value went.

``fixtures/deid_eval/templates.json`` holds the templates and the clinical vocabulary they use. A template is
a realistic note (admission, discharge, nursing, referral, clinic, ED, operative, radiology...) whose
identifiers are placeholders:

- ``{TYPE}``: a fresh value, e.g. ``{PHONE}``;
- ``{TYPE:key}``: the same value wherever the key repeats in the note, e.g. ``{PERSON:pt}`` the patient;
- ``{TYPE|form}`` / ``{TYPE:key|form}``: a written form, e.g. ``{PERSON:pt|family}`` "Okafor",
  ``{DATE:dob|long}`` "14 March 1959".

Every value comes from small lists in :mod:`note_values`, so the set is rebuilt the same way from the same seed
anywhere, with no network: note ``i`` uses template ``i mod T`` and a random generator seeded with
``"{seed}:{i}"``. Gold spans cover the value only (not a title before a name, nor a label like "MRN:").
Each occurrence of a vocabulary term in a template's own text (not in a value) is recorded as a clinical term:
it must survive de-identification.

Regenerate with ``python -m clinical_ai.deid.evaluation.notes`` (see ``fixtures/deid_eval/README.md``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from clinical_ai.deid.evaluation.note_values import (
    ADDRESS_FORMS,
    DATE_FORMS,
    FACILITY_FORMS,
    PERSON_FORMS,
    Person,
    ValueFactory,
    render_date,
)

REPO_ROOT = Path(__file__).resolve().parents[3]
FIXTURE_DIR = REPO_ROOT / "fixtures" / "deid_eval"
TEMPLATES_PATH = FIXTURE_DIR / "templates.json"
NOTES_PATH = FIXTURE_DIR / "clinical_notes.json"
DEFAULT_SEED = 1729
DEFAULT_COUNT = 300

PLACEHOLDER = re.compile(r"\{(?P<type>[A-Z][A-Z0-9_]*)(?::(?P<key>[a-z0-9_]+))?(?:\|(?P<form>[a-z_]+))?\}")
PLACEHOLDER_TYPES = frozenset(
    {
        "PERSON",
        "DATE",
        "PHONE",
        "FAX",
        "MRN",
        "ADDRESS",
        "AGE_OVER_89",
        "FACILITY",
        "EMAIL",
        "URL",
        "IP",
        "ACCOUNT",
        "HEALTH_PLAN_ID",
        "DEVICE_ID",
    }
)
FORMS: dict[str, tuple[str, ...]] = {
    "PERSON": PERSON_FORMS,
    "DATE": DATE_FORMS,
    "ADDRESS": ADDRESS_FORMS,
    "FACILITY": FACILITY_FORMS,
}

# --- templates ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    id: str
    kind: str
    text: str


@dataclass(frozen=True)
class TemplateSet:
    templates: tuple[Template, ...]
    clinical_terms: tuple[str, ...]
    sha256: str  # of the file's bytes: the generated set records which templates made it


class TemplateError(ValueError):
    """The templates file is malformed: an unknown placeholder type or form, a duplicate id..."""


def load_templates(path: Path = TEMPLATES_PATH) -> TemplateSet:
    raw = path.read_bytes()
    document = json.loads(raw.decode("utf-8"))
    templates = tuple(Template(t["id"], t["kind"], t["text"]) for t in document["templates"])
    ids = [template.id for template in templates]
    if len(set(ids)) != len(ids):
        raise TemplateError("template ids must be unique")
    for template in templates:
        for match in PLACEHOLDER.finditer(template.text):
            kind, form = match.group("type"), match.group("form")
            if kind not in PLACEHOLDER_TYPES:
                raise TemplateError(f"{template.id}: unknown placeholder {match.group(0)}")
            if form is not None and form not in FORMS.get(kind, ()):
                raise TemplateError(f"{template.id}: unknown form in {match.group(0)}")
        leftover = PLACEHOLDER.sub("", template.text)
        if "{" in leftover or "}" in leftover:
            raise TemplateError(f"{template.id}: a brace that is not a placeholder")
    terms = tuple(dict.fromkeys(document.get("clinical_terms", [])))
    return TemplateSet(templates, terms, hashlib.sha256(raw).hexdigest())


# --- rendering ----------------------------------------------------------------------------------------------


V = TypeVar("V")


def _keyed(store: dict[str, V], key: str | None, make: Callable[[], V]) -> V:
    """A fresh value without a key; with one, the value made the first time the key appeared."""
    if key is None:
        return make()
    if key not in store:
        store[key] = make()
    return store[key]


@dataclass
class _NoteState:
    factory: ValueFactory
    persons: dict[str, Person] = field(default_factory=dict)
    dates: dict[str, dt.date] = field(default_factory=dict)
    date_forms: dict[str, str] = field(default_factory=dict)
    strings: dict[str, str] = field(default_factory=dict)  # by "TYPE:key"
    patient: Person | None = None

    def value(self, kind: str, key: str | None, form: str | None) -> str:
        factory = self.factory
        if kind == "PERSON":
            person = _keyed(self.persons, key, factory.person)
            if key == "pt":
                self.patient = person
            return person.render(form or "full")
        if kind == "DATE":
            date = _keyed(self.dates, key, lambda: factory.date(birth=key == "dob"))
            if form is None:
                form = _keyed(self.date_forms, key, lambda: factory.date_form)
            return render_date(date, form)
        makers: dict[str, Callable[[], str]] = {
            "PHONE": factory.phone,
            "FAX": factory.phone,
            "MRN": factory.mrn,
            "ACCOUNT": factory.account,
            "HEALTH_PLAN_ID": factory.health_plan_id,
            "DEVICE_ID": factory.device_id,
            "ADDRESS": lambda: factory.address(form or "full"),
            "FACILITY": lambda: factory.facility(form or "hospital"),
            "EMAIL": lambda: factory.email(self.patient or factory.person()),
            "URL": factory.url,
            "IP": factory.ip,
            "AGE_OVER_89": lambda: str(factory.rng.randint(90, 104)),
        }
        return _keyed(self.strings, f"{kind}:{key}" if key else None, makers[kind])


def _term_pattern(terms: Sequence[str]) -> re.Pattern[str] | None:
    if not terms:
        return None
    alternation = "|".join(re.escape(term) for term in sorted(terms, key=len, reverse=True))
    return re.compile(rf"(?<![\w])(?:{alternation})(?![\w])")


def render_note(template: Template, rng: random.Random, terms: Sequence[str] = ()) -> dict[str, Any]:
    """One note from ``template``: its text, the gold spans of the values put in, the clinical terms."""
    state = _NoteState(ValueFactory(rng))
    pattern = _term_pattern(terms)
    parts: list[str] = []
    spans: list[dict[str, Any]] = []
    found_terms: list[dict[str, Any]] = []
    length = 0

    def literal(text: str) -> None:
        nonlocal length
        if pattern is not None:
            for match in pattern.finditer(text):
                found_terms.append(
                    {
                        "term": match.group(0),
                        "start_position": length + match.start(),
                        "end_position": length + match.end(),
                    }
                )
        parts.append(text)
        length += len(text)

    cursor = 0
    for match in PLACEHOLDER.finditer(template.text):
        literal(template.text[cursor : match.start()])
        value = state.value(match.group("type"), match.group("key"), match.group("form"))
        spans.append(
            {
                "entity_type": match.group("type"),
                "entity_value": value,
                "start_position": length,
                "end_position": length + len(value),
            }
        )
        parts.append(value)
        length += len(value)
        cursor = match.end()
    literal(template.text[cursor:])
    return {
        "template_id": template.id,
        "kind": template.kind,
        "full_text": "".join(parts),
        "spans": spans,
        "clinical_terms": found_terms,
    }


def generate_notes(
    template_set: TemplateSet, *, count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED
) -> dict[str, Any]:
    """The labelled note set as written to ``clinical_notes.json`` (deterministic in its arguments)."""
    templates = template_set.templates
    if not templates:
        raise TemplateError("no templates")
    notes = []
    for index in range(count):
        template = templates[index % len(templates)]
        note = render_note(template, random.Random(f"{seed}:{index}"), template_set.clinical_terms)
        notes.append({"id": f"note-{index:04d}", **note})
    return {
        "generator": "clinical_ai.deid.evaluation.notes",
        "seed": seed,
        "count": count,
        "templates_sha256": template_set.sha256,
        "notes": notes,
    }


def dump_notes(notes: dict[str, Any]) -> str:
    return json.dumps(notes, ensure_ascii=False, indent=1) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the labelled clinical note set from templates.")
    parser.add_argument("--templates", type=Path, default=TEMPLATES_PATH)
    parser.add_argument("--output", type=Path, default=NOTES_PATH)
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    notes = generate_notes(load_templates(args.templates), count=args.count, seed=args.seed)
    args.output.write_text(dump_notes(notes), encoding="utf-8")
    spans = sum(len(note["spans"]) for note in notes["notes"])
    terms = sum(len(note["clinical_terms"]) for note in notes["notes"])
    print(f"wrote {args.count} notes, {spans} gold spans, {terms} clinical terms to {args.output}")  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
