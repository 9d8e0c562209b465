from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from clinical_ai.audit.services import Actor
from clinical_ai.intake.services import held_resources_reseal, raw_resources_reseal
from integrations.bulk.services import source_keys_reseal


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


class Command(BaseCommand):
    help = (
        "After a key rotation (the new key first in CLINICAL_AI_ENCRYPTION_KEYS), re-seal with the active key "
        "the received entries, the bulk intake's held resources and the EHR sources' signing keys. Nothing "
        "else is re-sealed (de-identified copies, model outputs, review records...): keep the old key."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        actor = Actor.system("manage.py reseal_raw_resources")
        # Each line as its step ends: a failure later still leaves what was done on screen (and audited).
        raw = raw_resources_reseal(actor=actor)
        self.stdout.write(
            f"re-sealed {_plural(raw, 'received entry', 'received entries')} with the active key"
        )
        held = held_resources_reseal(actor=actor)
        self.stdout.write(f"re-sealed {_plural(held, 'held resource', 'held resources')} with the active key")
        sources = source_keys_reseal(actor=actor)
        self.stdout.write(
            f"re-sealed {_plural(sources, 'EHR source signing key', 'EHR source signing keys')} with the active key"
        )
