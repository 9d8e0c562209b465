"""``manage.py model_switch MODEL_ID (--enable | --disable) [--pin VERSION] [--reason TEXT]``: the admins'
switch from a shell (the models page does the same). Audited as a system action.

``--shadow VERSION`` runs a version in shadow (``--shadow ''`` stops it), ``--promote`` makes the shadow
version the running one, ``--rollback`` pins back the version the last promotion replaced."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinical_ai.audit.services import Actor
from clinical_ai.inference.registry import catalogue, deployment_state
from clinical_ai.inference.switches import (
    SwitchRefused,
    VersionChange,
    model_configure,
    model_promote,
    model_rollback,
    model_shadow_set,
)


class Command(BaseCommand):
    help = "Enable, disable (at once) or pin the version of a model; without a switch, list the models."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model_id", nargs="?")
        group = parser.add_mutually_exclusive_group()
        group.add_argument("--enable", action="store_true")
        group.add_argument("--disable", action="store_true")
        parser.add_argument("--pin", default=None, help="run this version; --pin '' unpins (newest runs)")
        parser.add_argument("--reason", default="")
        versions = parser.add_mutually_exclusive_group()
        versions.add_argument("--shadow", default=None, help="run this version in shadow; '' stops it")
        versions.add_argument("--promote", action="store_true", help="the shadow version runs from now on")
        versions.add_argument("--rollback", action="store_true", help="pin back the version promoted over")

    def handle(self, *args: Any, **options: Any) -> None:
        model_id = options["model_id"]
        if not model_id:
            for known in sorted(catalogue().models):
                state = deployment_state(known)
                version = state.manifest.version if state.manifest else "?"
                pinned = f" (pinned {state.pinned_version})" if state.pinned_version else ""
                self.stdout.write(f"{known}\t{'enabled' if state.enabled else 'disabled'}\t{version}{pinned}")
            return
        if options["shadow"] is not None or options["promote"] or options["rollback"]:
            if options["enable"] or options["disable"] or options["pin"] is not None:
                raise CommandError(
                    "--shadow, --promote and --rollback go alone (no --enable/--disable/--pin)"
                )
            self._version_change(model_id, options)
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

    def _version_change(self, model_id: str, options: dict[str, Any]) -> None:
        actor = Actor.system("manage.py model_switch")
        reason = options["reason"]
        change: VersionChange
        try:
            if options["promote"]:
                change = model_promote(actor=actor, model_id=model_id, reason=reason)
            elif options["rollback"]:
                change = model_rollback(actor=actor, model_id=model_id, reason=reason)
            else:
                change = model_shadow_set(
                    actor=actor, model_id=model_id, version=options["shadow"], reason=reason
                )
        except SwitchRefused as exc:
            raise CommandError(str(exc)) from exc
        shadow = change.shadow_version or "none"
        self.stdout.write(f"{change.model_id}: running {change.running_version or 'none'}, shadow {shadow}")
