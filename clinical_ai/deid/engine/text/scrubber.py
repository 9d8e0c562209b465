"""The free-text scrubber: Presidio + clinical recognizers + the patient's own identifiers, batched.

One call analyses every string it is given together: identical strings once, the rest through spaCy's
``pipe`` with only the tokenizer and NER (see ``nlp.VerifiedSpacyNlpEngine``), then Presidio's recognizers
on each. The patient's identifiers from the structured record are added with score 1.0. Overlapping
findings merge into one span covering all of them, labelled by the highest score (then the longest), so
no part of an identifier is left behind. Replacements:

- names and identifiers get a keyed-HMAC tag that is stable for the same (normalised) original within a
  patient, across calls and jobs, without storage: ``[PERSON-3f9a1c]``, ``[MRN-…]``, ``[ID-…]``...;
  all of the patient's own name forms share one tag;
- other kinds a plain placeholder: ``[PHONE]``, ``[FAX]``, ``[EMAIL]``, ``[URL]``, ``[IP]``,
  ``[ADDRESS]``, ``[LOCATION]``, ``[FACILITY]``, ``[ORG]``, ``[AGE>89]``;
- dates shifted by the patient's offset in their own format, ``[DATE]`` where that is impossible (no
  patient, or a date NER found that the patterns cannot read); only the year where the patient's context
  asks for Safe Harbor's form (``free_text_dates="year"``). Years alone, durations and relative dates
  are not identifiers and stay.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date

from presidio_analyzer import AnalyzerEngine, RecognizerResult

from clinical_ai.deid.engine.text.allow_list import DEFAULT_ALLOW_LIST, AllowList
from clinical_ai.deid.engine.text.clinical_terms import TITLES
from clinical_ai.deid.engine.text.dates import date_text_year, parse_date_text, shift_date_text
from clinical_ai.deid.engine.text.ner_filter import NAME_TOKEN, is_filler
from clinical_ai.deid.engine.text.nlp import LANGUAGE, VerifiedSpacyNlpEngine, get_analyzer
from clinical_ai.deid.engine.text.patient_terms import PatientTermMatcher, fold
from clinical_ai.deid.engine.text.recognizers import MIN_SCORE
from clinical_ai.deid.engine.text.xhtml import XhtmlDocument, parse_xhtml
from clinical_ai.deid.engine.types import PatientContext, PseudonymSink, TextItem

TAG_HEX_CHARS = 6
MIN_KEY_BYTES = 16
# Longer texts are analysed in pieces cut at line breaks (spaCy refuses a doc over 1,000,000 characters,
# and NER memory grows with length); the patient's terms are still matched on the whole text.
CHUNK_CHARS = 20_000

# entity -> (placeholder label, tagged with a keyed pseudonym?)
PLACEHOLDERS: dict[str, tuple[str, bool]] = {
    "PERSON": ("PERSON", True),
    "MEDICAL_RECORD_NUMBER": ("MRN", True),
    "UK_NHS": ("NHS", True),
    "ACCOUNT_NUMBER": ("ACCOUNT", True),
    "US_BANK_NUMBER": ("ACCOUNT", True),
    "IBAN_CODE": ("ACCOUNT", True),
    "CREDIT_CARD": ("ACCOUNT", True),
    "HEALTH_PLAN_ID": ("HEALTHPLAN", True),
    "US_MBI": ("HEALTHPLAN", True),
    "US_HEALTH_INSURANCE_MEMBER_ID": ("HEALTHPLAN", True),
    "DEVICE_ID": ("DEVICE", True),
    "MAC_ADDRESS": ("DEVICE", True),
    "ID": ("ID", True),
    "US_SSN": ("SSN", True),
    "US_ITIN": ("ID", True),
    "US_PASSPORT": ("ID", True),
    "US_DRIVER_LICENSE": ("ID", True),
    "UUID": ("ID", True),
    "MEDICAL_LICENSE": ("ID", True),
    "CRYPTO": ("ID", True),
    "PHONE_NUMBER": ("PHONE", False),
    "FAX_NUMBER": ("FAX", False),
    "EMAIL_ADDRESS": ("EMAIL", False),
    "URL": ("URL", False),
    "IP_ADDRESS": ("IP", False),
    "STREET_ADDRESS": ("ADDRESS", False),
    "POSTAL_CODE": ("ADDRESS", False),
    "LOCATION": ("LOCATION", False),
    "FACILITY": ("FACILITY", False),
    "ORGANIZATION": ("ORG", False),
    "AGE_OVER_89": ("AGE>89", False),
    "DATE": ("DATE", False),
    "DATE_TIME": ("DATE", False),
}
FALLBACK_LABEL = "REDACTED"
# spaCy pipelines are not documented as safe to share between threads, and the pipeline is one per process
# (``nlp.get_pipeline``) whichever scrubber uses it: one batch at a time in the process.
_ANALYSIS_LOCK = threading.Lock()
# Kinds whose values are identifiers: one HMAC namespace, so "4471-2290" is [MRN-x] or [ID-x] with the same x.
_IDENTIFIER_LABELS = frozenset({"MRN", "NHS", "ACCOUNT", "HEALTHPLAN", "DEVICE", "ID", "SSN"})


@dataclass(frozen=True)
class Finding:
    """One identifier found in a string: where, what, how sure, and what its tag is derived from."""

    start: int
    end: int
    entity: str
    score: float
    key: str | None = None  # for the patient's own identifiers: the record's value (one tag for all forms)
    birth_date_iso: str | None = None


@dataclass(frozen=True)
class Edit:
    start: int
    end: int
    replacement: str


def resolve_overlaps(findings: Sequence[Finding]) -> list[Finding]:
    """Merge overlapping findings into one span covering them all; the highest score (then the longest,
    then a specific identifier kind over the generic "ID") names it."""
    ordered = sorted(findings, key=lambda f: (f.start, -f.end))
    clusters: list[list[Finding]] = []
    end = -1
    for finding in ordered:
        if clusters and finding.start < end:
            clusters[-1].append(finding)
            end = max(end, finding.end)
        else:
            clusters.append([finding])
            end = finding.end
    resolved: list[Finding] = []
    for members in clusters:
        winner = max(members, key=lambda f: (f.score, f.end - f.start, f.entity != "ID"))
        if winner.entity == "ID":
            specific = [
                member
                for member in members
                if member.entity != "ID"
                and PLACEHOLDERS.get(member.entity, ("", False))[0] in _IDENTIFIER_LABELS
                and (member.start, member.end) == (winner.start, winner.end)
            ]
            if specific:
                winner = replace(winner, entity=specific[0].entity)
        start = min(member.start for member in members)
        stop = max(member.end for member in members)
        resolved.append(replace(winner, start=start, end=stop))
    return resolved


_LINE_BREAKS = re.compile(r"[ \t]*[\r\n][\s]*")


def split_at_line_breaks(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The parts of a recognizer's span on each line (those with a letter or digit): no identifier written
    here runs across a line break, so a span that does has taken in its neighbour (a fax number and the date
    on the next line, a date and the name under it) and would merge them under one wrong placeholder. The
    patient's own identifiers, matched from the record, are not split."""
    pieces: list[tuple[int, int]] = []
    cursor = start
    for line_break in _LINE_BREAKS.finditer(text, start, end):
        pieces.append((cursor, line_break.start()))
        cursor = line_break.end()
    pieces.append((cursor, end))
    return [(a, b) for a, b in pieces if b > a and any(char.isalnum() for char in text[a:b])]


