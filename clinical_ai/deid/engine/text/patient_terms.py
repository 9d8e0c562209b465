"""The patient's own identifiers, from the FHIR record, found in free text even where NER misses them.

:func:`patient_identifiers_from_fhir` reads a Patient (and RelatedPerson resources) into
:class:`PatientIdentifiers`; :class:`PatientTermMatcher` turns those strings into patterns for the forms
they take in notes: names case-insensitively on word boundaries, with and without Synthea's digits
("Carolee951", "Carolee"), hyphenated parts, initials and "Family, Given" order; identifiers with or without
separators; phone numbers by their digits (national and international forms); e-mail addresses; address
lines with or without the house number and with common abbreviations; postal codes; and the birth date in
the usual written formats. Every match scores 1.0.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import phonenumbers
from spacy.lang.en.stop_words import STOP_WORDS

from clinical_ai.deid.engine.text.clinical_terms import NAME_SUFFIXES, TITLES, is_eponym_use, word_set
from clinical_ai.deid.engine.text.dates import MONTHS
from clinical_ai.deid.engine.types import PatientIdentifiers

MOTHERS_MAIDEN_NAME = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName"
BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"


MIN_IDENTIFIER_CHARS = 4
MIN_PHONE_DIGITS = 7


# --- FHIR -> PatientIdentifiers -----------------------------------------------------------------------------


def _strings(values: Any) -> list[str]:
    if isinstance(values, str):
        return [values] if values.strip() else []
    if isinstance(values, list):
        return [value for value in values if isinstance(value, str) and value.strip()]
    return []


def _human_name_text(name: Mapping[str, Any]) -> str:
    text = name.get("text")
    if isinstance(text, str) and text.strip():
        return text
    parts = _strings(name.get("prefix")) + _strings(name.get("given")) + _strings(name.get("family"))
    return " ".join(parts + _strings(name.get("suffix")))


def _address_parts(address: Mapping[str, Any]) -> list[str]:
    # State and country stay: Safe Harbor removes only subdivisions smaller than a state.
    parts = _strings(address.get("line"))
    for key in ("city", "district", "postalCode", "text"):
        parts += _strings(address.get(key))
    return parts


def _telecom(entries: Any, phones: list[str], emails: list[str], others: list[str]) -> None:
    for entry in entries if isinstance(entries, list) else []:
        value = entry.get("value") if isinstance(entry, Mapping) else None
        if not isinstance(value, str) or not value.strip():
            continue
        system = entry.get("system")
        if system == "email":
            emails.append(value)
        elif system in ("phone", "fax", "pager", "sms") or system is None:
            phones.append(value)
        else:
            others.append(value)


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(value.strip() for value in values if value.strip()))


def patient_identifiers_from_fhir(
    patient: Mapping[str, Any], related: Sequence[Mapping[str, Any]] = ()
) -> PatientIdentifiers:
    """What identifies the patient (and their contacts and related persons) in the structured record."""
    names: list[str] = []
    given: list[str] = []
    family: list[str] = []
    for name in patient.get("name") or []:
        names.append(_human_name_text(name))
        given += _strings(name.get("given"))
        family += _strings(name.get("family"))
    identifiers = [
        value for entry in patient.get("identifier") or [] for value in _strings(entry.get("value"))
    ]
    identifiers += _strings(patient.get("id"))
    phones: list[str] = []
    emails: list[str] = []
    _telecom(patient.get("telecom"), phones, emails, identifiers)
    address_parts = [part for address in patient.get("address") or [] for part in _address_parts(address)]
    other: list[str] = []
    for extension in patient.get("extension") or []:
        if extension.get("url") == MOTHERS_MAIDEN_NAME:
            other += _strings(extension.get("valueString"))
        elif extension.get("url") == BIRTH_PLACE and isinstance(extension.get("valueAddress"), Mapping):
            address_parts += _address_parts(extension["valueAddress"])
    people = list(patient.get("contact") or []) + [dict(person) for person in related]
    for person in people:
        person_names = person.get("name")
        for name in (
            person_names if isinstance(person_names, list) else [person_names] if person_names else []
        ):
            other.append(_human_name_text(name))
        _telecom(person.get("telecom"), phones, emails, identifiers)
        addresses = person.get("address")
        for address in addresses if isinstance(addresses, list) else [addresses] if addresses else []:
            address_parts += _address_parts(address)
        if person.get("resourceType") == "RelatedPerson":
            identifiers += [
                value for entry in person.get("identifier") or [] for value in _strings(entry.get("value"))
            ]
    birth_date = patient.get("birthDate")
    return PatientIdentifiers(
        names=_unique(names),
        given_names=_unique(given),
        family_names=_unique(family),
        identifiers=_unique(identifiers),
        phones=_unique(phones),
        emails=_unique(emails),
        address_parts=_unique(address_parts),
        birth_date=birth_date if isinstance(birth_date, str) and birth_date.strip() else None,
        other=_unique(other),
    )


# --- PatientIdentifiers -> patterns ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PatientMatch:
    start: int
    end: int
    entity: str  # PERSON, ID, PHONE_NUMBER, EMAIL_ADDRESS, STREET_ADDRESS, POSTAL_CODE, LOCATION, DATE
    key: str  # what the pseudonym tag is derived from: the person's canonical name, the identifier...
    birth_date: dt.date | None = None  # set on birth-date matches, so the shift knows the date's reading


def fold(text: str) -> str:
    """``text`` without accents ("Reséndez" -> "Resendez")."""
    return "".join(char for char in unicodedata.normalize("NFKD", text) if not unicodedata.combining(char))


def _apostrophes(escaped: str) -> str:
    return escaped.replace("'", "['\u2019]?").replace("\u2019", "['\u2019]?")


def _name_token_variants(token: str) -> set[str]:
    token = token.strip('.,;:()"')
    if len(token) < 2 or token.lower().rstrip(".") in TITLES | NAME_SUFFIXES:
        return set()
    variants = {token, re.sub(r"\d+$", "", token)}
    for part in re.split(r"-", token):
        variants |= {part, re.sub(r"\d+$", "", part)}
    variants |= {fold(variant) for variant in variants}
    return {variant for variant in variants if len(variant.replace("'", "").replace("\u2019", "")) >= 2}


def _token_pattern(variant: str) -> str:
    pattern = _apostrophes(re.escape(variant)).replace(r"\-", r"\s*-\s*")
    if variant.lower() in STOP_WORDS:
        # "Will", "May", "Bill": only capitalised, so that "will return" keeps its verb.
        return f"(?-i:{re.escape(variant[:1].upper())}){_apostrophes(re.escape(variant[1:]))}"
    return pattern


# Honorifics and suffixes join a name only when written as such ("Mrs.", "DR", "Jr"): "do" and "lady" are words.
_HONORIFIC = (
    "(?-i:"
    + "|".join(sorted({f(h) for h in TITLES for f in (str.capitalize, str.upper)}, key=len, reverse=True))
    + r")\.?"
)
_SUFFIX = "(?-i:Jr|JR|Sr|SR|II|III|IV|PhD|PHD|MD|Esq|ESQ)\\.?"


def _person_pattern(raw_names: Iterable[str]) -> re.Pattern[str] | None:
    variants: set[str] = set()
    initials: set[str] = set()
    for raw in raw_names:
        for token in re.split(r"[\s,]+", raw):
            token_variants = _name_token_variants(token)
            variants |= token_variants
            initials |= {variant[0].upper() for variant in token_variants if variant[0].isalpha()}
    if not variants:
        return None
    name = "(?:" + "|".join(_token_pattern(v) for v in sorted(variants, key=len, reverse=True)) + ")"
    initial = "(?-i:[" + "".join(sorted(initials)) + r"])(?:\.|(?=\s))" if initials else "(?!)"
    sep = r"(?:\s*,\s*|\s+)"
    pattern = (
        rf"(?<![\w])(?:{_HONORIFIC}\s+)?(?P<name>(?:{initial}\s*)*{name}(?![\w])"
        rf"(?:{sep}(?:{name}(?![\w])|{initial}(?![\w])))*(?:,?\s+{_SUFFIX}(?![\w]))?)"
    )
    return re.compile(pattern, re.IGNORECASE)


def _identifier_pattern(value: str) -> re.Pattern[str] | None:
    chars = [char for char in value if char.isalnum()]
    if len(chars) < MIN_IDENTIFIER_CHARS:
        return None
    body = r"[\s\-./]?".join(re.escape(char) for char in chars)
    before = r"(?<![0-9])" if chars[0].isdigit() else r"(?<![^\W\d_])"
    after = r"(?![0-9])" if chars[-1].isdigit() else r"(?![^\W\d_])"
    return re.compile(before + body + after, re.IGNORECASE)


def _phone_variants(value: str) -> set[str]:
    digits = re.sub(r"\D", "", value)
    variants = {digits}
    for region in (None, "US", "GB"):
        try:
            number = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            continue
        national = phonenumbers.national_significant_number(number)
        variants |= {national, "0" + national, f"{number.country_code}{national}"}
        if region is None:
            break
    if digits.startswith("0"):
        variants.add(digits[1:])
    if len(digits) == 11 and digits.startswith("1"):
        variants.add(digits[1:])
    return {variant for variant in variants if len(variant) >= MIN_PHONE_DIGITS}


def _phone_pattern(value: str) -> re.Pattern[str] | None:
    variants = _phone_variants(value)
    if not variants:
        return None
    bodies = [r"[\s().\-/]*".join(variant) for variant in sorted(variants, key=len, reverse=True)]
    return re.compile(r"(?<![\d])(?:" + "|".join(bodies) + r")(?![\d])")


_STREET_ABBREVIATIONS: dict[str, tuple[str, ...]] = {
    "road": ("rd",),
    "street": ("st",),
    "avenue": ("ave", "av"),
    "boulevard": ("blvd",),
    "drive": ("dr",),
    "lane": ("ln",),
    "court": ("ct",),
    "place": ("pl",),
    "terrace": ("ter", "terr"),
    "square": ("sq",),
    "crescent": ("cres",),
    "highway": ("hwy",),
    "parkway": ("pkwy",),
    "circle": ("cir",),
    "trail": ("trl",),
    "bypass": ("byp",),
    "gardens": ("gdns",),
    "apartment": ("apt",),
    "suite": ("ste",),
    "north": ("n",),
    "south": ("s",),
    "east": ("e",),
    "west": ("w",),
    "northeast": ("ne",),
    "northwest": ("nw",),
    "southeast": ("se",),
    "southwest": ("sw",),
}
_ABBREVIATION_GROUPS: dict[str, tuple[str, ...]] = {}
for _full, _short in _STREET_ABBREVIATIONS.items():
    for _word in (_full, *_short):
        _ABBREVIATION_GROUPS[_word] = (_full, *_short)
_UNIT_WORDS = word_set("apt apartment unit suite ste flat floor fl room rm bldg building #")


def _address_token(token: str) -> str:
    bare = token.lower().rstrip(".")
    forms = _ABBREVIATION_GROUPS.get(bare)
    if forms:
        return "(?:" + "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True)) + r")\.?"
    return _apostrophes(re.escape(token))


def _address_variants(part: str) -> list[list[str]]:
    tokens = [token for token in re.split(r"[\s,]+", part) if token]
    variants = [tokens]
    for index, token in enumerate(tokens):
        if token.lower().rstrip(".") in _UNIT_WORDS and index >= 2:
            variants.append(tokens[:index])  # "858 Sawayn Parade" without "Unit 61"
            break
    for candidate in list(variants):
        if len(candidate) >= 3 and re.fullmatch(r"\d+[A-Za-z]?(?:-\d+)?", candidate[0]):
            variants.append(candidate[1:])  # the street without the house number
    return variants


def _address_pattern(part: str, *, postal_code: bool = False) -> re.Pattern[str] | None:
    if sum(char.isalnum() for char in part) < 3:
        return None
    joiner = r"\s*" if postal_code else r"[\s,]+"  # "PO1 3AX" is also written "PO13AX"
    bodies = [joiner.join(_address_token(token) for token in tokens) for tokens in _address_variants(part)]
    if len(bodies) == 1 and part.lower() in STOP_WORDS:
        return None
    return re.compile(r"(?<![\w])(?:" + "|".join(bodies) + r")(?![\w])", re.IGNORECASE)


_POSTAL_CODE = re.compile(
    r"[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}|\d{5}(?:-\d{4})?|[A-Z]\d[A-Z]\s*\d[A-Z]\d", re.IGNORECASE
)


def _address_entity(part: str) -> str:
    if _POSTAL_CODE.fullmatch(part.strip()):
        return "POSTAL_CODE"
    if not any(char.isdigit() for char in part):
        return "LOCATION"
    return "STREET_ADDRESS" if re.search(r"[^\W\d_]{3}", part) else "POSTAL_CODE"


def _postal_code_variants(part: str) -> list[str]:
    match = re.fullmatch(r"(\d{5})-\d{4}", part.strip())
    return [part, match.group(1)] if match else [part]


def _parse_birth_date(value: str | None) -> tuple[int, int | None, int | None] | None:
    if not value:
        return None
    match = re.fullmatch(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(?:T.*)?", value.strip())
    if not match:
        return None
    year, month, day = match.groups()
    return int(year), int(month) if month else None, int(day) if day else None


def _month_alternation(month: int) -> str:
    names = [name for name, number in MONTHS.items() if number == month]
    return "(?:" + "|".join(sorted(names, key=len, reverse=True)) + r")\.?"


def _birth_date_pattern(year: int, month: int | None, day: int | None) -> re.Pattern[str] | None:
    if month is None:
        return None  # a year alone is not an identifier
    yyyy, yy = f"{year}", f"{year % 100:02d}"
    years = f"(?:{yyyy}|{yy})"
    mon = _month_alternation(month)
    m = f"0?{month}"
    if day is None:
        forms = [
            rf"{mon}[\s,\-']*{years}",
            rf"{m}[/.\-]{yyyy}",
            rf"{yyyy}[/.\-]{month:02d}(?![/.\-]?\d)",
        ]
    else:
        d = f"0?{day}"
        ordinal = r"(?:st|nd|rd|th)?"
        forms = [
            rf"{yyyy}[/.\-]?{month:02d}[/.\-]?{day:02d}",
            rf"{yyyy}[/.\-]{m}[/.\-]{d}",
            rf"{m}[/.\-]{d}[/.\-]{years}",
            rf"{d}[/.\-]{m}[/.\-]{years}",
            rf"{d}{ordinal}(?:\s+of)?[\s.\-]*{mon}[\s,.\-']*{years}",
            rf"{mon}[\s.\-]*{d}{ordinal}[\s,.\-']*{years}",
        ]
    return re.compile(r"(?<![\w])(?:" + "|".join(forms) + r")(?![\w])", re.IGNORECASE)


@dataclass(frozen=True)
class _Term:
    pattern: re.Pattern[str]
    entity: str
    key: str
    birth_date: dt.date | None = None


class PatientTermMatcher:
    """Patterns for one patient's identifiers; :meth:`find` gives every place they occur in a text."""

    def __init__(self, identifiers: PatientIdentifiers) -> None:
        self.terms: list[_Term] = []
        patient_names = [*identifiers.names, *identifiers.given_names, *identifiers.family_names]
        if patient_names:
            canonical = identifiers.names[0] if identifiers.names else " ".join(patient_names)
            self._add(_person_pattern(patient_names), "PERSON", canonical)
        for other in identifiers.other:
            self._add(_person_pattern([other]), "PERSON", other)
        for value in identifiers.identifiers:
            self._add(_identifier_pattern(value), "ID", value)
        for value in identifiers.phones:
            self._add(_phone_pattern(value), "PHONE_NUMBER", value)
        for value in identifiers.emails:
            pattern = re.compile(r"(?<![\w.+\-])" + re.escape(value.strip()) + r"(?![\w\-])", re.IGNORECASE)
            self._add(pattern, "EMAIL_ADDRESS", value)
        for part in identifiers.address_parts:
            entity = _address_entity(part)
            for variant in _postal_code_variants(part) if entity == "POSTAL_CODE" else [part]:
                self._add(_address_pattern(variant, postal_code=entity == "POSTAL_CODE"), entity, part)
        parsed = _parse_birth_date(identifiers.birth_date)
        if parsed is not None:
            year, month, day = parsed
            date = dt.date(year, month, day) if month and day else None
            self._add(_birth_date_pattern(year, month, day), "DATE", identifiers.birth_date or "", date)

    def _add(
        self, pattern: re.Pattern[str] | None, entity: str, key: str, date: dt.date | None = None
    ) -> None:
        if pattern is not None:
            self.terms.append(_Term(pattern, entity, key, date))

    def find(self, text: str) -> Iterator[PatientMatch]:
        for term in self.terms:
            for match in term.pattern.finditer(text):
                # A title is not an identifier: "Mrs [PERSON-…]" like the NER path writes it.
                start, end = match.span("name") if "name" in term.pattern.groupindex else match.span()
                if start == end:
                    continue
                if term.entity == "PERSON" and is_eponym_use(text, start, end, allow_bare=False):
                    continue
                yield PatientMatch(start, end, term.entity, term.key, term.birth_date)
