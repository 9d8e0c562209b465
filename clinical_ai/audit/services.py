"""Writing audit events. ``audit_record`` is the only way rows get into the audit table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from clinical_ai.audit.chain import GENESIS_HASH, ChainFields, check_detail, event_hash
from clinical_ai.audit.models import ActorType, AuditChainHead, AuditEvent, Outcome


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
