"""The audit chain: appends link by hash, and verification finds the first edited, deleted or moved row."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from clinical_ai.audit.chain import AuditDetailError, check_detail
from clinical_ai.audit.models import AuditChainHead, AuditEvent, Outcome
from clinical_ai.audit.selectors import audit_chain_verify
from clinical_ai.audit.services import Actor, audit_record
from tests.unit.audit.tamper import tamper

pytestmark = pytest.mark.django_db


def _append(n: int) -> list[AuditEvent]:
    return [
        audit_record(
            actor=Actor.ehr_client("ehr-1"),
            action="test.event",
            object_type="Thing",
            object_id=str(i),
            request_id=f"req-{i}",
            detail={"n": i, "tags": ["a", "b"], "flag": True, "none": None},
        )
        for i in range(n)
    ]


def _raw(sql: str, params: list[Any]) -> None:
    """Change rows behind the application's back, the way an intruder with database access would: the
    append-only triggers are disabled (PostgreSQL) or dropped and recreated (SQLite) around the change."""
    tamper(sql, params)


def test_events_link_by_hash_and_verify() -> None:
    events = _append(5)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    for previous, current in itertools.pairwise(events):
        assert current.prev_hash == previous.hash
    head = AuditChainHead.objects.get(pk=1)
    assert (head.last_seq, head.last_hash) == (5, events[-1].hash)
    result = audit_chain_verify()
    assert result.ok and result.checked == 5


def test_empty_log_verifies() -> None:
    assert audit_chain_verify().ok


def test_edited_row_is_named() -> None:
    events = _append(5)
    _raw("UPDATE {table} SET action = %s WHERE seq = %s", ["test.forged", 3])
    result = audit_chain_verify()
    assert not result.ok
    assert result.first_bad_seq == 3
    assert result.first_bad_id == events[2].pk
    assert "hash" in result.reason


def test_edited_detail_is_detected() -> None:
    events = _append(3)
    forged = {**events[1].detail, "n": 99}  # one value changed; the keys and every other column as they were
    _raw("UPDATE {table} SET detail = %s WHERE seq = %s", [json.dumps(forged), 2])
    # The edit landed, so the verdict below is about it.
    assert AuditEvent.objects.get(seq=2).detail == forged
    result = audit_chain_verify()
    assert not result.ok
    assert result.first_bad_seq == 2


def test_edited_outcome_is_detected() -> None:
    _append(3)
    _raw("UPDATE {table} SET outcome = %s WHERE seq = %s", [Outcome.FAILURE, 2])
    assert AuditEvent.objects.get(seq=2).outcome == Outcome.FAILURE
    result = audit_chain_verify()
    assert not result.ok
    assert result.first_bad_seq == 2


def test_deleted_middle_row_is_detected() -> None:
    _append(5)
    _raw("DELETE FROM {table} WHERE seq = %s", [2])
    result = audit_chain_verify()
    assert not result.ok and result.first_bad_seq == 3


def test_deleted_last_row_is_detected_against_the_head() -> None:
    _append(4)
    _raw("DELETE FROM {table} WHERE seq = %s", [4])
    result = audit_chain_verify()
    assert not result.ok
    assert result.checked == 3


def test_swapped_rows_are_detected() -> None:
    _append(4)
    # Swap the sequence numbers of rows 2 and 3 (through a free value to satisfy uniqueness).
    _raw("UPDATE {table} SET seq = %s WHERE seq = %s", [999, 2])
    _raw("UPDATE {table} SET seq = %s WHERE seq = %s", [2, 3])
    _raw("UPDATE {table} SET seq = %s WHERE seq = %s", [3, 999])
    result = audit_chain_verify()
    assert not result.ok and result.first_bad_seq == 2


def test_audit_verify_command_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    _append(3)
    call_command("audit_verify")
    assert "intact: 3 events" in capsys.readouterr().out
    _raw("UPDATE {table} SET actor_id = %s WHERE seq = %s", ["someone-else", 2])
    with pytest.raises(CommandError) as excinfo:
        call_command("audit_verify")
    assert excinfo.value.returncode == 1
    assert "seq=2" in str(excinfo.value)


def test_rolled_back_change_leaves_no_audit_row() -> None:
    from django.db import transaction

    _append(1)
    with pytest.raises(RuntimeError), transaction.atomic():
        audit_record(actor=Actor.system("t"), action="test.rolled_back")
        raise RuntimeError("the change failed")
    assert not AuditEvent.objects.filter(action="test.rolled_back").exists()
    assert audit_chain_verify().ok


@pytest.mark.parametrize(
    "detail",
    [
        {"nested": {"a": 1}},
        {"ratio": 0.5},
        {"note": "x" * 300},
        {"": 1},
        {f"k{i}": i for i in range(40)},
        {"items": [{"a": 1}]},
    ],
)
def test_detail_refuses_what_could_carry_free_text(detail: dict[str, object]) -> None:
    with pytest.raises(AuditDetailError):
        check_detail(detail)


def test_database_refuses_update_and_delete() -> None:
    """PostgreSQL and SQLite alike: the table itself refuses UPDATE and DELETE, whoever issues them."""
    from django.db import DatabaseError, transaction

    _append(2)
    for sql in ("UPDATE {table} SET action = 'x' WHERE seq = 1", "DELETE FROM {table} WHERE seq = 1"):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql.format(table=AuditEvent._meta.db_table))
    assert AuditEvent.objects.count() == 2
    assert audit_chain_verify().ok


# --- The chain's start, as plain Python (no database) ------------------------------------------------------


def _pure_chain(n: int, *, first_seq: int = 1, first_prev: str | None = None) -> list[tuple[int, Any, str]]:
    from datetime import UTC, datetime

    from clinical_ai.audit.chain import GENESIS_HASH, PURGE_ACTION, ChainFields, event_hash

    rows: list[tuple[int, Any, str]] = []
    start_prev = prev = first_prev or GENESIS_HASH
    for seq in range(first_seq, first_seq + n):
        fields = ChainFields(
            seq=seq,
            occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
            actor_type="system",
            actor_id="t",
            action=PURGE_ACTION if seq == first_seq + n - 1 else "test.event",
            outcome="success",
            object_type="",
            object_id="",
            organization="",
            patient_pseudonym="",
            request_id="",
            detail={"last_removed_seq": first_seq - 1, "last_removed_hash": start_prev}
            if seq == first_seq + n - 1 and first_seq > 1
            else {},
            prev_hash=prev,
        )
        digest = event_hash(fields)
        rows.append((seq, fields, digest))
        prev = digest
    return rows


def test_verify_chain_from_a_start_vouched_for_by_a_purge_event() -> None:
    from clinical_ai.audit.chain import verify_chain

    last_removed = "ab" * 32
    rows = _pure_chain(3, first_seq=11, first_prev=last_removed)
    result = verify_chain(
        rows, head_seq=13, head_hash=rows[-1][2], first_seq=11, first_prev_hash=last_removed
    )
    assert result.ok and result.checked == 3


def test_verify_chain_refuses_a_start_no_purge_event_accounts_for() -> None:
    from clinical_ai.audit.chain import verify_chain

    rows = _pure_chain(3, first_seq=11, first_prev="ab" * 32)
    other_start = rows[1:]  # as if event 11 had been deleted and the start moved to 12
    result = verify_chain(
        other_start, head_seq=13, head_hash=rows[-1][2], first_seq=12, first_prev_hash=rows[0][2]
    )
    assert not result.ok and result.first_bad_seq == 12 and "audit.purge" in result.reason


def test_verify_chain_refuses_a_start_that_does_not_link() -> None:
    from clinical_ai.audit.chain import verify_chain

    rows = _pure_chain(3, first_seq=11, first_prev="ab" * 32)
    result = verify_chain(rows, head_seq=13, head_hash=rows[-1][2], first_seq=11, first_prev_hash="cd" * 32)
    assert not result.ok and result.first_bad_seq == 11 and "link" in result.reason
