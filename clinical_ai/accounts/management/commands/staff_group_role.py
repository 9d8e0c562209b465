from __future__ import annotations

import json
from typing import Any

from django.core.management.base import CommandError, CommandParser

from clinical_ai.accounts.management.commands._staff import StaffCommand
from clinical_ai.accounts.models import Role
from clinical_ai.accounts.provisioning import group_role_add, group_role_remove, organization_get
from clinical_ai.accounts.roster import group_roles


class Command(StaffCommand):
    help = (
        "Which group of the hospital's identity provider gives which role at which site: 'add GROUP --site "
        "SLUG --role ROLE', 'remove GROUP ...', or 'list [GROUP] [--site SLUG]'. Members get or lose the role "
        "at their next sign-in or re-check. Recorded as accounts.group_role.add / accounts.group_role.remove."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("action", choices=("add", "remove", "list"))
        parser.add_argument("group", nargs="?", default="", help="the group's name as the provider sends it")
        parser.add_argument("--site", default="", metavar="SLUG")
        parser.add_argument("--role", default="", choices=("", *Role.values))
        parser.add_argument("--json", action="store_true", help="list as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        action, group = str(options["action"]), str(options["group"])
        if action == "list":
            site = str(options["site"])
            entries = group_roles(organization=organization_get(slug=site) if site else None, group=group)
            if options["json"]:
                self.stdout.write(json.dumps([entry.__dict__ for entry in entries], indent=2))
            elif not entries:
                self.stdout.write("no group gives a role here")
            for entry in entries if not options["json"] else ():
                self.stdout.write(f"{entry.group}\t{entry.role}\t{entry.site}")
            return
        if not group or not options["site"] or not options["role"]:
            raise CommandError(f"{action} needs a GROUP, --site and --role")
        actor = self.actor(options)
        organization, role = self.site_and_role(options)
        if action == "add":
            change, _ = group_role_add(group=group, organization=organization, role=role, actor=actor)
        else:
            change = group_role_remove(group=group, organization=organization, role=role, actor=actor)
        self.report(change)
