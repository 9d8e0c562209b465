from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinical_ai.accounts.models import Role
from clinical_ai.accounts.provisioning import ProvisioningError, organization_get, role_parse
from clinical_ai.accounts.roster import RosterEntry, clinicians_unable_to_sign, staff_roster
from clinical_ai.accounts.sso.config import staff_provider


def _table(header: Sequence[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    return [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [list(header), *rows]
    ]


class Command(BaseCommand):
    help = (
        "List the staff: username, name, whether enabled, how they sign in, and their roles per site (granted "
        "here or from the identity provider's groups). --can-sign lists who can sign decisions where: enabled "
        "clinicians of each site with a way to confirm who they are (their password or the hospital login)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--site", default="", metavar="SLUG", help="only this site")
        parser.add_argument("--role", default="", choices=("", *Role.values), help="only this role")
        parser.add_argument("--can-sign", action="store_true", help="who can sign decisions, per site")
        parser.add_argument("--json", action="store_true", help="as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            organization = organization_get(slug=str(options["site"])) if options["site"] else None
            role = role_parse(role=str(options["role"])) if options["role"] else None
        except ProvisioningError as refused:
            raise CommandError(str(refused)) from None
        provider = staff_provider()
        issuer = provider.issuer if provider is not None else ""
        can_sign = bool(options["can_sign"])
        entries = staff_roster(organization=organization, role=role, can_sign=can_sign, staff_issuer=issuer)
        if options["json"]:
            self.stdout.write(json.dumps([entry.as_dict() for entry in entries], indent=2))
            return
        if can_sign:
            self._signers(entries)
            unable = clinicians_unable_to_sign(organization=organization, staff_issuer=issuer)
            if unable:
                names = ", ".join(entry.username for entry in unable)
                self.stderr.write(
                    f"{len(unable)} clinician(s) cannot sign: no password and no hospital login: {names}"
                )
            return
        rows = [
            [
                entry.username,
                entry.name or "-",
                "yes" if entry.active else "no (disabled)",
                entry.sign_in,
                "; ".join(f"{r.role} at {r.site} ({r.source})" for r in entry.roles) or "-",
            ]
            for entry in entries
        ]
        for line in _table(("username", "name", "enabled", "signs in with", "roles"), rows):
            self.stdout.write(line)

    def _signers(self, entries: list[RosterEntry]) -> None:
        rows = sorted(
            (
                [r.site, entry.username, entry.name or "-", entry.signs_with]
                for entry in entries
                for r in entry.roles
            ),
            key=lambda row: (row[0], row[1]),
        )
        if not rows:
            self.stdout.write("nobody can sign decisions here")
            return
        for line in _table(("site", "username", "name", "signs with"), rows):
            self.stdout.write(line)
