"""Retention: the purge removes only events older than AUDIT_RETENTION_DAYS, from the start of the chain, is
itself on record, and verification still proves the kept chain afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from clinical_ai.audit.checks import check_retention
from clinical_ai.audit.models import AuditChainHead, AuditEvent, AuditPurgePermit
from clinical_ai.audit.retention import RetentionConfigurationError
from clinical_ai.audit.selectors import audit_chain_verify, audit_purge_plan
from clinical_ai.audit.services import Actor, audit_purge, audit_record
from tests.unit.audit.tamper import tamper

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
PURGER = Actor.system("tests")


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[datetime], Any]:
    """``with clock(moment):`` events recorded inside carry that time."""

    @contextmanager
    def at(moment: datetime) -> Iterator[None]:
        with monkeypatch.context() as patch:
            patch.setattr(timezone, "now", lambda: moment)
            yield

    return at


def _append(n: int, label: str) -> list[AuditEvent]:
    return [audit_record(actor=PURGER, action=f"test.{label}", object_id=str(i)) for i in range(n)]


@pytest.fixture
def old_and_young(clock: Callable[[datetime], Any]) -> tuple[list[AuditEvent], list[AuditEvent]]:
    """Four events at T0 and three 100 days later; purging at T0 + 200 days removes only the first four."""
    with clock(T0):
        old = _append(4, "old")
    with clock(T0 + timedelta(days=100)):
        young = _append(3, "young")
    return old, young


def test_purge_deletes_only_events_past_retention_and_records_itself(old_and_young: Any) -> None:
    old, _ = old_and_young
    result = audit_purge(actor=PURGER, now=T0 + timedelta(days=200), request_id="purge-1")
    assert (result.count, result.first_seq, result.last_seq) == (4, 1, 4)
    assert result.last_hash == old[-1].hash
    assert result.retention_days == 183 and result.chain_first_seq == 5
    remaining = list(AuditEvent.objects.order_by("seq").values_list("seq", "action"))
    assert remaining == [(5, "test.young"), (6, "test.young"), (7, "test.young"), (8, "audit.purge")]
    purge = AuditEvent.objects.get(action="audit.purge")
    assert purge.seq == result.event_seq
    assert (purge.actor_type, purge.actor_id, purge.request_id) == ("system", "tests", "purge-1")
    assert purge.detail["removed"] == 4
    assert (purge.detail["first_removed_seq"], purge.detail["last_removed_seq"]) == (1, 4)
    assert purge.detail["last_removed_hash"] == old[-1].hash
    assert purge.detail["retention_days"] == 183
    head = AuditChainHead.objects.get()
    assert (head.first_seq, head.first_prev_hash) == (5, old[-1].hash)
    assert AuditPurgePermit.objects.get().below_seq == 0  # closed again
    verified = audit_chain_verify()
    assert verified.ok and verified.checked == 4


def test_nothing_to_purge_is_still_recorded(old_and_young: Any) -> None:
    result = audit_purge(actor=PURGER, now=T0 + timedelta(days=150))
    assert result.count == 0 and result.first_seq is None and result.chain_first_seq == 1
    assert AuditEvent.objects.count() == 8
    assert AuditEvent.objects.get(action="audit.purge").detail["removed"] == 0
    assert audit_chain_verify().ok


def test_a_second_purge_moves_the_start_again(old_and_young: Any, clock: Any) -> None:
    with clock(T0 + timedelta(days=200)):
        audit_purge(actor=PURGER)
    with clock(T0 + timedelta(days=400)):
        audit_purge(actor=PURGER)
    # Everything before the second purge (the young events and the first purge's own row) is gone.
    assert list(AuditEvent.objects.values_list("seq", "action")) == [(9, "audit.purge")]
    head = AuditChainHead.objects.get()
    assert head.first_seq == 9
    assert audit_chain_verify().ok


def test_an_event_younger_than_retention_stops_the_purge_even_if_later_ones_are_older(clock: Any) -> None:
    with clock(T0):
        _append(2, "old")
    with clock(T0 + timedelta(days=100)):
        _append(1, "young")
    with clock(T0 - timedelta(days=1)):  # the clock stepped back
        _append(1, "older-but-later")
    result = audit_purge(actor=PURGER, now=T0 + timedelta(days=200))
    assert (result.first_seq, result.last_seq) == (1, 2)  # the chain stays one unbroken run
    assert AuditEvent.objects.filter(action="test.older-but-later").exists()
    assert audit_chain_verify().ok


def test_deleting_the_first_kept_event_is_still_detected(old_and_young: Any) -> None:
    audit_purge(actor=PURGER, now=T0 + timedelta(days=200))
    tamper("DELETE FROM {table} WHERE seq = %s", [5])
    result = audit_chain_verify()
    assert not result.ok
    assert result.first_bad_seq == 6 and "expected event seq 5" in result.reason


def test_editing_a_kept_event_after_a_purge_is_detected(old_and_young: Any) -> None:
    audit_purge(actor=PURGER, now=T0 + timedelta(days=200))
    tamper("UPDATE {table} SET actor_id = %s WHERE seq = %s", ["someone", 6])
    assert audit_chain_verify().first_bad_seq == 6


def test_moving_the_start_without_a_recorded_purge_is_detected(old_and_young: Any) -> None:
    """Someone who deletes the first events and moves the head's start to match: no audit.purge event
    accounts for the new start."""
    _, young = old_and_young
    tamper("DELETE FROM {table} WHERE seq <= %s", [5])
    AuditChainHead.objects.filter(pk=1).update(first_seq=6, first_prev_hash=young[0].hash)
    result = audit_chain_verify()
    assert not result.ok
    assert result.first_bad_seq == 6 and "audit.purge" in result.reason


def test_moving_the_start_further_than_the_purge_did_is_detected(old_and_young: Any) -> None:
    _, young = old_and_young
    audit_purge(actor=PURGER, now=T0 + timedelta(days=200))
    tamper("DELETE FROM {table} WHERE seq = %s", [5])
    AuditChainHead.objects.filter(pk=1).update(first_seq=6, first_prev_hash=young[0].hash)
    assert not audit_chain_verify().ok


def test_deleting_old_events_without_the_purge_is_refused_by_the_database(old_and_young: Any) -> None:
    from django.db import DatabaseError, connection, transaction

    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(seq__lte=2).delete()
    # The permit is the only way through, and it is closed outside the purge's transaction.
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("DELETE FROM audit_auditevent WHERE seq = 1")
    assert AuditEvent.objects.count() == 7


def test_the_permit_lets_through_only_rows_below_it(old_and_young: Any) -> None:
    from django.db import DatabaseError, transaction

    with transaction.atomic():
        AuditPurgePermit.objects.filter(pk=1).update(below_seq=3)
        AuditEvent.objects.filter(seq__lte=2).delete()
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            AuditEvent.objects.filter(seq=3).delete()
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            AuditEvent.objects.filter(seq=5).update(action="x")  # updates are never allowed
        AuditPurgePermit.objects.filter(pk=1).update(below_seq=0)
    assert AuditEvent.objects.count() == 5


def test_a_failed_purge_leaves_everything_as_it_was(
    old_and_young: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clinical_ai.audit import services

    def broken(**kwargs: Any) -> AuditEvent:
        raise RuntimeError("the audit row could not be written")

    monkeypatch.setattr(services, "audit_record", broken)
    with pytest.raises(RuntimeError):
        audit_purge(actor=PURGER, now=T0 + timedelta(days=200))
    assert AuditEvent.objects.count() == 7
    assert AuditChainHead.objects.get().first_seq == 1
    assert AuditPurgePermit.objects.get().below_seq == 0


@pytest.mark.parametrize("days", [0, 30, 182, -1, "200", True])
def test_retention_below_the_floor_is_refused_everywhere(
    settings: Any, old_and_young: Any, days: object
) -> None:
    settings.AUDIT_RETENTION_DAYS = days
    with pytest.raises(RetentionConfigurationError, match="AUDIT_RETENTION_DAYS"):
        audit_purge(actor=PURGER, now=T0 + timedelta(days=400))
    with pytest.raises(RetentionConfigurationError):
        audit_purge_plan()
    errors = check_retention()
    assert [e.id for e in errors] == ["audit.E001"]
    with pytest.raises(CommandError, match="AUDIT_RETENTION_DAYS"):
        call_command("audit_purge")
    assert AuditEvent.objects.count() == 7


def test_longer_retention_keeps_more(settings: Any, old_and_young: Any) -> None:
    settings.AUDIT_RETENTION_DAYS = 365
    assert check_retention() == []
    assert audit_purge(actor=PURGER, now=T0 + timedelta(days=200)).count == 0


def test_purge_command_dry_run_changes_and_records_nothing(
    old_and_young: Any, clock: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    with clock(T0 + timedelta(days=200)):
        call_command("audit_purge", "--dry-run")
    assert "dry run: 4 audit events older than 183 days" in capsys.readouterr().out
    assert AuditEvent.objects.count() == 7
    with clock(T0 + timedelta(days=200)):
        call_command("audit_purge")
    out = capsys.readouterr().out
    assert "deleted 4 audit events" in out and "starts at event 5" in out
    purge = AuditEvent.objects.get(action="audit.purge")
    assert (purge.actor_type, purge.actor_id) == ("system", "manage.py audit_purge")
    call_command("audit_verify")
    assert "intact: 4 events" in capsys.readouterr().out


def test_manage_py_check_refuses_a_short_retention(settings: Any) -> None:
    from django.core.management.base import SystemCheckError

    settings.AUDIT_RETENTION_DAYS = 90
    with pytest.raises(SystemCheckError, match=r"audit\.E001"):
        call_command("check")


def test_purge_refuses_to_erase_evidence_of_tampering(old_and_young: Any) -> None:
    """An old event edited (or deleted) behind the trigger's back: purging it would hide that. The purge
    removes nothing, records its refusal, and the chain still shows the damage."""
    from clinical_ai.audit.services import PurgeRefusedError

    tamper("UPDATE {table} SET actor_id = %s WHERE seq = %s", ["someone-else", 2])
    with pytest.raises(PurgeRefusedError, match="event 2"):
        audit_purge(actor=PURGER, now=T0 + timedelta(days=200))
    assert AuditEvent.objects.filter(action__startswith="test.").count() == 7
    refused = AuditEvent.objects.get(action="audit.purge")
    assert refused.outcome == "failure" and refused.detail["first_bad_seq"] == 2
    assert AuditChainHead.objects.get().first_seq == 1
    assert audit_chain_verify().first_bad_seq == 2
    with pytest.raises(CommandError, match="do not verify"):
        call_command("audit_purge")


def test_purge_refuses_when_an_old_event_is_missing(old_and_young: Any) -> None:
    from clinical_ai.audit.services import PurgeRefusedError

    tamper("DELETE FROM {table} WHERE seq = %s", [3])
    with pytest.raises(PurgeRefusedError):
        audit_purge(actor=PURGER, now=T0 + timedelta(days=200))
    assert audit_chain_verify().first_bad_seq == 4
