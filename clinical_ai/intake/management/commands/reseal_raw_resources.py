from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from clinical_ai.audit.services import Actor
from clinical_ai.intake.services import raw_resources_reseal


class Command(BaseCommand):
    help = "Re-seal stored raw resources with the active encryption key (run after adding a new key first)."

    def handle(self, *args: Any, **options: Any) -> None:
        count = raw_resources_reseal(actor=Actor.system("manage.py reseal_raw_resources"))
        self.stdout.write(f"re-sealed {count} raw resource(s) with the active key")
