"""The concept vocabulary (a hash-verified artifact) and the lexical matcher over it.

A concept is a SNOMED CT code with its display and synonyms. Its *terms* are the display and the synonyms,
without a trailing semantic tag ("Viral sinusitis (disorder)" gives "viral sinusitis"), plus the variant
without hyphens inside words ("pre-eclampsia" also gives "preeclampsia"). Terms are matched on word tokens,
so case and punctuation do not matter; the last word may take a plural ("polyps"). A term belongs to one
concept only, or the vocabulary is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clinical_ai.inference.builtin.problem_list.text import Token, tokenize
from clinical_ai.inference.engine.manifest import ManifestError

SNOMED = "http://snomed.info/sct"
_TAG_NAMES = (
    "disorder|finding|situation|procedure|morphologic abnormality|event|observable entity|qualifier value|"
    "regime/therapy|body structure|clinical finding"
)
SEMANTIC_TAG = re.compile(rf"\s*\((?:{_TAG_NAMES})\)\s*$", re.IGNORECASE)  # at the end of a display
SEMANTIC_TAG_ANYWHERE = re.compile(rf"\((?:{_TAG_NAMES})\)", re.IGNORECASE)  # inside a sentence
_INNER_HYPHEN = re.compile(r"(?<=[A-Za-z])-(?=[A-Za-z])")


class VocabularyError(ManifestError):
    """The vocabulary artifact is malformed: the model refuses to load."""


def strip_semantic_tag(text: str) -> str:
    return SEMANTIC_TAG.sub("", text).strip()


@dataclass(frozen=True)
class Concept:
    system: str
    code: str
    display: str
    synonyms: tuple[str, ...]

    @property
    def terms(self) -> tuple[str, ...]:
        """Display and synonyms, tags stripped, with hyphen-free variants; unique, in order."""
        found: dict[str, None] = {}
        for raw in (self.display, *self.synonyms):
            term = strip_semantic_tag(raw)
            for variant in (term, _INNER_HYPHEN.sub("", term)):
                found.setdefault(variant, None)
        return tuple(found)

    def coding(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}


@dataclass(frozen=True)
class LexicalHit:
    concept: int  # index in Vocabulary.concepts
    start: int  # token indices, end exclusive
    end: int


def _singulars(word: str) -> list[str]:
    """What a word may be the plural of. Short words take no plural: "hives" is not a plural of "HIV"."""
    forms = []
    if word.endswith("ies") and len(word) >= 6:
        forms.append(word[:-3] + "y")
    if word.endswith("es") and word[:-2].endswith(("s", "x", "z", "ch", "sh")) and len(word) >= 6:
        forms.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss") and len(word) >= 5:
        forms.append(word[:-1])
    return forms


def _same_word(term_word: str, word: str, *, last: bool) -> bool:
    return word == term_word or (last and term_word in _singulars(word))


class Vocabulary:
    def __init__(self, concepts: Sequence[Concept], *, name: str = "", version: str = "") -> None:
        self.concepts = tuple(concepts)
        self.name = name
        self.version = version
        self.index = {(c.system, c.code): i for i, c in enumerate(self.concepts)}  # (system, code) -> index
        self.terms: list[tuple[str, int]] = []  # (term, concept index), the order the encoder sees them
        self._by_first: dict[str, list[tuple[tuple[str, ...], int]]] = {}
        owner: dict[tuple[str, ...], int] = {}
        for index, concept in enumerate(self.concepts):
            for term in concept.terms:
                words = tuple(t.text for t in tokenize(term))
                if not words:
                    raise VocabularyError(f"concept {concept.code}: the term {term!r} has no words")
                if owner.setdefault(words, index) != index:
                    other = self.concepts[owner[words]].code
                    raise VocabularyError(f"the term {term!r} belongs to {other} and {concept.code}")
                self.terms.append((term, index))
        for words, index in owner.items():
            self._by_first.setdefault(words[0], []).append((words, index))

    def __len__(self) -> int:
        return len(self.concepts)

    def _candidates(self, word: str) -> list[tuple[tuple[str, ...], int]]:
        found = list(self._by_first.get(word, []))
        for singular in _singulars(word):
            found.extend(entry for entry in self._by_first.get(singular, []) if len(entry[0]) == 1)
        return found

    def hits_all(self, tokens: Sequence[Token]) -> list[LexicalHit]:
        """Every place a term occurs, overlapping ones included."""
        words = [t.text for t in tokens]
        hits: set[LexicalHit] = set()
        for i, word in enumerate(words):
            for term, concept in self._candidates(word):
                end = i + len(term)
                if end <= len(words) and all(
                    _same_word(term_word, words[i + k], last=k == len(term) - 1)
                    for k, term_word in enumerate(term)
                ):
                    hits.add(LexicalHit(concept, i, end))
        return sorted(hits, key=lambda h: (h.start, h.end, h.concept))

    def hits(self, tokens: Sequence[Token]) -> list[LexicalHit]:
        """Longest matches first, none overlapping: "viral sinusitis" is not also "sinusitis"."""
        kept: list[LexicalHit] = []
        for hit in sorted(self.hits_all(tokens), key=lambda h: (h.start - h.end, h.start)):
            if all(hit.end <= k.start or k.end <= hit.start for k in kept):
                kept.append(hit)
        return sorted(kept, key=lambda h: h.start)

    def concepts_named_in(self, text: str) -> set[int]:
        """Concepts any of whose terms occurs in ``text``: a coded "Chronic congestive heart failure"
        names heart failure and congestive heart failure too."""
        return {hit.concept for hit in self.hits_all(tokenize(text))}


def vocabulary_parse(data: Any) -> Vocabulary:
    if not isinstance(data, Mapping) or not isinstance(data.get("concepts"), list):
        raise VocabularyError("a vocabulary is an object with a 'concepts' list")
    concepts = []
    codes: set[tuple[str, str]] = set()
    for i, item in enumerate(data["concepts"]):
        if not isinstance(item, Mapping):
            raise VocabularyError(f"concepts[{i}] must be an object")
        system, code, display = item.get("system"), item.get("code"), item.get("display")
        synonyms = item.get("synonyms", [])
        if not (isinstance(system, str) and isinstance(code, str) and isinstance(display, str)):
            raise VocabularyError(f"concepts[{i}] needs 'system', 'code' and 'display' strings")
        if not (system and code and display.strip()):
            raise VocabularyError(f"concepts[{i}]: 'system', 'code' and 'display' must not be empty")
        if not isinstance(synonyms, list) or not all(isinstance(s, str) and s.strip() for s in synonyms):
            raise VocabularyError(f"concepts[{i}]: 'synonyms' must be a list of strings")
        if (system, code) in codes:
            raise VocabularyError(f"concepts[{i}]: {system}|{code} appears twice")
        codes.add((system, code))
        concepts.append(Concept(system, code, display, tuple(synonyms)))
    return Vocabulary(concepts, name=str(data.get("name", "")), version=str(data.get("version", "")))


def vocabulary_load(path: Path) -> Vocabulary:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VocabularyError(f"{path.name}: cannot read the vocabulary ({type(exc).__name__})") from exc
    return vocabulary_parse(data)
