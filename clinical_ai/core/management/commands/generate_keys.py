from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from clinical_ai.core.crypto import generate_key_spec


class Command(BaseCommand):
    help = (
        "Print a new SECRET_KEY and a new encryption key ring entry. To rotate, put the new entry first in "
        "CLINICAL_AI_ENCRYPTION_KEYS, keep the old one after it, then run `manage.py reseal_raw_resources`."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--key-id", default=None, help="id for the new key (default: k<date-like random>)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        key_id = options["key_id"] or f"k{secrets.token_hex(3)}"
        self.stdout.write(f"SECRET_KEY={secrets.token_urlsafe(50)}")
        self.stdout.write(f"CLINICAL_AI_ENCRYPTION_KEYS={generate_key_spec(key_id)}")
