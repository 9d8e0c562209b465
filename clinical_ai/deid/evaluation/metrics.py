"""Span metrics: precision, recall and F2 per evaluation label, micro-averaged over all labels.

Matching is by overlap, not exact boundaries, because detectors and annotators disagree on edges ("Mrs
Okafor" or "Okafor", "48 Harbour View Road, Portsmouth" as one span or two):

- a gold span is **found** when a predicted span of a compatible label overlaps it (recall);
- a gold span is **redacted** when any predicted span overlaps it, whatever its label ("redaction recall":
  for privacy what matters is that the text was removed);
- a predicted span is **correct** when it overlaps a gold span of a compatible label (precision); it is
  **on PII** when it overlaps any gold span ("redaction precision");
- **covered** counts the letters and digits of gold spans that lie inside some predicted span: an address
  caught only by its city is found, but most of it is still there.

F2 weighs recall four times as much as precision: a missed identifier is a privacy breach, an extra
redaction costs some clinical text. When a label has gold spans and no predictions its precision is
undefined (shown as "-") and its F2 is 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clinical_ai.deid.evaluation.labels import compatible

BETA = 2.0


@dataclass(frozen=True)
class GoldSpan:
    start: int
    end: int
    label: str  # evaluation label (labels.py)
    kind: str  # the dataset's own type: "ADDRESS", "MRN", ...


@dataclass(frozen=True)
class PredictedSpan:
    start: int
    end: int
    label: str  # evaluation label
    entity: str  # the detector's own type: "STREET_ADDRESS", "DATE_TIME", ...


@dataclass(frozen=True)
class TermSpan:
    """A piece of clinical vocabulary that must stay in the text."""

    start: int
    end: int
    term: str


def overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    return a_start < b_end and b_start < a_end


def f_beta(precision: float | None, recall: float | None, beta: float = BETA) -> float | None:
    """F-beta of a precision and a recall; ``None`` where recall is undefined, 0 where both are 0 or
    precision is undefined (nothing predicted)."""
    if recall is None:
        return None
    precision = precision or 0.0
    if precision == 0.0 and recall == 0.0:
        return 0.0
    weight = beta * beta
    return (1 + weight) * precision * recall / (weight * precision + recall)


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


@dataclass
class Counts:
    gold: int = 0
    found: int = 0  # gold spans overlapped by a prediction of a compatible label
    redacted: int = 0  # gold spans overlapped by any prediction
    predicted: int = 0
    correct: int = 0  # predictions overlapping a gold span of a compatible label
    on_pii: int = 0  # predictions overlapping any gold span
    gold_chars: int = 0  # letters and digits inside gold spans
    covered_chars: int = 0  # ... of which inside some prediction

    def add(self, other: Counts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def precision(self) -> float | None:
        return _ratio(self.correct, self.predicted)

    @property
    def recall(self) -> float | None:
        return _ratio(self.found, self.gold)

    @property
    def f2(self) -> float | None:
        return f_beta(self.precision, self.recall)

    @property
    def redaction_recall(self) -> float | None:
        return _ratio(self.redacted, self.gold)

    @property
    def redaction_precision(self) -> float | None:
        return _ratio(self.on_pii, self.predicted)

    @property
    def coverage(self) -> float | None:
        return _ratio(self.covered_chars, self.gold_chars)

    def as_dict(self) -> dict[str, Any]:
        counts: dict[str, Any] = {name: getattr(self, name) for name in self.__dataclass_fields__}
        for name in ("precision", "recall", "f2", "redaction_recall", "redaction_precision", "coverage"):
            counts[name] = getattr(self, name)
        return counts


@dataclass
class SpanScores:
    """One detector on one dataset."""

    documents: int = 0
    by_label: dict[str, Counts] = field(
        default_factory=dict
    )  # gold side by gold label, predictions by theirs
    by_gold_type: dict[str, Counts] = field(default_factory=dict)  # gold side only, by the dataset's type
    terms: int = 0  # clinical vocabulary occurrences in the texts
    terms_redacted: int = 0  # ... overlapped by a prediction
    redacted_terms: Counter[str] = field(default_factory=Counter)

    @property
    def micro(self) -> Counts:
        total = Counts()
        for counts in self.by_label.values():
            total.add(counts)
        return total

    def _label(self, label: str) -> Counts:
        return self.by_label.setdefault(label, Counts())

    def add_document(
        self,
        text: str,
        gold: Sequence[GoldSpan],
        predicted: Sequence[PredictedSpan],
        terms: Sequence[TermSpan] = (),
    ) -> None:
        self.documents += 1
        covered = _covered_positions(predicted)
        for span in gold:
            hits = [p for p in predicted if overlaps(p.start, p.end, span.start, span.end)]
            alnum = [i for i in range(span.start, span.end) if text[i].isalnum()]
            counts = Counts(
                gold=1,
                found=int(any(compatible(p.label, span.label) for p in hits)),
                redacted=int(bool(hits)),
                gold_chars=len(alnum),
                covered_chars=sum(1 for i in alnum if i in covered),
            )
            self._label(span.label).add(counts)
            self.by_gold_type.setdefault(span.kind, Counts()).add(counts)
        for prediction in predicted:
            hits_gold = [g for g in gold if overlaps(prediction.start, prediction.end, g.start, g.end)]
            self._label(prediction.label).add(
                Counts(
                    predicted=1,
                    correct=int(any(compatible(prediction.label, g.label) for g in hits_gold)),
                    on_pii=int(bool(hits_gold)),
                )
            )
        for term in terms:
            self.terms += 1
            if any(overlaps(p.start, p.end, term.start, term.end) for p in predicted):
                self.terms_redacted += 1
                self.redacted_terms[term.term] += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "micro": self.micro.as_dict(),
            "by_label": {label: counts.as_dict() for label, counts in sorted(self.by_label.items())},
            "by_gold_type": {kind: counts.as_dict() for kind, counts in sorted(self.by_gold_type.items())},
            "clinical_terms": {
                "occurrences": self.terms,
                "redacted": self.terms_redacted,
                "most_redacted": self.redacted_terms.most_common(15),
            },
        }


def _covered_positions(predicted: Iterable[PredictedSpan]) -> set[int]:
    positions: set[int] = set()
    for span in predicted:
        positions.update(range(span.start, span.end))
    return positions


def score(
    documents: Iterable[tuple[str, Sequence[GoldSpan], Sequence[PredictedSpan], Sequence[TermSpan]]],
) -> SpanScores:
    """Scores of one detector over ``(text, gold, predicted, clinical terms)`` documents."""
    scores = SpanScores()
    for text, gold, predicted, terms in documents:
        scores.add_document(text, gold, predicted, terms)
    return scores
