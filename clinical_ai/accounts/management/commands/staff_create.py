from __future__ import annotations

import getpass
import sys
from typing import Any

from django.core.management.base import CommandError, CommandParser

from clinical_ai.accounts.management.commands._staff import StaffCommand
from clinical_ai.accounts.provisioning import staff_create


class Command(StaffCommand):
    help = (
        "Create a member of staff: with a local password (typed at a prompt, or one line on standard input "
        "with --password-stdin; never on the command line) or, with --no-password, a single sign-on account. "
        "Roles are given with staff_grant. Recorded as accounts.staff.create (and accounts.staff.link)."
    )
    # call_command(..., stdin=...) in the tests, as Django's createsuperuser does.
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("username")
        parser.add_argument("--name", default="", help='"Given Family"')
        parser.add_argument("--email", default="")
        password = parser.add_mutually_exclusive_group(required=True)
        password.add_argument("--password-prompt", action="store_true", help="type the password, twice")
        password.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
        password.add_argument(
            "--no-password", action="store_true", help="single sign-on only: no password can be used"
        )
        parser.add_argument(
            "--identity",
            nargs=2,
            action="append",
            default=[],
            metavar=("ISSUER", "SUBJECT"),
            help="who they are at an identity provider or an EHR (repeatable)",
        )

    def _password(self, options: dict[str, Any]) -> str | None:
        if options["no_password"]:
            return None
        if options["password_stdin"]:
            stream = options.get("stdin") or sys.stdin
            password = stream.readline().rstrip("\r\n")
        else:
            password = getpass.getpass("Password: ")
            if getpass.getpass("Password (again): ") != password:
                raise CommandError("the two passwords are not the same: nothing was created")
        if not password:
            raise CommandError("the password is empty: nothing was created")
        return password

    def handle(self, *args: Any, **options: Any) -> None:
        actor = self.actor(options)
        user = staff_create(
            username=str(options["username"]),
            actor=actor,
            password=self._password(options),
            full_name=str(options["name"]),
            email=str(options["email"]),
            identities=[(str(issuer), str(subject)) for issuer, subject in options["identity"]],
        )
        kind = "single sign-on" if not user.has_usable_password() else "local password"
        self.stdout.write(self.style.SUCCESS(f"created {user.get_username()} ({kind})"))
