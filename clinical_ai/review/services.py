"""Suggestions: created from a model run (pending review), and later decided by a named clinician.

Creation runs inside the inference run's finishing transaction. A risk finding supersedes the patient's
older pending one from the same model (the queue shows the current score); a problem the clinician has
already seen for this patient (pending, accepted or rejected) is not proposed again.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from clinical_ai.accounts.lockout import Scope, lockout_failure_record, lockout_reset, lockout_until
from clinical_ai.accounts.models import Membership, Role
from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.sealing import canonical_json, open_json, seal_json
from clinical_ai.inference.engine.manifest import ModelManifest
from clinical_ai.inference.engine.types import URGENCY_ORDER, Finding, ModelResult
from clinical_ai.review.fhir_decision import (
    ConditionEdit,
    DecisionResourceError,
    DecisionSpec,
    Verifier,
    decision_resources,
)
from clinical_ai.review.models import Decision, OutputResource, Suggestion
from clinical_ai.review.selectors import (
    QueueFilters,
    QueuePage,
    ReviewAccess,
    SuggestionReview,
    review_queue,
    suggestion_review,
)
from integrations.fhir.push import push_jobs_create
from integrations.fhir.validation_resource import validate_resource

_SEEN_STATUSES = (
    Suggestion.Status.PENDING,
    Suggestion.Status.ACCEPTED,
    Suggestion.Status.MODIFIED,
    Suggestion.Status.REJECTED,
)


@dataclass(frozen=True)
class SuggestionPlan:
    """Which findings of a result become suggestions (``result`` keeps only those), with their new ids."""

    result: ModelResult
    ids_by_key: dict[str, str]
    supersedes: list[int]  # pks of older pending suggestions to mark superseded
    repeated: list[str]  # finding keys left out because the clinician has already seen them


def suggestions_plan(*, run: Any, manifest: ModelManifest, result: ModelResult) -> SuggestionPlan:
    keys = [finding.key for finding in result.findings]
    earlier = Suggestion.objects.filter(
        organization_id=run.organization_id,
        patient_pseudonym=run.patient_pseudonym,
        model_id=manifest.id,
        finding_key__in=keys,
        status__in=_SEEN_STATUSES,
    ).exclude(run_id=run.pk)
    earlier_by_key: dict[str, list[tuple[int, str]]] = {}
    for pk, key, status in earlier.values_list("pk", "finding_key", "status"):
        earlier_by_key.setdefault(key, []).append((pk, status))
    kept: list[Finding] = []
    supersedes: list[int] = []
    repeated: list[str] = []
    for finding in result.findings:
        previous = earlier_by_key.get(finding.key, [])
        if finding.kind == "risk":
            supersedes.extend(pk for pk, status in previous if status == Suggestion.Status.PENDING)
            kept.append(finding)
        elif previous:
            repeated.append(finding.key)
        else:
            kept.append(finding)
    return SuggestionPlan(
        result=replace(result, findings=tuple(kept)),
        ids_by_key={finding.key: str(uuid.uuid4()) for finding in kept},
        supersedes=supersedes,
        repeated=repeated,
    )


def suggestions_create(
    *,
    run: Any,
    manifest: ModelManifest,
    plan: SuggestionPlan,
    resources_by_key: Mapping[str, Sequence[Mapping[str, Any]]],
) -> list[Suggestion]:
    """Store the planned suggestions, sealed, and supersede the older pending ones. Inside the run's
    finishing transaction; idempotent per (run, finding key)."""
    rows: list[Suggestion] = []
    for finding in plan.result.findings:
        row = Suggestion(
            external_id=uuid.UUID(plan.ids_by_key[finding.key]),
            run=run,
            organization_id=run.organization_id,
            patient_pseudonym=run.patient_pseudonym,
            model_id=manifest.id,
            model_version=manifest.version,
            finding_key=finding.key[:128],
            kind=finding.kind,
            urgency=finding.urgency,
            urgency_rank=URGENCY_ORDER.get(finding.urgency, len(URGENCY_ORDER)),
            score=finding.score,
        )
        payload = {
            "summary": finding.summary[:140],
            "evidence": dict(finding.evidence),
            "proposal": dict(finding.proposal) if finding.proposal is not None else None,
            "risk": dict(finding.risk) if finding.risk is not None else None,
            "resources": [dict(r) for r in resources_by_key.get(finding.key, [])],
            "model": {"id": manifest.id, "version": manifest.version, "name": manifest.name},
        }
        sealed = seal_json(payload, associated_data=row.associated_data)
        row.key_id, row.nonce, row.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
        rows.append(row)
    Suggestion.objects.bulk_create(rows, ignore_conflicts=True)
    # ignore_conflicts leaves the objects without primary keys: read back what the table holds.
    rows = list(Suggestion.objects.filter(run=run, finding_key__in=[r.finding_key for r in rows]))
    for row in rows:
        output_resources_put(
            organization_id=run.organization_id,
            patient_pseudonym=run.patient_pseudonym,
            resources=resources_by_key.get(row.finding_key, []),
            suggestion=row,
            run=run,
        )
    if plan.supersedes:
        Suggestion.objects.filter(pk__in=plan.supersedes, status=Suggestion.Status.PENDING).update(
            status=Suggestion.Status.SUPERSEDED
        )
    return rows


def suggestion_payload(suggestion: Suggestion) -> dict[str, Any]:
    """The sealed part of a suggestion: summary, evidence, proposal, risk, FHIR resources, model."""
    payload: dict[str, Any] = open_json(suggestion.sealed, associated_data=suggestion.associated_data)
    return payload


def output_resources_put(
    *,
    organization_id: int,
    patient_pseudonym: str,
    resources: Sequence[Mapping[str, Any]],
    suggestion: Suggestion | None = None,
    run: Any = None,
    replace_existing: bool = True,
) -> list[OutputResource]:
    """Store (or replace, bumping the version) the FHIR resources served to the EHR. Inside the caller's
    transaction. Each body gets ``meta.versionId`` and ``meta.lastUpdated`` to match the row."""
    now = timezone.now()
    stored: list[OutputResource] = []
    for resource in resources:
        resource_type, resource_id = str(resource["resourceType"]), str(resource["id"])
        row = (
            OutputResource.objects.select_for_update()
            .filter(organization_id=organization_id, resource_type=resource_type, resource_id=resource_id)
            .first()
        )
        if row is None:
            row = OutputResource(
                organization_id=organization_id,
                resource_type=resource_type,
                resource_id=resource_id,
                version=1,
            )
        elif not replace_existing:
            continue  # e.g. the model's Device: the same for every run of the version
        else:
            row.version += 1
        body = dict(resource)
        body["meta"] = {
            **dict(body.get("meta") or {}),
            "versionId": str(row.version),
            "lastUpdated": now.isoformat(),
        }
        row.patient_pseudonym = patient_pseudonym
        row.status = str(body.get("status", ""))[:32]
        row.suggestion = suggestion if suggestion is not None else row.suggestion
        row.run = run if run is not None else row.run
        row.last_updated = now
        sealed = seal_json(body, associated_data=row.associated_data)
        row.key_id, row.nonce, row.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
        row.save()
        stored.append(row)
    return stored


def output_resource_body(row: OutputResource) -> dict[str, Any]:
    body: dict[str, Any] = open_json(row.sealed, associated_data=row.associated_data)
    return body


# --- review: opening a suggestion and signing a decision ------------------------------------------

QUEUE_VIEW_ACTION = "review.queue.view"
SUGGESTION_VIEW_ACTION = "review.suggestion.view"
SIGN_ACTION = "review.decision.sign"
REIDENTIFY_PURPOSE = "review"
_PROVENANCE_KEY_SALT = b"clinical-ai:review:provenance-signature:v1"


@dataclass(frozen=True)
class PatientHeader:
    """Who the patient is, as the review page shows it: re-identified for a clinician of the patient's
    site, the pseudonym for everyone else (and where the vault holds nothing for this patient)."""

    pseudonym: str
    reidentified: bool = False
    name: str = ""
    birth_date: str = ""
    reference: str = ""  # the EHR's Patient id or medical record number


@dataclass(frozen=True)
class ReviewPage:
    patient: PatientHeader
    review: SuggestionReview
    may_decide: bool


def review_queue_view(
    *, user: Any, access: ReviewAccess, filters: QueueFilters, page_number: Any, request_id: str
) -> QueuePage:
    """A page of the queue, on record (which filters were used, never their values)."""
    page = review_queue(access=access, filters=filters, page_number=page_number)
    audit_record(
        actor=Actor.user(user.pk),
        action=QUEUE_VIEW_ACTION,
        object_type="Suggestion",
        request_id=request_id,
        detail={
            "filters": filters.used(),
            "status": filters.status,
            "page": page.page.number,
            "shown": len(page.rows),
        },
    )
    return page


def review_queue_refused(*, user: Any, request_id: str) -> None:
    """On record: someone without a role at any site asked for the queue (403)."""
    audit_record(
        actor=Actor.user(user.pk),
        action=QUEUE_VIEW_ACTION,
        outcome=Outcome.FAILURE,
        object_type="Suggestion",
        request_id=request_id,
        detail={"status": 403},
    )


def _patient_header(*, user: Any, suggestion: Suggestion, may_decide: bool, request_id: str) -> PatientHeader:
    if not may_decide:
        return PatientHeader(pseudonym=suggestion.patient_pseudonym)
    # deid.services imports the inference stage, which imports this module: imported on use.
    from clinical_ai.deid.services import patient_reidentify

    try:
        originals = patient_reidentify(
            user=user,
            organization=suggestion.organization,
            patient_pseudonym=suggestion.patient_pseudonym,
            purpose=REIDENTIFY_PURPOSE,
            request_id=request_id,
        )
    except PermissionDenied:  # no vault key in this process: the refusal is on record already
        return PatientHeader(pseudonym=suggestion.patient_pseudonym)

    def first(kind: str) -> str:
        return next(iter(originals.get(kind, [])), "")

    reference = first("patient_reference") or first("patient_identity")
    return PatientHeader(
        pseudonym=suggestion.patient_pseudonym,
        reidentified=bool(originals),
        name=first("patient_name"),
        birth_date=first("birth_date"),
        reference=reference,
    )


def suggestion_review_open(
    *, user: Any, access: ReviewAccess, suggestion: Suggestion, request_id: str
) -> ReviewPage:
    """A suggestion as a reviewer sees it, on record: a clinician of its site gets the patient
    re-identified (audited as ``deid.reidentify``, purpose "review"); auditors and admins the pseudonym."""
    may_decide = access.may_decide(suggestion.organization_id)
    patient = _patient_header(user=user, suggestion=suggestion, may_decide=may_decide, request_id=request_id)
    review = suggestion_review(suggestion, with_comment=may_decide)
    audit_record(
        actor=Actor.user(user.pk),
        action=SUGGESTION_VIEW_ACTION,
        object_type="Suggestion",
        object_id=str(suggestion.external_id),
        organization=suggestion.organization.slug,
        patient_pseudonym=suggestion.patient_pseudonym,
        request_id=request_id,
        detail={
            "model": suggestion.model_id,
            "version": suggestion.model_version,
            "status": suggestion.status,
            "reidentified": patient.reidentified,
        },
    )
    return ReviewPage(patient=patient, review=review, may_decide=may_decide)


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

    def __init__(self, *, status: str, by: str = "", at: datetime | None = None) -> None:
        self.status, self.by, self.at = status, by, at
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
    return AlreadyDecided(status=suggestion.status, by=decision.clinician_display, at=decision.signed_at)


def _decision_write(*, suggestion: Suggestion, user: Any, sign_off: SignOff, request_id: str) -> Decision:
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
    push_jobs_create(
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


def decision_record(*, suggestion: Suggestion, user: Any, sign_off: SignOff, request_id: str) -> Decision:
    """Write a decision for a channel that authenticated the person itself (CDS Hooks feedback, attested by
    the EHR's signed JWT rather than a password here). The caller holds ``suggestion`` locked, checked it is
    pending, and is inside the transaction: the same Decision, resources, Provenance and audit row as a
    sign-off in the review UI."""
    return _decision_write(suggestion=suggestion, user=user, sign_off=sign_off, request_id=request_id)


def suggestion_sign_off(
    *, suggestion: Suggestion, user: Any, password: str, sign_off: SignOff, request_id: str
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
            return _decision_write(suggestion=locked, user=user, sign_off=sign_off, request_id=request_id)
    except IntegrityError:
        # Another decision got in between the check and the insert: the one-to-one refused this one.
        current = Suggestion.objects.select_related("organization").get(pk=suggestion.pk)
        if not Decision.objects.filter(suggestion_id=current.pk).exists():
            raise
        raise refuse(_already_decided(current)) from None
    except (AlreadyDecided, SignOffInvalid) as exc:
        raise refuse(exc) from None
