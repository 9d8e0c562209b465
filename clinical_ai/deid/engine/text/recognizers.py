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

from clinical_ai.deid.engine.text.clinical_terms import (
    is_clinical_word,
    word_set,
    words,
)
from clinical_ai.deid.engine.text.dates import find_dates
from clinical_ai.deid.engine.text.general_recognizers import general_recognizers
from clinical_ai.deid.engine.text.name_recognizers import (
    TITLED_NAME_PATTERN,
    LabelledNameRecognizer,
    TitledNameRecognizer,
)
from clinical_ai.deid.engine.text.ner_filter import ClinicalSpacyRecognizer
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