# Kinds that NER (or a capitalised-words pattern) reports and a clinical term can be mistaken for.
ALLOW_LISTED_KINDS = frozenset({"PERSON", "LOCATION", "ORGANIZATION", "FACILITY", "NRP"})


def without_allowed(
    text: str, findings: Sequence[Finding], allowed: Sequence[tuple[int, int]]
) -> list[Finding]:
    """``findings`` less the allow-listed ranges: a name, place, organisation or facility finding keeps only
    its parts outside them that still hold a word other than filler ("Advanced Parkinson" on "Advanced
    Parkinson's disease" keeps nothing); other kinds are untouched."""
    if not allowed:
        return list(findings)
    kept: list[Finding] = []
    for finding in findings:
        overlapping = [(a, b) for a, b in allowed if a < finding.end and finding.start < b]
        if finding.entity not in ALLOW_LISTED_KINDS or not overlapping:
            kept.append(finding)
            continue
        cursor = finding.start
        pieces: list[tuple[int, int]] = []
        for a, b in overlapping:
            if a > cursor:
                pieces.append((cursor, a))
            cursor = max(cursor, b)
        if cursor < finding.end:
            pieces.append((cursor, finding.end))
        for start, end in pieces:
            tokens = [t for t in NAME_TOKEN.finditer(text, start, end) if not is_filler(t.group())]
            if tokens:
                kept.append(replace(finding, start=tokens[0].start(), end=tokens[-1].end()))
    return kept


_POSSESSIVE = re.compile(r"['\u2019]s$|['\u2019]$")
_NOT_ALNUM = re.compile(r"[^0-9A-Za-z]+")


def normalise_for_tag(label: str, text: str) -> str:
    """The form of an original that its tag is derived from: case, accents, spacing, possessives,
    honorifics and (for identifiers) separators do not change the tag."""
    if label in _IDENTIFIER_LABELS:
        return _NOT_ALNUM.sub("", fold(text)).upper()
    tokens = [_POSSESSIVE.sub("", token) for token in fold(text).casefold().replace(",", " ").split()]
    tokens = [token for token in tokens if token.rstrip(".") not in TITLES and token]
    return " ".join(tokens)


