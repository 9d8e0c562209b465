from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from clinical_ai.accounts.management.commands._staff import StaffCommand
from clinical_ai.accounts.provisioning import staff_link, staff_unlink, staff_user_get


class Command(StaffCommand):
    help = (
        "Link a member of staff to who they are at an identity provider (its 'sub') or an EHR (its fhirUser, "
        "such as Practitioner/123, which the EHR launch maps through this), or with --remove unlink it. "
        "Recorded as accounts.staff.link / accounts.staff.unlink."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("username")
        parser.add_argument("--issuer", required=True, help="the issuer's URL, as in its tokens")
        parser.add_argument("--subject", required=True, help="who they are there")
        parser.add_argument("--remove", action="store_true", help="unlink instead")

    def handle(self, *args: Any, **options: Any) -> None:
        actor = self.actor(options)
        user = staff_user_get(username=str(options["username"]))
        issuer, subject = str(options["issuer"]), str(options["subject"])
        if options["remove"]:
            self.report(staff_unlink(user=user, issuer=issuer, subject=subject, actor=actor))
        else:
            change, _ = staff_link(user=user, issuer=issuer, subject=subject, actor=actor)
            self.report(change)
