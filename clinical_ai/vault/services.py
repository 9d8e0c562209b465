"""Reading the pseudonym vault in the web app: pseudonym lookups by the EHR's own ids, and re-identification.

Only a process holding ``CLINICAL_AI_VAULT_PRIVATE_KEY`` (the web app) can open an entry, and only
``patient_reidentify`` does so for a person: for a clinician of the patient's organization, audited either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied

from clinical_ai.accounts.models import Membership, Organization, Role
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.deid.models import PseudonymVaultEntry
from clinical_ai.vault.crypto import open_with, private_key_from_text
from clinical_ai.vault.pseudonyms import (
    INDEX_KINDS,
    PATIENT_MRN_INDEX_KIND,
    PATIENT_NAME_INDEX_KIND,
    PATIENT_REFERENCE_INDEX_KIND,
    date_shift_days,
    name_tokens,
    normalized_mrn,
    patient_mrn_index_key,
    patient_name_index_key,
    patient_pseudonym,
    patient_reference_index_key,
)

REIDENTIFY_ACTION = "deid.reidentify"
# What the review pages show of a patient (``clinical_ai.deid.engine.pipeline._header_records`` writes them).
HEADER_KINDS = (
    "patient_identity",
    "patient_reference",
    "patient_name",
    "patient_mrn",
    "birth_date",
    "administrative_sex",
    "ward",
    "bed",
    "room",
)


def pseudonym_key() -> bytes:
    return settings.PSEUDONYM_KEY.encode("utf-8")


def reference_index_key(*, organization: str, reference: str) -> str:
    """The blind index of the EHR's ``Patient/<id>`` in ``organization`` (its slug), with this site's key."""
    return patient_reference_index_key(key=pseudonym_key(), organization=organization, reference=reference)


def name_index_key(*, organization: str, token: str) -> str:
    """The blind index of one name token (``pseudonyms.name_tokens``) in ``organization``, with this key."""
    return patient_name_index_key(key=pseudonym_key(), organization=organization, token=token)


def mrn_index_key(*, organization: str, mrn: str) -> str:
    """The blind index of a medical record number in ``organization`` (its slug), with this site's key."""
    return patient_mrn_index_key(key=pseudonym_key(), organization=organization, mrn=mrn)


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
    ).exclude(kind__in=INDEX_KINDS)  # the same reference, name and MRN again, keyed for search
    for entry in entries.order_by("kind", "pk"):
        value = open_with(
            private, bytes(entry.sealed_original), associated_data=entry.associated_data
        ).decode("utf-8")
        originals.setdefault(entry.kind, []).append(value)
    return originals


def _clinician_sites(user: Any) -> dict[int, str]:
    """{organization id: slug} of the sites where ``user`` is a clinician (one query)."""
    if not (user.is_authenticated and user.is_active):
        return {}
    return dict(
        Membership.objects.filter(user=user, role=Role.CLINICIAN).values_list(
            "organization_id", "organization__slug"
        )
    )


def patients_reidentify(
    *,
    user: Any,
    patients: Mapping[str, Organization],
    purpose: str,
    request_id: str,
    kinds: tuple[str, ...] = HEADER_KINDS,
) -> dict[str, dict[str, list[str]]]:
    """Open the ``kinds`` entries of many patients (pseudonym -> their organization) at once, for a page
    that lists them: only those at a site where ``user`` is a clinician, where this process holds the
    private key. One audit row for all of them, naming the patients by pseudonym; a fixed number of
    queries whatever their number. Nothing is asked for, nothing is recorded."""
    if not patients:
        return {}
    allowed_sites = _clinician_sites(user) if settings.VAULT_PRIVATE_KEY else {}
    allowed = sorted(p for p, organization in patients.items() if organization.pk in allowed_sites)
    slugs = {organization.slug for organization in patients.values()}
    audit_record(
        actor=Actor.user(user.pk if user.is_authenticated else "-"),
        action=REIDENTIFY_ACTION,
        outcome="success" if allowed else "failure",
        object_type="Patient",
        organization=next(iter(slugs)) if len(slugs) == 1 else "",
        patient_pseudonym=allowed[0] if len(allowed) == 1 else "",
        request_id=request_id,
        detail={"purpose": purpose[:64], "patients": allowed, "refused": len(patients) - len(allowed)},
    )
    if not allowed:
        return {}
    private = private_key_from_text(settings.VAULT_PRIVATE_KEY)
    entries = PseudonymVaultEntry.objects.filter(
        organization_id__in=sorted({patients[p].pk for p in allowed}),
        patient_pseudonym__in=allowed,
        kind__in=[kind for kind in kinds if kind not in INDEX_KINDS],
    )
    found: dict[str, dict[str, list[str]]] = {}
    for entry in entries.order_by("patient_pseudonym", "kind", "pk"):
        if patients[entry.patient_pseudonym].pk != entry.organization_id:
            continue
        value = open_with(private, bytes(entry.sealed_original), associated_data=entry.associated_data)
        found.setdefault(entry.patient_pseudonym, {}).setdefault(entry.kind, []).append(value.decode("utf-8"))
    return found


def patient_pseudonyms_search(*, user: Any, text: str) -> set[str]:
    """The patients at ``user``'s clinician sites whose medical record number is ``text``, or whose name
    holds every word of it. Hashes what was typed with the index's key and looks the hashes up (two
    queries): neither the names nor the numbers are read or opened. Anyone else finds nobody."""
    sites = _clinician_sites(user)
    tokens = name_tokens(text)
    mrn = normalized_mrn(text)
    if not sites or not (tokens or mrn):
        return set()
    wanted: dict[str, tuple[int, str]] = {}  # index key -> (organization id, "mrn" or the token)
    for organization_id, slug in sites.items():
        for token in tokens:
            wanted[name_index_key(organization=slug, token=token)] = (organization_id, token)
        if mrn:
            wanted[mrn_index_key(organization=slug, mrn=mrn)] = (organization_id, "")
    hits = PseudonymVaultEntry.objects.filter(
        organization_id__in=sorted(sites),
        kind__in=[PATIENT_NAME_INDEX_KIND, PATIENT_MRN_INDEX_KIND],
        pseudonym__in=sorted(wanted),
    ).values_list("organization_id", "patient_pseudonym", "kind", "pseudonym")
    matched: dict[str, set[str]] = {}
    found: set[str] = set()
    for organization_id, patient, kind, key in hits:
        site, token = wanted[key]
        if site != organization_id:
            continue
        if kind == PATIENT_MRN_INDEX_KIND:
            found.add(patient)
        else:
            matched.setdefault(patient, set()).add(token)
    found.update(patient for patient, words in matched.items() if words >= set(tokens))
    return found


def patient_date_shift_days(*, patient_pseudonym: str) -> int:
    """The days this patient's dates are shifted by in the de-identified copy. For undoing the shift on a
    page shown to someone ``patient_reidentify`` (or ``patients_reidentify``) has just allowed, on record."""
    return date_shift_days(key=pseudonym_key(), pseudonym=patient_pseudonym)