class PresidioTextScrubber:
    """:class:`~clinical_ai.deid.engine.types.TextScrubber` over Presidio and the verified spaCy model.

    ``pseudonym_key`` keys the HMAC of the tags (at least 16 bytes; the vault's key for text pseudonyms).
    ``analyzer`` defaults to the process-wide one from :func:`nlp.get_analyzer`, loaded on first use.
    ``day_first`` reads ambiguous numeric dates (03/04/2026) as day/month (UK) instead of month/day (US).
    ``allow_list`` keeps clinical abbreviations and eponyms that NER takes for names or places ("ST
    depression", "CA breast", "Crohn's"): the parts of a person, place, organisation or facility finding
    on one are dropped (:mod:`allow_list`); ``None`` turns this off (the evaluation measures both).
    """

    def __init__(
        self,
        *,
        pseudonym_key: bytes,
        analyzer: AnalyzerEngine | None = None,
        sink: PseudonymSink | None = None,
        day_first: bool = False,
        batch_size: int = 32,
        score_threshold: float = MIN_SCORE,
        allow_list: AllowList | None = DEFAULT_ALLOW_LIST,
    ) -> None:
        if len(pseudonym_key) < MIN_KEY_BYTES:
            raise ValueError(f"pseudonym_key must be at least {MIN_KEY_BYTES} bytes")
        self._key = pseudonym_key
        self._analyzer = analyzer
        self._sink = sink
        self.day_first = day_first
        self.batch_size = batch_size
        self.score_threshold = score_threshold
        self.allow_list = allow_list

    @property
    def analyzer(self) -> AnalyzerEngine:
        if self._analyzer is None:
            self._analyzer = get_analyzer()
        return self._analyzer

    # --- analysis -----------------------------------------------------------------------------------------

    def analyze_texts(self, texts: Sequence[str]) -> list[list[RecognizerResult]]:
        """Presidio results for each text, all texts analysed together (identical ones once)."""
        pieces = {text: _chunks(text, CHUNK_CHARS) for text in texts if text.strip()}
        unique = list(dict.fromkeys(chunk for chunks in pieces.values() for _, chunk in chunks))
        analyzer = self.analyzer
        engine = analyzer.nlp_engine
        if not isinstance(engine, VerifiedSpacyNlpEngine):
            raise TypeError("the scrubber needs an analyzer built on VerifiedSpacyNlpEngine")
        by_text: dict[str, list[RecognizerResult]] = {}
        with _ANALYSIS_LOCK:
            for text, artifacts in engine.process_batch(unique, LANGUAGE, batch_size=self.batch_size):
                by_text[text] = analyzer.analyze(
                    text=text,
                    language=LANGUAGE,
                    nlp_artifacts=artifacts,
                    score_threshold=self.score_threshold,
                )
        results: dict[str, list[RecognizerResult]] = {}
        for text, chunks in pieces.items():
            results[text] = [
                RecognizerResult(
                    r.entity_type, r.start + offset, r.end + offset, r.score, r.analysis_explanation
                )
                if offset
                else r
                for offset, chunk in chunks
                for r in by_text[chunk]
            ]
        return [results.get(text, []) for text in texts]

    def find(
        self, text: str, results: Sequence[RecognizerResult], matcher: PatientTermMatcher | None
    ) -> list[Finding]:
        findings = [
            Finding(start, end, r.entity_type, r.score)
            for r in results
            for start, end in split_at_line_breaks(text, r.start, r.end)
        ]
        if self.allow_list is not None:
            findings = without_allowed(text, findings, self.allow_list.covered(text))
        if matcher is not None:
            findings += [
                Finding(
                    m.start, m.end, m.entity, 1.0, m.key, m.birth_date.isoformat() if m.birth_date else None
                )
                for m in matcher.find(text)
            ]
        return resolve_overlaps(findings)

    # --- replacement --------------------------------------------------------------------------------------

    def tag(self, label: str, original: str, patient: PatientContext | None) -> str:
        namespace = "ID" if label in _IDENTIFIER_LABELS else label
        message = "\x1f".join(
            (patient.pseudonym if patient else "", namespace, normalise_for_tag(label, original))
        )
        digest = hmac.new(self._key, message.encode("utf-8"), hashlib.sha256).hexdigest()
        return digest[:TAG_HEX_CHARS]

    def _date(self, finding: Finding, original: str, patient: PatientContext | None) -> str:
        if patient is None or finding.entity != "DATE":
            return "[DATE]"
        day_first = self.day_first
        if finding.birth_date_iso is not None:
            # The patient's birth date: read 03/04/1959 whichever way gives that date.
            for candidate in (self.day_first, not self.day_first):
                parsed = parse_date_text(original, day_first=candidate)
                if parsed is not None and parsed.isoformat() == finding.birth_date_iso:
                    day_first = candidate
                    break
        if patient.free_text_dates == "year":
            return _year_only(original, day_first=day_first)
        shifted = shift_date_text(original, patient.date_shift_days, day_first=day_first)
        return shifted if shifted is not None else "[DATE]"

    def replacement(
        self, finding: Finding, original: str, patient: PatientContext | None, sink: PseudonymSink | None
    ) -> str:
        label, tagged = PLACEHOLDERS.get(finding.entity, (FALLBACK_LABEL, False))
        if label == "DATE":
            return self._date(finding, original, patient)
        if not tagged:
            return f"[{label}]"
        placeholder = f"[{label}-{self.tag(label, finding.key or original, patient)}]"
        if sink is not None:
            sink.record(kind=label.lower(), pseudonym=placeholder, original=original)
        return placeholder

    def edits(
        self,
        text: str,
        results: Sequence[RecognizerResult],
        matcher: PatientTermMatcher | None,
        patient: PatientContext | None,
        sink: PseudonymSink | None,
    ) -> list[Edit]:
        return [
            Edit(f.start, f.end, self.replacement(f, text[f.start : f.end], patient, sink))
            for f in self.find(text, results, matcher)
        ]

    # --- the protocol -------------------------------------------------------------------------------------

    def scrub_texts(
        self, items: Sequence[TextItem], *, patient: PatientContext | None, sink: PseudonymSink | None = None
    ) -> list[str]:
        """Each item's text with identifiers replaced, same order; XHTML items keep their markup."""
        sink = sink if sink is not None else self._sink
        recorder = _DedupingSink(sink) if sink is not None else None
        matcher = PatientTermMatcher(patient.identifiers) if patient is not None else None

        documents: list[XhtmlDocument | None] = []
        units: list[str] = []
        for item in items:
            document = parse_xhtml(item.text) if item.kind == "xhtml" else None
            documents.append(document)
            if document is None:
                units.append(item.text)
            else:
                units.append(document.joined)
                units.extend(document.value_texts)
        analysed = self.analyze_texts(units)

        def scrubbed_edits(index: int) -> list[Edit]:
            return self.edits(units[index], analysed[index], matcher, patient, recorder)

        output: list[str] = []
        cursor = 0
        for document in documents:
            if document is None:
                output.append(_apply(units[cursor], scrubbed_edits(cursor)))
                cursor += 1
                continue
            text_edits = [(e.start, e.end, e.replacement) for e in scrubbed_edits(cursor)]
            values = [
                _apply(units[cursor + 1 + offset], scrubbed_edits(cursor + 1 + offset))
                for offset in range(len(document.values))
            ]
            output.append(document.rebuild(text_edits, values))
            cursor += 1 + len(document.values)
        return output


