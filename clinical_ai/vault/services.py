"""Reading the pseudonym vault in the web app: pseudonym lookups by the EHR's own ids, and re-identification.

Only a process holding ``CLINICAL_AI_VAULT_PRIVATE_KEY`` (the web app) can open an entry, and only
``patient_reidentify`` does so for a person: for a clinician of the patient's organization, audited either way.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied

from clinical_ai.accounts.models import Membership, Organization, Role
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.deid.models import PseudonymVaultEntry
from clinical_ai.vault.crypto import open_with, private_key_from_text
from clinical_ai.vault.pseudonyms import (
    PATIENT_REFERENCE_INDEX_KIND,
    patient_pseudonym,
    patient_reference_index_key,
)

REIDENTIFY_ACTION = "deid.reidentify"


def pseudonym_key() -> bytes:
    return settings.PSEUDONYM_KEY.encode("utf-8")


def reference_index_key(*, organization: str, reference: str) -> str:
    """The blind index of the EHR's ``Patient/<id>`` in ``organization`` (its slug), with this site's key."""
    return patient_reference_index_key(key=pseudonym_key(), organization=organization, reference=reference)


def patient_pseudonyms_for_reference(
    *, organization_id: int, organization_slug: str, reference: str
) -> list[str]:
    """Every pseudonym the EHR's ``Patient/<id>`` may have here: the one computed from the reference itself
    (the patient was only ever referenced, or has no medical record number) and those the blind index
    knows (the pseudonym came from an MRN). One query; no vault entry is opened."""
    direct = patient_pseudonym(key=pseudonym_key(), organization=organization_slug, identity=reference)
    indexed = PseudonymVaultEntry.objects.filter(
        organization_id=organization_id,
        kind=PATIENT_REFERENCE_INDEX_KIND,
        pseudonym=reference_index_key(organization=organization_slug, reference=reference),
    ).values_list("patient_pseudonym", flat=True)
    return sorted({direct, *indexed})


def _may_reidentify(user: Any, organization: Organization) -> bool:
    return bool(
        user.is_authenticated
        and user.is_active
        and Membership.objects.filter(user=user, organization=organization, role=Role.CLINICIAN).exists()
    )


def patient_reidentify(
    *, user: Any, organization: Organization, patient_pseudonym: str, purpose: str, request_id: str
) -> dict[str, list[str]]:
    """Open the vault entries of one patient for a clinician of the patient's organization. Audited either
    way; refused (PermissionDenied) for anyone else, and where this process holds no private key."""
    allowed = _may_reidentify(user, organization) and bool(settings.VAULT_PRIVATE_KEY)
    audit_record(
        actor=Actor.user(user.pk if user.is_authenticated else "-"),
        action=REIDENTIFY_ACTION,
        outcome="success" if allowed else "failure",
        object_type="Patient",
        organization=organization.slug,
        patient_pseudonym=patient_pseudonym,
        request_id=request_id,
        detail={"purpose": purpose[:64]},
    )
    if not allowed:
        raise PermissionDenied("re-identification is not allowed for this user here")
    private = private_key_from_text(settings.VAULT_PRIVATE_KEY)
    originals: dict[str, list[str]] = {}
    entries = PseudonymVaultEntry.objects.filter(
        organization=organization, patient_pseudonym=patient_pseudonym
    ).exclude(kind=PATIENT_REFERENCE_INDEX_KIND)  # the same reference again, keyed for search
    for entry in entries.order_by("kind", "pk"):
        value = open_with(
            private, bytes(entry.sealed_original), associated_data=entry.associated_data
        ).decode("utf-8")
        originals.setdefault(entry.kind, []).append(value)
    return originals
