"""What the clinical and the general-text recognizers share: the regex recognizer whose value is one named
group, and the street-line patterns an address block starts from (:mod:`recognizers` reports them,
:mod:`general_recognizers` reads the lines after them).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

from presidio_analyzer import AnalysisExplanation, LocalRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from clinical_ai.deid.engine.text.clinical_terms import word_set

LANGUAGE = "en"
STREET_ADDRESS = "STREET_ADDRESS"
POSTAL_CODE = "POSTAL_CODE"


class GroupRegexRecognizer(LocalRecognizer):
    """Each match of ``pattern`` reports its ``value`` group (or the whole match) as ``entity``."""

    def __init__(
        self,
        *,
        entity: str,
        pattern: re.Pattern[str],
        score: float,
        name: str,
        context: Sequence[str] = (),
        min_length: int = 1,
    ) -> None:
        self.pattern = pattern
        self.label = name
        self.score = score
        self.min_length = min_length
        super().__init__(
            supported_entities=[entity],
            supported_language=LANGUAGE,
            name=name,
            context=list(context) or None,
        )

    def load(self) -> None:
        """Nothing to load: the pattern is compiled."""

    def accept(self, text: str, start: int, end: int) -> bool:
        return sum(char.isalnum() for char in text[start:end]) >= self.min_length

    def spans(self, text: str) -> Iterable[tuple[int, int]]:
        for match in self.pattern.finditer(text):
            if "value" in self.pattern.groupindex and match.group("value") is not None:
                yield match.start("value"), match.end("value")
            else:
                yield match.start(), match.end()

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        entity = self.supported_entities[0]
        if entities and entity not in entities:
            return []
        return [
            RecognizerResult(
                entity_type=entity,
                start=start,
                end=end,
                score=self.score,
                analysis_explanation=AnalysisExplanation(
                    recognizer=self.label, original_score=self.score, pattern_name=self.label
                ),
                recognition_metadata={
                    RecognizerResult.RECOGNIZER_NAME_KEY: self.label,
                    RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                },
            )
            for start, end in self.spans(text)
            if self.accept(text, start, end)
        ]


def cased(words_: Iterable[str]) -> str:
    """Alternation of each word as Title and UPPER case, longest first (for case-sensitive patterns)."""
    forms = {form for word in words_ for form in (word, word.upper())}
    return "(?:" + "|".join(sorted(forms, key=len, reverse=True)) + ")"


# --- addresses ---------------------------------------------------------------------------------------------

STREET_SUFFIXES = word_set("""Road Rd Street St Avenue Ave Av Boulevard Blvd Lane Ln Drive Dr Court Ct Place Pl Terrace
Terr Ter Way Close Crescent Cres Square Sq Parkway Pkwy Highway Hwy Circle Cir Trail Trl Bypass Byp Byway Row
Gardens Gdns Grove Hill Mews Walk Park Path Pathway Pike Plaza Plz Loop Alley Crossing Ridge Run Point View
Vista Green Common Commons Heights Hts Junction Landing Manor Meadow Meadows Estate Estates Expressway Freeway
Turnpike Causeway Center Centre Cove Creek Crest Dale Fork Forest Glen Harbor Harbour Haven Hollow Knoll Lake
Lodge Mall Mill Mills Mount Orchard Oval Pass Pines Port Ranch Rest Shore Shores Spring Springs Station Summit
Trace Track Valley Village Ville Wharf Wynd Gate Gateway Quay Parade Rise Vale Chase Field Fields Broadway
Embankment Approach Promenade Esplanade Ferry Light Lights Branch Spur Route Rue Extension Ext Camp Cape
Island Isle Key Motorway Neck Plain Plains Ramp Skyway Stravenue Stream Throughway Tunnel Underpass Viaduct
Wall Well Wells""")
_DIRECTION = cased(
    word_set("N S E W NE NW SE SW North South East West Northeast Northwest Southeast Southwest")
)
_STREET_WORD = r"(?:[A-Z][A-Za-z'\u2019.\-]*|\d{1,4}(?:st|nd|rd|th|ST|ND|RD|TH))"
# A unit may stand on the next line ("230 Wit Rd\n Suite 246"); the scrubber replaces each line's part.
_UNIT = (
    r"(?:,?(?:[ \t]+|[ \t]*\r?\n[ \t]*)(?:(?:Apt|APT|Apartment|Unit|UNIT|Suite|SUITE|Ste|STE|Flat|FLAT|Floor|Fl|Room|Rm|Bldg|Building)"
    r"\.?[ \t]*#?[ \t]*|#[ \t]*)[A-Za-z0-9\-]+)?"
)
STREET_PATTERN = re.compile(
    r"(?<![\w.,/-])(?:(?:Flat|Apt|Unit)[ \t]+\w+,?[ \t]+)?\d{1,6}[A-Za-z]?(?:[-/]\d{1,5}[A-Za-z]?)?(?:[ \t]+|-)"
    rf"(?:{_DIRECTION}\.?[ \t]+)?(?:{_STREET_WORD}[ \t]+){{0,3}}{_STREET_WORD}[ \t]+{cased(STREET_SUFFIXES)}\.?"
    rf"(?:[ \t]+{_DIRECTION}(?![\w]))?{_UNIT}(?![\w])"
)
STREET_PATTERN_LOWER = re.compile(
    r"(?<![\w.,/-])\d{1,6}[ \t]+(?:[a-z]+[ \t]+){1,3}(?:road|street|avenue|lane|drive|boulevard|terrace|crescent|"
    r"highway|parkway)(?:[ \t]+(?:apt|apartment|unit|suite|flat)\.?[ \t]*#?[ \t]*\w+)?(?![\w])"
)
PO_BOX_PATTERN = re.compile(
    r"(?<![\w])(?:P\.?[ \t]?O\.?[ \t]*Box|Post[ \t]+Office[ \t]+Box)[ \t]+\d+(?![\w])", re.IGNORECASE
)
UK_POSTCODE_PATTERN = re.compile(r"(?<![\w])(?:[A-Z]{1,2}\d[A-Z\d]?|GIR)[ \t]?\d[A-Z]{2}(?![\w])")


# --- what a news-trained NER takes for an organisation or a person but is not one ---------------------------

# Names of identifier kinds and form fields ("SSN: ...", "this IBAN", "from ATM", "Sent: ...", "Address:"):
# NER reads these capitalised words and acronyms as organisations or people.
FIELD_WORDS = word_set(
    """ssn ssns iban bic swift atm pin cvv cvc asap dob mrn zip po vat nin address sent subject ref please driver
    card phone email e-mail tel fax mobile landlord tenant signature postcode licence license passport"""
)
_LINE_LABEL_AFTER = re.compile(r"[ \t]*(?:[A-Za-z]+[ \t]+){0,2}?[ \t]*:")
_LINE_LEAD = re.compile(r"(?:^|\n)[ \t>]*\Z")
_WORD = re.compile(r"[^\W\d_]+(?:[\-'][^\W\d_]+)*")


def is_not_an_entity(text: str, start: int, end: int, entity: str) -> bool:
    """Whether an NER span is a field name rather than someone or something named: every word a form field or
    an identifier kind ("SSN", "IBAN", "Sent"); for organisations also a label heading its line ("Address:")
    or a span with no capital letter ("ref", "anti"): organisations are named with capitals."""
    found = [word.lower() for word in _WORD.findall(text[start:end])]
    if found and all(word in FIELD_WORDS for word in found):
        return True
    if entity != "ORGANIZATION":
        return False
    if not any(char.isupper() for char in text[start:end]):
        return True
    at_line_start = _LINE_LEAD.search(text, max(0, start - 8), start) is not None or start == 0
    return at_line_start and _LINE_LABEL_AFTER.match(text, end) is not None
