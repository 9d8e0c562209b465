"""The basis of a finding as the suggestion page shows it: a risk score's parameters, or the note excerpts
that assert a problem. Read from whatever evidence the model wrote (see ``evidence``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from clinical_ai.review.selectors.evidence import label_of, mapping_of, mappings_of, strings_of, text_of
from clinical_ai.review.selectors.explanation import (
    Drivers,
    Sentences,
    display_unit,
    drivers_of,
    feature_value_text,
    is_feature,
    notes_read,
    number_of,
    percent_text,
    records_of,
    sentences_of,
)
from clinical_ai.review.times import ShownTime, TimeLens

# Without a lens, times are read as the de-identified copy holds them, and shown as shifted.
_SHIFTED = TimeLens(zone=UTC, now=datetime.fromtimestamp(0, UTC))


# --- risk findings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParameterRow:
    name: str
    label: str
    value: str
    unit: str
    original: str
    effective: str
    age_hours: str
    score: str
    range: str
    status: str
    reason: str
    effective_time: ShownTime | None = None  # ``effective`` as shown: real, or labelled as shifted
    records: int | None = None  # how many source records (a declarative model's input); None: not said
    imputed: bool = False  # not recorded: the model was given a stand-in value, said in ``value``
    feature: bool = False  # a declarative model's input (its status in words: recorded, not recorded...)

    @property
    def status_text(self) -> str:
        if not self.feature:
            return self.status
        return {
            "scored": "recorded",
            "imputed": "not recorded, stand-in used",
            "missing": "not recorded",
        }.get(self.status, self.status)


@dataclass(frozen=True)
class RiskBasis:
    parameters: list[ParameterRow]
    missing: list[str]
    stale: list[str]
    aggregate: str
    score: str
    band: str
    qualitative_risk: str
    outcome: str
    complete: bool | None
    note: str
    red_score_parameters: list[str]
    thresholds: list[tuple[str, str]]
    clinical_response: str
    reference_time: str
    scale: str
    reference: ShownTime | None = None  # ``reference_time`` as shown
    real_times: bool = False  # the times are the record's own (the shift undone), in the site's zone
    # "complete", "lower_bound" (the band is a floor: "at least") or "not_scored" (no score, no band)
    completeness: str = "complete"
    probability: str = ""  # the model's estimate for this patient, "23%" (a probability model only)
    imputed: list[str] = field(default_factory=list)  # inputs not recorded, scored with a stand-in value
    required_missing: list[str] = field(default_factory=list)  # inputs the model cannot score without
    drivers: Drivers | None = None  # what drove the score (a tabular model's explanation)
    sentences: Sentences | None = None  # the note sentences that weighed most (a text classifier's)
    notes_count: int = 0  # how many notes a text classifier read
    notes: list[ShownTime] = field(default_factory=list)  # the times of those that are dated

    @property
    def shows_original(self) -> bool:
        return any(row.original for row in self.parameters)

    @property
    def shows_range(self) -> bool:
        return any(row.range for row in self.parameters)

    @property
    def shows_score(self) -> bool:
        return any(row.score for row in self.parameters)

    @property
    def shows_age(self) -> bool:
        """The "how long ago" column: real times carry their age; shifted ones only the model's hours."""
        return self.real_times or any(row.age_hours for row in self.parameters)

    @property
    def shows_records(self) -> bool:
        return any(row.records is not None for row in self.parameters)

    @property
    def not_scored(self) -> bool:
        return self.completeness == "not_scored"

    @property
    def lower_bound(self) -> bool:
        return self.completeness == "lower_bound"

    @property
    def at_least(self) -> bool:
        """The band is a floor worth saying: a lower bound below the top band ("at least high" is high)."""
        return self.lower_bound and self.band != "high"


def _shown(text: str, times: TimeLens | None) -> ShownTime | None:
    return (times or _SHIFTED).show(text) if text else None


