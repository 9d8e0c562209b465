"""Fictional values for the general-text set (:mod:`general_text`): names, streets, towns and postcodes of
several countries, phones in national and international forms, Luhn-valid card numbers, dates in many
written forms. Lists written for this project; numbers are random digits in the shapes people write.

A value is a sequence of :data:`Piece` s, ``(text, gold type or None)``: an address is its street line, unit,
town and postcode as separate gold spans with the punctuation, line breaks and state or country between
them left unlabelled (Safe Harbor lets a state and a country stay).
"""

from __future__ import annotations

import datetime as dt
import random
import string
from collections.abc import Callable, Sequence

Piece = tuple[str, str | None]
Value = list[Piece]

# Gold types (mapped onto evaluation labels by labels.GENERAL_GOLD).
PERSON = "PERSON"
STREET = "STREET_ADDRESS"
CITY = "CITY"
ZIP = "ZIP_CODE"
ORGANIZATION = "ORGANIZATION"
PHONE = "PHONE_NUMBER"
CARD = "CREDIT_CARD"
DATE = "DATE_TIME"
EMAIL = "EMAIL_ADDRESS"
URL = "URL"
IP = "IP_ADDRESS"
SSN = "US_SSN"
IBAN = "IBAN_CODE"
LICENSE = "US_DRIVER_LICENSE"
AGE_OVER_89 = "AGE_OVER_89"

GIVEN_FEMALE = [
    "Aoife",
    "Beatriz",
    "Chiara",
    "Dagny",
    "Elif",
    "Farah",
    "Greta",
    "Hanna",
    "Ines",
    "Jolien",
    "Kasia",
    "Leonie",
    "Mairead",
    "Nadia",
    "Oksana",
    "Priya",
    "Rosalind",
    "Saoirse",
    "Thandiwe",
    "Ulla",
    "Valentina",
    "Wilhelmina",
    "Ximena",
    "Yasmin",
    "Zofia",
    "Marguerite",
    "Ottilie",
    "Constance",
    "Ngozi",
    "Mei",
]
GIVEN_MALE = [
    "Anselm",
    "Bartosz",
    "Cormac",
    "Dmitri",
    "Emeka",
    "Florian",
    "Gunnar",
    "Hamish",
    "Ignacio",
    "Jurgen",
    "Kwabena",
    "Lorcan",
    "Matthias",
    "Niall",
    "Oisin",
    "Pieter",
    "Quentin",
    "Rasmus",
    "Stellan",
    "Tobias",
    "Umberto",
    "Vikram",
    "Wojciech",
    "Xavier",
    "Yusuf",
    "Zoltan",
    "Caspar",
    "Desmond",
    "Lachlan",
    "Ruairi",
]
GIVEN_OTHER = ["Alex", "Robin", "Sasha", "Jordan", "Kim", "Morgan", "Rowan", "Quinn", "Eden", "Ash"]
FAMILY = [
    "Abernethy",
    "Bergstrom",
    "Castellanos",
    "Dimitriou",
    "Eriksen",
    "Fairweather",
    "Giordano",
    "Haverkamp",
    "Iwasaki",
    "Jankowski",
    "Kowalczyk",
    "Lindqvist",
    "Mbeki",
    "Nakashima",
    "O'Driscoll",
    "Papadakis",
    "Quigley",
    "Rautenbach",
    "Szabo",
    "Tiernan",
    "Uchenna",
    "Vasquez-Ortiz",
    "Wainwright",
    "Xiong",
    "Yilmaz",
    "Zimmermann",
    "Achterberg",
    "Blackwood",
    "Cuthbertson",
    "Delacroix",
    "Featherstone",
    "Gallagher",
    "Holmberg",
    "Ilunga",
    "MacAllister",
    "Ferreira",
    "Okonkwo",
    "Pellegrini",
    "Thorsen",
    "Van der Berg",
    "De Luca",
]
PREFIXES = ("Mr.", "Mrs.", "Ms.", "Dr.", "Mx.", "Prof.")

