"""Sentences of a note, each with its section, and the word tokens the matchers work on.

A note is split on line breaks, then on sentence punctuation (``.``, ``!``, ``?`` followed by a space, except
after a few abbreviations). Section headers are tracked: markdown headers (``# Assessment and Plan``,
``## Plan``), a known label alone on its line (``Past Medical History``) or before a colon
(``Family History: mother with asthma``). Every sentence keeps its character offsets in the note.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from clinical_ai.inference.builtin.problem_list.notes import Note

_TOKEN = re.compile(r"[A-Za-z0-9]+")
_LINE = re.compile(r"[^\r\n]+")
_MARKDOWN_HEADER = re.compile(r"^\s{0,3}#{1,6}\s+(?P<title>.*?)\s*#*\s*$")
_LABEL = re.compile(r"^\s*(?P<label>[A-Za-z][A-Za-z /&]{0,40}?)\s*:\s*(?P<rest>.*)$")
_BULLET = re.compile(r"\s*(?:[-*\u2022]|\d{1,2}[.)])\s+")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_ABBREVIATIONS = frozenset({"dr", "mr", "mrs", "ms", "st", "vs", "approx", "etc", "pt", "fig"})

# Canonical section names. Unknown markdown headers become "other".
SECTIONS: dict[str, str] = {
    "chief complaint": "chief_complaint",
    "cc": "chief_complaint",
    "history of present illness": "history_of_present_illness",
    "hpi": "history_of_present_illness",
    "present illness": "history_of_present_illness",
    "past medical history": "past_medical_history",
    "pmh": "past_medical_history",
    "medical history": "past_medical_history",
    "past history": "past_medical_history",
    "past surgical history": "past_surgical_history",
    "psh": "past_surgical_history",
    "surgical history": "past_surgical_history",
    "family history": "family_history",
    "family medical history": "family_history",
    "fh": "family_history",
    "fhx": "family_history",
    "social history": "social_history",
    "sh": "social_history",
    "allergies": "allergies",
    "allergy": "allergies",
    "drug allergies": "allergies",
    "medications": "medications",
    "medication": "medications",
    "current medications": "medications",
    "home medications": "medications",
    "active medications": "medications",
    "meds": "medications",
    "immunizations": "immunizations",
    "assessment and plan": "assessment_and_plan",
    "assessment": "assessment_and_plan",
    "a/p": "assessment_and_plan",
    "impression": "assessment_and_plan",
    "impression and plan": "assessment_and_plan",
    "diagnosis": "assessment_and_plan",
    "diagnoses": "assessment_and_plan",
    "problem list": "assessment_and_plan",
    "active problems": "assessment_and_plan",
    "plan": "plan",
    "plan of care": "plan",
    "review of systems": "review_of_systems",
    "ros": "review_of_systems",
    "physical exam": "physical_exam",
    "physical examination": "physical_exam",
    "exam": "physical_exam",
    "examination": "physical_exam",
}
PREAMBLE = "preamble"  # before any header
OTHER = "other"  # a markdown header we do not know


@dataclass(frozen=True)
class Token:
    text: str  # lower case
    start: int  # character offsets in the text it was taken from
    end: int


@dataclass(frozen=True)
class Sentence:
    note: Note
    start: int  # character offsets in note.text
    end: int
    section: str

    @property
    def text(self) -> str:
        return self.note.text[self.start : self.end]


def tokenize(text: str) -> tuple[Token, ...]:
    return tuple(Token(m.group().lower(), m.start(), m.end()) for m in _TOKEN.finditer(text))


def section_name(label: str) -> str | None:
    key = " ".join(label.lower().replace("&", "and").rstrip(":").split())
    return SECTIONS.get(key)


def _sentences_in(note: Note, start: int, end: int, section: str) -> list[Sentence]:
    """Sentences of ``note.text[start:end]`` (one line, or the part after a label)."""
    text = note.text
    bullet = _BULLET.match(text, start, end)
    if bullet:
        start = bullet.end()
    pieces: list[tuple[int, int]] = []
    begin = start
    for match in _SENTENCE_END.finditer(text, start, end):
        before = _TOKEN.findall(text[begin : match.start()][-12:])
        if match.group() == "." and before and before[-1].lower() in _ABBREVIATIONS:
            continue
        pieces.append((begin, match.end()))
        begin = match.end()
    pieces.append((begin, end))
    sentences = []
    for a, b in pieces:
        while a < b and text[a].isspace():
            a += 1
        while b > a and text[b - 1].isspace():
            b -= 1
        if a < b and _TOKEN.search(text, a, b):
            sentences.append(Sentence(note, a, b, section))
    return sentences


def sentences_split(note: Note) -> list[Sentence]:
    sentences: list[Sentence] = []
    section = PREAMBLE
    for line in _LINE.finditer(note.text):
        header = _MARKDOWN_HEADER.match(line.group())
        if header:
            section = section_name(header.group("title")) or OTHER
            continue
        alone = section_name(line.group())
        if alone is not None:
            section = alone
            continue
        labelled = _LABEL.match(line.group())
        start = line.start()
        if labelled and section_name(labelled.group("label")) is not None:
            section = section_name(labelled.group("label")) or section
            start = line.start() + labelled.start("rest")
        sentences.extend(_sentences_in(note, start, line.end(), section))
    return sentences
