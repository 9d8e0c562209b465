"""Signing a decision on a suggestion: the clinician's electronic signature, one transaction, on record.

The signature is a proof of who is signing, checked here at the moment of signing: the password typed on
the form (local accounts), or a step-up sign-in at the hospital's identity provider that the review view
asked for with ``prompt=login`` and ``max_age=0`` and got back verified (single sign-on accounts). The
Decision, its sealed payload, its Provenance and the audit row say which, and when the person proved it.

Web process (and the CDS Hooks feedback endpoint). What happens to a signed decision next (pushing it to
the EHR) is not this module's business: the caller hands it in as ``deliver`` (``clinical_ai.pipeline``).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from clinical_ai.accounts.lockout import Scope, lockout_failure_record, lockout_reset, lockout_until
from clinical_ai.accounts.models import ExternalIdentity, Membership, Role
from clinical_ai.accounts.sso.client import CLOCK_LEEWAY_SECONDS
from clinical_ai.accounts.sso.config import staff_provider
from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.sealing import canonical_json, seal_json
from clinical_ai.fhir.validation_resource import validate_resource
from clinical_ai.review.creation import output_resources_put
from clinical_ai.review.fhir_decision import (
    ConditionEdit,
    DecisionResourceError,
    DecisionSpec,
    SignerAuthentication,
    Verifier,
    decision_resources,
)
from clinical_ai.review.models import Decision, Suggestion
from clinical_ai.review.services import suggestion_payload

SIGN_ACTION = "review.decision.sign"
_PROVENANCE_KEY_SALT = b"clinical-ai:review:provenance-signature:v1"
# A step-up sign-in signs only if the person signed in at the provider at most this long ago (plus the
# clocks' leeway): the signature is "I am here now", not "I signed in this morning".
STEP_UP_MAX_AGE_SECONDS = 120


@dataclass(frozen=True)
class PasswordSignature:
    """The signer's own password, typed on the form (local accounts). Checked here, with the lockout."""

    password: str = field(repr=False)


@dataclass(frozen=True)
class StepUpSignature:
    """A sign-in at the hospital's identity provider that was asked for this signature (``prompt=login``,
    ``max_age=0``), its id_token verified by ``accounts.sso.client.authorization_complete``: who (issuer,
    subject), when they authenticated there (``auth_time``) and when they were sent to do so
    (``requested_at``, epoch seconds both), and the provider's ``acr``/``amr`` when it sent them."""

    issuer: str
    subject: str
    auth_time: int
    requested_at: int
    acr: str = ""
    amr: tuple[str, ...] = ()

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], *, requested_at: int) -> StepUpSignature:
        """The proof from verified id_token claims; ``StepUpRefused("step-up-claims")`` when ``auth_time``
        or ``sub`` is missing or not what OpenID Connect says it is."""
        auth_time = claims.get("auth_time")
        subject = claims.get("sub")
        if isinstance(auth_time, bool) or not isinstance(auth_time, int | float):
            raise StepUpRefused("step-up-claims", "the provider did not say when the person signed in")
        if not isinstance(subject, str) or not subject:
            raise StepUpRefused("step-up-claims", "the provider did not say who signed in")
        amr = claims.get("amr")
        return cls(
            issuer=str(claims.get("iss") or ""),
            subject=subject,
            auth_time=int(auth_time),
            requested_at=int(requested_at),
            acr=str(claims.get("acr") or "")[:255],
            amr=tuple(str(value)[:64] for value in amr[:8]) if isinstance(amr, list) else (),
        )


Signature = PasswordSignature | StepUpSignature


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


