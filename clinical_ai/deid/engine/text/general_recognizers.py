"""Recognizers for the address forms of everyday (non-clinical, partly non-US) text.

Patients' messages, referral letters and social-work notes write addresses as people do: a street line
then the unit, town and ZIP each on their own line, military addresses (``PSC 0413, Box 8144`` /
``APO AE 09612``), German and Dutch streets with the number after the name (``Lindenstraße 12``), French
ones with the street kind in lower case (``12 rue des Lilas``), postcodes of Canada, Ireland and the
Netherlands. The clinical recognizers (:mod:`recognizers`) find the US/UK street line (patterns in :mod:`patterns`);
these find the rest.

Numbers alone are what clinical text is full of (doses, lab values, times), so a bare number is taken for a
ZIP code only where an address makes it one: on the lines that follow a street line (the *address block*),
alone on its own line, after a military post office (``APO AE``), or after a ZIP/postcode label. The other
postcode shapes (Canadian ``K1A 0B1``, Irish ``D02 X285``) hold letters and digits in an order clinical
text does not use.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from clinical_ai.deid.engine.text.clinical_terms import is_clinical_word
from clinical_ai.deid.engine.text.patterns import (
    PO_BOX_PATTERN,
    POSTAL_CODE,
    STREET_ADDRESS,
    STREET_PATTERN,
    UK_POSTCODE_PATTERN,
    GroupRegexRecognizer,
)

LOCATION = "LOCATION"

# --- street lines that the clinical patterns do not read -----------------------------------------------------

_LETTER = r"A-Za-zÀ-ÖØ-öø-ÿ"
MILITARY_PATTERN = re.compile(
    r"(?<![\w])(?:(?:PSC|CMR|Unit)[ \t]+\d{3,5},?[ \t]+Box[ \t]+\d{1,5}"
    r"|USNS[ \t]+[A-Z][a-z]+(?:[ \t]+[A-Z][a-z]+)?)(?![\w])"
)
MILITARY_POST_OFFICE = re.compile(
    r"(?<![\w])(?:APO|FPO|DPO)[ \t]+(?:AE|AP|AA)[ \t]+(?P<value>\d{5})(?![\w-])"
)
_EU_STREET_ENDINGS = (
    "straße|strasse|str\\.|weg|gasse|platz|allee|ring|damm|ufer|gracht|laan|straat|pad|plein|kade|dijk|singel|"
    "steeg|vej|gatan|gata|gade"
)
EU_STREET_PATTERN = re.compile(
    rf"(?<![\w])(?:[A-ZÄÖÜ][{_LETTER}\-]*(?:{_EU_STREET_ENDINGS})"
    rf"|(?:Am|An[ \t]+der|Im|In[ \t]+der|Auf[ \t]+der|Zum|Zur)[ \t]+[A-ZÄÖÜ][{_LETTER}\-]+)"
    r"[ \t]+\d{1,4}[a-z]?(?![\w])"
)
FR_STREET_PATTERN = re.compile(
    r"(?<![\w.,/-])\d{1,4}(?:[ \t]?(?:bis|ter))?,?[ \t]+"
    r"(?:rue|avenue|av\.|boulevard|bd|place|chemin|allée|impasse|quai|cours|route|square|passage)[ \t]+"
    rf"(?:(?:de[ \t]+la|de[ \t]+l'|du|des|de|d'|la|le)[ \t]*)?[A-ZÉÈ][{_LETTER}'\-]+"
    rf"(?:[ \t]+(?:de[ \t]+|du[ \t]+)?[A-ZÉÈ][{_LETTER}'\-]+){{0,3}}"
)
# A unit written on its own line or before a comma: "Flat 3", "Apt. 14B", "Suite 210", "#12".
UNIT_LINE_PATTERN = re.compile(
    r"(?m)(?:^|(?<=[\n>]))[ \t>]*(?P<value>(?:(?:Flat|FLAT|Apt|APT|Apartment|Suite|SUITE|Ste|Unit|UNIT)\.?"
    r"[ \t]*#?[ \t]*|#)\d{1,5}[A-Za-z]?)[ \t]*(?=,|\r?\n|$)"
)

UNIT_BEFORE_STREET = re.compile(
    r"(?<![\w])(?:Flat|Apt\.?|Apartment|Suite|Unit)[ \t]*#?[ \t]*\d{1,5}[A-Za-z]?(?=,?\s{1,3}\d{1,6}[A-Za-z]?[ \t]+[A-Z])"
)
_SUFFIX = (
    r"(?:(?:Street|Avenue|Road|Lane|Drive|Boulevard|Court|Way|Place|Terrace|Circle|Parkway|Trail|Highway|"
    r"Crescent|Close|Mews|Gardens)|(?:St|Ave|Rd|Ln|Dr|Blvd|Ct|Pl|Pkwy|Hwy)\.?)"
)
# A street named without its number after a preposition: "lives on N Quarry Ln", "the corner of Elm St".
NAMED_STREET_PATTERN = re.compile(
    r"(?<![\w])(?:on|at|of|along|near|off|onto|and)[ \t]+(?:the[ \t]+(?:north|south|east|west)[ \t]+side[ \t]+of[ \t]+)?"
    r"(?P<value>(?:(?:N|S|E|W|North|South|East|West)\.?[ \t]+)?[A-Z][a-z]+(?:[ \t]+[A-Z][a-z]+)?[ \t]+"
    rf"{_SUFFIX})(?![\w])"
)

_DIRECTION = re.compile(r"^(?:N|S|E|W|North|South|East|West)\.?[ \t]+")

# --- postcodes -------------------------------------------------------------------------------------------------

CANADA_POSTCODE = re.compile(
    r"(?<![\w])[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z][ \t]\d[ABCEGHJ-NPRSTV-Z]\d(?![\w])"
)
EIRCODE = re.compile(
    r"(?<![\w])(?:[ACDEFHKNPRTVWXY]\d{2}|D6W)[ \t](?=[0-9A-Z]{0,3}[A-Z])[0-9ACDEFHKNPRTVWXY]{4}(?![\w])"
)
_ZIP_LABEL = r"(?i:zip(?:[ \t]*code)?|postal[ \t]+code|post[ \t]*code)"
_ZIP_VALUE = r"\d{5}(?:-\d{4})?|\d{4}(?:[ \t]?[A-Z]{2})?"
LABELLED_ZIP = re.compile(
    rf"(?<![\w]){_ZIP_LABEL}(?:[ \t]+(?:is|was|as|of))?(?:[ \t]+[a-z]+){{0,4}}?[ \t]*[:#=]?[ \t]*"
    rf"(?P<value>{_ZIP_VALUE})(?![\w-])"
    rf"|(?<![\w-])(?P<value2>{_ZIP_VALUE})[ \t]+(?:is|as)[ \t]+(?:the|my|our|their|his|her|a)[ \t]+{_ZIP_LABEL}"
)
# A ZIP after a town in running text: "in Pine Bluff 79710", "to Lüneburg 22771".
_TOWN_THEN_ZIP = re.compile(
    rf"(?<![\w])(?:in|at|to|from|near)[ \t]+(?P<town>[A-Z][{_LETTER}'\-]+(?:[ \t]+[A-Z][{_LETTER}'\-]+)?)"
    r"[ \t]+(?P<value>\d{5}(?:-\d{4})?)(?![\w-])"
)
# A ZIP alone on its line under a town or state line ("Riverton\n44102", "OH\n44102"): under a lab value
# or a dose ("creatinine 145\n10000") a lone number is not a ZIP.
ZIP_ALONE_ON_LINE = re.compile(
    rf"(?m)^[ \t>]*(?P<town>[A-Z][{_LETTER}'.\-]*(?:[ \t]+[A-Z][{_LETTER}'.\-]*){{0,3}}),?[ \t]*\r?\n"
    r"[ \t>]*(?P<value>\d{5}(?:-\d{4})?)[ \t]*$"
)

# Within an address block: the postcode forms a bare number takes there, and a town beside it.
_BLOCK_POSTCODE = re.compile(
    r"(?<![\w-])(?:\d{5}(?:-\d{4})?|\d{4}[ \t]?[A-Z]{2}(?![\w])|(?<=[A-Z]{2}[ \t])\d{4}|(?<=[A-Z]{3}[ \t])\d{4})(?![\w-])"
)
_TOWN = rf"[A-Z][{_LETTER}'\-]+(?:[ \t]+[A-Z][{_LETTER}'\-]+){{0,2}}"
_TOWN_AFTER_CODE = re.compile(rf"[ \t]+(?P<town>{_TOWN})(?=[ \t]*(?:,|\r?\n|$|\.))")
_TOWN_LINE = re.compile(
    rf"(?m)^[ \t>]*(?P<town>{_TOWN})(?=[ \t]*(?:,[ \t]*[A-Z]{{2,3}}\b|[ \t]+[A-Z]{{2,3}}[ \t]+\S|\r?\n|$))"
)
_TOWN_BEFORE_STATE = re.compile(rf"(?:^|,[ \t]*|\n[ \t>]*)(?P<town>{_TOWN}),?[ \t]+(?:[A-Z]{{2,3}})[ \t]+\S")
_TOWN_BEFORE_CODE = re.compile(
    rf"(?:^|,[ \t]*|\n[ \t>?]*)(?P<town>{_TOWN}),?[ \t]+(?=(?:[A-Z]{{1,2}}\d[A-Z\d]?[ \t]?\d[A-Z]{{2}}|\d{{4,5}})(?![\w]))"
)
_BLOCK_LINES = 4
_COUNTRIES = frozenset(
    [
        "united",
        "kingdom",
        "uk",
        "usa",
        "us",
        "united",
        "states",
        "germany",
        "deutschland",
        "france",
        "netherlands",
        "nederland",
        "ireland",
        "canada",
        "australia",
        "new",
        "zealand",
        "spain",
        "italy",
        "poland",
        "portugal",
        "belgium",
        "austria",
        "switzerland",
    ]
)


def _street_lines(text: str) -> Iterator[re.Match[str]]:
    for pattern in (STREET_PATTERN, PO_BOX_PATTERN, MILITARY_PATTERN, EU_STREET_PATTERN, FR_STREET_PATTERN):
        yield from pattern.finditer(text)


_LINE_LEAD = re.compile(r"[ \t>]*")


def starts_street_line(text: str, position: int) -> bool:
    """Whether the line at ``position`` begins with a street line (a quote mark or indent aside): a name alone
    on the line above one is the addressee."""
    start = _LINE_LEAD.match(text, position)
    begin = start.end() if start else position
    return any(
        pattern.match(text, begin)
        for pattern in (
            STREET_PATTERN,
            PO_BOX_PATTERN,
            MILITARY_PATTERN,
            EU_STREET_PATTERN,
            FR_STREET_PATTERN,
        )
    )


def _block_after(text: str, end: int) -> tuple[int, int]:
    """The rest of the street line and up to four more lines (blank ones skipped: a country often stands
    below a blank line)."""
    stop = end
    lines = 0
    while lines <= _BLOCK_LINES:
        newline = text.find("\n", stop)
        if newline == -1:
            return end, len(text)
        if text[stop:newline].strip():
            lines += 1
        stop = newline + 1
    return end, stop - 1


_DIGIT_GROUP_BEFORE = re.compile(r"(?:\+|\d[ \t.\-]?|\(\d+\)[ \t]?)\Z")
_DIGIT_GROUP_AFTER = re.compile(r"[ \t.\-]?\d")


def _in_longer_number(text: str, start: int, end: int) -> bool:
    """Whether digits at ``start:end`` are one group of a longer number (a phone: "+91 98123 45678")."""
    return bool(_DIGIT_GROUP_BEFORE.search(text, max(0, start - 6), start)) or bool(
        _DIGIT_GROUP_AFTER.match(text, end)
    )


def _is_town(words_: str) -> bool:
    folded = words_.casefold()
    if all(word in _COUNTRIES for word in folded.split()):
        return False
    return not any(is_clinical_word(word) for word in folded.split())


class StreetLineRecognizer(GroupRegexRecognizer):
    """Military, German/Dutch and French street lines, and units alone on their line."""

    def spans(self, text: str) -> Iterable[tuple[int, int]]:
        for pattern in (MILITARY_PATTERN, EU_STREET_PATTERN, FR_STREET_PATTERN):
            for match in pattern.finditer(text):
                yield match.start(), match.end()
        for match in UNIT_BEFORE_STREET.finditer(text):
            yield match.start(), match.end()
        for pattern in (UNIT_LINE_PATTERN, NAMED_STREET_PATTERN):
            for match in pattern.finditer(text):
                if pattern is UNIT_LINE_PATTERN or _is_town(_DIRECTION.sub("", match.group("value"))):
                    yield match.start("value"), match.end("value")


class GeneralPostalCodeRecognizer(GroupRegexRecognizer):
    """Postcodes a clinical number cannot be mistaken for (Canadian, Irish, after ``APO AE``, after a ZIP
    label, a ZIP alone on its line), and any 4-5 digit code inside an address block."""

    def spans(self, text: str) -> Iterable[tuple[int, int]]:
        for pattern in (CANADA_POSTCODE, EIRCODE):
            for match in pattern.finditer(text):
                yield match.start(), match.end()
        for pattern in (MILITARY_POST_OFFICE, LABELLED_ZIP, ZIP_ALONE_ON_LINE):
            for match in pattern.finditer(text):
                if pattern is ZIP_ALONE_ON_LINE and not _is_town(match.group("town")):
                    continue
                group = "value" if match.group("value") is not None else "value2"
                yield match.start(group), match.end(group)
        for match in _TOWN_THEN_ZIP.finditer(text):
            if _is_town(match.group("town")):
                yield match.start("value"), match.end("value")
        for street in _street_lines(text):
            start, stop = _block_after(text, street.end())
            for match in _BLOCK_POSTCODE.finditer(text, start, stop):
                if not _in_longer_number(text, match.start(), match.end()):
                    yield match.start(), match.end()


class AddressTownRecognizer(GroupRegexRecognizer):
    """The town of an address block: beside its postcode ("81748 Kassel", "Kassel, 81748"), before a state
    ("Riverton, OH 44102") or alone on a line of the block. Countries are not towns (Safe Harbor lets them
    stay); clinical words are never towns."""

    def spans(self, text: str) -> Iterable[tuple[int, int]]:
        for street in _street_lines(text):
            start, stop = _block_after(text, street.end())
            block = text[start:stop]
            found: list[tuple[int, int]] = []
            for match in _BLOCK_POSTCODE.finditer(block):
                after = _TOWN_AFTER_CODE.match(block, match.end())
                if after:
                    found.append((after.start("town"), after.end("town")))
            for pattern in (_TOWN_LINE, _TOWN_BEFORE_STATE, _TOWN_BEFORE_CODE):
                for match in pattern.finditer(block):
                    found.append((match.start("town"), match.end("town")))
            comma_town = re.match(
                rf",[ \t]*(?P<town>{_TOWN})(?=[ \t]*(?:,|[ \t]+[A-Z]{{2,3}}\b|[ \t]+\d|\r?\n|$))", block
            )
            if comma_town:
                found.append((comma_town.start("town"), comma_town.end("town")))
            for a, b in found:
                if _is_town(block[a:b]) and not UK_POSTCODE_PATTERN.fullmatch(block[a:b]):
                    yield start + a, start + b


# A run of digits written without separators after a phone word: "Phone: 5585405686", "call me on
# 4777643075". Presidio's phone recognizer reads only numbers valid in a known region's plan.
LABELLED_PHONE = re.compile(
    r"(?<![\w])(?i:phone|telephone|tel|mobile|mob|cell|call(?:[ \t]+(?:me|us|him|her|them))?)"
    r"(?i:[ \t]+(?:number|no\.?))?(?:[ \t]+(?:is|was|as|on|at))?[ \t]*[:#.]?[ \t]*"
    r"(?P<value>\+?\d(?:[ \t().\-]?\d){7,14})(?![\w])"
)


# --- organisations -----------------------------------------------------------------------------------------
# A run of capitalised words ending in a company's legal form ("Orion Freight GmbH", "Fennimore & Duke LLP",
# "Veldkamp Installatie BV") or in a word that names a kind of organisation ("Tidewater Legal Aid",
# "Harrowgate Building Society"). Short legal forms that are also clinical abbreviations (AB, SA, NV, Co, AS)
# are left out, and a run whose words are all clinical or generic ("Diabetes Association") is no name.
_LEGAL_FORMS = (
    r"(?:GmbH|AG|KG|KGaA|Ltd\.?|Limited|LLC|L\.L\.C\.|LLP|Inc\.?|Corp\.?|Corporation|plc|PLC|S\.A\.|SARL|S\.A\.R\.L\.|"
    r"SAS|B\.V\.|BV|N\.V\.|S\.p\.A\.|SpA|S\.r\.l\.|Srl|Pty(?:[ \t]+Ltd\.?)?|e\.V\.|GbR)"
)
_ORGANISATION_KINDS = (
    r"(?:Society|Trust|Association|Agency|Insurance|Legal[ \t]+Aid|Analytics|Services|Foundation|Bank|"
    r"Credit[ \t]+Union|Council|Partners|Holdings|Logistics|Consulting|Solutions|Cooperative|Co-op|Charity)"
)
_ORG_WORD = rf"(?:[A-Z][{_LETTER}'\-]+|&|and|de|des|du|la|le|van|der)"
ORGANISATION_PATTERN = re.compile(
    rf"(?<![\w&])(?P<value>[A-Z][{_LETTER}'\-]+(?:[ \t]+{_ORG_WORD}){{0,4}}?[ \t]+"
    rf"(?:{_LEGAL_FORMS}|{_ORGANISATION_KINDS}))(?![\w])"
)
_GENERIC_ORG_WORDS = frozenset(
    [
        "the",
        "a",
        "an",
        "our",
        "your",
        "my",
        "this",
        "that",
        "and",
        "of",
        "de",
        "des",
        "du",
        "la",
        "le",
        "van",
        "der",
        "building",
        "home",
        "care",
        "community",
        "legal",
        "aid",
        "credit",
        "union",
        "tenants",
        "housing",
        "services",
        "service",
        "national",
        "health",
        "insurance",
        "general",
        "mutual",
        "royal",
        "british",
        "american",
        "international",
        "united",
        "first",
        "new",
    ]
)


class OrganisationRecognizer(GroupRegexRecognizer):
    """Organisations named by their legal form or kind; the run must hold a word that is neither clinical
    nor generic (a name), and leading articles are dropped."""

    def spans(self, text: str) -> Iterable[tuple[int, int]]:
        for match in ORGANISATION_PATTERN.finditer(text):
            start, end = match.start("value"), match.end("value")
            lead = re.match(r"(?:The|A|An|Our|This|Met|Dear)[ \t]+", text[start:end])
            if lead:
                start += lead.end()
            words_ = re.findall(rf"[{_LETTER}]+", text[start:end])
            names = [
                word
                for word in words_[:-1]
                if word.lower() not in _GENERIC_ORG_WORDS and not is_clinical_word(word.lower())
            ]
            if names:
                yield start, end


# A web address, reported with a score above the spaCy entities and identifiers found inside it, so that a
# merged span is named a URL: "blog.example.co.uk" (spaCy: ORG), "https://.../results?id=463952" (an ID).
_TLD = r"(?:com|org|net|edu|gov|info|io|co\.uk|org\.uk|nhs\.uk|ac\.uk|gov\.uk|uk|de|fr|nl|ie|eu|es|it|ca|au)"
_PATH = r"(?:[/?#][^\s<>\"']*[^\s<>\"'.,;:!?)\]])?"
LINK_PATTERN = re.compile(
    r"(?<![\w@./-])(?:(?:https?://|www\.)[^\s<>\"']*[^\s<>\"'.,;:!?)\]]"
    rf"|(?:[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?\.)+{_TLD}{_PATH})(?![\w@-])"
)


def general_recognizers() -> list[GroupRegexRecognizer]:
    """The recognizers this module adds to the registry (each with its positive and clinical negative
    tests in ``tests/unit/deid/text/test_general_recognizers.py``)."""
    never = re.compile("(?!)")
    return [
        StreetLineRecognizer(entity=STREET_ADDRESS, pattern=never, score=0.9, name="StreetLineRecognizer"),
        GeneralPostalCodeRecognizer(
            entity=POSTAL_CODE, pattern=never, score=0.9, name="GeneralPostalCodeRecognizer"
        ),
        GroupRegexRecognizer(
            entity="PHONE_NUMBER", pattern=LABELLED_PHONE, score=0.9, name="LabelledPhoneRecognizer"
        ),
        GroupRegexRecognizer(entity="URL", pattern=LINK_PATTERN, score=0.95, name="LinkRecognizer"),
        AddressTownRecognizer(entity=LOCATION, pattern=never, score=0.86, name="AddressTownRecognizer"),
        OrganisationRecognizer(
            entity="ORGANIZATION", pattern=never, score=0.85, name="OrganisationRecognizer"
        ),
    ]
