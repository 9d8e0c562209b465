"""The evaluation report as aligned text tables (terminal), Markdown tables or JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from clinical_ai.deid.evaluation.labels import LABELS
from clinical_ai.deid.evaluation.leaks import PatientLeaks
from clinical_ai.deid.evaluation.metrics import Counts
from clinical_ai.deid.evaluation.runner import EvaluationReport, LeakEvaluation, SpanEvaluation

TITLES = {
    "research": "(a) presidio-research synthetic sentences",
    "clinical": "(b) generated clinical notes",
    "general": "(d) generated general text",
}
SHORT_NAMES = {"ours": "ours", "bare Presidio": "bare"}


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None or denominator == 0:
        return "-"
    return f"{numerator / denominator:.2f}x"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, markdown: bool) -> str:
    """Rows under headers; the first column left-aligned, the others right-aligned."""
    if markdown:
        lines = [
            "| " + " | ".join(headers) + " |",
            "|" + "|".join([":---", *["---:"] * (len(headers) - 1)]) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cell.ljust(width) if index == 0 else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * width for width in widths]), *(line(row) for row in rows)])


def _short(name: str) -> str:
    return SHORT_NAMES.get(name, name)


def _heading(text: str, *, markdown: bool, level: int = 3) -> str:
    return f"{'#' * level} {text}" if markdown else f"{text}\n{'=' * len(text)}"


def span_section(evaluation: SpanEvaluation, *, markdown: bool) -> str:
    dataset = evaluation.dataset
    systems = list(evaluation.scores)
    title = TITLES.get(evaluation.key, evaluation.key)
    parts = [
        _heading(f"{title}: {len(dataset.texts)} texts, {dataset.characters:,} characters", markdown=markdown)
    ]
    if dataset.adjustments:
        adjusted = ", ".join(f"{reason}: {count}" for reason, count in sorted(dataset.adjustments.items()))
        parts.append(f"Gold spans adjusted: {adjusted}.")

    headers = ["label", "gold"]
    for system in systems:
        headers += [
            f"{_short(system)} pred",
            f"{_short(system)} P",
            f"{_short(system)} R",
            f"{_short(system)} F2",
        ]
    present = [
        label for label in LABELS if any(label in scores.by_label for scores in evaluation.scores.values())
    ]
    rows: list[list[str]] = []
    first = evaluation.scores[systems[0]]
    for label in [*present, "micro avg"]:
        gold_counts = first.micro if label == "micro avg" else first.by_label.get(label, Counts())
        row = [label, str(gold_counts.gold)]
        for system in systems:
            scores = evaluation.scores[system]
            counts = scores.micro if label == "micro avg" else scores.by_label.get(label, Counts())
            row += [
                str(counts.predicted),
                percent(counts.precision),
                percent(counts.recall),
                percent(counts.f2),
            ]
        rows.append(row)
    parts.append(
        "Per label, type-aware overlap (P precision, R recall, F2; %):\n\n"
        + table(headers, rows, markdown=markdown)
    )

    kinds = sorted(first.by_gold_type, key=lambda kind: (-first.by_gold_type[kind].gold, kind))
    headers = ["gold type", "n"]
    for system in systems:
        headers += [f"{_short(system)} R", f"{_short(system)} R any", f"{_short(system)} chars"]
    rows = []
    for kind in [*kinds, "all"]:
        base = first.micro if kind == "all" else first.by_gold_type[kind]
        row = [kind, str(base.gold)]
        for system in systems:
            scores = evaluation.scores[system]
            counts = scores.micro if kind == "all" else scores.by_gold_type.get(kind, Counts())
            row += [percent(counts.recall), percent(counts.redaction_recall), percent(counts.coverage)]
        rows.append(row)
    parts.append(
        "Recall by gold type (R: a compatible label overlaps; R any: any prediction overlaps, i.e. the text "
        "is redacted; chars: share of the identifiers' letters and digits inside a prediction; %):\n\n"
        + table(headers, rows, markdown=markdown)
    )

    summary = []
    if len(systems) == 2:
        ours, bare = (evaluation.scores[name].micro for name in systems)
        summary.append(
            f"Micro average, {_short(systems[0])} / {_short(systems[1])}: recall {ratio(ours.recall, bare.recall)}, "
            f"F2 {ratio(ours.f2, bare.f2)}, precision {ratio(ours.precision, bare.precision)}, "
            f"redaction recall {ratio(ours.redaction_recall, bare.redaction_recall)}."
        )
    for system in systems:
        scores = evaluation.scores[system]
        micro = scores.micro
        line = f"{system}: redaction precision (prediction overlaps any gold span) {percent(micro.redaction_precision)}%"
        if scores.terms:
            hit = ", ".join(f"{term} {count}" for term, count in scores.redacted_terms.most_common(8))
            line += (
                f"; clinical terms redacted {scores.terms_redacted} of {scores.terms} "
                f"({percent(scores.terms_redacted / scores.terms)}%)" + (f": {hit}" if hit else "")
            )
        line += f"; {evaluation.seconds.get(system, 0.0):.1f} s."
        summary.append(line)
    parts.append("\n".join(f"- {line}" for line in summary) if markdown else "\n".join(summary))
    return "\n\n".join(parts)


def _cell(found: dict[str, int] | None) -> str:
    if found is None:
        return "-"
    return f"{len(found)} ({sum(found.values())})"


def _patient_label(patient: PatientLeaks) -> str:
    return re.sub(r"_[0-9a-f]{8}-[0-9a-f-]{27}$", "", patient.bundle)


def leak_section(evaluation: LeakEvaluation, *, markdown: bool) -> str:
    columns = evaluation.columns
    headers = ["patient bundle", "notes", "known ids", "named in input", "named in notes", *columns]
    rows: list[list[str]] = []
    totals: dict[str, list[int]] = {column: [0, 0] for column in columns}
    for patient in evaluation.patients:
        row = [
            _patient_label(patient),
            str(patient.notes),
            str(len(patient.known)),
            f"{len(patient.named_in_input)} ({sum(patient.named_in_input.values())})",
            f"{len(patient.named_in_notes)} ({sum(patient.named_in_notes.values())})",
        ]
        for column in columns:
            found = patient.survivors.get(column)
            row.append(_cell(dict(found) if found is not None else None))
            if found is not None:
                totals[column][0] += len(found)
                totals[column][1] += sum(found.values())
        rows.append(row)
    named_input = sum(len(p.named_in_input) for p in evaluation.patients)
    mentions_input = sum(sum(p.named_in_input.values()) for p in evaluation.patients)
    named = sum(len(p.named_in_notes) for p in evaluation.patients)
    mentions = sum(sum(p.named_in_notes.values()) for p in evaluation.patients)
    rows.append(
        [
            "total",
            str(sum(p.notes for p in evaluation.patients)),
            str(sum(len(p.known) for p in evaluation.patients)),
            f"{named_input} ({mentions_input})",
            f"{named} ({mentions})",
            *(f"{totals[column][0]} ({totals[column][1]})" for column in columns),
        ]
    )
    parts = [
        _heading(
            f"(c) Synthea bundles: known identifiers left, {len(evaluation.patients)} patients",
            markdown=markdown,
        ),
        'Distinct identifiers of the patient found (occurrences in parentheses). "named in input" and '
        '"named in notes": in the original bundle and in its original notes, before de-identification (the '
        "same search, as a check that it finds them).\n\n" + table(headers, rows, markdown=markdown),
    ]
    notes_columns = [column for column in columns if column.endswith("notes")]
    if mentions:
        shares = "; ".join(
            f"{column}: {totals[column][1]} of {mentions} mentions left ({percent(totals[column][1] / mentions)}%)"
            for column in notes_columns
        )
        parts.append(f"In the notes, {shares}.")
    if evaluation.seconds:
        parts.append(
            "Time: "
            + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in evaluation.seconds.items())
            + "."
        )
    return "\n\n".join(parts)


def render(report: EvaluationReport, *, markdown: bool = False) -> str:
    parts = [span_section(evaluation, markdown=markdown) for evaluation in report.spans]
    if report.allow_list is not None:
        parts.append(report.allow_list.markdown.rstrip("\n"))
    if report.leaks is not None:
        parts.append(leak_section(report.leaks, markdown=markdown))
    if report.environment:
        environment = ", ".join(f"{key} {value}" for key, value in report.environment.items())
        parts.append(f"Environment: {environment}.")
    return "\n\n".join(parts) + "\n"


def to_json(report: EvaluationReport) -> str:
    return json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n"
