"""What the ``staff_*`` commands share: the actor they record, ``--by``, and refusals as one line."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinical_ai.accounts.models import Organization, Role
from clinical_ai.accounts.provisioning import (
    Change,
    ProvisioningError,
    organization_get,
    role_parse,
    staff_user_get,
)
from clinical_ai.audit.services import Actor


class StaffCommand(BaseCommand):
    """A provisioning command. Its changes are recorded with the actor ``manage.py <command>``: whoever
    runs it is on the server, and nothing here authenticates them. ``--by NAME`` lets the operator name
    their own account; it is written into the actor (``manage.py staff_grant --by NAME``) once the
    account is known to exist, as what the operator said, not as a sign-in."""

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--by", default="", metavar="USERNAME", help="your own account, recorded with the change"
        )

    @property
    def command_name(self) -> str:
        return self.__module__.rsplit(".", 1)[-1]

    def actor(self, options: dict[str, Any]) -> Actor:
        name = f"manage.py {self.command_name}"
        by = str(options.get("by") or "").strip()
        if by:
            name += f" --by {staff_user_get(username=by).get_username()}"
        return Actor.system(name)

    def execute(self, *args: Any, **options: Any) -> str | None:
        try:
            return super().execute(*args, **options)
        except ProvisioningError as refused:
            raise CommandError(str(refused)) from None

    def site_and_role(self, options: dict[str, Any]) -> tuple[Organization, Role]:
        return organization_get(slug=str(options["site"])), role_parse(role=str(options["role"]))

    def report(self, change: Change) -> None:
        self.stdout.write(change.message, self.style.SUCCESS if change.changed else self.style.WARNING)
