"""The labelled general-text set: ordinary (non-clinical, partly non-US) messages, letters and forms with
fictional identifiers and gold spans where each went.

Clinical notes are not the only free text the gateway receives: patients' portal messages, referral letters
and social-work notes carry the identifiers of everyday life, written as people write them: addresses with
house numbers, unit lines and ZIP codes on their own lines, military (PSC/APO) and European addresses, UK
and EU postcodes, phone numbers in international forms, card numbers, dates in many forms. The set mixes
presidio-research's generator templates (``shared/data/presidio_research_synthetic_pii/templates.txt``,
read at generation time, their ``{{placeholder}}`` shapes) with templates written here
(:data:`OWN_TEMPLATES`), and fills both from :mod:`general_values`. The set is generated in memory when
``deid_eval`` runs (deterministic, about a second): presidio-research's sentences stay in ``../shared/data``
and are never copied into this repository. Without that folder the set holds this project's templates only.

Safe Harbor decides what is gold: a person, a street line (house number and street, unit, PO box, PSC or
unit box), a town, a ZIP or postcode, a date with a day or month, phone, e-mail, URL, IP, card, SSN, IBAN and
licence numbers, an age over 89. A state, a country, a nationality, a year alone, a weekday and an age up
to 89 are not identifiers there and carry no gold span. Record ``i`` is drawn with a generator seeded
``"{seed}:{i}"``. ``python -m clinical_ai.deid.evaluation.general_text --output FILE`` writes it to a file
to read (under var/, which git ignores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from clinical_ai.deid.evaluation import general_values as v
from clinical_ai.deid.evaluation.notes import REPO_ROOT

GENERAL_TEXT_OUTPUT = REPO_ROOT / "var" / "general_text.json"
RESEARCH_TEMPLATES_PATH = (
    REPO_ROOT.parent / "shared" / "data" / "presidio_research_synthetic_pii" / "templates.txt"
)
DEFAULT_SEED = 2718
DEFAULT_COUNT = 1500
OWN_SHARE = 0.6  # share of records drawn from this project's templates

PLACEHOLDER = re.compile(r"\{\{(?P<name>[a-z_0-9]+)\}\}")

# Templates written for this project: where the gateway meets general text.
OWN_TEMPLATES: tuple[str, ...] = (
    # patient portal messages
    "Hi, this is {{name}}. I moved last month, please update my address to {{address_line}}. "
    "My new number is {{phone_number}}.",
    "Message from patient portal\nFrom: {{name}}\nSent: {{date}}\n\nI need to change the card on file to "
    "{{credit_card_number}}, expiry next year. Thanks.",
    "Hello, my appointment letter went to my old address. The right one is:\n{{address_block}}\n"
    "Please call me on {{phone_number}} if anything is missing.",
    "Can you send the invoice to {{po_box}}, {{city}}, {{state_abbr}} {{zipcode}}? I don't get mail at home.",
    "Dear team, I am travelling until {{date}}. Reach me on {{phone_intl}} or {{email}}. {{name}}",
    "I paid with my card ending {{credit_card_number}} on {{date}} but was charged twice.",
    "My son {{first_name}} was born on {{date_of_birth}}. We live at {{building_number}} {{street_name}}, "
    "{{city}} {{zipcode}}.",
    "Please post my repeat form to\n{{address_block}}",
    "Who do I speak to about my bill? My account was opened on {{date}} and my phone is {{phone_number}}.",
    "My wife {{name_female}} will collect the letter. Her mobile is {{phone_intl}}.",
    # referral and correspondence letters
    "{{organization}}\n{{address_block}}\nTel: {{phone_number}}\n\n{{date}}\n\nDear {{prefix}} {{last_name}},\n"
    "Thank you for seeing {{name}}, who lives at {{address_line}}.",
    "To whom it may concern,\nI am writing on behalf of {{name}} (date of birth {{date_of_birth}}), "
    "of {{address_line}}, who has asked us to confirm the tenancy began on {{date}}.",
    "Referral from {{organization}}, {{address_line}}. Contact {{name}} on {{phone_number}} "
    "or fax {{phone_number}}.",
    "Forwarding address:\n{{name}}\n{{military_address}}",
    "Please write to my son at his posting:\n{{name}}\n{{military_address}}\nHe is there until {{date}}.",
    "Correspondence address: {{eu_address_line}}. Telephone {{phone_intl}}.",
    "{{name}}\n{{eu_address_block}}\n\n{{date}}\n\nRe: change of address",
    "{{name}}\n{{uk_address_block}}\n{{phone_intl}}",
    "Our ref: letter of {{date}}. The family's new address is {{uk_address_line}}.",
    "Dear {{first_name}}, we have received your documents dated {{date}} and {{date}}.",
    # social-work and housing notes
    "Home visit {{date}}. {{name}} lives with her partner at {{address_line}}. Landlord: {{organization}}, "
    "phone {{phone_number}}.",
    "Client {{name}}, DOB {{date_of_birth}}, moved from {{city}} to {{address_line}} on {{date}}.",
    "Called {{name}} on {{phone_number}}: no answer. Letter sent to\n{{address_block}}",
    "Emergency contact: {{name}} (sister), {{phone_intl}}, {{address_line}}.",
    "Food bank referral. Address: {{building_number}} {{street_name}}\n{{secondary_address}}\n{{city}}\n"
    "{{zipcode}}",
    "Benefits letter dated {{date}} sent to {{po_box}}. Card {{credit_card_number}} reported stolen on {{date}}.",
    "Met {{name}} at {{organization}} on {{date}}. New tenancy at {{building_number}} {{street_name}}, "
    "{{secondary_address}}, from {{date}}.",
    "Safeguarding: father {{name}} now at {{military_address_line}}. Phone {{phone_number}}.",
    "Next review {{date}}. Postcode for the housing search: {{postcode}}.",
    "Mr {{last_name}} gave his ZIP as {{zipcode}} and his phone as {{phone_number}}.",
    # forms and customer service
    "Name: {{name}}\nAddress: {{address_line}}\nPhone: {{phone_number}}\nCard: {{credit_card_number}}",
    "Billing address\n{{address_block}}\nCard number {{credit_card_number}}",
    "Ship to: {{name}}, {{address_line}}. Deliver after {{date}}.",
    "Payment of 42.50 taken from {{credit_card_number}} on {{date}} at 14:05.",
    "Date of birth: {{date_of_birth}}\nSSN: {{ssn}}\nDriver license: {{us_driver_license}}",
    "Wire to {{iban}} before {{date}}, reference {{last_name}}.",
    "Account holder: {{name}}\nIBAN: {{iban}}\nPhone: {{phone_intl}}",
    "Ask for {{first_name}} at the front desk, {{building_number}} {{street_name}}, {{city}}, {{country}}.",
    "The meeting moved to {{date}}; dial in on {{phone_intl}}.",
    "Please confirm your e-mail {{email}} and website {{url}}. Last login from {{ip_address}} on {{date}}.",
    "Contact card\n{{name}}\n{{phone_number}}\n{{email}}\n{{address_block}}",
    "I am {{age}} years old and I live in {{city}}.",
    "Her grandmother, {{age_over_89}} years old, still lives alone at {{address_line}}.",
    "Reading {{zipcode}} as the postcode, the parcel for {{name}} went to {{city}} on {{date}}.",
)


def load_research_templates(path: Path = RESEARCH_TEMPLATES_PATH) -> list[str]:
    """presidio-research's templates, one a line, with their written ``\\n`` made line breaks."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.replace("\\n", "\n").replace("\\,", ",") for line in lines if line.strip()]


