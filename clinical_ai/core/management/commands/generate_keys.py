from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from clinical_ai.core.crypto import generate_key_spec
from clinical_ai.deid.vault_crypto import generate_vault_keys


class Command(BaseCommand):
    help = (
        "Print a new SECRET_KEY, encryption key ring entry, pseudonym key and vault key pair. To rotate, put the new entry first in "
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
        self.stdout.write(f"CLINICAL_AI_PSEUDONYM_KEY={secrets.token_urlsafe(32)}")
        vault_private, vault_public = generate_vault_keys()
        self.stdout.write(f"CLINICAL_AI_VAULT_PUBLIC_KEY={vault_public}")
        self.stdout.write(f"# web app only, never on workers:\nCLINICAL_AI_VAULT_PRIVATE_KEY={vault_private}")
