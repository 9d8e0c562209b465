"""What in a note drove a text classifier's score: each sentence's weight is how much the probability drops
when that sentence is left out (occlusion). No Django, no NLP pipeline: a note is cut into sentences at
``.``, ``!`` and ``?`` followed by a space, and at line breaks, which is what clinical notes are made of.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from clinical_ai.inference.engine.explain.types import Explanation

# A sentence ends at a run of . ! ? (with closing quotes or brackets) followed by white space or the end,
# or at a line break. "3.5 mg" and "e.g.," do not end one: no white space follows the stop.
_BOUNDARY = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)|\n")
_WORD = re.compile(r"\w")


class TextClassifier(Protocol):
    def predict_texts(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        """(len(texts),) probabilities of the classifier's positive label."""
        ...


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) offsets of the sentences of ``text``, in order, each trimmed of surrounding white space
    (``text[start:end]`` is the sentence with its final stop). Pieces without a letter or digit (a line of
    dashes, a stray stop) are not sentences."""
    spans: list[tuple[int, int]] = []

    def keep(start: int, end: int) -> None:
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start < end and _WORD.search(text, start, end):
            spans.append((start, end))

    start = 0
    for boundary in _BOUNDARY.finditer(text):
        keep(start, boundary.start() if boundary.group() == "\n" else boundary.end())
        start = boundary.end()
    keep(start, len(text))
    return spans


def sentence_occlusion(classifier: TextClassifier, text: str, *, max_sentences: int = 40) -> Explanation:
    """Weights of the first ``max_sentences`` sentences of ``text``, highest first, in one batched call.

    ``output_value`` is the probability for the whole text. ``base_value`` is the probability for an empty
    text, what the model says with nothing to read, so that a reader can tell how far the note moved it.
    A sentence's weight is output_value minus the probability with that sentence removed (positive: it
    pushed the score up). Unlike Shapley values the weights need not add up to output - base: sentences
    that say the same thing share the credit and each alone weighs little. Only the first
    ``max_sentences`` are tried, which bounds the cost of a long note; the classifier cuts long texts at its
    token limit anyway, so later sentences mostly go unread."""
    spans = sentence_spans(text)[: max(0, max_sentences)]
    variants = [text, ""] + [text[:start] + text[end:] for start, end in spans]
    scores = np.asarray(classifier.predict_texts(variants), dtype=np.float64)
    full, empty = float(scores[0]), float(scores[1])
    weighted = [
        (start, end, full - float(score)) for (start, end), score in zip(spans, scores[2:], strict=True)
    ]
    weighted.sort(key=lambda item: (-item[2], item[0]))
    return Explanation(
        method="sentence_occlusion",
        output_space="probability",
        base_value=empty,
        output_value=full,
        sentence_weights=tuple(weighted),
    )
