"""Change audit rows behind the application's back, the way an intruder with database access would.

The append-only triggers are taken out of the way for the duration: on PostgreSQL by disabling them (which
needs owner rights), on SQLite by dropping them and creating them again from their stored definitions.
"""

from __future__ import annotations

from typing import Any

from django.db import connection

from clinical_ai.audit.models import AuditEvent

TABLE = AuditEvent._meta.db_table


def tamper(sql: str, params: list[Any] | None = None) -> None:
    """Run ``sql`` (``{table}`` stands for the audit table) with the append-only triggers out of the way."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER USER")
            cursor.execute(sql.format(table=TABLE), params or [])
            cursor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER USER")
            return
        cursor.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [TABLE]
        )
        triggers = cursor.fetchall()
        assert triggers, "the SQLite append-only triggers are missing"
        for name, _ in triggers:
            cursor.execute(f'DROP TRIGGER "{name}"')
        cursor.execute(sql.format(table=TABLE), params or [])
        for _, definition in triggers:
            cursor.execute(definition)