US_STREET_NAMES = [
    "Juniper",
    "Birchwood",
    "Larkspur",
    "Cobblestone",
    "Wexford",
    "Hawthorne",
    "Sycamore",
    "Briarcliff",
    "Foxglove",
    "Millbrook",
    "Quarry",
    "Ridgeview",
    "Sandpiper",
    "Tamarack",
    "Winslow",
    "Alder",
    "Beacon",
    "Chestnut",
    "Dogwood",
    "Elmhurst",
    "Fairview",
    "Greenbriar",
    "Harbor",
    "Ironwood",
    "Kingsley",
    "Lakeshore",
    "Magnolia",
    "Northgate",
    "Orchard",
    "Pinecrest",
]
US_SUFFIXES = (
    "Street",
    "St",
    "Avenue",
    "Ave",
    "Road",
    "Rd",
    "Drive",
    "Dr.",
    "Lane",
    "Ln",
    "Boulevard",
    "Blvd",
    "Court",
    "Ct",
    "Way",
    "Place",
    "Pl",
    "Terrace",
    "Circle",
    "Parkway",
    "Trail",
    "Highway",
)
US_CITIES = [
    "Brookhaven", "Cedar Falls", "Millbridge", "Port Ashton", "Riverton", "Fort Calloway", "Lakewood Heights",
    "Granite Springs", "Westfield", "Oak Harbor", "Silverton", "Maplewood", "Bellmont", "Fairhaven",
    "Clearwater Junction", "Dunmore", "Eastlake", "Pine Bluff", "New Carlisle", "Stonebridge",
]  # fmt: skip
US_STATES = [
    "AL",
    "AZ",
    "CA",
    "CO",
    "CT",
    "FL",
    "GA",
    "IL",
    "IN",
    "KY",
    "MA",
    "MD",
    "MI",
    "MN",
    "MO",
    "NC",
    "NJ",
    "NY",
    "OH",
    "OR",
    "PA",
    "TN",
    "TX",
    "VA",
    "WA",
    "WI",
]
UK_STREETS = """Mill Lane|Church Road|Victoria Terrace|Kingfisher Close|Abbey Mews|Rosebank Crescent|Station Road|
Heather Gardens|Wellington Parade|Orchard Rise|Thistle Grove|Harbour View|Beech Walk|Priory Way|Cromwell Square""".replace(
    "\n", ""
).split("|")
UK_TOWNS = ["Harrogate", "Stockport", "Aberystwyth", "Kirkcaldy", "Truro", "Dumfries", "Bangor", "Kendal",
            "Lowestoft", "Ilkley", "Oban", "Wrexham", "Salisbury", "Peterhead"]  # fmt: skip
DE_STREETS = ["Lindenstraße", "Goethestraße", "Am Mühlbach", "Birkenweg", "Schillerplatz", "Hauptstraße",
              "Rosenallee", "Kastanienweg", "Bahnhofstraße", "Eichendorffring"]  # fmt: skip
DE_TOWNS = ["Freiburg", "Regensburg", "Göttingen", "Lüneburg", "Bamberg", "Konstanz", "Kassel", "Ulm"]
FR_STREETS = ["rue des Lilas", "avenue Jean Jaurès", "boulevard Gambetta", "rue du Moulin", "place de la Mairie",
              "chemin des Vignes", "rue Victor Hugo", "allée des Tilleuls"]  # fmt: skip
FR_TOWNS = ["Rennes", "Annecy", "Perpignan", "Angers", "Colmar", "Nîmes", "Limoges", "Besançon"]
NL_STREETS = ["Keizersgracht", "Lindengracht", "Molenstraat", "Kerkpad", "Spoorlaan", "Zonnebloemweg"]
NL_TOWNS = ["Utrecht", "Leiden", "Haarlem", "Zwolle", "Delft", "Groningen"]
IE_STREETS = ["Main Street", "Castle Road", "Strand Road", "Pearse Street", "Quay Street"]
IE_TOWNS = ["Galway", "Kilkenny", "Sligo", "Tralee", "Athlone"]
CA_TOWNS = [
    ("Kelowna", "BC"),
    ("Moncton", "NB"),
    ("Kingston", "ON"),
    ("Sherbrooke", "QC"),
    ("Red Deer", "AB"),
]
AU_TOWNS = [("Ballarat", "VIC"), ("Toowoomba", "QLD"), ("Wollongong", "NSW"), ("Bunbury", "WA")]

