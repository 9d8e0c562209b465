from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from clinical_ai.accounts.management.commands._staff import StaffCommand
from clinical_ai.accounts.provisioning import staff_disable, staff_user_get


class Command(StaffCommand):
    help = (
        "Disable a member of staff and end their sessions at once; their roles are kept for staff_enable. "
        "Recorded as accounts.staff.disable."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("username")
        parser.add_argument("--reason", default="", help="why (kept in the audit record; no patient details)")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = self.actor(options)
        user = staff_user_get(username=str(options["username"]))
        self.report(staff_disable(user=user, actor=actor, reason=str(options["reason"])))
