"""The review pages' reads, on record: the queue, a suggestion with its patient, the sealed payloads.

Web process only. A clinician of the patient's site sees the patient re-identified through the vault
(``clinical_ai.vault``, audited); everyone else sees the pseudonym. Signing a decision is ``signoff``;
creating suggestions (inference workers) is ``creation``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import tzinfo
from typing import Any

from django.core.exceptions import PermissionDenied
from django.utils import timezone

from clinical_ai.audit.models import Outcome
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.sealing import open_json
from clinical_ai.review.models import OutputResource, Suggestion
from clinical_ai.review.selectors.access import ReviewAccess
from clinical_ai.review.selectors.patient import PatientHeader, patient_header
from clinical_ai.review.selectors.queue import QueueFilters, QueuePage, queue_fingerprint, review_queue
from clinical_ai.review.selectors.suggestion import SuggestionReview, suggestion_review
from clinical_ai.review.times import TimeLens
from clinical_ai.vault.services import (
    patient_date_shift_days,
    patient_pseudonyms_search,
    patient_reidentify,
    patients_reidentify,
)


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
QUEUE_REIDENTIFY_PURPOSE = "review-queue"


@dataclass(frozen=True)
class ReviewPage:
    patient: PatientHeader
    review: SuggestionReview
    may_decide: bool
    zone: tzinfo  # the site's: the page's times are shown in it
    real_times: bool = False  # the patient's dates are shown unshifted (else labelled as shifted)


def review_queue_view(
    *,
    user: Any,
    access: ReviewAccess,
    filters: QueueFilters,
    page_number: Any,
    request_id: str,
    seen: str = "",
) -> QueuePage | None:
    """A page of the queue, on record (which filters were used, never their values). A clinician sees
    the patients of their own sites re-identified (one ``deid.reidentify`` row for the page, naming them
    by pseudonym) and may find them by name or MRN; everyone else sees pseudonyms and filters by them.
    ``seen``: the fingerprint of the page the browser holds (its refresh); None when it is still the same."""
    if filters.patient and access.decide:
        filters = replace(
            filters, patients_found=frozenset(patient_pseudonyms_search(user=user, text=filters.patient))
        )
    page = review_queue(access=access, filters=filters, page_number=page_number)
    if seen and seen == queue_fingerprint(page):
        return None  # a refresh of a page that has not changed: nothing new is shown, nothing opened
    page = _queue_patients(user=user, access=access, page=page, request_id=request_id)
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


def _queue_patients(*, user: Any, access: ReviewAccess, page: QueuePage, request_id: str) -> QueuePage:
    """The page's rows with their patients: re-identified at the viewer's clinician sites, in one vault
    call (a fixed number of queries, one audit row), the pseudonym elsewhere."""
    patients = {
        row.suggestion.patient_pseudonym: row.suggestion.organization
        for row in page.rows
        if access.may_decide(row.suggestion.organization_id) and row.suggestion.patient_pseudonym
    }
    opened = patients_reidentify(
        user=user, patients=patients, purpose=QUEUE_REIDENTIFY_PURPOSE, request_id=request_id
    )
    now = timezone.now()
    rows = [
        replace(
            row,
            patient=patient_header(
                row.suggestion.patient_pseudonym,
                opened.get(row.suggestion.patient_pseudonym, {}),
                now.astimezone(row.suggestion.organization.zone).date(),
            ),
        )
        for row in page.rows
    ]
    return replace(page, rows=rows)


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


def _patient_header(
    *, user: Any, suggestion: Suggestion, may_decide: bool, request_id: str
) -> tuple[PatientHeader, bool]:
    """The patient's header, and whether the viewer was allowed to re-identify them (on record)."""
    if not may_decide:
        return PatientHeader(pseudonym=suggestion.patient_pseudonym), False
    try:
        originals = patient_reidentify(
            user=user,
            organization=suggestion.organization,
            patient_pseudonym=suggestion.patient_pseudonym,
            purpose=REIDENTIFY_PURPOSE,
            request_id=request_id,
        )
    except PermissionDenied:  # no vault key in this process: the refusal is on record already
        return PatientHeader(pseudonym=suggestion.patient_pseudonym), False
    today = timezone.now().astimezone(suggestion.organization.zone).date()
    return patient_header(suggestion.patient_pseudonym, originals, today), True


def suggestion_review_open(
    *, user: Any, access: ReviewAccess, suggestion: Suggestion, request_id: str
) -> ReviewPage:
    """A suggestion as a reviewer sees it, on record: a clinician of its site gets the patient
    re-identified (audited as ``deid.reidentify``, purpose "review"); auditors and admins the pseudonym."""
    may_decide = access.may_decide(suggestion.organization_id)
    patient, reidentified = _patient_header(
        user=user, suggestion=suggestion, may_decide=may_decide, request_id=request_id
    )
    # The patient's real dates for the viewer the vault has just allowed (on record); shifted, and said
    # to be, for anyone else.
    zone = suggestion.organization.zone
    times = TimeLens(
        zone=zone,
        now=timezone.now(),
        shift_days=patient_date_shift_days(patient_pseudonym=suggestion.patient_pseudonym)
        if reidentified
        else None,
    )
    review = suggestion_review(suggestion, with_comment=may_decide, times=times)
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
    return ReviewPage(patient=patient, review=review, may_decide=may_decide, zone=zone, real_times=times.real)
