"""``manage.py deid_eval``: precision, recall and F2 of our free-text de-identification per entity type, and
identifiers left on Synthea bundles, next to bare Presidio with the same spaCy model, in one run.

(a) presidio-research's synthetic sentences, (b) the generated clinical notes
(``fixtures/deid_eval/clinical_notes.json``) and (d) the generated general text
(generated in memory by ``evaluation/general_text.py``) score both detectors' spans; (c) runs the full pipeline
(``deidentify_documents`` with the chosen configuration) on each Synthea patient bundle and counts the
patient's known identifiers left anywhere in the output, and runs both text detectors on the notes alone.
With (b), the allow-list's effect (clinical terms kept, names beside them still removed) on the clinical
notes, and on the Synthea notes when (c) runs.
See ``docs/privacy.md`` for what the figures mean.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinical_ai.deid.engine.pipeline import EntryInput, PipelineResult
from clinical_ai.deid.evaluation.datasets import RESEARCH_FILE
from clinical_ai.deid.evaluation.leaks import SYNTHEA_DIR
from clinical_ai.deid.evaluation.notes import NOTES_PATH
from clinical_ai.deid.evaluation.report import render, to_json
from clinical_ai.deid.evaluation.runner import EVALUATIONS, AllowListResult, run_evaluation


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
        parser.add_argument(
            "--general",
            type=Path,
            default=None,
            help="a labelled general-text file for (d) (default: generated in memory, with presidio-research's "
            "templates from ../shared/data when present)",
        )
        parser.add_argument("--config", default="inference", help="de-identification configuration for (c)")
        parser.add_argument(
            "--output",
            type=Path,
            action="append",
            default=[],
            help="also write the report to PATH: JSON for .json, Markdown otherwise (repeatable)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Each analyzer built warns that Presidio skips its Spanish, Italian and Polish recognizers: noise here.
        presidio_logger = logging.getLogger("presidio-analyzer")
        level = presidio_logger.level
        presidio_logger.setLevel(logging.ERROR)
        try:
            self._evaluate(options)
        finally:
            presidio_logger.setLevel(level)

    def _evaluate(self, options: dict[str, Any]) -> None:
        selected = set(options["only"] or EVALUATIONS)
        if options["skip_synthea"]:
            selected.discard("synthea")
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
        if "general" in selected and options["general"] is not None and not options["general"].is_file():
            raise CommandError(f"{options['general']} does not exist (the --general file)")

        # Heavy imports (Presidio, torch, spaCy) only once the arguments are known to be good.
        from clinical_ai.deid.engine.text.nlp import get_pipeline
        from clinical_ai.deid.evaluation.allow_list import allow_list_markdown, evaluate_allow_list
        from clinical_ai.deid.evaluation.detectors import (
            PresidioDetector,
            ScrubberDetector,
            bare_presidio_analyzer,
        )
        from clinical_ai.deid.runtime import text_scrubber
        from clinical_ai.deid.services import deidentify_documents

        config: str = options["config"]

        def deidentify(entries: list[EntryInput]) -> PipelineResult:
            return deidentify_documents(entries, organization="deid-eval", config=config)

        scrubber = text_scrubber()

        def allow_list(
            *, notes_path: Path | None, synthea_dir: Path | None, limit: int | None
        ) -> AllowListResult:
            effects = evaluate_allow_list(
                scrubber, notes_path=notes_path, synthea_dir=synthea_dir, limit=limit
            )
            return AllowListResult([effect.as_dict() for effect in effects], allow_list_markdown(effects))

        report = run_evaluation(
            selected=selected,
            detectors=[
                ScrubberDetector(scrubber),
                PresidioDetector(bare_presidio_analyzer(get_pipeline())),
            ],
            research_path=research_path,
            notes_path=options["notes"],
            synthea_dir=synthea_dir,
            deidentify=deidentify,
            limit=options["limit"],
            general_path=options["general"],
            allow_list=allow_list,
        )
        self.stdout.write(render(report))
        for path in options["output"]:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(
                to_json(report) if path.suffix == ".json" else render(report, markdown=True), encoding="utf-8"
            )
            self.stdout.write(f"wrote {path}")
