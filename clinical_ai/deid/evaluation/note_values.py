"""Fictional values for the generated clinical notes: names, places, numbers and dates in the forms notes
write them, all drawn from a ``random.Random`` so a seed gives the same values everywhere (no network, no
external data). Used by :mod:`notes`."""

from __future__ import annotations

import datetime as dt
import random
import re
import unicodedata
from dataclasses import dataclass

PERSON_FORMS = ("full", "given", "family", "initial", "formal", "upper")
DATE_FORMS = ("iso", "us", "uk", "long", "month_first", "abbr", "short", "dotted")
ADDRESS_FORMS = ("full", "line")
FACILITY_FORMS = ("hospital", "practice", "pharmacy")

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