class StepUpRefused(SignOffRefused):
    """The sign-in at the identity provider does not sign this decision: not this user
    (``step-up-wrong-person``), not the staff provider (``step-up-issuer``), not made after it was asked
    for (``step-up-not-fresh``) or too long ago (``step-up-stale``), or without the claims it needs
    (``step-up-claims``)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


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
    *,
    suggestion: Suggestion,
    user: Any,
    sign_off: SignOff,
    authentication: SignerAuthentication,
    subject: str = "",
    request_id: str,
    deliver: Delivery,
) -> Decision:
    """Inside the caller's transaction, with the suggestion row locked and pending: the Decision, the
    final and new FHIR resources with their Provenance, the suggestion's status and the audit row.
    ``authentication`` (and the provider's ``subject`` for a step-up) is how the signer was authenticated:
    on the Decision, in what is signed and sealed, in the Provenance and in the audit row."""
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
        authentication=authentication,
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
        "signature": {
            "method": authentication.method,
            "authenticated_at": authentication.at.isoformat(),
            "issuer": authentication.issuer,
            "subject": subject,
            "acr": authentication.acr,
            "amr": list(authentication.amr),
        },
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
        signature_method=authentication.method,
        authenticated_at=authentication.at,
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
            "signature_method": authentication.method,
            "authenticated_at": authentication.at.isoformat(),
        },
    )
    return decision


def decision_record(
    *,
    suggestion: Suggestion,
    user: Any,
    sign_off: SignOff,
    request_id: str,
    deliver: Delivery,
    attested_at: datetime | None = None,
) -> Decision:
    """Write a decision for a channel that authenticated the person itself (CDS Hooks feedback, attested by
    the EHR's signed JWT rather than a password here; signature method ``cds-hooks-feedback``, at
    ``attested_at``, by default now: the JWT was checked for this request). The caller holds
    ``suggestion`` locked, checked it is pending, and is inside the transaction: the same Decision,
    resources, Provenance and audit row as a sign-off in the review UI."""
    authentication = SignerAuthentication(
        method=Decision.SignatureMethod.CDS_HOOKS_FEEDBACK, at=attested_at or timezone.now()
    )
    return _decision_write(
        suggestion=suggestion,
        user=user,
        sign_off=sign_off,
        authentication=authentication,
        request_id=request_id,
        deliver=deliver,
    )


def _step_up_checked(*, user: Any, signature: StepUpSignature) -> SignerAuthentication:
    """How a step-up proof authenticates ``user``, or ``StepUpRefused``: it must come from the staff
    identity provider, name this user's identity there, and the sign-in must have happened after it was
    asked for and at most STEP_UP_MAX_AGE_SECONDS ago."""
    provider = staff_provider()
    if provider is None or signature.issuer.rstrip("/") != provider.issuer.rstrip("/"):
        raise StepUpRefused("step-up-issuer", "the sign-in was not at the hospital's identity provider")
    if not ExternalIdentity.objects.filter(
        user_id=user.pk, issuer=provider.issuer, subject=signature.subject
    ).exists():
        raise StepUpRefused("step-up-wrong-person", "someone else signed in at the identity provider")
    now = time.time()
    if signature.auth_time < signature.requested_at - CLOCK_LEEWAY_SECONDS:
        raise StepUpRefused("step-up-not-fresh", "the sign-in was not made for this signature")
    if now - signature.auth_time > STEP_UP_MAX_AGE_SECONDS + CLOCK_LEEWAY_SECONDS:
        raise StepUpRefused("step-up-stale", "the sign-in is too old to sign with")
    if signature.auth_time > now + CLOCK_LEEWAY_SECONDS:
        raise StepUpRefused("step-up-claims", "the sign-in time is in the future")
    return SignerAuthentication(
        method=Decision.SignatureMethod.OIDC_STEP_UP,
        at=datetime.fromtimestamp(signature.auth_time, tz=UTC),
        issuer=provider.issuer,
        acr=signature.acr,
        amr=signature.amr,
    )


def suggestion_sign_off(
    *,
    suggestion: Suggestion,
    user: Any,
    signature: Signature,
    sign_off: SignOff,
    request_id: str,
    deliver: Delivery,
) -> Decision:
    """Record a clinician's signed decision on a pending suggestion, or refuse it and change nothing.

    Only a clinician of the suggestion's organization may decide, and only with an electronic signature
    made now: their password (checked here, paused after repeated wrong ones), or a fresh step-up sign-in
    at the hospital's identity provider as this user (``StepUpSignature``). The suggestion row is locked, so of two clinicians deciding at once one wins
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
    if isinstance(signature, StepUpSignature):
        try:
            authentication = _step_up_checked(user=user, signature=signature)
        except StepUpRefused as exc:
            raise refuse(exc) from None
        subject = signature.subject
    else:
        signer_key = str(user.pk)
        if lockout_until(scope=Scope.SIGNATURE, key=signer_key):
            raise refuse(SignatureLocked("too many wrong signing passwords; signing is paused"))
        if not signature.password or not user.check_password(signature.password):
            lockout_failure_record(scope=Scope.SIGNATURE, key=signer_key, user=user, request_id=request_id)
            raise refuse(SignatureRefused("the password is not right"))
        lockout_reset(scope=Scope.SIGNATURE, key=signer_key)
        authentication = SignerAuthentication(method=Decision.SignatureMethod.PASSWORD, at=timezone.now())
        subject = ""
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
                suggestion=locked,
                user=user,
                sign_off=sign_off,
                authentication=authentication,
                subject=subject,
                request_id=request_id,
                deliver=deliver,
            )
    except IntegrityError:
        # Another decision got in between the check and the insert: the one-to-one refused this one.
        current = Suggestion.objects.select_related("organization").get(pk=suggestion.pk)
        if not Decision.objects.filter(suggestion_id=current.pk).exists():
            raise
        raise refuse(_already_decided(current)) from None
    except (AlreadyDecided, SignOffInvalid) as exc:
        raise refuse(exc) from None
