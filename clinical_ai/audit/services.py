"""Writing audit events. ``audit_record`` is the only way rows get into the audit table, ``audit_purge`` the
only way old ones leave it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from clinical_ai.audit.chain import (
    GENESIS_HASH,
    MAX_DETAIL_STRING,
    PURGE_ACTION,
    ChainFields,
    VerifyResult,
    check_detail,
    event_hash,
    verify_segment,
)
from clinical_ai.audit.models import ActorType, AuditChainHead, AuditEvent, AuditPurgePermit, Outcome
from clinical_ai.audit.selectors import audit_chain_verify, audit_purge_plan, chain_rows


@dataclass(frozen=True)
class Actor:
    """Who did it: a signed-in user, an EHR client, a worker task or the system itself."""

    type: str
    id: str

    @classmethod
    def user(cls, user_id: int | str) -> Actor:
        return cls(ActorType.USER, str(user_id))

    @classmethod
    def ehr_client(cls, client_id: str) -> Actor:
        return cls(ActorType.EHR_CLIENT, client_id)

    @classmethod
    def worker(cls, *, task_name: str, task_id: str | None, hostname: str | None) -> Actor:
        return cls(ActorType.WORKER, f"{hostname or 'worker'}/{task_name}/{task_id or '-'}"[:128])

    @classmethod
    def system(cls, name: str) -> Actor:
        return cls(ActorType.SYSTEM, name)

    @classmethod
    def anonymous(cls) -> Actor:
        return cls(ActorType.ANONYMOUS, "-")


def audit_record(
    *,
    actor: Actor,
    action: str,
    outcome: str = Outcome.SUCCESS,
    object_type: str = "",
    object_id: str = "",
    organization: str = "",
    patient_pseudonym: str = "",
    request_id: str = "",
    detail: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain, inside the caller's transaction when there is one.

    The row commits or rolls back with the change it describes. Appends are serialized by the lock on the
    chain head, held until the surrounding transaction ends.
    """
    checked_detail = check_detail(detail or {})
    with transaction.atomic():
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(
            pk=1, defaults={"last_seq": 0, "last_hash": GENESIS_HASH}
        )
        fields = ChainFields(
            seq=head.last_seq + 1,
            occurred_at=timezone.now(),
            actor_type=str(actor.type),
            actor_id=actor.id[:128],
            action=action,
            outcome=str(outcome),
            object_type=object_type,
            object_id=object_id,
            organization=organization,
            patient_pseudonym=patient_pseudonym,
            request_id=request_id,
            detail=checked_detail,
            prev_hash=head.last_hash,
        )
        digest = event_hash(fields)
        event = AuditEvent.objects.create(
            seq=fields.seq,
            occurred_at=fields.occurred_at,
            actor_type=fields.actor_type,
            actor_id=fields.actor_id,
            action=fields.action,
            outcome=fields.outcome,
            object_type=fields.object_type,
            object_id=fields.object_id,
            organization=fields.organization,
            patient_pseudonym=fields.patient_pseudonym,
            request_id=fields.request_id,
            detail=checked_detail,
            prev_hash=fields.prev_hash,
            hash=digest,
        )
        AuditChainHead.objects.filter(pk=1).update(last_seq=fields.seq, last_hash=digest)
    return event


def audit_verify(*, actor: Actor, request_id: str = "") -> VerifyResult:
    """Verify the chain and put the result on record (``audit.verify``: failure when the chain is broken)."""
    result = audit_chain_verify()
    audit_record(
        actor=actor,
        action="audit.verify",
        outcome=Outcome.SUCCESS if result.ok else Outcome.FAILURE,
        object_type="AuditChain",
        request_id=request_id,
        detail={
            "intact": result.ok,
            "checked": result.checked,
            "first_bad_seq": result.first_bad_seq,
            "reason": result.reason[:MAX_DETAIL_STRING],
        },
    )
    return result


class PurgePermitMissingError(RuntimeError):
    """The ``audit_purgepermit`` row is gone; the triggers would refuse the purge's deletes."""


