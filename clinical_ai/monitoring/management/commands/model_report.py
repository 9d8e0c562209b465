"""``manage.py model_report MODEL_ID [--model-version V] [--output PATH]``: the post-market monitoring
record of one model version as a self-contained HTML file (standard output without ``--output``).
Audited as a system action."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.monitoring.report import ReportError, model_report_html, report_version

REPORT_ACTION = "monitoring.report"


class Command(BaseCommand):
    help = "Write the post-market monitoring report (HTML) of a model version."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model_id")
        parser.add_argument("--model-version", default="", help="default: the version that runs now")
        parser.add_argument("--output", default="", help="file to write; default: standard output")

    def handle(self, *args: Any, **options: Any) -> None:
        model_id: str = options["model_id"]
        try:
            version = report_version(model_id=model_id, model_version=options["model_version"])
            html = model_report_html(model_id=model_id, model_version=version)
        except ReportError as exc:
            raise CommandError(str(exc)) from exc
        output: str = options["output"]
        if output:
            Path(output).write_text(html, encoding="utf-8")
        else:
            self.stdout.write(html)
        audit_record(
            actor=Actor.system("manage.py model_report"),
            action=REPORT_ACTION,
            object_type="Model",
            object_id=model_id[:64],
            detail={"model_version": version, "bytes": len(html.encode("utf-8"))},
        )
        if output:
            self.stderr.write(f"wrote {output} ({model_id} {version})")
