"""Signing a decision on a suggestion: the clinician's electronic signature, one transaction, on record.

Web process (and the CDS Hooks feedback endpoint). What happens to a signed decision next (pushing it to
the EHR) is not this module's business: the caller hands it in as ``deliver`` (``clinical_ai.pipeline``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from clinical_ai.accounts.lockout import Scope, lockout_failure_record, lockout_reset, lockout_until
from clinical_ai.accounts.models import Membership, Role
from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.sealing import canonical_json, seal_json
from clinical_ai.fhir.validation_resource import validate_resource
from clinical_ai.review.creation import output_resources_put
from clinical_ai.review.fhir_decision import (
    ConditionEdit,
    DecisionResourceError,
    DecisionSpec,
    Verifier,
    decision_resources,
)
from clinical_ai.review.models import Decision, Suggestion
from clinical_ai.review.services import suggestion_payload

SIGN_ACTION = "review.decision.sign"
_PROVENANCE_KEY_SALT = b"clinical-ai:review:provenance-signature:v1"


class Delivery(Protocol):
    """Queues a signed decision's FHIR resources (``OutputResource`` pks) for the EHR, inside the sign-off's
    transaction (``integrations.fhir.push.push_jobs_create``)."""

    def __call__(
        self, *, organization_id: int, resources: Sequence[int], actor: Actor, request_id: str = ""
    ) -> object: ...


@dataclass(frozen=True)
class SignOff:
    """What a clinician decided, as the sign-off form gives it."""

    outcome: str  # accepted, modified or rejected
    reason_code: str = ""  # a REJECTION_REASONS code, for a rejection only
    comment: str = ""
    condition: ConditionEdit | None = None  # a problem accepted with changes

    def changes(self) -> dict[str, Any] | None:
        if self.condition is None:
            return None
        return {
            "code": dict(self.condition.code) if self.condition.code is not None else None,
            "clinical_status": self.condition.clinical_status,
            "verification_status": self.condition.verification_status,
            "onset": self.condition.onset,
        }


class SignOffRefused(Exception):
    """The decision was not recorded; nothing changed. ``reason`` is what the audit row says."""

    reason = "refused"


class SignOffNotAllowed(SignOffRefused):
    """The user is not a clinician of the suggestion's organization."""

    reason = "not-allowed"


class SignatureRefused(SignOffRefused):
    """The password given as the electronic signature is not the user's."""

    reason = "wrong-password"


class SignatureLocked(SignOffRefused):
    """Too many wrong signing passwords in a row: this user's signing is paused (``accounts.lockout``), and
    the password is not checked until the lock ends or an administrator lifts it."""

    reason = "signature-locked"


class SignOffInvalid(SignOffRefused):
    """The decision does not make valid FHIR (e.g. an onset the resource cannot carry)."""

    reason = "invalid"


class AlreadyDecided(SignOffRefused):
    """Someone decided first (or the suggestion was superseded or withdrawn meanwhile)."""

    reason = "already-decided"

    def __init__(
        self, *, status: str, by: str = "", at: datetime | None = None, decision: Decision | None = None
    ) -> None:
        self.status, self.by, self.at, self.decision = status, by, at, decision
        if by and at is not None:
            message = f"already decided by {by} at {at.isoformat(timespec='minutes')}"
        else:
            message = f"no longer pending review (now {status})"
        super().__init__(message)


def provenance_signing_key() -> bytes:
    """The key of the Provenance signatures' HMAC, derived from SECRET_KEY: rotating SECRET_KEY leaves
    earlier signatures unverifiable here (the decisions' own sha256 still checks)."""
    return hmac.new(settings.SECRET_KEY.encode("utf-8"), _PROVENANCE_KEY_SALT, hashlib.sha256).digest()


def _user_display(user: Any) -> str:
    full_name = user.get_full_name().strip() if hasattr(user, "get_full_name") else ""
    return (full_name or user.get_username())[:200]


