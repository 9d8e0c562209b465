"""Reads for the EHR launch (SMART App Launch): registered issuers, the staff account a ``fhirUser`` names,
and the patient's suggestions at the issuer's site."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.db.models import Count

from clinical_ai.accounts.models import ExternalIdentity, Membership, Role
from clinical_ai.review.models import Suggestion
from integrations.smart.models import SmartLaunchIssuer

# The roles that may arrive from the EHR: the people who review suggestions. An administrator's work is
# configuration, not a patient's record, and has no business opening from inside one.
LAUNCH_ROLES = (Role.CLINICIAN, Role.AUDITOR)
# A relative FHIR reference such as "Practitioner/123" (type, then a FHIR id).
_REFERENCE = re.compile(r"^([A-Z][A-Za-z]{1,63})/([A-Za-z0-9\-.]{1,64})$")
_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def iss_normalized(iss: str) -> str:
    """How an ``iss`` is compared and stored: as given, without trailing slashes."""
    return iss.strip().rstrip("/")


def launch_issuer_find(*, iss: str) -> SmartLaunchIssuer | None:
    """The registered issuer for a launch's ``iss`` (enabled or not), or None."""
    if not iss or len(iss) > 500:
        return None
    return SmartLaunchIssuer.objects.select_related("organization").filter(iss=iss_normalized(iss)).first()


def launch_issuers_list() -> list[SmartLaunchIssuer]:
    return list(SmartLaunchIssuer.objects.select_related("organization").order_by("iss"))


def staff_reference(*, value: Any, iss: str) -> str:
    """The relative form (``Practitioner/123``) of a ``fhirUser`` claim, absolute under ``iss`` or already
    relative; "" when it is neither (another server's URL, not a FHIR reference)."""
    if not isinstance(value, str) or len(value) > 600:
        return ""
    text = value.strip()
    base = iss_normalized(iss) + "/"
    if text.startswith(base):
        text = text[len(base) :]
    return text if _REFERENCE.match(text) else ""


def patient_id_valid(value: Any) -> str:
    """The token answer's ``patient`` when it is a FHIR id; "" otherwise."""
    return value if isinstance(value, str) and _FHIR_ID.match(value) else ""


def launch_staff_account(*, issuer: SmartLaunchIssuer, reference: str) -> Any | None:
    """The active staff account linked to ``reference`` for this EHR (ExternalIdentity issuer = the
    registered ``iss``), or None."""
    identity = (
        ExternalIdentity.objects.select_related("user")
        .filter(issuer=issuer.iss, subject=reference, user__is_active=True)
        .first()
    )
    return identity.user if identity is not None else None


def launch_role_held(*, user: Any, issuer: SmartLaunchIssuer) -> bool:
    """Whether ``user`` reviews at the issuer's site (clinician or auditor there)."""
    return Membership.objects.filter(
        user=user, organization_id=issuer.organization_id, role__in=LAUNCH_ROLES
    ).exists()


@dataclass(frozen=True)
class PatientInContext:
    pseudonym: str  # the one the review page is filtered by
    pending: int  # suggestions of that pseudonym waiting for review


def patient_in_context(*, organization_id: int, pseudonyms: list[str]) -> PatientInContext:
    """Of the pseudonyms the EHR's patient may have here, the one with the most suggestions waiting (then
    the most suggestions at all): a patient first known by reference and later by MRN has two."""
    rows = (
        Suggestion.objects.filter(organization_id=organization_id, patient_pseudonym__in=pseudonyms)
        .values_list("patient_pseudonym", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    pending: dict[str, int] = {}
    total: dict[str, int] = {}
    for pseudonym, status, n in rows:
        total[pseudonym] = total.get(pseudonym, 0) + n
        if status == Suggestion.Status.PENDING:
            pending[pseudonym] = pending.get(pseudonym, 0) + n
    chosen = max(pseudonyms, key=lambda p: (pending.get(p, 0), total.get(p, 0), p == pseudonyms[0]))
    return PatientInContext(pseudonym=chosen, pending=pending.get(chosen, 0))


def launch_suggestion(*, external_id: UUID, organization_id: int, pseudonyms: list[str]) -> Suggestion | None:
    """The suggestion an ``appContext`` names, if it is the issuer's site's and the patient's in context."""
    return Suggestion.objects.filter(
        external_id=external_id, organization_id=organization_id, patient_pseudonym__in=pseudonyms
    ).first()
