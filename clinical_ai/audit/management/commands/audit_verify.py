from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from clinical_ai.audit.services import Actor, audit_verify


class Command(BaseCommand):
    help = (
        "Verify the audit log's hash chain (and put the check on record as audit.verify). Exits 0 when "
        "intact, 1 naming the first bad event otherwise."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        result = audit_verify(actor=Actor.system("manage.py audit_verify"))
        if result.ok:
            self.stdout.write(f"audit chain intact: {result.checked} events verified")
            return
        where = f"seq={result.first_bad_seq}" + (
            f" (row id {result.first_bad_id})" if result.first_bad_id else ""
        )
        raise CommandError(
            f"audit chain BROKEN at event {where}: {result.reason}; {result.checked} events verified before it",
            returncode=1,
        )