def _parameter_row(item: Mapping[str, Any], times: TimeLens | None = None) -> ParameterRow:
    original = " ".join(
        p for p in (text_of(item.get("original_value")), text_of(item.get("original_unit"))) if p
    )
    age = item.get("age_hours")
    name = text_of(item.get("name"))
    feature = is_feature(item)
    worded = feature_value_text(item) if feature else None
    return ParameterRow(
        name=name,
        # A declarative model's input always has a label; its name is for the model, never shown.
        label=text_of(item.get("label")) or ("an input of the model" if feature else label_of(name)),
        value=worded.text if worded else text_of(item.get("value")),
        unit="" if worded else display_unit(text_of(item.get("unit"))),
        original=original,
        effective=text_of(item.get("effective")),
        age_hours=f"{age:g} h" if isinstance(age, int | float) and not isinstance(age, bool) else "",
        score=text_of(item.get("score")),
        range=text_of(item.get("range")),
        status=text_of(item.get("status")) or "unknown",
        reason=text_of(item.get("reason")),
        effective_time=_shown(text_of(item.get("effective")), times),
        records=records_of(item) if feature else None,
        imputed=bool(worded and worded.imputed),
        feature=feature,
    )


def _completeness(evidence: Mapping[str, Any], risk: Mapping[str, Any]) -> str:
    """What the model wrote; for evidence from before it did, an incomplete result without a band."""
    stated = text_of(evidence.get("completeness"))
    if stated in ("complete", "lower_bound", "not_scored"):
        return stated
    if number_of(evidence.get("probability")) is not None:
        # A probability is never a lower bound: an input not recorded was given a stand-in value, and the
        # page says so beside the estimate.
        return "complete"
    if evidence.get("complete") is False:
        return "lower_bound" if evidence.get("band") or risk.get("band") else "not_scored"
    return "complete"


def _required_missing(
    evidence: Mapping[str, Any], rows: list[ParameterRow], items: list[Mapping[str, Any]]
) -> list[str]:
    """What a model cannot score without: its inputs marked required and missing, or, for a model that
    listed no inputs (a text classifier without a note), what it says is missing."""
    if not rows:
        return [label_of(name) for name in strings_of(evidence.get("missing"))]
    return [
        row.label
        for row, item in zip(rows, items, strict=True)
        if row.status == "missing" and item.get("required") is True
    ]


def _thresholds(value: Any, *, as_percent: bool) -> list[tuple[str, str]]:
    """The model's thresholds; a probability model's as percentages, like its estimate."""
    shown = []
    for key, threshold in mapping_of(value).items():
        number = number_of(threshold)
        percent = percent_text(number) if as_percent else ""
        shown.append((label_of(str(key)), percent or text_of(threshold)))
    return shown


def risk_basis(
    evidence: Mapping[str, Any], risk: Mapping[str, Any] | None, times: TimeLens | None = None
) -> RiskBasis:
    risk = risk if isinstance(risk, Mapping) else {}
    items = mappings_of(evidence.get("parameters"))
    rows = [_parameter_row(item, times) for item in items]
    labels = {row.name: row.label for row in rows}
    imputed = [row.label for row in rows if row.imputed]

    def named(key: str, status: str) -> list[str]:
        listed = [labels.get(name, label_of(name)) for name in strings_of(evidence.get(key))]
        # An imputed input was scored (with a stand-in value): it is said apart, never as "not scored".
        return [label for label in listed if label not in imputed] or [
            row.label for row in rows if row.status == status
        ]

    probability = number_of(evidence.get("probability"))
    probability = number_of(risk.get("probability")) if probability is None else probability
    notes_count, notes = notes_read(evidence, times)

    thresholds = evidence.get("thresholds")
    complete = evidence.get("complete")
    return RiskBasis(
        parameters=rows,
        missing=named("missing", "missing"),
        stale=named("stale", "stale"),
        aggregate=text_of(evidence.get("aggregate")),
        score=text_of(risk.get("score")),
        band=text_of(evidence.get("band")) or text_of(risk.get("band")),
        qualitative_risk=text_of(risk.get("qualitative_risk")),
        outcome=text_of(risk.get("outcome")),
        complete=complete if isinstance(complete, bool) else None,
        note=text_of(evidence.get("note")),
        red_score_parameters=[
            labels.get(name, label_of(name)) for name in strings_of(evidence.get("red_score_parameters"))
        ],
        thresholds=_thresholds(thresholds, as_percent=probability is not None),
        clinical_response=text_of(evidence.get("clinical_response")),
        reference_time=text_of(evidence.get("reference_time")),
        scale=text_of(evidence.get("scale")),
        reference=_shown(text_of(evidence.get("reference_time")), times),
        completeness=_completeness(evidence, risk),
        real_times=times is not None and times.real,
        probability=percent_text(probability),
        imputed=imputed,
        required_missing=_required_missing(evidence, rows, items),
        drivers=drivers_of(evidence, risk, times),
        sentences=sentences_of(evidence, risk, times),
        notes_count=notes_count,
        notes=notes,
    )


