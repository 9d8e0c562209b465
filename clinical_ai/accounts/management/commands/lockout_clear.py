from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinical_ai.accounts.lockout import lockout_clear_address, lockout_clear_username
from clinical_ai.audit.services import Actor


class Command(BaseCommand):
    help = (
        "Lift the sign-in lockout of a username (and that account's e-signature lockout), or of a client "
        "address; recorded as auth.lockout.clear. The Django admin's 'Login throttles' page does the same."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="", help="the username as typed at sign-in")
        parser.add_argument("--address", default="", help="a client address (LOGIN_IP_MAX_FAILURES)")

    def handle(self, *args: Any, **options: Any) -> None:
        username, address = str(options["username"]), str(options["address"])
        if not username and not address:
            raise CommandError("give --username or --address")
        actor = Actor.system("manage.py lockout_clear")
        cleared = 0
        if username:
            cleared += lockout_clear_username(username=username, actor=actor)
        if address:
            cleared += lockout_clear_address(address=address, actor=actor)
        self.stdout.write(f"lifted {cleared} lock(s) and count(s)")