class PurgeRefusedError(RuntimeError):
    """The events due for removal do not verify; purging them would erase the evidence."""

    def __init__(self, result: VerifyResult) -> None:
        super().__init__(
            f"the audit events due for removal do not verify (event {result.first_bad_seq}: {result.reason}); "
            f"nothing was purged: investigate with audit_verify first"
        )
        self.result = result


@dataclass(frozen=True)
class PurgeResult:
    """What ``audit_purge`` removed (``count`` events, ``first_seq``..``last_seq``; none when count is 0),
    where the chain now starts, and the sequence number of the purge's own ``audit.purge`` event."""

    cutoff: datetime
    retention_days: int
    count: int
    first_seq: int | None
    last_seq: int | None
    last_hash: str
    chain_first_seq: int
    event_seq: int


def audit_purge(*, actor: Actor, now: datetime | None = None, request_id: str = "") -> PurgeResult:
    """Delete the events older than ``AUDIT_RETENTION_DAYS`` and record doing so, in one transaction.

    Only a run of events from the start of the chain is removed (see ``audit_purge_plan``). The head's
    start moves to the first kept event and the hash it links to; the ``audit.purge`` event names the
    removed range and the last removed hash, which is what lets ``audit_verify`` accept the new start. The
    append-only triggers let the deletes through only while the purge permit is open, and it is open only
    inside this transaction. Raises ``RetentionConfigurationError`` for a retention below 183 days.

    The events due for removal are verified first (from the chain's start to the last of them): if they do
    not verify, nothing is removed, a failed ``audit.purge`` is recorded and ``PurgeRefusedError`` raised,
    so that a purge never erases the evidence of tampering.
    """
    try:
        return _purge(actor=actor, now=now, request_id=request_id)
    except PurgeRefusedError as refused:
        audit_record(
            actor=actor,
            action=PURGE_ACTION,
            outcome=Outcome.FAILURE,
            object_type="AuditChain",
            request_id=request_id,
            detail={
                "removed": 0,
                "first_bad_seq": refused.result.first_bad_seq,
                "reason": refused.result.reason[:MAX_DETAIL_STRING],
            },
        )
        raise


def _purge(*, actor: Actor, now: datetime | None, request_id: str) -> PurgeResult:
    with transaction.atomic():
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(
            pk=1, defaults={"last_seq": 0, "last_hash": GENESIS_HASH}
        )
        plan = audit_purge_plan(now=now)
        last_hash = ""
        if plan.count and plan.last_seq is not None:
            segment = verify_segment(
                chain_rows(up_to_seq=plan.last_seq),
                first_seq=head.first_seq,
                first_prev_hash=head.first_prev_hash,
                last_seq=plan.last_seq,
            )
            if not segment.ok:
                raise PurgeRefusedError(segment)
            last_hash = AuditEvent.objects.values_list("hash", flat=True).get(seq=plan.last_seq)
            if AuditPurgePermit.objects.filter(pk=1).update(below_seq=plan.last_seq + 1) != 1:
                raise PurgePermitMissingError(
                    "the audit_purgepermit row is missing; run the audit migrations"
                )
            AuditEvent.objects.filter(seq__lte=plan.last_seq).delete()
            AuditPurgePermit.objects.filter(pk=1).update(below_seq=0)
            AuditChainHead.objects.filter(pk=1).update(first_seq=plan.last_seq + 1, first_prev_hash=last_hash)
        event = audit_record(
            actor=actor,
            action=PURGE_ACTION,
            object_type="AuditChain",
            request_id=request_id,
            detail={
                "retention_days": plan.retention_days,
                "cutoff": plan.cutoff.isoformat(),
                "removed": plan.count,
                "first_removed_seq": plan.first_seq,
                "last_removed_seq": plan.last_seq,
                "last_removed_hash": last_hash or None,
            },
        )
    return PurgeResult(
        cutoff=plan.cutoff,
        retention_days=plan.retention_days,
        count=plan.count,
        first_seq=plan.first_seq,
        last_seq=plan.last_seq,
        last_hash=last_hash,
        chain_first_seq=plan.last_seq + 1 if plan.count and plan.last_seq is not None else head.first_seq,
        event_seq=event.seq,
    )
