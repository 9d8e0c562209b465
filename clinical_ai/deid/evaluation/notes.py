"""The labelled clinical note set: notes written from templates, filled with fictional values, gold spans
recorded where each value went.

``fixtures/deid_eval/templates.json`` holds the templates and the clinical vocabulary they use. A template is
a realistic note (admission, discharge, nursing, referral, clinic, ED, operative, radiology...) whose
identifiers are placeholders:

- ``{TYPE}``: a fresh value, e.g. ``{PHONE}``;
- ``{TYPE:key}``: the same value wherever the key repeats in the note, e.g. ``{PERSON:pt}`` the patient;
- ``{TYPE|form}`` / ``{TYPE:key|form}``: a written form, e.g. ``{PERSON:pt|family}`` "Okafor",
  ``{DATE:dob|long}`` "14 March 1959".

Every value comes from small lists in this module, so the set is rebuilt the same way from the same seed
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
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
PERSON_FORMS = ("full", "given", "family", "initial", "formal", "upper")
DATE_FORMS = ("iso", "us", "uk", "long", "month_first", "abbr", "short", "dotted")
ADDRESS_FORMS = ("full", "line")
FACILITY_FORMS = ("hospital", "practice", "pharmacy")
FORMS: dict[str, tuple[str, ...]] = {
    "PERSON": PERSON_FORMS,
    "DATE": DATE_FORMS,
    "ADDRESS": ADDRESS_FORMS,
    "FACILITY": FACILITY_FORMS,
}

# --- fictional values ---------------------------------------------------------------------------------------
# Names from many languages, some that are also English words (Hope, Will, Brooks, Winter), hyphenated and
# multi-word surnames, apostrophes and accents: the forms notes really contain.
GIVEN_NAMES = (
    "Margaret", "Oluwaseun", "Siobhan", "Priya", "Tomasz", "Mei-Ling", "Dmitri", "Aisha", "Fernando",
    "Ingrid", "Kwame", "Niamh", "Rajesh", "Yusuf", "Hannah", "Giorgos", "Lucía", "Chidi", "Agnieszka",
    "Mohammed", "Eleanor", "Tariq", "Björn", "Anjali", "Declan", "Fatima", "Hiroshi", "Zofia", "Samuel",
    "Aroha", "Emeka", "Catriona", "Luca", "Noor", "Wendell", "Rosalind", "Joaquín", "Thandiwe", "Grace",
    "Hope", "Will", "Jordan", "Florence", "Pearl", "Irene", "Victor", "Dolores", "Colm",
)  # fmt: skip
FAMILY_NAMES = (
    "Okafor", "Lindqvist", "O'Sullivan", "Nakamura", "Kowalczyk", "Fitzgerald", "Adeyemi", "Haddad",
    "Petrov", "MacLeod", "Nguyen", "García", "Abernethy", "Oyelaran", "Van der Merwe", "Szymańska",
    "Chaudhry", "Achterberg", "Rahman", "Delacroix", "Mbeki", "Featherstone", "Ó Briain", "Castellanos",
    "Thorsen", "Al-Farsi", "Kapoor", "Whitfield", "Ikeda", "Brennan", "Moreau", "Dlamini", "Papadopoulos",
    "Hargreaves", "Quispe", "Ferreira", "Baptiste", "Okonkwo-Reid", "Yilmaz", "Brooks", "Marsh", "Fields",
    "Winter",
)  # fmt: skip
STREET_NAMES = (
    "Harbour View", "Maple", "Juniper", "Kingsley", "Orchard", "Beacon", "Larkspur", "Whitmore",
    "Cedar Hollow", "Fennimore", "Saltash", "Brackenbury", "Willow Bank", "Ashdown", "Quarry", "Elm",
)  # fmt: skip
STREET_SUFFIXES = (
    "Road", "Street", "Avenue", "Lane", "Drive", "Close", "Court", "Terrace", "Way", "Crescent", "Place",
    "Boulevard",
)  # fmt: skip
US_CITIES = (
    ("Springfield", "MA"), ("Riverton", "WY"), ("Lakewood", "OH"), ("Fairhaven", "WA"),
    ("Brookfield", "IL"), ("Millbrook", "NY"), ("Cedar Falls", "IA"), ("Port Ashby", "OR"),
    ("Greenville", "NC"), ("Marion", "GA"),
)  # fmt: skip
UK_TOWNS = (
    ("Portsmouth", "PO"), ("Kettering", "NN"), ("Harrogate", "HG"), ("Stockport", "SK"), ("Truro", "TR"),
    ("Dundee", "DD"), ("Wrexham", "LL"), ("Lancaster", "LA"),
)  # fmt: skip
HOSPITALS = (
    "Riverside General Hospital", "St Brendan's Hospital", "Harbourview Medical Center",
    "Oakwood Nursing Home", "Northgate Rehabilitation Centre", "Lakeshore Cancer Center",
    "Fairhaven Community Hospital", "St Aidan's Hospice", "Willowbrook Care Home", "Mercy Ridge Hospital",
    "Queen Adelaide Infirmary", "Kestrel Vale Medical Centre", "Pinecrest Regional Medical Center",
)  # fmt: skip
PRACTICES = (
    "Kingsbridge Medical Practice", "Ashdown Surgery", "Bramley Health Centre", "Cedar Falls Family Practice",
    "Maple Grove Clinic", "Elmfield Primary Care",
)  # fmt: skip
PHARMACIES = ("Hollins Park Pharmacy", "Greenway Chemists", "Bridgeford Pharmacy", "Castlegate Pharmacy")
EMAIL_DOMAINS = ("brightmail.com", "northmail.net", "postbox.co.uk", "inboxly.org", "letterhub.com")
US_AREA_CODES = ("212", "312", "415", "617", "713", "206", "303", "404", "503", "615")
UK_AREA_CODES = ("020", "023", "0113", "0161", "0131", "029", "0117", "01223")


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


@dataclass(frozen=True)
class Person:
    given: str
    family: str

    def render(self, form: str) -> str:
        if form == "given":
            return self.given
        if form == "family":
            return self.family
        if form == "initial":
            return f"{self.given[0]}. {self.family}"
        if form == "formal":
            return f"{self.family}, {self.given}"
        if form == "upper":
            return f"{self.given} {self.family}".upper()
        return f"{self.given} {self.family}"


_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
    "November", "December",
)  # fmt: skip


def render_date(date: dt.date, form: str) -> str:
    month = _MONTHS[date.month - 1]
    if form == "iso":
        return date.isoformat()
    if form == "us":
        return f"{date.month:02d}/{date.day:02d}/{date.year}"
    if form == "uk":
        return f"{date.day:02d}/{date.month:02d}/{date.year}"
    if form == "long":
        return f"{date.day} {month} {date.year}"
    if form == "month_first":
        return f"{month} {date.day}, {date.year}"
    if form == "abbr":
        return f"{date.day:02d}-{month[:3]}-{date.year}"
    if form == "short":
        return f"{date.month}/{date.day}/{date.year % 100:02d}"
    if form == "dotted":
        return f"{date.day:02d}.{date.month:02d}.{date.year}"
    raise ValueError(f"unknown date form {form!r}")


class ValueFactory:
    """Fictional values for one note; ``rng`` decides everything."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.date_form = rng.choice(DATE_FORMS)  # one house style per note, unless a template says otherwise
        self.uk = rng.random() < 0.5  # phones and addresses of one country per note
        self.event_date = dt.date(2016, 1, 1) + dt.timedelta(days=rng.randrange(3600))

    def digits(self, count: int) -> str:
        return "".join(self.rng.choice("0123456789") for _ in range(count))

    def letters(self, count: int) -> str:
        return "".join(self.rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(count))

    def person(self) -> Person:
        return Person(self.rng.choice(GIVEN_NAMES), self.rng.choice(FAMILY_NAMES))

    def date(self, *, birth: bool) -> dt.date:
        if birth:
            start, end = dt.date(1924, 1, 1), dt.date(2012, 12, 31)
            return start + dt.timedelta(days=self.rng.randrange((end - start).days + 1))
        # A note's events in order: each new date a few days after the one before.
        self.event_date += dt.timedelta(days=self.rng.randint(0, 12))
        return self.event_date

    def phone(self) -> str:
        rng = self.rng
        if self.uk:
            if rng.random() < 0.4:
                mobile = f"7700 900{self.digits(3)}"
                return rng.choice((f"0{mobile}", f"+44 {mobile}"))
            area = rng.choice(UK_AREA_CODES)
            local = self.digits(11 - len(area))
            return f"{area} {local[: len(local) - 4]} {local[-4:]}"
        area, exchange, line = rng.choice(US_AREA_CODES), str(rng.randint(201, 989)), self.digits(4)
        return rng.choice(
            (
                f"({area}) {exchange}-{line}",
                f"{area}-{exchange}-{line}",
                f"{area}.{exchange}.{line}",
                f"+1 {area} {exchange} {line}",
            )
        )

    def mrn(self) -> str:
        rng = self.rng
        return rng.choice(
            (
                self.digits(8),
                f"{self.digits(4)}-{self.digits(4)}",
                f"{self.letters(1)}{self.digits(7)}",
                f"{self.digits(3)} {self.digits(3)} {self.digits(4)}",
                f"{self.letters(2)}{self.digits(6)}",
            )
        )

    def account(self) -> str:
        return self.rng.choice(
            (
                f"ACC-{self.digits(8)}",
                self.digits(10),
                f"FIN{self.digits(8)}",
                f"V{self.digits(9)}",
                f"{self.digits(4)}-{self.digits(7)}",
            )
        )

    def health_plan_id(self) -> str:
        mbi = f"{self.rng.randint(1, 9)}{self.letters(1)}{self.letters(1)}{self.digits(1)}-{self.letters(1)}{self.letters(1)}{self.digits(1)}-{self.letters(2)}{self.digits(2)}"
        return self.rng.choice(
            (
                f"{self.letters(3)}{self.digits(9)}",
                f"W{self.digits(9)}",
                mbi,
                f"MCD{self.digits(8)}",
                f"{self.letters(1)}{self.digits(8)}-{self.digits(2)}",
            )
        )

    def device_id(self) -> str:
        return self.rng.choice(
            (
                f"{self.letters(3)}{self.digits(6)}{self.letters(1)}",
                f"PMX{self.digits(4)}-{self.digits(4)}",
                f"(01){self.digits(14)}(17){self.digits(6)}(10){self.letters(1)}{self.digits(4)}",
                f"SN{self.digits(4)}{self.letters(1)}{self.digits(4)}",
                f"HD-{self.digits(4)}-{self.digits(4)}",
            )
        )

    def address(self, form: str) -> str:
        rng = self.rng
        line = f"{rng.randint(1, 2400)} {rng.choice(STREET_NAMES)} {rng.choice(STREET_SUFFIXES)}"
        if rng.random() < 0.25:
            line = f"{line}, {rng.choice(('Apt', 'Flat', 'Unit'))} {rng.randint(1, 40)}{rng.choice(('', 'A', 'B'))}"
        if form == "line":
            return line
        if self.uk:
            town, area = rng.choice(UK_TOWNS)
            return f"{line}, {town} {area}{rng.randint(1, 19)} {rng.randint(1, 9)}{self.letters(2)}"
        city, state = rng.choice(US_CITIES)
        return f"{line}, {city}, {state} {self.digits(5)}"

    def facility(self, form: str) -> str:
        choices = {"practice": PRACTICES, "pharmacy": PHARMACIES}.get(form, HOSPITALS)
        return self.rng.choice(choices)

    def email(self, person: Person) -> str:
        given = re.sub(r"[^a-z]", "", _fold(person.given).lower())
        family = re.sub(r"[^a-z]", "", _fold(person.family).lower())
        local = self.rng.choice(
            (f"{given}.{family}", f"{given[0]}{family}{self.rng.randint(1, 99)}", f"{family}.{given[0]}")
        )
        return f"{local}@{self.rng.choice(EMAIL_DOMAINS)}"

    def url(self) -> str:
        slug = re.sub(r"[^a-z]", "", self.rng.choice(HOSPITALS).lower().replace("'", ""))[:18]
        number = self.digits(6)
        return self.rng.choice(
            (
                f"https://portal.{slug}.org/patient/{number}",
                f"https://myhealth.{slug}.nhs.uk/results?id={number}",
                f"www.{slug}.com/records/{number}",
                f"https://pacs.{slug}.org/viewer?study={number}",
            )
        )

    def ip(self) -> str:
        rng = self.rng
        if rng.random() < 0.15:
            return (
                f"2001:db8:{rng.randint(1, 0xFFFF):x}::{rng.randint(1, 0xFFFF):x}:{rng.randint(1, 0xFFFF):x}"
            )
        first = rng.choice((10, 86, 92, 172, 192, 203))
        return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


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


@dataclass
class _NoteState:
    factory: ValueFactory
    keyed: dict[tuple[str, str], Any] = field(default_factory=dict)
    patient: Person | None = None

    def value(self, kind: str, key: str | None, form: str | None) -> str:
        factory = self.factory
        if kind == "PERSON":
            person = self._keyed(kind, key, factory.person)
            if key == "pt":
                self.patient = person
            return person.render(form or "full")
        if kind == "DATE":
            date = self._keyed(kind, key, lambda: factory.date(birth=key == "dob"))
            if form is None and key is not None:
                form = self._keyed("DATE_FORM", key, lambda: factory.date_form)
            return render_date(date, form or factory.date_form)
        makers: dict[str, Any] = {
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
        value: str = self._keyed(kind, key, makers[kind])
        return value

    def _keyed(self, kind: str, key: str | None, make: Any) -> Any:
        if key is None:
            return make()
        if (kind, key) not in self.keyed:
            self.keyed[(kind, key)] = make()
        return self.keyed[(kind, key)]


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
