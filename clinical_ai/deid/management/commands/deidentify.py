"""``manage.py deidentify``: de-identify FHIR files offline, a drop-in for the Microsoft anonymizer's CLI.

INPUT is a FHIR JSON file (a resource or a Bundle), an NDJSON file (one resource per line) or a folder of
them; OUTPUT is a file or a folder mirroring INPUT. The Microsoft tool's option names work too
(``-i/--inputFolder``, ``-o/--outputFolder``, ``-c/--configFile``, ``-b/--bulkData``, ``-r/--recursive``,
``-s/--skip``, ``--validateInput``, ``--validateOutput``). How a configuration runs (as that tool does, or
through the workers' per-patient pipeline) is ``clinical_ai.deid.offline``'s business.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinical_ai.deid.engine.config import ConfigError, DateShiftScope
from clinical_ai.deid.files import SUFFIXES, FhirFileError, fhir_files
from clinical_ai.deid.offline import FileJob, Mode, OfflineError, build_engine, deidentify_file


def _reference_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--reference-date {text!r}: expected a date as YYYY-MM-DD") from None


def _text_scrubber() -> Any:
    from clinical_ai.deid.runtime import text_scrubber  # loads spaCy: only for a configuration that scrubs

    return text_scrubber()


class Command(BaseCommand):
    help = (
        "De-identify FHIR JSON / NDJSON files or folders of them with a de-identification configuration "
        "(ours or one in the Microsoft FHIR anonymizer's format)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("input", type=Path, nargs="?", help="a FHIR JSON or NDJSON file, or a folder")
        parser.add_argument("output", type=Path, nargs="?", help="the output file, or a folder")
        parser.add_argument("-i", "--input-folder", "--inputFolder", dest="input_option", type=Path)
        parser.add_argument("-o", "--output-folder", "--outputFolder", dest="output_option", type=Path)
        parser.add_argument(
            "-c",
            "--config",
            "--configFile",
            default="inference",
            help="shipped name (inference, safe-harbor) or a path to a configuration",
        )
        parser.add_argument(
            "-b",
            "--bulk",
            "--bulkData",
            action="store_true",
            help="NDJSON input: only *.ndjson files of a folder; a single file is read as NDJSON",
        )
        parser.add_argument(
            "-r", "--recursive", action="store_true", help="also the files of the input folder's subfolders"
        )
        parser.add_argument(
            "-s", "--skip-existing", "--skip", action="store_true", help="leave files already in the output"
        )
        parser.add_argument(
            "--validate-input",
            "--validateInput",
            action="store_true",
            help="stop at the first input resource that is not valid FHIR R4",
        )
        parser.add_argument(
            "--validate-output",
            "--validateOutput",
            action="store_true",
            help="stop when a de-identified resource is not valid FHIR R4 (nothing written for that file)",
        )
        parser.add_argument(
            "--reference-date",
            help="YYYY-MM-DD: the day 'age over 89' counts from (default: today)",
        )
        parser.add_argument(
            "--mode",
            choices=[m.value for m in Mode],
            default=Mode.AUTO.value,
            help="reference: each file as the Microsoft tool does; pipeline: grouped by patient as the "
            "workers do; auto (default): pipeline for the shipped configurations and ones that use scrub",
        )
        parser.add_argument(
            "--organization",
            default="offline",
            help="site slug that scopes patient pseudonyms in pipeline mode (default: offline)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        source = self._one_of(options["input"], options["input_option"], "input", "-i/--inputFolder")
        target = self._one_of(options["output"], options["output_option"], "output", "-o/--outputFolder")
        reference = _reference_date(options["reference_date"]) if options["reference_date"] else None
        bulk: bool = options["bulk"]
        try:
            mode, engine, config = build_engine(
                options["config"],
                mode=Mode(options["mode"]),
                organization=options["organization"],
                reference_date=reference,
                scrubber_factory=_text_scrubber,
            )
        except ConfigError as exc:
            raise CommandError(f"configuration {options['config']!r}: {exc}") from exc
        jobs = self._jobs(source, target, bulk=bulk, recursive=options["recursive"])
        scope = config.parameters.date_shift_scope
        written = skipped_files = resources = 0
        for job in jobs:
            if options["skip_existing"] and job.target.exists():
                skipped_files += 1
                continue
            if mode.value == "reference" and scope is not DateShiftScope.RESOURCE:
                name = job.source.name if scope is DateShiftScope.FILE else source.resolve().name
                job = FileJob(job.source, job.target, name)
            try:
                outcome = deidentify_file(
                    job,
                    engine=engine,
                    bulk=bulk,
                    validate_input=options["validate_input"],
                    validate_output=options["validate_output"],
                )
            except (FhirFileError, OfflineError) as exc:
                done = f" ({written} file(s) written before it)" if written else ""
                raise CommandError(f"{job.source}: {exc}{done}") from exc
            for item in outcome.skipped:
                self.stderr.write(f"{job.source}: processingErrors skip: emptied {item}")
            written += 1
            resources += outcome.resources
        existing = f", {skipped_files} already there and left" if skipped_files else ""
        self.stdout.write(
            f"de-identified {resources} resource(s) in {written} file(s) into {target} "
            f"({mode.value} mode{existing})"
        )

    @staticmethod
    def _one_of(positional: Path | None, option: Path | None, name: str, flag: str) -> Path:
        if positional is not None and option is not None:
            raise CommandError(f"give the {name} once: as {name.upper()} or as {flag}, not both")
        chosen = positional if positional is not None else option
        if chosen is None:
            raise CommandError(f"missing the {name}: give {name.upper()} or {flag}")
        return chosen

    @staticmethod
    def _jobs(source: Path, target: Path, *, bulk: bool, recursive: bool) -> list[FileJob]:
        if source.is_file():
            if target.is_dir():
                target = target / source.name
            if target.resolve() == source.resolve():
                raise CommandError(f"the output {target} is the input file: it would be overwritten")
            return [FileJob(source, target, None)]
        if not source.is_dir():
            raise CommandError(f"{source} does not exist")
        if target.exists() and not target.is_dir():
            raise CommandError(f"the input is a folder, so the output must be a folder: {target} is a file")
        if target.resolve() == source.resolve():
            raise CommandError("the output folder is the input folder: the inputs would be overwritten")
        if recursive and target.resolve().is_relative_to(source.resolve()):
            raise CommandError("with --recursive the output folder must not be inside the input folder")
        suffixes = (".ndjson",) if bulk else SUFFIXES
        files = fhir_files(source, recursive=recursive, suffixes=suffixes)
        if not files:
            kinds = "*.ndjson" if bulk else "*.json or *.ndjson"
            where = " (subfolders included)" if recursive else " (add --recursive for its subfolders)"
            raise CommandError(f"no {kinds} file in {source}{where}")
        return [FileJob(p, target / p.relative_to(source), None) for p in files]