ORGANIZATIONS = """Northwind Logistics|Harrowgate Building Society|Bluefin Analytics|Copperleaf Insurance|
Meridian Credit Union|Stonehill Tenants Association|Larchmont Community Trust|Fennimore & Duke LLP|
Kestrel Home Care Agency|Brightwater Housing Cooperative|Orion Freight GmbH|Société Lumière SARL|
Veldkamp Installatie BV|Tidewater Legal Aid|Ashgrove Food Bank|Pemberton Payroll Services""".replace(
    "\n", ""
).split("|")
EMAIL_DOMAINS = ("example.com", "post.example.org", "inbox.example.net", "example.co.uk")
URL_HOSTS = ("www.example.com", "portal.example.org", "my-site.example.net", "blog.example.co.uk")
COUNTRIES = ("Portugal", "Ghana", "Canada", "Ireland", "Germany", "France", "New Zealand", "Chile", "Poland")
NATIONALITIES = ("Portuguese", "Ghanaian", "Canadian", "Irish", "German", "French", "Chilean", "Polish")
JOBS = ("warehouse supervisor", "school librarian", "bus driver", "dental nurse", "software tester", "welder")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")  # fmt: skip


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(count))


def _upper(rng: random.Random, count: int) -> str:
    return "".join(rng.choice(string.ascii_uppercase) for _ in range(count))


# --- people --------------------------------------------------------------------------------------------------


def given_name(rng: random.Random, sex: str | None = None) -> str:
    pool = {"f": GIVEN_FEMALE, "m": GIVEN_MALE}.get(sex or "", GIVEN_FEMALE + GIVEN_MALE + GIVEN_OTHER)
    return rng.choice(pool)


def family_name(rng: random.Random) -> str:
    return rng.choice(FAMILY)


def full_name(rng: random.Random, sex: str | None = None) -> str:
    given = given_name(rng, sex)
    if rng.random() < 0.15:
        return f"{given} {given_name(rng, sex)[0]}. {family_name(rng)}"
    return f"{given} {family_name(rng)}"


# --- places -------------------------------------------------------------------------------------------------


def us_zip(rng: random.Random) -> str:
    code = f"{rng.randint(1, 99950):05d}"
    return f"{code}-{_digits(rng, 4)}" if rng.random() < 0.25 else code


def uk_postcode(rng: random.Random) -> str:
    area = rng.choice(("SW", "LS", "M", "B", "EH", "CF", "BT", "G", "NE", "OX", "KY", "TR", "PA", "LL"))
    district = str(rng.randint(1, 9)) + rng.choice("ABW") if rng.random() < 0.15 else str(rng.randint(1, 19))
    unit = str(rng.randint(0, 9)) + rng.choice("ABDEFGHJLNPQRSTUWXYZ") + rng.choice("ABDEFGHJLNPQRSTUWXYZ")
    return f"{area}{district} {unit}"


def ca_postcode(rng: random.Random) -> str:
    letters = "ABCEGHJKLMNPRSTVXY"
    return f"{rng.choice(letters)}{rng.randint(0, 9)}{rng.choice(letters)} {rng.randint(0, 9)}{rng.choice(letters)}{rng.randint(0, 9)}"


def eircode(rng: random.Random) -> str:
    return (
        f"{rng.choice(('D02', 'H91', 'F91', 'V92', 'R95'))} {rng.choice('ACDEFHKNPRTVWXY')}{_digits(rng, 3)}"
    )


def house_number(rng: random.Random) -> str:
    number = str(rng.choice((rng.randint(1, 99), rng.randint(100, 999), rng.randint(1000, 29999))))
    return number + rng.choice("AB") if rng.random() < 0.06 else number


def us_street(rng: random.Random) -> str:
    direction = rng.choice(("", "", "", "N ", "S. ", "East ", "W "))
    return f"{direction}{rng.choice(US_STREET_NAMES)} {rng.choice(US_SUFFIXES)}"


def unit_line(rng: random.Random) -> str:
    forms = (
        lambda: f"Apt {rng.randint(1, 40)}{rng.choice(('', 'B', 'C'))}",
        lambda: f"Apt. {rng.randint(100, 999)}",
        lambda: f"Suite {rng.randint(100, 990)}",
        lambda: f"Unit {rng.randint(1, 60)}",
        lambda: f"#{rng.randint(2, 450)}",
        lambda: f"Flat {rng.randint(1, 24)}",
        lambda: f"Apartment {rng.randint(1, 30)}",
    )
    return rng.choice(forms)()


