"""Mentions of concepts in a sentence: lexical hits, and the spans handed to the sentence encoder.

The embedding path does not encode whole sentences: a sentence such as "Patient has a history of acute
bronchitis, normal pregnancy, anemia" names several conditions, and its embedding resembles none of them.
It encodes *spans*: the sentence cut into clauses (at ``, ; : ( )`` and at "and", "or", "but"), each clause
stripped of the words that introduce a condition ("patient is presenting with", "history of", "denies") and
cut before what follows it ("... was ruled out", "... on lisinopril"). What is left is usually the noun
phrase naming the condition; spans overlapping a lexical hit are not encoded (the hit already says what
they name).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from clinical_ai.inference.builtin.problem_list.assertion import (
    TRIGGER_WORDS,
    Assertion,
    assertion_of,
    triggers_find,
)
from clinical_ai.inference.builtin.problem_list.text import Sentence, Token, tokenize
from clinical_ai.inference.builtin.problem_list.vocabulary import (
    SEMANTIC_TAG_ANYWHERE,
    LexicalHit,
    Vocabulary,
)

MatchKind = Literal["lexical", "embedding"]

_CLAUSE_BREAK = re.compile(r"[,;:()\[\]]")
_CONJUNCTIONS = frozenset({"and", "or", "but", "nor", "versus", "vs"})
# fmt: off
# Words that open a clause before the condition it names.
LEAD_WORDS = TRIGGER_WORDS | frozenset({
    "patient", "patients", "pt", "he", "she", "they", "it", "this", "that", "there", "is", "are", "was",
    "were", "be", "been", "being", "has", "have", "had", "having", "a", "an", "the", "with", "of", "for",
    "to", "in", "on", "at", "by", "as", "from", "presenting", "presents", "presented", "present",
    "diagnosed", "diagnosis", "known", "noted", "reports", "reported", "reporting", "complains",
    "complaining", "also", "likely", "new", "newly", "some", "any", "his", "her", "their", "its",
    "today", "currently", "now", "developed", "develops", "shows", "showing", "suffers", "suffering",
    "consistent", "compatible", "suggestive", "found", "continues", "continued", "ongoing", "treated",
    "treatment", "admitted", "seen", "here", "due", "secondary",
})
# Words after which a clause no longer names the condition ("asthma on inhalers", "pneumonia was ruled out").
TRAIL_CUT = frozenset({
    "is", "are", "was", "were", "be", "been", "has", "have", "had", "which", "that", "who", "on", "for",
    "since", "as", "per", "after", "in", "at", "by", "from", "to", "ruled", "unlikely", "resolved",
    "excluded", "negative", "not", "treated", "managed", "requiring",
})
# fmt: on


@dataclass(frozen=True)
class Span:
    start: int  # token indices, end exclusive
    end: int


@dataclass(frozen=True)
class Mention:
    concept: int
    sentence: Sentence
    highlight: tuple[int, int]  # character offsets in sentence.text
    match: MatchKind
    similarity: float
    assertion: Assertion


def _clauses(text: str, tokens: Sequence[Token]) -> list[list[int]]:
    tagged = [(m.start(), m.end()) for m in SEMANTIC_TAG_ANYWHERE.finditer(text)]
    clauses: list[list[int]] = [[]]
    for i, token in enumerate(tokens):
        between = text[tokens[i - 1].end : token.start] if i else ""
        in_tag = any(a <= token.start and token.end <= b for a, b in tagged)
        if _CLAUSE_BREAK.search(between) or token.text in _CONJUNCTIONS or in_tag:
            clauses.append([])
        if token.text not in _CONJUNCTIONS and not in_tag:
            clauses[-1].append(i)
    return [c for c in clauses if c]


def _contiguous(indices: list[int]) -> list[int]:
    """The first run of consecutive indices (a clause never jumps over a token)."""
    run = indices[:1]
    for index in indices[1:]:
        if index != run[-1] + 1:
            break
        run.append(index)
    return run


def embedding_spans(
    text: str, tokens: Sequence[Token], *, blocked: Sequence[LexicalHit], max_tokens: int
) -> list[Span]:
    """The spans of one sentence worth encoding, each at most ``max_tokens`` words."""
    spans = []
    for clause in _clauses(text, tokens):
        words = _contiguous(clause)
        while words and tokens[words[0]].text in LEAD_WORDS:
            words.pop(0)
        for k in range(1, len(words)):
            if tokens[words[k]].text in TRAIL_CUT:
                words = words[:k]
                break
        while words and tokens[words[-1]].text in LEAD_WORDS:
            words.pop()
        if not words or len(words) > max_tokens:
            continue
        if not any(sum(c.isalpha() for c in tokens[i].text) >= 3 for i in words):
            continue
        span = Span(words[0], words[-1] + 1)
        if any(span.start < hit.end and hit.start < span.end for hit in blocked):
            continue
        spans.append(span)
    return spans


def span_key(text: str, tokens: Sequence[Token], span: Span) -> str:
    """What the encoder sees for a span: its words in lower case, single-spaced."""
    return " ".join(text[tokens[span.start].start : tokens[span.end - 1].end].lower().split())


@dataclass(frozen=True)
class SentenceReading:
    """What one sentence says whatever note it is in, so that a sentence repeated across notes (templates,
    copied text) is read once per ``predict``: the lexical mentions with their status, and the highlight and
    encoder text of each affirmed span."""

    lexical: tuple[tuple[int, tuple[int, int], Assertion], ...]
    spans: tuple[tuple[tuple[int, int], str], ...]


def sentence_read(
    text: str,
    section: str,
    *,
    vocabulary: Vocabulary,
    lexical: bool,
    embedding: bool,
    window: int,
    max_span_tokens: int,
) -> SentenceReading:
    tokens = tokenize(text)
    hits = vocabulary.hits(tokens) if lexical else []
    triggers = triggers_find(tokens, inside=[(hit.start, hit.end) for hit in hits])

    def status(start: int, end: int) -> Assertion:
        return assertion_of(
            text=text, tokens=tokens, triggers=triggers, start=start, end=end, section=section, window=window
        )

    found = tuple(
        (hit.concept, (tokens[hit.start].start, tokens[hit.end - 1].end), status(hit.start, hit.end))
        for hit in hits
    )
    spans: list[tuple[tuple[int, int], str]] = []
    if embedding:
        for span in embedding_spans(text, tokens, blocked=hits, max_tokens=max_span_tokens):
            # Only affirmed spans are encoded: the others could not be proposed whatever they name.
            if status(span.start, span.end) == "affirmed":
                highlight = (tokens[span.start].start, tokens[span.end - 1].end)
                spans.append((highlight, span_key(text, tokens, span)))
    return SentenceReading(found, tuple(spans))
