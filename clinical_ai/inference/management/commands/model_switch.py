"""``manage.py model_switch MODEL_ID (--enable | --disable) [--pin VERSION] [--reason TEXT]``: the admins'
switch from a shell (the models page does the same). Audited as a system action."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinical_ai.audit.services import Actor
from clinical_ai.inference.registry import catalogue, deployment_state
from clinical_ai.inference.switches import SwitchRefused, model_configure


class Command(BaseCommand):
    help = "Enable, disable (at once) or pin the version of a model; without a switch, list the models."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model_id", nargs="?")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--enable", action="store_true")
        group.add_argument("--disable", action="store_true")
        parser.add_argument("--pin", default=None, help="run this version; --pin '' unpins (newest runs)")
        parser.add_argument("--reason", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        model_id = options["model_id"]
        if not model_id:
            for known in sorted(catalogue().models):
                state = deployment_state(known)
                version = state.manifest.version if state.manifest else "?"
                pinned = f" (pinned {state.pinned_version})" if state.pinned_version else ""
                self.stdout.write(f"{known}\t{'enabled' if state.enabled else 'disabled'}\t{version}{pinned}")
            return
        state = deployment_state(model_id)
        enabled = True if options["enable"] else False if options["disable"] else state.enabled
        pinned = state.pinned_version if options["pin"] is None else options["pin"]
        try:
            change = model_configure(
                actor=Actor.system("manage.py model_switch"),
                model_id=model_id,
                enabled=enabled,
                pinned_version=pinned,
                reason=options["reason"],
            )
        except SwitchRefused as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"{change.model_id}: {'enabled' if change.enabled else 'disabled'}"
            + (f", pinned to {change.pinned_version}" if change.pinned_version else ", newest version")
        )
