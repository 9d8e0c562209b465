from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from clinical_ai.accounts.management.commands._staff import StaffCommand
from clinical_ai.accounts.provisioning import staff_enable, staff_user_get


class Command(StaffCommand):
    help = "Enable a disabled member of staff again. Recorded as accounts.staff.enable."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = self.actor(options)
        self.report(staff_enable(user=staff_user_get(username=str(options["username"])), actor=actor))