def us_address(rng: random.Random, *, multiline: bool) -> Value:
    pieces: Value = [(f"{house_number(rng)} {us_street(rng)}", STREET)]
    if rng.random() < 0.4:
        pieces += [("\n" if multiline else ", ", None), (unit_line(rng), STREET)]
    pieces += [("\n" if multiline else ", ", None), (rng.choice(US_CITIES), CITY)]
    state = rng.choice(US_STATES)
    if multiline and rng.random() < 0.3:
        pieces += [(f", {state}\n", None), (us_zip(rng), ZIP)]  # the ZIP alone on its line
    else:
        pieces += [(f", {state} ", None), (us_zip(rng), ZIP)]
    return pieces


def uk_address(rng: random.Random, *, multiline: bool) -> Value:
    separator = "\n" if multiline else ", "
    pieces: Value = []
    if rng.random() < 0.3:
        pieces += [(f"Flat {rng.randint(1, 20)}", STREET), (separator, None)]
    pieces += [(f"{rng.randint(1, 220)} {rng.choice(UK_STREETS)}", STREET), (separator, None)]
    pieces += [(rng.choice(UK_TOWNS), CITY)]
    pieces += [(separator if rng.random() < 0.6 else " ", None), (uk_postcode(rng), ZIP)]
    if rng.random() < 0.3:
        pieces += [(f"{separator}United Kingdom", None)]
    return pieces


def european_address(rng: random.Random, *, multiline: bool) -> Value:
    separator = "\n" if multiline else ", "
    country = rng.choice(("DE", "FR", "NL", "IE"))
    if country == "DE":
        return [
            (f"{rng.choice(DE_STREETS)} {rng.randint(1, 140)}", STREET),
            (separator, None),
            (f"{rng.randint(10000, 99999)}", ZIP),
            (" ", None),
            (rng.choice(DE_TOWNS), CITY),
            (f"{separator}Germany" if rng.random() < 0.5 else "", None),
        ]
    if country == "FR":
        return [
            (f"{rng.randint(1, 90)} {rng.choice(FR_STREETS)}", STREET),
            (separator, None),
            (f"{rng.randint(1000, 95999):05d}", ZIP),
            (" ", None),
            (rng.choice(FR_TOWNS), CITY),
            (f"{separator}France" if rng.random() < 0.5 else "", None),
        ]
    if country == "NL":
        return [
            (f"{rng.choice(NL_STREETS)} {rng.randint(1, 300)}", STREET),
            (separator, None),
            (f"{rng.randint(1000, 9999)} {_upper(rng, 2)}", ZIP),
            (" ", None),
            (rng.choice(NL_TOWNS), CITY),
        ]
    return [
        (f"{rng.randint(1, 80)} {rng.choice(IE_STREETS)}", STREET),
        (separator, None),
        (rng.choice(IE_TOWNS), CITY),
        (separator, None),
        (eircode(rng), ZIP),
    ]


def other_address(rng: random.Random, *, multiline: bool) -> Value:
    separator = "\n" if multiline else ", "
    if rng.random() < 0.5:
        town, province = rng.choice(CA_TOWNS)
        return [
            (
                f"{house_number(rng)} {rng.choice(US_STREET_NAMES)} {rng.choice(('Street', 'Avenue', 'Crescent'))}",
                STREET,
            ),
            (separator, None),
            (town, CITY),
            (f" {province}  ", None),
            (ca_postcode(rng), ZIP),
        ]
    town, state = rng.choice(AU_TOWNS)
    return [
        (
            f"{rng.randint(1, 400)} {rng.choice(US_STREET_NAMES)} {rng.choice(('Street', 'Road', 'Parade'))}",
            STREET,
        ),
        (separator, None),
        (town, CITY),
        (f" {state} ", None),
        (f"{rng.randint(2000, 7999)}", ZIP),
    ]


