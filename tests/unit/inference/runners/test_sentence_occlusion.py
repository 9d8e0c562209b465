"""The sentence splitter and the occlusion explanation, with a classifier whose answer is known by hand."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from clinical_ai.inference.engine.explain.text import sentence_occlusion, sentence_spans


def pieces(text: str) -> list[str]:
    return [text[start:end] for start, end in sentence_spans(text)]


def test_sentences_end_at_stops_followed_by_space_and_at_line_breaks() -> None:
    assert pieces("Fever 38.5 C since Monday. Took 2.5 mg!  Better?\nNo cough") == [
        "Fever 38.5 C since Monday.",
        "Took 2.5 mg!",
        "Better?",
        "No cough",
    ]
    assert pieces('He said "stop." Then left...   Done') == ['He said "stop."', "Then left...", "Done"]
    assert pieces("Assessment:\n\n  - sepsis ruled out (see labs).\n-----\n") == [
        "Assessment:",
        "- sepsis ruled out (see labs).",
    ]
    assert pieces("") == [] and pieces("  \n . \n") == []


class KeywordClassifier:
    """Probability 0.1, plus 0.4 when "sepsis" is mentioned and 0.2 for "fever", minus 0.05 for "stable".
    Records each call's batch."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def predict_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        scores = []
        for text in texts:
            lowered = text.lower()
            score = (
                0.1 + 0.4 * ("sepsis" in lowered) + 0.2 * ("fever" in lowered) - 0.05 * ("stable" in lowered)
            )
            scores.append(score)
        return np.array(scores)


def test_each_sentence_weighs_the_drop_without_it_in_one_call() -> None:
    text = "Vitals stable. Fever overnight.\nConcern for sepsis. Seen by the team"
    classifier = KeywordClassifier()

    explanation = sentence_occlusion(classifier, text)

    assert len(classifier.calls) == 1 and len(classifier.calls[0]) == 2 + 4
    assert explanation.output_value == pytest.approx(0.65)
    assert explanation.base_value == pytest.approx(0.1)  # the empty text
    assert [(text[start:end], round(weight, 6)) for start, end, weight in explanation.sentence_weights] == [
        ("Concern for sepsis.", 0.4),
        ("Fever overnight.", 0.2),
        ("Seen by the team", 0.0),
        ("Vitals stable.", -0.05),
    ]
    assert explanation.contributions == () and explanation.references == 0


def test_only_the_first_sentences_are_tried() -> None:
    text = " ".join(f"Sentence {number} mentions fever." for number in range(10))
    classifier = KeywordClassifier()
    explanation = sentence_occlusion(classifier, text, max_sentences=3)
    assert sorted(start for start, _, _ in explanation.sentence_weights) == [
        start for start, _ in sentence_spans(text)[:3]
    ]
    assert len(classifier.calls[0]) == 5
    # Every other sentence still mentions fever: leaving one out changes nothing.
    assert all(weight == 0.0 for _, _, weight in explanation.sentence_weights)


def test_a_text_without_sentences() -> None:
    explanation = sentence_occlusion(KeywordClassifier(), "   ")
    assert explanation.sentence_weights == () and explanation.output_value == pytest.approx(0.1)
