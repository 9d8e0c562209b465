"""``manage.py deid_eval``: precision, recall and F2 of our free-text de-identification per entity type, and
identifiers left on Synthea bundles, next to bare Presidio with the same spaCy model, in one run.

(a) presidio-research's synthetic sentences and (b) the generated clinical notes
(``fixtures/deid_eval/clinical_notes.json``) score both detectors' spans; (c) runs the full pipeline
(``deidentify_documents`` with the chosen configuration) on each Synthea patient bundle and counts the
patient's known identifiers left anywhere in the output, and runs both text detectors on the notes alone.
See ``docs/privacy.md`` for what the figures mean.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinical_ai.deid.engine.pipeline import EntryInput, PipelineResult
from clinical_ai.deid.evaluation.datasets import RESEARCH_FILE, load_clinical_notes, load_research
from clinical_ai.deid.evaluation.leaks import SYNTHEA_DIR, patient_bundles
from clinical_ai.deid.evaluation.notes import NOTES_PATH
from clinical_ai.deid.evaluation.report import render, to_json
from clinical_ai.deid.evaluation.runner import EvaluationReport, environment, evaluate_leaks, evaluate_spans

EVALUATIONS = ("research", "clinical", "synthea")


class Command(BaseCommand):
    help = "Evaluate free-text de-identification against bare Presidio (same spaCy model) and count leaks."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--only", action="append", choices=EVALUATIONS, help="run only this evaluation (repeatable)"
        )
        parser.add_argument("--skip-synthea", action="store_true", help="leave out (c), the slowest part")
        parser.add_argument(
            "--limit",
            type=int,
            default=None,
            help="at most this many texts in (a) and (b) and bundles in (c)",
        )
        parser.add_argument(
            "--data-dir",
            type=Path,
            default=Path(settings.BASE_DIR).parent / "shared" / "data",
            help="the shared public data folder (default: ../shared/data)",
        )
        parser.add_argument("--notes", type=Path, default=NOTES_PATH, help="the labelled clinical notes")
        parser.add_argument("--config", default="inference", help="de-identification configuration for (c)")
        parser.add_argument(
            "--output",
            type=Path,
            action="append",
            default=[],
            help="also write the report to PATH: JSON for .json, Markdown otherwise (repeatable)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Presidio logs every recognizer it loads and every analysis at INFO.
        logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)
        selected = set(options["only"] or EVALUATIONS)
        if options["skip_synthea"]:
            selected.discard("synthea")
        limit: int | None = options["limit"]
        data_dir: Path = options["data_dir"]
        research_path = data_dir / RESEARCH_FILE
        synthea_dir = data_dir / SYNTHEA_DIR
        for key, path in (
            ("research", research_path),
            ("clinical", options["notes"]),
            ("synthea", synthea_dir),
        ):
            if key in selected and not path.exists():
                raise CommandError(f"{path} does not exist (needed for --only {key})")

        # Heavy imports (Presidio, torch, spaCy) only once the arguments are known to be good.
        from clinical_ai.deid.engine.text.nlp import get_pipeline
        from clinical_ai.deid.evaluation.detectors import (
            BARE,
            PresidioDetector,
            ScrubberDetector,
            bare_presidio_analyzer,
        )
        from clinical_ai.deid.runtime import text_scrubber
        from clinical_ai.deid.services import deidentify_documents

        started = time.perf_counter()
        ours = ScrubberDetector(text_scrubber())
        bare = PresidioDetector(bare_presidio_analyzer(get_pipeline()))
        report = EvaluationReport(environment=environment())
        if "research" in selected:
            report.spans.append(
                evaluate_spans("research", load_research(research_path, limit=limit), [ours, bare])
            )
        if "clinical" in selected:
            notes = load_clinical_notes(options["notes"], limit=limit)
            report.spans.append(evaluate_spans("clinical", notes, [ours, bare]))
        if "synthea" in selected:
            config: str = options["config"]

            def deidentify(entries: list[EntryInput]) -> PipelineResult:
                return deidentify_documents(entries, organization="deid-eval", config=config)

            report.leaks = evaluate_leaks(
                patient_bundles(synthea_dir)[:limit],
                deidentify=deidentify,
                redactors={"ours, text only: notes": ours.redact, f"{BARE}: notes": bare.redact},
            )
        report.environment["seconds"] = f"{time.perf_counter() - started:.1f}"

        self.stdout.write(render(report))
        for path in options["output"]:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                to_json(report) if path.suffix == ".json" else render(report, markdown=True), encoding="utf-8"
            )
            self.stdout.write(f"wrote {path}")
