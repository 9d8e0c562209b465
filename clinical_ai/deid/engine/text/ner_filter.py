"""spaCy's entities without the clinical false positives of a model trained on news.

NER spans run across line breaks (a heading and the name on the next line), take in section headings and drug names
("Social History", "simvastatin") and read eponyms as people ("Parkinson's disease"). Each person, place
or organisation span is split at line breaks, trimmed of clinical words, stop words and titles at its
edges, and dropped when nothing is left, when it is a payer, or when it names a disease after a person.
"""

from __future__ import annotations

import re

from presidio_analyzer import RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import SpacyRecognizer
from spacy.lang.en.stop_words import STOP_WORDS

from clinical_ai.deid.engine.text.clinical_terms import (
    PAYERS,
    TITLES,
    is_clinical_term,
    is_clinical_word,
    is_eponym_use,
    word_set,
    words,
)
from clinical_ai.deid.engine.text.dates import find_dates, looks_like_date
from clinical_ai.deid.engine.text.patterns import is_not_an_entity

LANGUAGE = "en"

NAME_TOKEN = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
_LINE_BREAK = re.compile(r"[\r\n]+")
_DETERMINERS = word_set("the a an this that these those his her their our my your its")


def is_filler(token: str) -> bool:
    """A word at the edge of an NER span that is not part of a name (clinical words, lower-case stop words)."""
    parts = words(token)
    if not parts:
        return True
    if token.lower() in _DETERMINERS or (token.islower() and token in STOP_WORDS):
        return True
    if token.lower().rstrip(".") in TITLES:
        return True
    return all(is_clinical_word(part) or part == "s" for part in parts)


def refine_ner_span(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """The parts of an NER person/place/organisation span that may identify someone: split at line breaks,
    clinical words and stop words trimmed from the edges, payers and eponymous diseases dropped."""
    pieces: list[tuple[int, int]] = []
    cursor = start
    for line_break in _LINE_BREAK.finditer(text, start, end):
        pieces.append((cursor, line_break.start()))
        cursor = line_break.end()
    pieces.append((cursor, end))
    kept: list[tuple[int, int]] = []
    for piece_start, piece_end in pieces:
        if is_clinical_term(text[piece_start:piece_end]):
            continue
        tokens = list(NAME_TOKEN.finditer(text, piece_start, piece_end))
        while tokens and is_filler(tokens[0].group()):
            tokens.pop(0)
        while tokens and is_filler(tokens[-1].group()):
            tokens.pop()
        if not tokens:
            continue
        span_start, span_end = tokens[0].start(), tokens[-1].end()
        if text[span_end - 2 : span_end] in ("'s", "\u2019s"):
            span_end -= 2  # "Okafor's": the possessive is not part of the name
        if " ".join(words(text[span_start:span_end])) in PAYERS:
            continue
        if is_eponym_use(text, span_start, span_end, allow_bare=True):
            continue
        kept.append((span_start, span_end))
    return kept


class ClinicalSpacyRecognizer(SpacyRecognizer):
    """spaCy's persons, places and organisations without clinical false positives; its dates only where
    they name a day or month that the date patterns did not already find (those are shifted instead)."""

    ENTITIES = ["PERSON", "LOCATION", "ORGANIZATION", "DATE_TIME"]

    def __init__(self) -> None:
        super().__init__(supported_language=LANGUAGE, supported_entities=list(self.ENTITIES))

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        raw: list[RecognizerResult] = super().analyze(text, entities, nlp_artifacts)
        dates: list[tuple[int, int]] | None = None
        results: list[RecognizerResult] = []
        for result in raw:
            if result.entity_type == "DATE_TIME":
                if dates is None:
                    dates = [(span.start, span.end) for span in find_dates(text)]
                overlaps = any(start < result.end and result.start < end for start, end in dates)
                if not overlaps and looks_like_date(text[result.start : result.end]):
                    results.append(result)
                continue
            for start, end in refine_ner_span(text, result.start, result.end):
                if is_not_an_entity(text, start, end, result.entity_type):
                    continue
                results.append(
                    RecognizerResult(
                        entity_type=result.entity_type,
                        start=start,
                        end=end,
                        score=result.score,
                        analysis_explanation=result.analysis_explanation,
                        recognition_metadata=dict(result.recognition_metadata or {}),
                    )
                )
        return results
