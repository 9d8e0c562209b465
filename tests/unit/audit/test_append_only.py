"""Append-only on SQLite as on PostgreSQL, and what that means for transactional tests.

No module-level ``django_db`` mark here: ``audit_transactional_db`` must be what sets the database up, so
that its teardown runs before the flush (see tests/unit/audit/conftest.py).
"""

from __future__ import annotations

import pytest
from django.db import connection

from clinical_ai.audit.models import AuditEvent, AuditPurgePermit
from clinical_ai.audit.services import Actor, audit_record


@pytest.mark.django_db
def test_both_backends_have_the_triggers() -> None:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_auditevent'::regclass AND NOT tgisinternal"
            )
            assert [row[0] for row in cursor.fetchall()] == ["audit_auditevent_append_only"]
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_auditevent' "
                "ORDER BY name"
            )
            assert [row[0] for row in cursor.fetchall()] == [
                "audit_auditevent_no_delete",
                "audit_auditevent_no_update",
            ]


@pytest.mark.django_db
def test_permit_is_closed_between_tests() -> None:
    assert AuditPurgePermit.objects.get(pk=1).below_seq == 0


def test_transactional_tests_that_write_audit_rows_flush_cleanly(audit_transactional_db: None) -> None:
    """Without ``audit_transactional_db`` the SQLite flush after this test would hit the DELETE trigger."""
    audit_record(actor=Actor.system("tests"), action="test.event")
    audit_record(actor=Actor.system("tests"), action="test.event")
    assert AuditEvent.objects.count() == 2


def test_the_next_transactional_test_starts_empty_with_the_permit_closed(
    audit_transactional_db: None,
) -> None:
    assert not AuditEvent.objects.exists()
    assert AuditPurgePermit.objects.get(pk=1).below_seq == 0
    audit_record(actor=Actor.system("tests"), action="test.event")
