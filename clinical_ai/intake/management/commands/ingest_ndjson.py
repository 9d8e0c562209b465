"""Backfill from NDJSON files (a Bulk Data export on disk, one resource per line): one batch for all the files,
split per patient into the same encrypted store and pipeline as a pushed Bundle. Files are streamed from disk;
a progress bar goes to stderr (a line per 5% when stderr is not a terminal); a summary ends the run.

Exit status: 0 when every line went in (or was already stored), 1 when some lines were refused (the rest was
still processed and queued), 2 for a usage error (no such file, no such organization)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.services import Actor
from clinical_ai.intake.bulk import BatchWriter, FileProgress, batch_finish, batch_open
from clinical_ai.intake.models import BulkBatch

ACTOR = Actor.system("manage.py ingest_ndjson")
CHUNK_BYTES = 1024 * 1024
BAR_WIDTH = 30


def _file_chunks(handle: BinaryIO) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK_BYTES):
        yield chunk


class ProgressPrinter:
    """A bar redrawn in place on a terminal; elsewhere (a log, CI) one line per 5% of the bytes."""

    def __init__(self, stream: TextIO, *, total_bytes: int) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.total_bytes = max(1, total_bytes)
        self.started = time.monotonic()
        self.done_bytes = 0  # of the files already finished
        self.lines = self.resources = self.refused = 0  # of the files already finished
        self.last_step = -1
        self.drawn = False

    def file_done(self, progress: FileProgress) -> None:
        self.done_bytes += progress.bytes
        self.lines += progress.lines
        self.resources += progress.staged + progress.duplicates + progress.held
        self.refused += progress.refused

    def __call__(self, progress: FileProgress) -> None:
        fraction = min(1.0, (self.done_bytes + progress.bytes) / self.total_bytes)
        elapsed = max(time.monotonic() - self.started, 1e-6)
        resources = self.resources + progress.staged + progress.duplicates + progress.held
        text = (
            f"{self.lines + progress.lines:,} lines, {resources / elapsed:,.0f} resources/s, "
            f"{self.refused + progress.refused:,} refused"
        )
        if self.tty:
            filled = round(fraction * BAR_WIDTH)
            bar = "[" + "#" * filled + "." * (BAR_WIDTH - filled) + f"] {fraction:4.0%}"
            self.stream.write(f"\r\033[K{bar} {text}"[:200])
            self.stream.flush()
            self.drawn = True
            return
        step = int(fraction * 20)
        if step != self.last_step:
            self.stream.write(f"{fraction:4.0%} {text}\n")
            self.stream.flush()
            self.last_step = step

    def close(self) -> None:
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()


class Command(BaseCommand):
    help = (
        "Ingest NDJSON files (one FHIR resource per line, e.g. a Bulk Data export) for an organization: "
        "split per patient and queued for de-identification like a pushed Bundle. Resources already stored "
        "with the same version are skipped, so running the same files again adds nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", metavar="FILE", help="NDJSON files (e.g. Patient.ndjson)")
        parser.add_argument("--organization", required=True, metavar="SLUG", help="the site the data is of")
        parser.add_argument("--label", default="", help="a name for this batch (default: the file names)")

    def handle(self, *args: Any, **options: Any) -> None:
        paths = [Path(name) for name in options["files"]]
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise CommandError(f"no such file: {', '.join(missing)}", returncode=2)
        organization = Organization.objects.filter(slug=options["organization"]).first()
        if organization is None:
            raise CommandError(f"no organization {options['organization']!r}", returncode=2)
        label = options["label"] or ", ".join(path.name for path in paths)
        batch = batch_open(organization=organization, origin=BulkBatch.Origin.FILE, label=label, actor=ACTOR)
        writer = BatchWriter(batch, actor=ACTOR)
        printer = ProgressPrinter(sys.stderr, total_bytes=sum(path.stat().st_size for path in paths))
        started = time.monotonic()
        stopped: list[str] = []
        try:
            for path in paths:
                with path.open("rb") as handle:
                    progress = writer.feed(path.name, _file_chunks(handle), on_progress=printer)
                printer(progress)
                printer.file_done(progress)
                if progress.stopped:
                    stopped.append(f"{path.name}: {progress.stopped.replace('_', ' ')}")
        finally:
            printer.close()
        queued = batch_finish(batch, actor=ACTOR)
        batch.refresh_from_db()
        self._summary(batch, queued, time.monotonic() - started, stopped)
        if batch.lines_refused or stopped:
            raise CommandError(
                f"{batch.lines_refused:,} line(s) refused{'; ' + '; '.join(stopped) if stopped else ''} "
                "(the other lines were processed)",
                returncode=1,
            )

    def _summary(self, batch: BulkBatch, queued: int, seconds: float, stopped: list[str]) -> None:
        write = self.stdout.write
        resources = batch.resources_staged + batch.duplicates_skipped + batch.references_held
        rate = resources / seconds if seconds > 0 else 0.0
        write(f"batch {batch.external_id} ({batch.label}): {batch.lines_read:,} lines in {seconds:.1f} s")
        write(f"  resources stored for their patients: {batch.resources_staged:,} ({rate:,.0f} resources/s)")
        write(f"  already stored (skipped): {batch.duplicates_skipped:,}")
        write(f"  practitioners, organizations and the like kept: {batch.references_held:,}")
        write(f"  refused: {batch.lines_refused:,}")
        first_lines: dict[str, list[str]] = {}
        for error in batch.error_lines:
            first_lines.setdefault(str(error["reason"]), []).append(f"{error['file']}:{error['line']}")
        for reason, count in sorted(batch.errors.items()):
            where = first_lines.get(reason, [])
            shown = f" (first: {', '.join(where[:5])})" if where else ""
            write(f"    {reason}: {count:,}{shown}")
        for line in stopped:
            write(f"  stopped early: {line}")
        write(f"  patients queued for de-identification: {queued:,}")