def _sign_audit(
    *,
    user: Any,
    suggestion: Suggestion,
    request_id: str,
    outcome: str,
    detail: Mapping[str, Any],
) -> None:
    audit_record(
        actor=Actor.user(user.pk),
        action=SIGN_ACTION,
        outcome=outcome,
        object_type="Suggestion",
        object_id=str(suggestion.external_id),
        organization=suggestion.organization.slug,
        patient_pseudonym=suggestion.patient_pseudonym,
        request_id=request_id,
        detail={
            "suggestion": str(suggestion.external_id),
            "model": suggestion.model_id,
            "version": suggestion.model_version,
            **detail,
        },
    )


def sign_off_refused(
    *, user: Any, suggestion: Suggestion, reason: str, request_id: str, outcome: str = ""
) -> None:
    """On record: a sign-off on ``suggestion`` refused for ``reason`` (a SignOffRefused.reason code)."""
    _sign_audit(
        user=user,
        suggestion=suggestion,
        request_id=request_id,
        outcome=Outcome.FAILURE,
        detail={"outcome": outcome, "refused": reason},
    )


def _already_decided(suggestion: Suggestion) -> AlreadyDecided:
    decision = Decision.objects.filter(suggestion_id=suggestion.pk).first()
    if decision is None:
        return AlreadyDecided(status=suggestion.status)
    return AlreadyDecided(
        status=suggestion.status, by=decision.clinician_display, at=decision.signed_at, decision=decision
    )


def sign_off_too_late(*, user: Any, suggestion: Suggestion, outcome: str, request_id: str) -> AlreadyDecided:
    """On record, in one transaction: a decision sent for a suggestion that is no longer pending (a stale
    tab, a colleague who signed first, a superseded or withdrawn suggestion). Returns the refusal, with who
    decided and when where there is a decision, for the page to say so. The password is not checked: there
    is nothing it could sign."""
    with transaction.atomic():
        current = Suggestion.objects.select_related("organization").get(pk=suggestion.pk)
        refusal = _already_decided(current)
        sign_off_refused(
            user=user, suggestion=current, reason=refusal.reason, request_id=request_id, outcome=outcome
        )
    return refusal


def _decision_write(
    *, suggestion: Suggestion, user: Any, sign_off: SignOff, request_id: str, deliver: Delivery
) -> Decision:
    """Inside the caller's transaction, with the suggestion row locked and pending: the Decision, the
    final and new FHIR resources with their Provenance, the suggestion's status and the audit row."""
    now = timezone.now()
    payload = suggestion_payload(suggestion)
    verifier = Verifier(
        username=user.get_username(),
        display=_user_display(user),
        organization_display=suggestion.organization.name,
    )
    spec = DecisionSpec(
        suggestion_id=str(suggestion.external_id),
        outcome=sign_off.outcome,  # type: ignore[arg-type]  # checked by decision_resources
        resources=[r for r in payload.get("resources") or [] if isinstance(r, Mapping)],
        verifier=verifier,
        signed_at=now,
        reason_code=sign_off.reason_code,
        comment=sign_off.comment,
        condition=sign_off.condition,
    )
    try:
        built = decision_resources(spec, signing_key=provenance_signing_key())
    except DecisionResourceError as exc:
        raise SignOffInvalid(str(exc)) from exc
    issues = [issue for resource in built.all() for issue in validate_resource(resource)]
    if issues:
        where = ", ".join(issues[0].expression) or "?"
        raise SignOffInvalid(f"the decision does not make valid FHIR (first problem at {where})")
    signed = {
        "suggestion": str(suggestion.external_id),
        "model": {"id": suggestion.model_id, "version": suggestion.model_version},
        "outcome": sign_off.outcome,
        "reason_code": sign_off.reason_code,
        "comment": sign_off.comment,
        "changes": sign_off.changes(),
        "clinician": {"username": verifier.username, "display": verifier.display},
        "organization": suggestion.organization.slug,
        "signed_at": now.isoformat(),
        "resources": [*built.changed, *built.created],
        "provenance": built.provenance,
    }
    decision = Decision(
        suggestion=suggestion,
        organization_id=suggestion.organization_id,
        clinician=user,
        clinician_display=verifier.display,
        outcome=sign_off.outcome,
        reason_code=sign_off.reason_code,
        signed_at=now,
        signature_sha256=hashlib.sha256(canonical_json(signed)).hexdigest(),
    )
    sealed = seal_json(signed, associated_data=decision.associated_data)
    decision.key_id, decision.nonce, decision.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
    decision.save(force_insert=True)
    stored = output_resources_put(
        organization_id=suggestion.organization_id,
        patient_pseudonym=suggestion.patient_pseudonym,
        resources=built.all(),
        suggestion=suggestion,
    )
    # Back to the EHR where its client asked for it: queued here, sent on commit by a worker with retries.
    deliver(
        organization_id=suggestion.organization_id,
        resources=[row.pk for row in stored],
        actor=Actor.user(str(user.pk)),
        request_id=request_id,
    )
    Suggestion.objects.filter(pk=suggestion.pk, status=Suggestion.Status.PENDING).update(
        status=sign_off.outcome, updated_at=now
    )
    _sign_audit(
        user=user,
        suggestion=suggestion,
        request_id=request_id,
        outcome=Outcome.SUCCESS,
        detail={
            "outcome": sign_off.outcome,
            "reason_code": sign_off.reason_code,
            "decision": str(decision.external_id),
        },
    )
    return decision


