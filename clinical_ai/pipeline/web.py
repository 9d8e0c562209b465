"""The hand-over that runs in the web process: a signed decision → its push to the EHR."""

from __future__ import annotations

from typing import Any

from clinical_ai.review import signoff
from clinical_ai.review.models import Decision, Suggestion
from integrations.fhir.push import push_jobs_create


def suggestion_sign_off(
    *,
    suggestion: Suggestion,
    user: Any,
    signature: signoff.Signature,
    sign_off: signoff.SignOff,
    request_id: str,
) -> Decision:
    """Stage 4 → 5: a clinician's signed decision (review UI); its resources are queued for the EHR in the
    same transaction (where the EHR asked for pushes) and sent on commit."""
    return signoff.suggestion_sign_off(
        suggestion=suggestion,
        user=user,
        signature=signature,
        sign_off=sign_off,
        request_id=request_id,
        deliver=push_jobs_create,
    )


def decision_record(
    *, suggestion: Suggestion, user: Any, sign_off: signoff.SignOff, request_id: str
) -> Decision:
    """Stage 4 → 5 for a channel that authenticated the person itself (CDS Hooks feedback): the same
    decision, resources, Provenance, push jobs and audit row as ``suggestion_sign_off``."""
    return signoff.decision_record(
        suggestion=suggestion, user=user, sign_off=sign_off, request_id=request_id, deliver=push_jobs_create
    )
