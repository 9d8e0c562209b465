from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from clinical_ai.accounts.management.commands._staff import StaffCommand
from clinical_ai.accounts.models import Role
from clinical_ai.accounts.provisioning import staff_grant, staff_user_get


class Command(StaffCommand):
    help = "Give a member of staff a role at a site (kept when identity provider groups change). Recorded as accounts.staff.grant."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("username")
        parser.add_argument("--site", required=True, metavar="SLUG")
        parser.add_argument("--role", required=True, choices=Role.values)

    def handle(self, *args: Any, **options: Any) -> None:
        actor = self.actor(options)
        user = staff_user_get(username=str(options["username"]))
        organization, role = self.site_and_role(options)
        change, _ = staff_grant(user=user, organization=organization, role=role, actor=actor)
        self.report(change)