Fill = Callable[[random.Random], v.Value]


def _text(kind: str | None, make: Callable[[random.Random], str]) -> Fill:
    return lambda rng: [(make(rng), kind)]


def _age(rng: random.Random) -> v.Value:
    return [(str(rng.randint(18, 89)), None)]


FILLS: dict[str, Fill] = {
    "person": _text(v.PERSON, v.full_name),
    "name": _text(v.PERSON, v.full_name),
    "name_female": _text(v.PERSON, lambda rng: v.full_name(rng, "f")),
    "name_male": _text(v.PERSON, lambda rng: v.full_name(rng, "m")),
    "first_name": _text(v.PERSON, v.given_name),
    "first_name_female": _text(v.PERSON, lambda rng: v.given_name(rng, "f")),
    "first_name_male": _text(v.PERSON, lambda rng: v.given_name(rng, "m")),
    "first_name_nonbinary": _text(v.PERSON, lambda rng: rng.choice(v.GIVEN_OTHER)),
    "last_name": _text(v.PERSON, v.family_name),
    "last_name_female": _text(v.PERSON, v.family_name),
    "last_name_male": _text(v.PERSON, v.family_name),
    "prefix": _text(None, lambda rng: rng.choice(v.PREFIXES)),
    "prefix_female": _text(None, lambda rng: rng.choice(("Mrs.", "Ms.", "Dr."))),
    "prefix_male": _text(None, lambda rng: rng.choice(("Mr.", "Dr."))),
    "address": lambda rng: v.any_address(rng),
    "address_line": lambda rng: v.any_address(rng, multiline=False),
    "address_block": lambda rng: v.any_address(rng, multiline=True),
    "uk_address_line": lambda rng: v.uk_address(rng, multiline=False),
    "uk_address_block": lambda rng: v.uk_address(rng, multiline=True),
    "eu_address_line": lambda rng: v.european_address(rng, multiline=False),
    "eu_address_block": lambda rng: v.european_address(rng, multiline=True),
    "military_address": lambda rng: v.military_address(rng, multiline=True),
    "military_address_line": lambda rng: v.military_address(rng, multiline=False),
    "po_box": v.po_box,
    "building_number": _text(v.STREET, v.house_number),
    "street_name": _text(v.STREET, v.us_street),
    "secondary_address": _text(v.STREET, v.unit_line),
    "city": _text(v.CITY, lambda rng: rng.choice(v.US_CITIES + v.UK_TOWNS + v.DE_TOWNS + v.FR_TOWNS)),
    "country": _text(None, lambda rng: rng.choice(v.COUNTRIES)),
    "nationality": _text(None, lambda rng: rng.choice(v.NATIONALITIES)),
    "nation_woman": _text(None, lambda rng: rng.choice(v.NATIONALITIES) + " woman"),
    "nation_plural": _text(None, lambda rng: rng.choice(v.NATIONALITIES) + "s"),
    "state_abbr": _text(None, lambda rng: rng.choice(v.US_STATES)),
    "zipcode": _text(v.ZIP, v.us_zip),
    "postcode": _text(v.ZIP, v.zip_code),
    "organization": _text(v.ORGANIZATION, lambda rng: rng.choice(v.ORGANIZATIONS)),
    "job": _text(None, lambda rng: rng.choice(v.JOBS)),
    "phone_number": _text(v.PHONE, v.phone),
    "phone_intl": _text(v.PHONE, v.phone),
    "credit_card_number": _text(v.CARD, v.credit_card),
    "ssn": _text(v.SSN, v.ssn),
    "iban": _text(v.IBAN, v.iban),
    "us_driver_license": _text(v.LICENSE, v.driver_license),
    "email": _text(v.EMAIL, v.email),
    "url": _text(v.URL, v.url),
    "ip_address": _text(v.IP, v.ip_address),
    "date": _text(v.DATE, v.date_text),
    "date_time": _text(v.DATE, v.date_text),
    "date_of_birth": _text(v.DATE, lambda rng: v.date_text(rng, birth=True)),
    "year": _text(None, lambda rng: str(rng.randint(1950, 2026))),
    "day_of_week": _text(None, lambda rng: rng.choice(v.WEEKDAYS)),
    "age": _age,
    "age_over_89": _text(v.AGE_OVER_89, lambda rng: str(rng.randint(90, 104))),
}


