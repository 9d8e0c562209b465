"""Pull from an EHR source now, in this process: the same resumable export as the scheduled one, with a
progress bar on stderr (a line per phase or 5% when stderr is not a terminal) and a summary at the end.
Exit status 0 when the export succeeded, 1 when it failed (with the reason)."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from clinical_ai.audit.services import Actor
from integrations.bulk.models import BulkExport, EhrSource
from integrations.bulk.services import ExportBusy, ExportProgress, export_cancel, export_request, export_run

ACTOR = Actor.system("manage.py pull_source")
BAR_WIDTH = 30


def _plain(text: str) -> str:
    """Progress is not an error: stderr's red is for errors only."""
    return text


class ProgressPrinter:
    """A bar redrawn in place on a terminal; elsewhere (a log, CI) one line per phase or per 5%."""

    def __init__(self, stream: OutputWrapper) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last_line = ""
        self.last_step = -1
        self.last_phase = ""
        self.drawn = False

    def __call__(self, progress: ExportProgress) -> None:
        fraction = _fraction(progress)
        if progress.phase == BulkExport.Phase.DOWNLOADING:
            counts = f"{progress.files_done}/{progress.files_total} files, {progress.lines:,} records"
            text = f"{progress.message} ({counts})"
        else:
            text = progress.message
        if self.tty:
            bar = _bar(fraction)
            self.stream.write(f"\r\033[K{bar} {text}"[:200], style_func=_plain, ending="")
            self.stream.flush()
            self.drawn = True
            return
        step = int(fraction * 20) if fraction is not None else -1
        if progress.phase != self.last_phase or (step != self.last_step and step >= 0):
            percent = f"{fraction:4.0%} " if fraction is not None else ""
            self.stream.write(f"{percent}{text}", style_func=_plain)
            self.stream.flush()
        self.last_phase, self.last_step = progress.phase, step

    def close(self) -> None:
        if self.tty and self.drawn:
            self.stream.write("")
            self.stream.flush()


def _fraction(progress: ExportProgress) -> float | None:
    if progress.phase == BulkExport.Phase.DONE:
        return 1.0
    if progress.phase != BulkExport.Phase.DOWNLOADING:
        return None
    if progress.lines_expected:
        return min(1.0, progress.lines / progress.lines_expected)
    if progress.files_total:
        return progress.files_done / progress.files_total
    return None


def _bar(fraction: float | None) -> str:
    if fraction is None:
        return "[" + "." * BAR_WIDTH + "]     "
    filled = round(fraction * BAR_WIDTH)
    return "[" + "#" * filled + "." * (BAR_WIDTH - filled) + f"] {fraction:4.0%}"


class Command(BaseCommand):
    help = "Pull from an EHR source now (Bulk Data $export), in this process, with a progress bar."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the source's name (manage.py source_add)")
        parser.add_argument(
            "--full", action="store_true", help="everything, not only what changed since the last pull"
        )
        parser.add_argument(
            "--cancel", metavar="REASON", help="stop the pull under way (queued or running), saying why"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        source = EhrSource.objects.filter(name=options["name"]).select_related("organization").first()
        if source is None:
            raise CommandError(f"no source {options['name']!r} (see manage.py source_add)")
        if options["cancel"]:
            self._cancel(source, options["cancel"])
            return
        if not source.enabled:
            raise CommandError(f"source {source.name!r} is switched off")
        try:
            export = export_request(
                source=source,
                actor=ACTOR,
                full=options["full"],
                requested_by="manage.py pull_source",
                dispatch=False,
            )
        except ExportBusy as busy:
            raise CommandError(
                f"an export of {source.name!r} is already {busy.export.get_status_display().lower()} "
                f"(since {busy.export.created_at:%Y-%m-%d %H:%M %Z}); wait for it to finish"
            ) from None
        printer = ProgressPrinter(self.stderr)
        started = time.monotonic()
        try:
            finished = export_run(
                export_id=str(export.external_id),
                task_id="",
                worker=f"{socket.gethostname()}/{os.getpid()}/pull_source",
                actor=ACTOR,
                on_progress=printer,
            )
        finally:
            printer.close()
        if finished is None:
            raise CommandError("a worker took this export over; follow it on the sources page")
        self._summary(finished, time.monotonic() - started)
        if finished.status != BulkExport.Status.SUCCEEDED:
            raise CommandError(f"the pull failed: {finished.error}", returncode=1)

    def _cancel(self, source: EhrSource, reason: str) -> None:
        running = BulkExport.objects.filter(
            source=source, status__in=(BulkExport.Status.QUEUED, BulkExport.Status.RUNNING)
        ).first()
        if running is None or not export_cancel(export=running, actor=ACTOR, reason=reason):
            raise CommandError(f"no pull from {source.name!r} is under way")
        self.stdout.write(f"{source.name}: the pull under way was stopped; what it had stored is dropped")

    def _summary(self, export: BulkExport, seconds: float) -> None:
        batch = export.batch
        write = self.stdout.write
        write(f"{export.source.name}: {export.get_status_display().lower()} in {seconds:.1f} s")
        write(f"  {'incremental since ' + export.since.isoformat() if export.since else 'full export'}")
        if batch is not None:
            batch.refresh_from_db()
            rate = batch.lines_read / seconds if seconds > 0 else 0.0
            write(f"  records received: {batch.lines_read:,} ({rate:,.0f}/s)")
            write(f"  resources stored: {batch.resources_staged:,}")
            write(f"  already stored (skipped): {batch.duplicates_skipped:,}")
            write(f"  practitioners, organizations and the like kept: {batch.references_held:,}")
            write(f"  refused: {batch.lines_refused:,}")
            for reason, count in sorted((batch.errors or {}).items()):
                write(f"    {reason}: {count:,}")
            write(f"  patients queued for de-identification: {batch.patients_total:,}")
