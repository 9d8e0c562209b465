"""``manage.py generate_keys``, once settings are loaded (DEBUG, or keys already set). On a host without keys
``manage.py`` runs ``clinical_ai.keygen`` instead, before settings load: both print the same."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from clinical_ai.keygen import DESCRIPTION, KEY_ID_HELP, keys_generate


class Command(BaseCommand):
    help = DESCRIPTION

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--key-id", default=None, help=KEY_ID_HELP)

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(keys_generate(key_id=options["key_id"]))
