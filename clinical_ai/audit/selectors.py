from __future__ import annotations

from collections.abc import Iterator

from clinical_ai.audit.chain import GENESIS_HASH, ChainFields, VerifyResult, verify_chain
from clinical_ai.audit.models import AuditChainHead, AuditEvent


def _rows() -> Iterator[tuple[int, ChainFields, str]]:
    for event in AuditEvent.objects.order_by("seq").iterator(chunk_size=2000):
        yield (
            event.pk,
            ChainFields(
                seq=event.seq,
                occurred_at=event.occurred_at,
                actor_type=event.actor_type,
                actor_id=event.actor_id,
                action=event.action,
                outcome=event.outcome,
                object_type=event.object_type,
                object_id=event.object_id,
                organization=event.organization,
                patient_pseudonym=event.patient_pseudonym,
                request_id=event.request_id,
                detail=event.detail,
                prev_hash=event.prev_hash,
            ),
            event.hash,
        )


def audit_chain_verify() -> VerifyResult:
    head = AuditChainHead.objects.filter(pk=1).first()
    head_seq, head_hash = (head.last_seq, head.last_hash) if head else (0, GENESIS_HASH)
    return verify_chain(_rows(), head_seq=head_seq, head_hash=head_hash)
