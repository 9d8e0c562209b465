"""Clinical recognizers on top of Presidio's built-ins, and the registry the analyzer uses.

Presidio misses what clinical notes are full of: record, account, plan and device numbers behind their
labels, ages over 89, street addresses, hospital names, fax numbers. These are regular expressions whose
value is one named group (``value``), so that "MRN: 4471-2290" replaces only the number. spaCy's entities go
through :class:`~clinical_ai.deid.engine.text.ner_filter.ClinicalSpacyRecognizer`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import cast

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

from presidio_analyzer import (
    EntityRecognizer,
    Pattern,
    RecognizerRegistry,
    RecognizerResult,
)
from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngine
from presidio_analyzer.predefined_recognizers import (
    NhsRecognizer,
    PhoneRecognizer,
    UsHealthInsuranceMemberIdRecognizer,
    UsMbiRecognizer,
)
from spacy.lang.en.stop_words import STOP_WORDS

from clinical_ai.deid.engine.text.clinical_terms import (
    TITLES,
    is_clinical_word,
    word_set,
    words,
)
from clinical_ai.deid.engine.text.dates import MONTHS, find_dates
from clinical_ai.deid.engine.text.general_recognizers import general_recognizers, starts_street_line
from clinical_ai.deid.engine.text.ner_filter import NAME_TOKEN, ClinicalSpacyRecognizer, is_filler
from clinical_ai.deid.engine.text.patterns import (
    LANGUAGE,
    PO_BOX_PATTERN,
    POSTAL_CODE,
    STREET_ADDRESS,
    STREET_PATTERN,
    STREET_PATTERN_LOWER,
    UK_POSTCODE_PATTERN,
    GroupRegexRecognizer,
    cased,
)

# Entity names produced by this package (Presidio's own keep their names: PHONE_NUMBER, US_SSN, ...).
MEDICAL_RECORD_NUMBER = "MEDICAL_RECORD_NUMBER"
ACCOUNT_NUMBER = "ACCOUNT_NUMBER"
HEALTH_PLAN_ID = "HEALTH_PLAN_ID"
DEVICE_ID = "DEVICE_ID"
OTHER_ID = "ID"
FAX_NUMBER = "FAX_NUMBER"
AGE_OVER_89 = "AGE_OVER_89"
FACILITY = "FACILITY"
DATE = "DATE"

MIN_SCORE = 0.35  # Presidio's weak patterns (0.01-0.3) count only with a context word (+0.35)


# --- identifiers behind a label --------------------------------------------------------------------------

_NO = r"(?:number|numb|num|no\.?|nr\.?|#|id|identifier)"
_LINK = r"(?:\s*[:#=.]\s*|\s+(?:is|was|of)\s+|\s*)#?\s*"
# What may stand between a label and its value: "MRN on file:", "MRN (sending)", "Hospital number (local)".
_QUALIFIER = r"(?:\s+on\s+(?:file|record)|[ \t]*\((?:[A-Za-z][A-Za-z .'/-]{0,23})\))?"
_ID_VALUE = (
    r"(?P<value>\d{3}[ ]\d{2,3}[ ]\d{4}(?!\w)"  # NHS 943 476 5919, SSN 123 45 6789
    r"|(?=[A-Z0-9/.\-]*\d)[A-Z0-9]+(?:[-/.][A-Z0-9]+)*(?<![.]))"
)


def _labelled(labels: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w])(?:{labels})(?![\w]){_QUALIFIER}{_LINK}{_ID_VALUE}", re.IGNORECASE)


MRN_LABELS = (
    rf"MRN|M\.R\.N\.?|MR\s*{_NO}|medical\s+record(?:\s+{_NO})?|med\.?\s*rec(?:ord)?\.?\s*{_NO}|"
    rf"hosp(?:ital)?\.?\s*{_NO}|patient\s+{_NO}|(?-i:ED|A&E|ER)\s*{_NO}|emergency\s+{_NO}|UR\s*{_NO}|URN|"
    rf"PAS\s*{_NO}|unit\s+{_NO}|chart\s+{_NO}|record\s+{_NO}|case\s+{_NO}|"
    rf"NHS(?:\s+{_NO})?|CHI(?:\s+{_NO})?|HCN|health\s+care\s+{_NO}|E?MPI"
)
ACCOUNT_LABELS = rf"account(?:\s+{_NO})?|acct\.?(?:\s+{_NO})?|a/c|billing\s+(?:account|{_NO})|invoice(?:\s+{_NO})?|claim\s+{_NO}|HAR|FIN"
HEALTH_PLAN_LABELS = (
    rf"(?:member|beneficiary|subscriber|policy(?:holder)?|group|insurance|insured|health\s+plan|plan|"
    rf"medicare|medicaid|coverage)\s+{_NO}|policy|MBI|HICN|HIC(?:\s+{_NO})?"
)
DEVICE_LABELS = (
    rf"serial(?:\s+{_NO})?|S/N|SN(?=\s*[:#])|device\s+(?:{_NO}|serial)|UDI|unique\s+device\s+identifier|"
    rf"implant\s+(?:{_NO}|serial)|lot(?:\s+{_NO})?|IMEI"
)
OTHER_ID_LABELS = (
    rf"SSN|social\s+security(?:\s+{_NO})?|passport(?:\s+{_NO})?|driver'?s?\s+licen[cs]e(?:\s+{_NO})?|"
    rf"DL\s*{_NO}|licen[cs]e\s+{_NO}|national\s+insurance(?:\s+{_NO})?|NI\s+{_NO}|NINO|ID|identifier|"
    rf"(?:encounter|visit|episode|admission|certificate|registration|specimen|sample|request|order|report|"
    rf"referral|booking|lab|laboratory|pathology|path|radiology|imaging|study|exam)\s+{_NO}|accession(?:\s+{_NO})?|"
    rf"ref(?:erence)?\.?\s+{_NO}|"
    rf"VIN|vehicle\s+identification\s+{_NO}|licen[cs]e\s+plate|tax\s+{_NO}|TIN|EIN"
)

_PHONE_VALUE = r"(?P<value>\+?\(?\d[\d \t().\-]{5,}\d)"
FAX_PATTERN = re.compile(
    rf"(?<![\w])(?:fax|facsimile|telefax)(?:\s+{_NO})?(?![\w]){_LINK}{_PHONE_VALUE}", re.IGNORECASE
)

# --- phones ------------------------------------------------------------------------------------------------

_EXTENSION = r"(?:\s*(?:x|ext\.?|extension)\s*\d{1,6})?"
PHONE_PATTERN = re.compile(
    r"(?<![\w+])(?:"
    r"(?:(?:\+|00)1[ \t.-]?|1[ \t.-])?\(?\d{3}\)?[ \t.-]\d{3}[ \t.-]\d{4}"  # NANP: 555-657-5098, (555) 657 5098
    r"|(?:\+44[ \t]?(?:\(0\)[ \t]?)?|0)\d{2,4}[ \t-]?\d{3,4}[ \t-]?\d{3,4}"  # UK: 023 9261 4408, +44 7700 900123
    r"|(?:(?:\+|00)\d{1,3}[ \t.-]?|\(0)\d{1,4}\)?(?:[ \t.-]\d{2,4}){2,4}"  # international, (07) 5331 0577
    rf"){_EXTENSION}(?![\w])",
    re.IGNORECASE,
)
_PHONE_CANDIDATE = re.compile(r"\d(?:[\s().\-+/]{0,3}\d){6,}")
_DATE_ONLY = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")


def _may_hold_phone(text: str) -> bool:
    """Seven digits close together that are not just a written date (every Synthea note starts with one)."""
    return any(_DATE_ONLY.fullmatch(match.group()) is None for match in _PHONE_CANDIDATE.finditer(text))


class ScreenedPhoneRecognizer(PhoneRecognizer):
    """Presidio's libphonenumber recognizer, skipped on texts without seven digits close together other than
    a date (most of them): its matcher is the costliest recognizer per character and cannot find a number
    there."""

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if not _may_hold_phone(text):
            return []
        # The parent only hands the artifacts on to its results' explanation; None is fine there.
        results: list[RecognizerResult] = super().analyze(text, entities, cast(NlpArtifacts, nlp_artifacts))
        return results


# --- NHS numbers ---------------------------------------------------------------------------------------------

NHS_PATTERN = r"(?<![\w+])(?:\d{3}([- ])\d{3}\1\d{4}|\d{10})(?![\w])"
# A country code or another digit group before it, or a digit group after it: part of a longer (phone) number.
_LONGER_NUMBER_BEFORE = re.compile(r"(?:(?:\+|00)\d{1,3}[ .\-]?\(?|\d[ .\-]?|\(\d{1,4}\)[ .\-]?)$")
_LONGER_NUMBER_AFTER = re.compile(r"^[ .\-]?\d")
_PHONE_WORDS = re.compile(
    r"(?<![\w])(?:tel|telephone|phone|mobile|mob|cell|fax|facsimile|pager|bleep|call|contact|ring|ph)(?![\w])",
    re.IGNORECASE,
)
_NHS_WORDS = re.compile(r"(?<![\w])(?:NHS|CHI|national\s+health)(?![\w])", re.IGNORECASE)


class ShapedNhsRecognizer(NhsRecognizer):
    """Presidio's NHS number (checksum) held to the number's shape: exactly ten digits, 3-3-4 with one kind
    of separator or none, not part of a longer number ("+1 206 342 9952" is a phone whose last ten digits
    happen to pass the checksum: one in eleven does). On a line that speaks of a phone and not of the NHS,
    a ten-digit number is left to the phone recognizers."""

    def __init__(self) -> None:
        super().__init__(patterns=[Pattern("NHS (shaped)", NHS_PATTERN, 0.5)])

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        results: list[RecognizerResult] = super().analyze(text, entities, nlp_artifacts, regex_flags)
        return [result for result in results if self._is_nhs_number(text, result.start, result.end)]

    @staticmethod
    def _is_nhs_number(text: str, start: int, end: int) -> bool:
        if _LONGER_NUMBER_BEFORE.search(text[max(0, start - 8) : start]):
            return False
        if _LONGER_NUMBER_AFTER.match(text[end : end + 2]):
            return False
        line_start = text.rfind("\n", 0, start) + 1
        before = text[max(line_start, start - 40) : start]
        return not (_PHONE_WORDS.search(before) and not _NHS_WORDS.search(before))


# --- ages over 89 ------------------------------------------------------------------------------------------

_AGE_NUMBER = r"(?:9\d|1[0-4]\d)"
_AGE_WORDS = (
    r"(?:ninety(?:[\s-]+(?:one|two|three|four|five|six|seven|eight|nine))?|"
    r"(?:one\s+|a\s+)?hundred(?:\s+and)?(?:[\s-]+(?:one|two|three|four|five|six|seven|eight|nine|ten))?)"
)
AGE_PATTERN = re.compile(
    rf"(?<![\w.])(?P<value>{_AGE_NUMBER}|{_AGE_WORDS})(?:\s*|-)"
    r"(?:years?|yrs?|yr|y/o|y\.o\.?|yo|year-old|years-old|yr-old)(?:[\s-]*old)?(?![\w])"
    rf"|(?<![\w])(?:aged?|age:)\s*(?:of\s+)?[:=]?\s*(?P<value2>{_AGE_NUMBER})(?![\w]|\.\d)",
    re.IGNORECASE,
)


class AgeOver89Recognizer(GroupRegexRecognizer):
    def spans(self, text: str) -> Iterable[tuple[int, int]]:
        for match in self.pattern.finditer(text):
            group = "value" if match.group("value") is not None else "value2"
            yield match.start(group), match.end(group)


# --- addresses (street line patterns in patterns.py) -------------------------------------------------------

_US_STATES = sorted(
    word_set(
        "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND "
        "OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY PR"
    )
)
US_ZIP_PATTERN = re.compile(
    rf"(?<![\w])(?:{'|'.join(_US_STATES)}),?[ \t]+(?P<value>\d{{5}}(?:-\d{{4}})?)(?![\w-])"
    r"|(?<![\w])(?i:zip(?:[ \t]*code)?|postal[ \t]+code|post[ \t]*code)[ \t]*[:#]?[ \t]*(?P<value2>\d{5}(?:-\d{4})?)(?![\w-])"
    r"|(?<![\w-])(?P<value3>\d{5}-\d{4})(?![\w-])"
)


class PostalCodeRecognizer(GroupRegexRecognizer):
    def spans(self, text: str) -> Iterable[tuple[int, int]]:
        for match in UK_POSTCODE_PATTERN.finditer(text):
            yield match.start(), match.end()
        for match in US_ZIP_PATTERN.finditer(text):
            group = next(name for name in ("value", "value2", "value3") if match.group(name) is not None)
            yield match.start(group), match.end(group)


# --- facilities --------------------------------------------------------------------------------------------

FACILITY_KEYWORDS = [
    *word_set(
        "Hospital Hospitals Infirmary Hospice Clinic Clinics Polyclinic Sanatorium Surgery Healthcare Pharmacy"
    ),
    "Medical Center",
    "Medical Centre",
    "Health Center",
    "Health Centre",
    "Medical Clinic",
    "Nursing Home",
    "Care Home",
    "Care Center",
    "Care Centre",
    "Rehabilitation Center",
    "Rehabilitation Centre",
    "Rehab Center",
    "Medical Group",
    "Medical Practice",
    "Medical Associates",
    "Family Practice",
    "Urgent Care",
    "Health System",
    "Health Services",
    "Health Care",
    "Dialysis Center",
    "Cancer Center",
    "Cancer Centre",
    "Cancer Institute",
    "NHS Trust",
    "Foundation Trust",
    "Health Board",
    "Medical College",
]
_FACILITY_WORD = r"(?:St\.?|Mt\.?|[A-Z][A-Za-z'\u2019&.\-]*[A-Za-z'\u2019]|[A-Z])"
FACILITY_PATTERN = re.compile(
    rf"(?<![\w])(?:{_FACILITY_WORD}(?:[ \t]+(?:and|&|of|on|upon|de|la)[ \t]+|[ \t]+|-)){{1,6}}"
    rf"{cased(FACILITY_KEYWORDS)}(?![\w])"
    rf"(?:[ \t]+(?:of|for|at)[ \t]+(?:the[ \t]+)?{_FACILITY_WORD}(?:[ \t]+(?:of[ \t]+)?{_FACILITY_WORD}){{0,3}})?"
)
GENERIC_FACILITY_WORDS = word_set(
    """
    the a an this that our your their his her its same other nearest new old st saint mt mount and of on
    upon de la general community university regional district county city state royal teaching children
    childrens women womens private public local main central national memorial mental psychiatric maternity
    eye dental cancer heart specialist department dept unit ward day walk in urgent emergency family medical
    health care practice primary secondary veterans va army military rehabilitation rehab nursing home
    residential memory sleep fertility sexual travel cardiology neurology oncology dermatology rheumatology
    gastroenterology endocrinology nephrology urology gynaecology gynecology obstetrics paediatric pediatric
    paediatrics pediatrics geriatric geriatrics psychiatry orthopaedic orthopedic orthopaedics orthopedics
    ophthalmology respiratory haematology hematology radiology surgery surgical medicine anaesthetics
    physiotherapy podiatry dietetics audiology stroke renal cardiac breast colorectal vascular plastic spinal
    hand foot weight management outpatients inpatients admitted transferred discharged seen referred to from
    at by for with s
    """
)


_FACILITY_KEYWORD_WORDS = frozenset(words(" ".join(FACILITY_KEYWORDS)))


class FacilityRecognizer(GroupRegexRecognizer):
    """A run of capitalised words before a facility word, at least one of them a name ("Riverside",
    "Mary's"): "Diabetes Clinic" and "General Hospital" are kinds of place, not places."""

    def accept(self, text: str, start: int, end: int) -> bool:
        return any(
            word not in GENERIC_FACILITY_WORDS
            and word not in _FACILITY_KEYWORD_WORDS
            and not is_clinical_word(word)
            for word in words(text[start:end])
        )

    def spans(self, text: str) -> Iterable[tuple[int, int]]:
        for match in self.pattern.finditer(text):
            start = match.start()
            leading = re.match(r"(?:The|THE|A|An|Our|This)\s+", match.group(0))
            if leading:
                start += leading.end()
            yield start, match.end()


# --- names after a title -------------------------------------------------------------------------------------

_TITLE = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Professor|Doctor|Sister|Nurse|Rev|Sir|Dame)"
TITLED_NAME_PATTERN = re.compile(
    rf"(?<![\w])(?i:{_TITLE})\.?[ \t]+(?P<value>[A-Z][A-Za-z'\u2019\-]+"
    rf"(?:[ \t]+(?:(?:van|von|der|den|de|da|di|du|le|la|del|bin|al|ten|ter)[ \t]+){{0,2}}[A-Z][A-Za-z'\u2019\-]+){{0,2}})"
)


class TitledNameRecognizer(GroupRegexRecognizer):
    """ "Dr Okafor", "ms. Wijtze": a capitalised word after a title is a name unless it is clinical vocabulary
    ("Dr Review" is not anyone); trailing clinical words are trimmed ("Dr Smith Cardiology")."""

    def spans(self, text: str) -> Iterable[tuple[int, int]]:
        for match in self.pattern.finditer(text):
            tokens = list(NAME_TOKEN.finditer(text, match.start("value"), match.end("value")))
            while tokens and is_filler(tokens[-1].group()):
                tokens.pop()
            if tokens:
                yield tokens[0].start(), tokens[-1].end()


# --- names after a label, a relation word or at the head of a note -----------------------------------------

# Labels after which a name stands ("Patient: Sofia Rossi", "Surgeon: R. Abernethy", "Next of kin: ...").
PERSON_LABELS = frozenset(
    " ".join(words(label))
    for label in re.split(
        r"\s*\|\s*",
        """patient|pt|name|patient name|full name|client|child|baby|deceased|surgeon|assistant|
    assistant surgeon|anaesthetist|anesthetist|scrub nurse|referring|referring clinician|referring physician|
    referring doctor|referrer|referred by|reported by|verified by|dictated by|signed by|authorised by|
    authorized by|checked by|seen by|reviewed by|completed by|written by|typed by|requested by|ordered by|
    caller|clinician|attending|consultant|registrar|resident|gp|doctor|nurse|midwife|pharmacist|endoscopist|
    sonographer|radiologist|physician|provider|author|re|to|from|cc|next of kin|nok|contact|emergency contact|
    carer|guardian|parent|spouse|wife|husband|partner|mother|father|interpreter|witness|key worker|keyworker|
    care coordinator|social worker|named nurse|named consultant|responsible clinician|pcp|family doctor|
    accompanied by|informant|historian|operator|scribe|therapist|dietitian|physiotherapist|enp|anp|
    advanced nurse practitioner|nurse practitioner|physician assistant|fy1|fy2|sho|spr|hcp|account holder|
    holder|cardholder|card holder|policyholder|policy holder|beneficiary|payee|payer|recipient|addressee|
    sender|applicant|tenant|employee|attn|attention|directed by|contact person|account name""",
    )
)
# A label naming a specialty, team or place of care ("Endocrinology:", "Renal team:") may head a name too.
_SERVICE_LABEL_ENDINGS = (
    "ology",
    "iatry",
    "iatrics",
    "ics",
    "medicine",
    "surgery",
    "team",
    "service",
    "clinic",
    "ward",
    "unit",
    "department",
    "nursing",
    "therapy",
    "care",
    "lead",
)
# Words that are family or care roles in running text: a capitalised name right after one is a person.
RELATION_WORDS = word_set(
    """wife husband partner daughter son mother father brother sibling son-in-law daughter-in-law nephew niece
    grandson granddaughter grandmother grandfather aunt uncle cousin carer friend neighbour neighbor
    coordinator fiance fiancee guardian HCP NOK midwife therapist physio physiotherapist worker keyworker
    interpreter chaplain pharmacist registrar consultant FY1 FY2 SHO SpR ENP ANP HCA"""
)
_RELATION_LOWER = frozenset(word.lower() for word in RELATION_WORDS)
# English word endings that names seldom have: after a service label ("Oncology: Partial Response") a
# field of such words is a finding, not a person.
_COMMON_WORD_ENDINGS = (
    "ion",
    "ment",
    "ness",
    "ity",
    "ive",
    "ous",
    "ial",
    "ed",
    "ance",
    "ence",
    "ure",
    "ary",
    "ory",
    "able",
    "ible",
    "ing",
    "ful",
    "less",
    "ical",
)
_ROLE_ENDINGS = ("ologist", "ician", "iatrist", "ographer", "therapist", "nurse", "surgeon")
_NAME_PARTICLES = word_set("van von der den de da di du le la del della bin binti al el ten ter st")
# Capitalised words that answer a label without being a name.
_NOT_NAME_WORDS = word_set(
    """not no none nil unknown n/a na declined same see as above below yes pending awaiting none-known
    self patient unable refused mr mrs ms miss dr none self-referral private staff team ward bed room
    monday tuesday wednesday thursday friday saturday sunday today tomorrow yesterday colleague colleagues
    sir madam all everyone customer member""".replace("n/a", "")
)
_LABEL = re.compile(
    r"(?:^|(?<=[ \t]{2})|(?<=\|)|(?<=\t)|(?<=[.;] ))[ \t]*(?:(?P<label>[A-Za-z][A-Za-z0-9/&'\u2019 \-]{0,38}?)[ \t]*:"
    r"|(?P<bare>(?-i:Patient|PATIENT|Pt|Name|NAME|Client|Re|RE))(?=[ \t]+[A-Z]))[ \t]*",
    re.MULTILINE,
)
# A letter's closing: the name stands on the next line.
_CLOSING = re.compile(
    r"(?im)^[ \t]*(?:yours[ \t]+(?:sincerely|faithfully|truly)|kind[ \t]+regards|best[ \t]+wishes|"
    r"(?:with[ \t]+)?(?:warm[ \t]+|many[ \t]+)?regards|signed)[ \t]*,?[ \t]*\r?\n[ \t]*"
)
# A greeting or a sign-off in a message or letter: "Dear Niall,", "Hi Ximena", "Thanks, Rowan".
_SALUTATION = re.compile(
    r"(?m)(?:^|(?<=[\n>]))[ \t>]*(?:Dear|Hi|Hello|Hey|Good[ \t]+(?:morning|afternoon|evening))[ \t]+"
    r"|(?<![\w])(?:Thanks|Thank[ \t]+you|Many[ \t]+thanks|Cheers|Best|Love)[ \t]*,[ \t]*(?:\r?\n[ \t>]*)?"
)
# A line of a message or a quoted form that holds only a name, at the head of an address block (the street
# line below it, or below an organisation's or a second person's line) or above a phone number or e-mail.
_NAME_LINE = re.compile(r"(?m)^[ \t>]*(?=\S)")
_CONTACT_LINE = re.compile(
    r"[ \t>]*(?:\+?\(?\d[\d \t()\-.]{6,}\d|[\w.+\-]+@[\w\-]+\.[\w.\-]+)[ \t]*\r?$", re.M
)
_BLOCK_HEAD_LINES = 3
# A speaker at the start of a line in a transcript or a dialogue, where the line reads as speech: a quotation,
# or a question or exclamation ending in a word ('Aoife: "Who are you?"', "Cormac: You saved my life!"). A
# note's heading ("Plan: ?PE") carries a query mark before a word, not after one.
_SPEAKER = re.compile(
    r"(?m)^[ \t>]*(?P<name>[A-Z][a-z]+(?:-[A-Z][a-z]+)?)[ \t]*:[ \t]*"
    r"(?=[\"\u201c]|[^\n]*[a-z][?!](?:[ \t\"\u201d]|$))"
)
# A person introduced or asked for in running text: "this is Emeka Abernethy", "Ask for Ximena at the front
# desk", "call me Rasmus", "Met Aoife Castellanos at ...", "Contact Anselm Wainwright on ...".
_INTRODUCTION = re.compile(
    r"(?<![\w-])(?i:this[ \t]+is|my[ \t]+name[ \t]+is|call[ \t]+me|calls[ \t]+me|ask[ \t]+for|speak[ \t]+(?:to|with)|"
    r"spoke[ \t]+(?:to|with)|met(?:[ \t]+with)?|contact|called|parcel[ \t]+for|under)[ \t]+"
)
_RELATION = re.compile(
    rf"(?<![\w-])(?i:{'|'.join(sorted((re.escape(w) for w in RELATION_WORDS), key=len, reverse=True))})[ \t]"
)
_NAME_PIECE = re.compile(r"[^\W\d_]+(?:['\u2019\-][^\W\d_]+)*\d*\.?")
_HEAD_CUE = re.compile(
    r"[ \t]*(?:[,|(][ \t]*)?(?:DOB|D\.O\.B|MRN|NHS|Hosp|born|b\.|Age|aged|\d)|[ \t]{2,}(?:[|(]|[A-Z]{2,}|\d)"
)
_HEAD_LINE = re.compile(
    r"^[ \t]*(?:(?:\d{1,4}[/.\-]\d{1,2}[/.\-]\d{1,4}|[A-Z][a-z]+ \d{1,2}, \d{4}|\d{1,2} [A-Z][a-z]+ \d{4})[ \t]{2,})?",
    re.MULTILINE,
)
_RECORD_CUE = re.compile(r"[ \t]*(?:[,|(][ \t]*)?(?:DOB|D\.O\.B|MRN|NHS|Hosp|born|Age|aged)(?![\w])")
_YEAR_OLD = re.compile(r"[ \t]+is[ \t]+an?[ \t]+\d{1,3}[ \t-]*(?:year|yr|month|week|day)s?[ \t-]*old", re.I)
_STRONG_END = re.compile(r"[ \t]*(?:$|[(,;|\-]|[ \t]{2,}|\r?\n)|[ \t]+(?:DOB|MRN|born|aged?|Age)(?![\w])")


def _name_word(token: str, *, allow_stop: bool) -> bool:
    """A capitalised word that may be part of a name: not clinical vocabulary, a title, a month or a filler."""
    bare = token.rstrip(".")
    if not bare or not bare[0].isupper():
        return False
    lower = bare.lower()
    if lower in _NOT_NAME_WORDS or lower in TITLES or lower in MONTHS:
        return False
    if lower in STOP_WORDS and not allow_stop:
        return False
    if lower in _RELATION_LOWER or lower in PERSON_LABELS or lower.endswith(_ROLE_ENDINGS):
        return False  # "Consultant Neurologist", "Orthopaedic Registrar": roles, not names
    parts = words(bare)
    return bool(parts) and not all(is_clinical_word(part) for part in parts)


def name_after(
    text: str, start: int, *, allow_stop: bool = False, formal: bool = True
) -> tuple[int, int] | None:
    """The name that begins at ``start``: capitalised words (initials, particles such as "van der", a
    "Family, Given" order) on one line; None where the first word is not a name word."""
    pieces: list[re.Match[str]] = []
    cursor = start
    comma_used = False
    line_end = text.find("\n", start)
    line_end = len(text) if line_end < 0 else line_end
    while cursor < line_end and len(pieces) < 5:
        match = _NAME_PIECE.match(text, cursor)
        if match is None:
            break
        token = match.group()
        if not pieces and not _name_word(token, allow_stop=allow_stop):
            return None
        if pieces and token.lower() in _NAME_PARTICLES and not token.endswith("."):
            pass
        elif pieces and not _name_word(token, allow_stop=False):
            break
        if text[match.end() : match.end() + 1] == ":":
            break  # "Date:" is the next label
        if token.endswith(".") and len(token) > 2:
            pieces.append(match)  # "Surgeon: Emeka Whitfield. Pre-assessment": the name ends the sentence
            break
        pieces.append(match)
        gap = re.match(r"[ \t]|,[ \t]", text[match.end() : match.end() + 2])
        if gap is None:
            break
        if gap.group().startswith(","):
            if comma_used or not formal or len(pieces) > 3:
                break
            comma_used = True
        cursor = match.end() + len(gap.group())
    while pieces and pieces[-1].group().lower() in _NAME_PARTICLES:
        pieces.pop()
    if not pieces:
        return None
    end = pieces[-1].end()
    if pieces[-1].group().endswith(".") and len(pieces[-1].group()) > 2:
        end -= 1
    return pieces[0].start(), end


def _is_person_label(label: str) -> bool:
    """A label that a person's name answers: listed ("Patient", "Next of kin") or ending in a role
    ("Reporting sonographer", "Consultant radiologist")."""
    normal = words(label)
    if not normal or len(normal) > 4:
        return False
    last = normal[-1]
    return (
        " ".join(normal) in PERSON_LABELS
        or last in PERSON_LABELS
        or last in _RELATION_LOWER
        or last.endswith(_ROLE_ENDINGS)
    )


def _is_service_label(label: str) -> bool:
    normal = words(label)
    return 0 < len(normal) <= 3 and normal[-1].endswith(_SERVICE_LABEL_ENDINGS)


def _plain_name(text: str) -> bool:
    """Two or more name words, none with an ending that common English words have ("Partial Response")."""
    tokens = [token.lower().rstrip(".") for token in NAME_TOKEN.findall(text)]
    return len(tokens) >= 2 and not any(token.endswith(_COMMON_WORD_ENDINGS) for token in tokens)


_SERVICE_WORDS = word_set(
    "pharmacy reception triage admissions records security switchboard helpdesk desk bot agent operator user system"
)
# A message signed with the sender's name as its last words: "... or me@example.net. Thandiwe Mbeki".
_SIGNATURE = re.compile(r"(?:^|(?<=[.!?]))[ \t]*(?=[A-Z][^\n.!?]*\s*\Z)")


def _names_a_service(name: str) -> bool:
    """ "Contact Dermatology", "Called Pharmacy": a department or a desk, not a person."""
    return any(
        token in _SERVICE_WORDS or token.endswith(_SERVICE_LABEL_ENDINGS)
        for token in (token.lower() for token in NAME_TOKEN.findall(name))
    )


def _heads_address_or_contact(text: str, position: int) -> bool:
    """Whether the lines from ``position`` are a contact's phone or e-mail, or an address block's street line
    below at most two more lines without digits (an organisation, a second addressee)."""
    if _CONTACT_LINE.match(text, position):
        return True
    for _ in range(_BLOCK_HEAD_LINES):
        if starts_street_line(text, position):
            return True
        line_end = text.find("\n", position)
        line = text[position : len(text) if line_end < 0 else line_end]
        if line_end < 0 or not line.strip(" \t>\r") or any(char.isdigit() for char in line):
            return False
        position = line_end + 1
    return False


class LabelledNameRecognizer(GroupRegexRecognizer):
    """Names NER misses where notes put them: after a label ("Patient: Sofia Rossi", "Endocrinology: Sofia
    Rossi (DOB ...)", "Name: Chen, Wei"), after a family or care role ("wife Giorgos Delacroix", "Partner
    Eleanor present"), heading a note before its identifiers ("Eleanor Mbeki  |  MRN ...") and before "is a
    71-year-old". A label that names no person ("Plan:", "Diagnosis:") is taken only with two or more name
    words ending the field (end of line, "(", ",", two spaces, "DOB"...)."""

    def spans(self, text: str) -> Iterable[tuple[int, int]]:
        for match in _LABEL.finditer(text):
            if text[match.end() : match.end() + 1] in ("\n", "\r", ""):
                continue
            label = match.group("label") or match.group("bare")
            person_label = _is_person_label(label)
            if not person_label and not _is_service_label(label):
                continue
            span = name_after(text, match.end(), allow_stop=person_label)
            if span is None:
                continue
            if person_label or (_plain_name(text[span[0] : span[1]]) and _STRONG_END.match(text, span[1])):
                yield span
        for match in _RELATION.finditer(text):
            span = name_after(text, match.end(), allow_stop=True, formal=False)
            if span is not None:
                yield span
        for match in _HEAD_LINE.finditer(text):
            # "Family, Given" only before a record label: "Springfield, IL 62704" heads an address line too.
            formal = name_after(text, match.end())
            if formal is not None and _RECORD_CUE.match(text, formal[1]):
                yield formal
                continue
            span = name_after(text, match.end(), formal=False)
            if span is None or len(NAME_TOKEN.findall(text[span[0] : span[1]])) < 2:
                continue
            if _HEAD_CUE.match(text, span[1]):
                yield span
        for match in _SALUTATION.finditer(text):
            span = name_after(text, match.end(), formal=False)
            if span is not None:
                yield span
        for match in _NAME_LINE.finditer(text):
            span = name_after(text, match.end(), formal=False)
            if span is None or len(NAME_TOKEN.findall(text[span[0] : span[1]])) < 2:
                continue
            line_end = text.find("\n", span[1])
            if line_end < 0 or text[span[1] : line_end].strip(" \t\r.,"):
                continue
            if _heads_address_or_contact(text, line_end + 1):
                yield span
        for match in _SPEAKER.finditer(text):
            name = match.group("name")
            if (
                _name_word(name, allow_stop=False)
                and not _is_person_label(name)
                and not _names_a_service(name)
            ):
                yield match.start("name"), match.end("name")
        for match in _SIGNATURE.finditer(text, max(0, len(text.rstrip()) - 60)):
            span = name_after(text, match.end(), formal=False)
            if (
                span is not None
                and not text[span[1] :].strip()
                and _plain_name(text[span[0] : span[1]])
                and not _names_a_service(text[span[0] : span[1]])
            ):
                yield span
        for match in _INTRODUCTION.finditer(text):
            span = name_after(text, match.end(), formal=False)
            if span is not None and not _names_a_service(text[span[0] : span[1]]):
                yield span
        for match in _CLOSING.finditer(text):
            span = name_after(text, match.end())
            if span is not None:
                yield span
        for match in _YEAR_OLD.finditer(text):
            line_start = text.rfind("\n", 0, match.start()) + 1
            before = re.search(
                r"(?:^|(?<=[\s:]))([^\W_]+(?:['\u2019\-][^\W_]+)*)$", text[line_start : match.start()]
            )
            if before is None:
                continue
            token = before.group(1)
            if _name_word(token.rstrip("0123456789"), allow_stop=False):
                start = line_start + before.start(1)
                yield start, start + len(token)


# --- dates ---------------------------------------------------------------------------------------------------


class ClinicalDateRecognizer(GroupRegexRecognizer):
    """Dates with a day or a month in the written formats :mod:`dates` can shift."""

    def spans(self, text: str) -> Iterable[tuple[int, int]]:
        for span in find_dates(text):
            yield span.start, span.end


# --- the registry ------------------------------------------------------------------------------------------


def clinical_recognizers() -> list[EntityRecognizer]:
    """The recognizers this package adds (each with its positive and negative tests)."""
    labelled_ids = [
        GroupRegexRecognizer(entity=entity, pattern=_labelled(labels), score=0.95, name=name, min_length=3)
        for entity, labels, name in (
            (MEDICAL_RECORD_NUMBER, MRN_LABELS, "MedicalRecordNumberRecognizer"),
            (ACCOUNT_NUMBER, ACCOUNT_LABELS, "AccountNumberRecognizer"),
            (HEALTH_PLAN_ID, HEALTH_PLAN_LABELS, "HealthPlanIdRecognizer"),
            (DEVICE_ID, DEVICE_LABELS, "DeviceIdRecognizer"),
        )
    ]
    return [
        *labelled_ids,
        GroupRegexRecognizer(
            entity=DEVICE_ID,
            pattern=re.compile(r"\(01\)\d{14}(?:\(\d{2}\)[A-Za-z0-9\-]+)*"),
            score=0.95,
            name="UdiRecognizer",
        ),
        GroupRegexRecognizer(
            entity=OTHER_ID,
            pattern=_labelled(OTHER_ID_LABELS),
            score=0.9,
            name="LabelledIdRecognizer",
            min_length=3,
        ),
        TitledNameRecognizer(
            entity="PERSON", pattern=TITLED_NAME_PATTERN, score=0.9, name="TitledNameRecognizer"
        ),
        LabelledNameRecognizer(
            entity="PERSON", pattern=re.compile("(?!)"), score=0.85, name="LabelledNameRecognizer"
        ),
        GroupRegexRecognizer(
            entity=FAX_NUMBER, pattern=FAX_PATTERN, score=0.95, name="FaxRecognizer", min_length=7
        ),
        GroupRegexRecognizer(
            entity="PHONE_NUMBER",
            pattern=PHONE_PATTERN,
            score=0.5,
            name="PhonePatternRecognizer",
            context=PhoneRecognizer.CONTEXT,
        ),
        AgeOver89Recognizer(entity=AGE_OVER_89, pattern=AGE_PATTERN, score=0.95, name="AgeOver89Recognizer"),
        GroupRegexRecognizer(
            entity=STREET_ADDRESS, pattern=STREET_PATTERN, score=0.9, name="StreetAddressRecognizer"
        ),
        GroupRegexRecognizer(
            entity=STREET_ADDRESS,
            pattern=STREET_PATTERN_LOWER,
            score=0.7,
            name="StreetAddressLowerRecognizer",
        ),
        GroupRegexRecognizer(
            entity=STREET_ADDRESS, pattern=PO_BOX_PATTERN, score=0.9, name="PoBoxRecognizer"
        ),
        PostalCodeRecognizer(
            entity=POSTAL_CODE, pattern=UK_POSTCODE_PATTERN, score=0.8, name="PostalCodeRecognizer"
        ),
        FacilityRecognizer(entity=FACILITY, pattern=FACILITY_PATTERN, score=0.9, name="FacilityRecognizer"),
        ClinicalDateRecognizer(
            entity=DATE, pattern=re.compile("(?!)"), score=0.9, name="ClinicalDateRecognizer"
        ),
    ]


# Presidio's built-ins replaced here: dates (ours shift), spaCy (ours filters), phones (ours is screened), NHS
# numbers (ours keeps to their shape).
_REPLACED_BUILT_INS = ("DateRecognizer", "SpacyRecognizer", "PhoneRecognizer", "NhsRecognizer")
PHONE_REGIONS = ("US", "GB")


def build_registry(nlp_engine: NlpEngine) -> RecognizerRegistry:
    """Presidio's predefined English recognizers (URL, IP, e-mail, SSN, NHS, cards, IBAN...) plus the
    health-plan ones Presidio ships disabled, with dates, spaCy and phones replaced by the clinical ones."""
    registry = RecognizerRegistry(supported_languages=[LANGUAGE])
    registry.load_predefined_recognizers(languages=[LANGUAGE], nlp_engine=nlp_engine)
    for name in _REPLACED_BUILT_INS:
        registry.remove_recognizer(name)
    registry.add_recognizer(ClinicalSpacyRecognizer())
    registry.add_recognizer(ScreenedPhoneRecognizer(supported_regions=PHONE_REGIONS))
    registry.add_recognizer(ShapedNhsRecognizer())
    registry.add_recognizer(UsMbiRecognizer())
    registry.add_recognizer(UsHealthInsuranceMemberIdRecognizer())
    for recognizer in [*clinical_recognizers(), *general_recognizers()]:
        registry.add_recognizer(recognizer)
    return registry
