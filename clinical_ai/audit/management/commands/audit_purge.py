from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinical_ai.audit.retention import RetentionConfigurationError
from clinical_ai.audit.selectors import audit_purge_plan
from clinical_ai.audit.services import Actor, PurgeRefusedError, audit_purge


class Command(BaseCommand):
    help = (
        "Delete audit events older than AUDIT_RETENTION_DAYS (at least 183) from the start of the chain, and "
        "record the purge as an audit.purge event. Run it from cron or Celery beat, e.g. daily."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="report what would be deleted; change and record nothing"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            if options["dry_run"]:
                plan = audit_purge_plan()
                span = f" (seq {plan.first_seq}..{plan.last_seq})" if plan.count else ""
                self.stdout.write(
                    f"dry run: {plan.count} audit events older than {plan.retention_days} days "
                    f"(before {plan.cutoff.isoformat()}) would be deleted{span}"
                )
                return
            result = audit_purge(actor=Actor.system("manage.py audit_purge"))
        except RetentionConfigurationError as exc:
            raise CommandError(str(exc)) from exc
        except PurgeRefusedError as exc:
            raise CommandError(str(exc), returncode=1) from exc
        span = f" (seq {result.first_seq}..{result.last_seq})" if result.count else ""
        self.stdout.write(
            f"deleted {result.count} audit events older than {result.retention_days} days{span}; the chain now "
            f"starts at event {result.chain_first_seq}; recorded as event {result.event_seq}"
        )