def render_record(template: str, rng: random.Random) -> dict[str, Any]:
    """One record: the template with each placeholder filled, and a gold span for each typed piece."""
    parts: list[str] = []
    spans: list[dict[str, Any]] = []
    position = 0
    cursor = 0
    for match in PLACEHOLDER.finditer(template):
        literal = template[cursor : match.start()]
        parts.append(literal)
        position += len(literal)
        fill = FILLS.get(match.group("name"))
        pieces: v.Value = fill(rng) if fill else [(match.group(0), None)]
        for text, kind in pieces:
            if kind is not None:
                spans.append(
                    {
                        "entity_type": kind,
                        "entity_value": text,
                        "start_position": position,
                        "end_position": position + len(text),
                    }
                )
            parts.append(text)
            position += len(text)
        cursor = match.end()
    parts.append(template[cursor:])
    return {"full_text": "".join(parts), "spans": spans}


def general_text_document(
    research_templates_path: Path = RESEARCH_TEMPLATES_PATH,
    *,
    count: int = DEFAULT_COUNT,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """The evaluation set as ``deid_eval`` scores it: presidio-research's templates read from
    ``../shared/data`` when present (the published figures), this project's templates alone otherwise."""
    templates = load_research_templates(research_templates_path) if research_templates_path.is_file() else []
    return generate_records(research_templates=templates, count=count, seed=seed)


def generate_records(
    *,
    research_templates: Sequence[str],
    count: int = DEFAULT_COUNT,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """``count`` records; each draws one of this project's templates (share :data:`OWN_SHARE`) or one of
    presidio-research's, with its own seeded generator."""
    records = []
    for index in range(count):
        rng = random.Random(f"{seed}:{index}")
        own = rng.random() < OWN_SHARE or not research_templates
        template = rng.choice(OWN_TEMPLATES) if own else rng.choice(research_templates)
        record = render_record(template, rng)
        records.append(
            {"id": f"general-{index:04d}", "source": "own" if own else "presidio-research", **record}
        )
    research_hash = hashlib.sha256("\n".join(research_templates).encode("utf-8")).hexdigest()
    return {
        "seed": seed,
        "count": count,
        "research_templates_sha256": research_hash,
        "records": records,
    }


def dump_records(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, indent=1) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the labelled general-text set.")
    parser.add_argument("--research-templates", type=Path, default=RESEARCH_TEMPLATES_PATH)
    parser.add_argument("--output", type=Path, default=GENERAL_TEXT_OUTPUT)
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    arguments = parser.parse_args(argv)
    document = general_text_document(arguments.research_templates, count=arguments.count, seed=arguments.seed)
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(dump_records(document), encoding="utf-8")
    sys.stdout.write(f"wrote {len(document['records'])} records to {arguments.output}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