# Safe Harbor removes a year too where it may show an age over 89 (a birth date 90 or more years ago).
OLDEST_YEAR_KEPT_BACK = 89


def _year_only(original: str, *, day_first: bool) -> str:
    """Safe Harbor's form of a date in text: its year alone; ``[DATE]`` for a date without a year ("14
    March") or a year that could put someone over 89."""
    year = date_text_year(original, day_first=day_first)
    if year is None or year < date.today().year - OLDEST_YEAR_KEPT_BACK:
        return "[DATE]"
    return str(year)


def _chunks(text: str, size: int) -> list[tuple[int, str]]:
    """``text`` in pieces of at most ``size`` characters with their offsets, cut after a line break (or a
    space) where there is one in the second half of the piece."""
    pieces: list[tuple[int, str]] = []
    start = 0
    while len(text) - start > size:
        window = text[start : start + size]
        newline = window.rfind("\n")
        cut = newline if newline >= size // 2 else window.rfind(" ")
        end = start + (cut + 1 if cut >= size // 2 else size)
        pieces.append((start, text[start:end]))
        start = end
    pieces.append((start, text[start:]))
    return pieces


def _apply(text: str, edits: Sequence[Edit]) -> str:
    out: list[str] = []
    cursor = 0
    for edit in sorted(edits, key=lambda e: e.start):
        out.append(text[cursor : edit.start])
        out.append(edit.replacement)
        cursor = edit.end
    out.append(text[cursor:])
    return "".join(out)


class _DedupingSink:
    """Reports each (pseudonym, original) once per call."""

    def __init__(self, sink: PseudonymSink) -> None:
        self._sink = sink
        self._seen: set[tuple[str, str, str]] = set()

    def record(self, *, kind: str, pseudonym: str, original: str) -> None:
        key = (kind, pseudonym, original)
        if key not in self._seen:
            self._seen.add(key)
            self._sink.record(kind=kind, pseudonym=pseudonym, original=original)
