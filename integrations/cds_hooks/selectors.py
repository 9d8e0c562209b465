"""Reads for the CDS services: the issuer behind a JWT, the patient's suggestions, an ingest job's state."""

from __future__ import annotations

from collections.abc import Sequence

from django.conf import settings

from clinical_ai.inference.models import InferenceRun
from clinical_ai.intake.models import IngestJob
from clinical_ai.review.models import Decision, Suggestion
from clinical_ai.vault.pseudonyms import patient_identity, patient_pseudonym
from clinical_ai.vault.services import patient_pseudonyms_for_reference
from integrations.cds_hooks.models import CdsIssuer

SHOWN_STATUSES = (Suggestion.Status.PENDING, Suggestion.Status.ACCEPTED, Suggestion.Status.MODIFIED)


def issuer_by_iss(iss: str) -> CdsIssuer | None:
    return (
        CdsIssuer.objects.select_related("organization", "ehr_client", "feedback_user")
        .filter(iss=iss)
        .first()
    )


def patient_pseudonyms(*, issuer: CdsIssuer, patient_id: str, patient: dict[str, object] | None) -> list[str]:
    """Every pseudonym the EHR's ``Patient/<id>`` may have here (the reference itself, the blind index),
    plus the one its record's medical record number gives when the Patient resource is at hand."""
    organization = issuer.organization
    found = set(
        patient_pseudonyms_for_reference(
            organization_id=organization.pk,
            organization_slug=organization.slug,
            reference=f"Patient/{patient_id}",
        )
    )
    if patient is not None:
        found.add(
            patient_pseudonym(
                key=settings.PSEUDONYM_KEY.encode("utf-8"),
                organization=organization.slug,
                identity=patient_identity(patient, None),
            )
        )
    return sorted(found)


def patient_suggestions(
    *, organization_id: int, pseudonyms: Sequence[str], urgencies: Sequence[str], limit: int
) -> list[tuple[Suggestion, Decision | None]]:
    """The patient's pending and signed-off (accepted) suggestions, most urgent and newest first, each with
    its decision (None while pending)."""
    rows = list(
        Suggestion.objects.filter(
            organization_id=organization_id,
            patient_pseudonym__in=list(pseudonyms),
            status__in=SHOWN_STATUSES,
            urgency__in=list(urgencies),
        ).order_by("urgency_rank", "-created_at", "pk")[:limit]
    )
    decided = [row.pk for row in rows if row.status != Suggestion.Status.PENDING]
    decisions = (
        {d.suggestion_id: d for d in Decision.objects.filter(suggestion_id__in=decided)} if decided else {}
    )
    return [(row, decisions.get(row.pk)) for row in rows]


def ingest_job_settled(job_pk: int) -> bool:
    """Whether the job has been de-identified and every model run it queued has finished."""
    status = IngestJob.objects.filter(pk=job_pk).values_list("status", flat=True).first()
    if status not in (IngestJob.Status.SUCCEEDED, IngestJob.Status.FAILED):
        return False
    return not InferenceRun.objects.filter(
        ingest_job_id=job_pk, status__in=(InferenceRun.Status.QUEUED, InferenceRun.Status.RUNNING)
    ).exists()
