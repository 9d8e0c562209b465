"""The review pages' reads, on record: the queue, a suggestion with its patient, the sealed payloads.

Web process only. A clinician of the patient's site sees the patient re-identified through the vault
(``clinical_ai.vault``, audited); everyone else sees the pseudonym. Signing a decision is ``signoff``;
creating suggestions (inference workers) is ``creation``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied

from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.sealing import open_json
from clinical_ai.review.models import OutputResource, Suggestion
from clinical_ai.review.selectors.access import ReviewAccess
from clinical_ai.review.selectors.queue import QueueFilters, QueuePage, review_queue
from clinical_ai.review.selectors.suggestion import SuggestionReview, suggestion_review
from clinical_ai.vault.services import patient_reidentify


def suggestion_payload(suggestion: Suggestion) -> dict[str, Any]:
    """The sealed part of a suggestion: summary, evidence, proposal, risk, FHIR resources, model."""
    payload: dict[str, Any] = open_json(suggestion.sealed, associated_data=suggestion.associated_data)
    return payload


def output_resource_body(row: OutputResource) -> dict[str, Any]:
    body: dict[str, Any] = open_json(row.sealed, associated_data=row.associated_data)
    return body


# --- review: opening a suggestion and signing a decision ------------------------------------------

QUEUE_VIEW_ACTION = "review.queue.view"
SUGGESTION_VIEW_ACTION = "review.suggestion.view"
REIDENTIFY_PURPOSE = "review"


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