def military_address(rng: random.Random, *, multiline: bool) -> Value:
    separator = "\n" if multiline else ", "
    kind = rng.random()
    if kind < 0.45:
        first: Value = [(f"PSC {_digits(rng, 4)}, Box {_digits(rng, 4)}", STREET)]
    elif kind < 0.8:
        first = [(f"Unit {_digits(rng, 4)} Box {_digits(rng, 4)}", STREET)]
    else:
        first = [(f"USNS {rng.choice(('Mercy', 'Comfort', 'Brunswick'))}", STREET)]
    post = rng.choice(("APO", "FPO", "DPO"))
    region = rng.choice(("AE", "AP", "AA"))
    zip_code = {"AE": "09", "AP": "96", "AA": "34"}[region] + _digits(rng, 3)
    return [*first, (f"{separator}{post} {region} ", None), (zip_code, ZIP)]


def po_box(rng: random.Random) -> Value:
    form = rng.choice(("PO Box", "P.O. Box", "P O Box", "Post Office Box"))
    return [(f"{form} {rng.randint(1, 9999)}", STREET)]


def any_address(rng: random.Random, *, multiline: bool | None = None) -> Value:
    lines = multiline if multiline is not None else rng.random() < 0.5
    roll = rng.random()
    if roll < 0.38:
        return us_address(rng, multiline=lines)
    if roll < 0.6:
        return uk_address(rng, multiline=lines)
    if roll < 0.78:
        return european_address(rng, multiline=lines)
    if roll < 0.88:
        return other_address(rng, multiline=lines)
    return military_address(rng, multiline=lines)


