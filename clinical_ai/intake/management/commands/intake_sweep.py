from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from clinical_ai.intake.services import ingest_jobs_sweep


class Command(BaseCommand):
    help = "Dispatch again ingest jobs that were never queued, waited too long, or lost their worker."

    def handle(self, *args: Any, **options: Any) -> None:
        sent = ingest_jobs_sweep()
        self.stdout.write(f"re-dispatched {sent} ingest job(s)")
