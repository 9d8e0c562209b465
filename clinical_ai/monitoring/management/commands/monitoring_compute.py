"""``manage.py monitoring_compute [--reset-reference MODEL_ID VERSION]``: run the periodic monitoring job
now (what the beat entry ``monitoring-compute`` does), optionally after dropping a version's drift
reference so that a new one is fixed. Audited as a system action."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.monitoring.services import drift_reference_reset, monitoring_compute


class Command(BaseCommand):
    help = "Compute and store drift and outcome monitoring for every model version."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--reset-reference", nargs=2, metavar=("MODEL_ID", "VERSION"), default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        actor = Actor.system("manage.py monitoring_compute")
        if options["reset_reference"]:
            model_id, version = options["reset_reference"]
            with transaction.atomic():
                deleted = drift_reference_reset(model_id=model_id, model_version=version)
                audit_record(
                    actor=actor,
                    action="monitoring.drift.reset",
                    object_type="Model",
                    object_id=model_id[:64],
                    detail={"model_version": version, "rows_deleted": deleted},
                )
        summary = monitoring_compute(actor=actor)
        self.stdout.write(
            f"versions {summary.versions}, references fixed {summary.references_fixed}, "
            f"drift rows {summary.drift_rows}, drift alerts opened {summary.drift_alerts_opened}, "
            f"outcome rows {summary.outcome_rows}, subgroup flags opened {summary.subgroup_flags_opened}"
        )
        for alert in summary.alerts:
            self.stdout.write(f"  {alert}")