def zip_code(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.55:
        return us_zip(rng)
    if roll < 0.8:
        return uk_postcode(rng)
    if roll < 0.9:
        return ca_postcode(rng)
    return f"{rng.randint(10000, 99999)}"


# --- numbers ------------------------------------------------------------------------------------------------


def phone(rng: random.Random) -> str:
    area, exchange = rng.randint(201, 989), rng.randint(201, 989)
    line = _digits(rng, 4)
    forms: Sequence[Callable[[], str]] = (
        lambda: f"({area}) {exchange}-{line}",
        lambda: f"{area}-{exchange}-{line}",
        lambda: f"{area}.{exchange}.{line}",
        lambda: f"+1 {area} {exchange} {line}",
        lambda: f"1-{area}-{exchange}-{line}",
        lambda: f"+1-{area}-{exchange}-{line}",
        lambda: f"{area}-{exchange}-{line} x{rng.randint(10, 999)}",
        lambda: f"{area}{exchange}{line}",
        lambda: f"+44 20 7946 {_digits(rng, 4)}",
        lambda: f"020 7946 {_digits(rng, 4)}",
        lambda: f"07700 900{_digits(rng, 3)}",
        lambda: f"+44 (0)161 496 {_digits(rng, 4)}",
        lambda: f"+44 7700 900{_digits(rng, 3)}",
        lambda: f"+49 30 {_digits(rng, 8)}",
        lambda: f"+49 (0)89 {_digits(rng, 3)} {_digits(rng, 4)}",
        lambda: f"0049 621 {_digits(rng, 6)}",
        lambda: f"+33 1 {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)}",
        lambda: f"+33 6 {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)} {_digits(rng, 2)}",
        lambda: f"+31 20 {_digits(rng, 3)} {_digits(rng, 4)}",
        lambda: f"+353 1 {_digits(rng, 3)} {_digits(rng, 4)}",
        lambda: f"+353 87 {_digits(rng, 3)} {_digits(rng, 4)}",
        lambda: f"+61 2 {_digits(rng, 4)} {_digits(rng, 4)}",
        lambda: f"+61 412 {_digits(rng, 3)} {_digits(rng, 3)}",
        lambda: f"+91 98{_digits(rng, 3)} {_digits(rng, 5)}",
        lambda: f"+34 91 {_digits(rng, 3)} {_digits(rng, 2)} {_digits(rng, 2)}",
        lambda: f"+48 22 {_digits(rng, 3)} {_digits(rng, 2)} {_digits(rng, 2)}",
        lambda: f"+1 (604) {exchange}-{line}",
    )
    return rng.choice(forms)()


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + _digits(rng, length - len(prefix) - 1)
    total = 0
    for index, char in enumerate(reversed(body)):
        digit = int(char)
        if index % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return body + str((10 - total % 10) % 10)


def credit_card(rng: random.Random) -> str:
    kind = rng.choice(("visa", "visa", "mc", "mc", "amex", "discover"))
    if kind == "amex":
        number = _luhn_complete(rng.choice(("34", "37")), 15, rng)
        groups = [number[:4], number[4:10], number[10:]]
    else:
        prefix = {"visa": "4", "mc": str(rng.randint(51, 55)), "discover": "6011"}[kind]
        number = _luhn_complete(prefix, 16, rng)
        groups = [number[i : i + 4] for i in range(0, 16, 4)]
    return rng.choice((" ", "-", "")).join(groups)


def ssn(rng: random.Random) -> str:
    return f"{rng.randint(100, 665)}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}"


def iban(rng: random.Random) -> str:
    """A valid IBAN (ISO 13616 check digits) of a few countries' lengths, grouped by four or not."""
    country, length = rng.choice((("DE", 18), ("GB", 18), ("FR", 23), ("NL", 14)))
    body = (_upper(rng, 4) + _digits(rng, length - 4)) if country in ("GB", "NL") else _digits(rng, length)
    numeric = "".join(str(int(char, 36)) for char in body + country + "00")
    check = f"{98 - int(numeric) % 97:02d}"
    number = f"{country}{check}{body}"
    if rng.random() < 0.4:
        return " ".join(number[i : i + 4] for i in range(0, len(number), 4))
    return number


def driver_license(rng: random.Random) -> str:
    return rng.choice(
        (f"{_upper(rng, 1)}{_digits(rng, 7)}", f"{_upper(rng, 1)}{_digits(rng, 12)}", _digits(rng, 9))
    )


def email(rng: random.Random) -> str:
    return f"{given_name(rng).lower()}.{family_name(rng).lower().replace(' ', '').replace(chr(39), '')}{rng.randint(1, 99)}@{rng.choice(EMAIL_DOMAINS)}"


def url(rng: random.Random) -> str:
    return (
        rng.choice(("https://", "http://", ""))
        + rng.choice(URL_HOSTS)
        + rng.choice(("", "/contact", "/u/" + _digits(rng, 5)))
    )


def ip_address(rng: random.Random) -> str:
    return ".".join(str(rng.randint(1, 254)) for _ in range(4))


# --- dates --------------------------------------------------------------------------------------------------


def _ordinal(day: int) -> str:
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def date_text(rng: random.Random, *, birth: bool = False) -> str:
    start = dt.date(1930, 1, 1) if birth else dt.date(2015, 1, 1)
    span = (dt.date(2008, 12, 31) if birth else dt.date(2026, 12, 31)) - start
    day = start + dt.timedelta(days=rng.randint(0, span.days))
    month = MONTHS[day.month - 1]
    hour, minute = rng.randint(7, 19), rng.choice((0, 15, 30, 45))
    forms: Sequence[Callable[[], str]] = (
        lambda: day.isoformat(),
        lambda: f"{day.month:02d}/{day.day:02d}/{day.year}",
        lambda: f"{day.month}/{day.day}/{day.year % 100:02d}",
        lambda: f"{day.day:02d}/{day.month:02d}/{day.year}",
        lambda: f"{day.day:02d}.{day.month:02d}.{day.year}",
        lambda: f"{day.day}-{month[:3]}-{day.year}",
        lambda: f"{month} {day.day}, {day.year}",
        lambda: f"{day.day} {month} {day.year}",
        lambda: f"{month[:3]} {day.day}, {day.year}",
        lambda: f"{month[:3]}. {day.day} {day.year}",
        lambda: f"{WEEKDAYS[day.weekday()]}, {day.day} {month} {day.year}",
        lambda: f"the {_ordinal(day.day)} of {month} {day.year}",
        lambda: f"{month} {_ordinal(day.day)}",
        lambda: f"{day.day} {month[:3]}",
        lambda: f"{day.year}/{day.month:02d}/{day.day:02d}",
        lambda: f"{day.isoformat()}T{hour:02d}:{minute:02d}:00Z",
        lambda: f"{day.day} {month} {day.year} at {hour}:{minute:02d}",
        lambda: f"{month} {day.year}",
        lambda: f"{day.day}-{day.month:02d}-{day.year}",
    )
    return rng.choice(forms)()
