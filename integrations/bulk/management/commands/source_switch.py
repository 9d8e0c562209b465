"""Switch an EHR source off (no pull, scheduled or asked for; its JWK Set URL answers 404, so the EHR stops
accepting the gateway's token; a pull under way is stopped) or on again. Audited with the reason."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinical_ai.audit.services import Actor
from integrations.bulk.models import EhrSource
from integrations.bulk.services import SourceRefused, source_switch

ACTOR = Actor.system("manage.py source_switch")


class Command(BaseCommand):
    help = (
        "Switch an EHR source off or on again. Off: no pull (scheduled or asked for), a pull under way is "
        "stopped, and its key address answers 404 so the EHR stops accepting this gateway's token."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the source's name (see the EHR sources page)")
        state = parser.add_mutually_exclusive_group(required=True)
        state.add_argument("--off", action="store_true", help="switch the source off")
        state.add_argument("--on", action="store_true", help="switch the source on again")
        parser.add_argument("--reason", required=True, help="why (a few words, no patient details)")

    def handle(self, *args: Any, **options: Any) -> None:
        source = EhrSource.objects.filter(name=options["name"]).first()
        if source is None:
            raise CommandError(f"no source {options['name']!r} (see manage.py source_add)")
        enabled = bool(options["on"])
        try:
            changed = source_switch(source=source, enabled=enabled, actor=ACTOR, reason=options["reason"])
        except SourceRefused as exc:
            raise CommandError(str(exc)) from None
        state = "on" if enabled else "off"
        if changed:
            self.stdout.write(f"source {source.name}: switched {state}")
        else:
            self.stdout.write(f"source {source.name}: already {state}; nothing changed")
