from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from clinical_ai.intake.bulk import batches_abandoned_cancel
from clinical_ai.intake.services import ingest_jobs_sweep


class Command(BaseCommand):
    help = (
        "Dispatch again ingest jobs that were never queued, waited too long, or lost their worker; cancel "
        "file and POST batches whose sender stopped sending (INTAKE_BATCH_IDLE_SECONDS)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        sent = ingest_jobs_sweep()
        self.stdout.write(f"re-dispatched {sent} ingest job(s)")
        cancelled = batches_abandoned_cancel()
        self.stdout.write(f"cancelled {cancelled} abandoned batch(es)")