# --- problem findings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ExcerptView:
    segments: list[tuple[str, bool]]  # (text, highlighted); the template escapes each part
    note_date: str
    section: str
    similarity: str
    match: str
    note_time: ShownTime | None = None  # ``note_date`` as shown: real, or labelled as shifted


@dataclass(frozen=True)
class ProblemBasis:
    concept_display: str
    concept_code: str
    concept_system: str
    excerpts: list[ExcerptView]
    threshold: str
    skipped: list[tuple[str, int]]
    affirmed_mentions: str
    notes_with_mentions: str
    matching: str
    real_times: bool = False


def highlight_segments(text: str, highlight: Any) -> list[tuple[str, bool]]:
    """``text`` cut around ``highlight`` ([start, end], character offsets) into (part, highlighted)
    pieces; the whole text unhighlighted when the offsets are not a span inside it."""
    if (
        isinstance(highlight, Sequence)
        and not isinstance(highlight, str)
        and len(highlight) == 2
        and all(isinstance(i, int) and not isinstance(i, bool) for i in highlight)
        and 0 <= highlight[0] < highlight[1] <= len(text)
    ):
        start, end = highlight[0], highlight[1]
        pieces = [(text[:start], False), (text[start:end], True), (text[end:], False)]
        return [(part, marked) for part, marked in pieces if part]
    return [(text, False)] if text else []


def _excerpt(item: Mapping[str, Any], times: TimeLens | None = None) -> ExcerptView:
    text = item.get("text") if isinstance(item.get("text"), str) else ""
    highlight = item.get("highlight")
    if highlight is None and "start" in item and "end" in item:
        highlight = [item.get("start"), item.get("end")]
    similarity = item.get("similarity")
    return ExcerptView(
        segments=highlight_segments(str(text), highlight),
        note_date=text_of(item.get("note_date") or item.get("date")),
        section=text_of(item.get("section")),
        similarity=f"{similarity:.2f}"
        if isinstance(similarity, int | float) and not isinstance(similarity, bool)
        else "",
        match=text_of(item.get("match")),
        note_time=_shown(text_of(item.get("note_date") or item.get("date")), times),
    )


def _skipped(value: Any) -> list[tuple[str, int]]:
    if isinstance(value, Mapping):
        return [
            (str(kind), count)
            for kind, count in value.items()
            if isinstance(count, int) and not isinstance(count, bool) and count > 0
        ]
    counted: dict[str, int] = {}
    for item in mappings_of(value):
        kind = text_of(item.get("assertion") or item.get("kind") or item.get("reason")) or "other"
        counted[kind] = counted.get(kind, 0) + 1
    return list(counted.items())


def problem_basis(evidence: Mapping[str, Any], times: TimeLens | None = None) -> ProblemBasis:
    concept = evidence.get("concept")
    concept = concept if isinstance(concept, Mapping) else {"display": text_of(concept)}
    return ProblemBasis(
        concept_display=text_of(concept.get("display")) or text_of(concept.get("code")),
        concept_code=text_of(concept.get("code")),
        concept_system=text_of(concept.get("system")),
        excerpts=[_excerpt(item, times) for item in mappings_of(evidence.get("excerpts"))],
        threshold=text_of(evidence.get("threshold")),
        skipped=_skipped(evidence.get("skipped")),
        affirmed_mentions=text_of(evidence.get("affirmed_mentions")),
        notes_with_mentions=text_of(evidence.get("notes_with_mentions")),
        matching=text_of(evidence.get("matching")),
        real_times=times is not None and times.real,
    )