def decision_record(
    *, suggestion: Suggestion, user: Any, sign_off: SignOff, request_id: str, deliver: Delivery
) -> Decision:
    """Write a decision for a channel that authenticated the person itself (CDS Hooks feedback, attested by
    the EHR's signed JWT rather than a password here). The caller holds ``suggestion`` locked, checked it is
    pending, and is inside the transaction: the same Decision, resources, Provenance and audit row as a
    sign-off in the review UI."""
    return _decision_write(
        suggestion=suggestion, user=user, sign_off=sign_off, request_id=request_id, deliver=deliver
    )


def suggestion_sign_off(
    *,
    suggestion: Suggestion,
    user: Any,
    password: str,
    sign_off: SignOff,
    request_id: str,
    deliver: Delivery,
) -> Decision:
    """Record a clinician's signed decision on a pending suggestion, or refuse it and change nothing.

    Only a clinician of the suggestion's organization may decide, and only with their password (the
    electronic signature). The suggestion row is locked, so of two clinicians deciding at once one wins
    and the other is told who decided first; the one-to-one between Decision and Suggestion refuses a
    second decision in the database too. The Decision, the FHIR resources it produces (final statuses, a
    confirmed Condition, the Provenance), the suggestion's new status and the ``review.decision.sign``
    audit row are written in one transaction. Every refusal is on record too, as a failure, with the
    reason's code and never the comment (free text may name the patient).
    """

    def refuse(error: SignOffRefused) -> SignOffRefused:
        sign_off_refused(
            user=user,
            suggestion=suggestion,
            reason=error.reason,
            request_id=request_id,
            outcome=sign_off.outcome,
        )
        return error

    if not Membership.objects.filter(
        user_id=user.pk, organization_id=suggestion.organization_id, role=Role.CLINICIAN
    ).exists() or not getattr(user, "is_active", False):
        raise refuse(SignOffNotAllowed("only a clinician of this site may decide on its suggestions"))
    signer_key = str(user.pk)
    if lockout_until(scope=Scope.SIGNATURE, key=signer_key):
        raise refuse(SignatureLocked("too many wrong signing passwords; signing is paused"))
    if not password or not user.check_password(password):
        lockout_failure_record(scope=Scope.SIGNATURE, key=signer_key, user=user, request_id=request_id)
        raise refuse(SignatureRefused("the password is not right"))
    lockout_reset(scope=Scope.SIGNATURE, key=signer_key)
    try:
        with transaction.atomic():
            locked = (
                Suggestion.objects.select_for_update().select_related("organization").get(pk=suggestion.pk)
            )
            if (
                locked.status != Suggestion.Status.PENDING
                or Decision.objects.filter(suggestion_id=locked.pk).exists()
            ):
                raise _already_decided(locked)
            return _decision_write(
                suggestion=locked, user=user, sign_off=sign_off, request_id=request_id, deliver=deliver
            )
    except IntegrityError:
        # Another decision got in between the check and the insert: the one-to-one refused this one.
        current = Suggestion.objects.select_related("organization").get(pk=suggestion.pk)
        if not Decision.objects.filter(suggestion_id=current.pk).exists():
            raise
        raise refuse(_already_decided(current)) from None
    except (AlreadyDecided, SignOffInvalid) as exc:
        raise refuse(exc) from None
