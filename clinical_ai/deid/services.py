"""The de-identification stage and the pseudonym vault.

Workers run ``ingest_job_deidentify``: they read the sealed raw entries, write the de-identified copy and
seal each pseudonym's original to the vault's public key. Only ``patient_reidentify`` opens the vault: it runs
in the web app, which alone holds the private key, for an authorized user, and is audited.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import Counter
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from django.conf import settings
from django.core.exceptions import PermissionDenied

from clinical_ai.accounts.models import Membership, Organization, Role
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.sealing import seal_json
from clinical_ai.deid.engine.fhirpath_values import FhirPathEvaluationError
from clinical_ai.deid.engine.methods import ProcessingError
from clinical_ai.deid.engine.pipeline import EntryInput, PipelineResult, deidentify_entries, patient_pseudonym
from clinical_ai.deid.engine.text.patient_terms import patient_identifiers_from_fhir
from clinical_ai.deid.models import DeidentifiedResource, PseudonymVaultEntry
from clinical_ai.deid.runtime import anonymizer, text_scrubber
from clinical_ai.deid.vault_crypto import open_with, private_key_from_text, public_key_from_text, seal_to
from clinical_ai.inference.services import inference_runs_create
from clinical_ai.intake.models import IngestJob
from clinical_ai.intake.services import OpenedEntry, PermanentJobError, StageOutcome

logger = logging.getLogger(__name__)


def deidentify_documents(entries: list[EntryInput], *, organization: str, config: str) -> PipelineResult:
    """The pure pipeline with this installation's keys and engines (also used by ``manage.py deidentify``)."""
    return deidentify_entries(
        entries,
        anonymizer=anonymizer(config),
        scrubber=text_scrubber(),
        identifiers_of=patient_identifiers_from_fhir,
        pseudonym_key=settings.PSEUDONYM_KEY.encode("utf-8"),
        organization=organization,
    )


def ingest_job_deidentify(job: IngestJob, entries: list[OpenedEntry], actor: Actor) -> StageOutcome:
    """Stage function for ``ingest_job_run``: compute the de-identified copy (outside any transaction),
    return the writes that store it with its vault entries and audit rows when the job finishes."""
    organization = job.organization
    config = settings.DEID_CONFIG
    inputs = [EntryInput(e.raw.entry_index, e.document.get("fullUrl"), e.resource) for e in entries]
    try:
        result = deidentify_documents(inputs, organization=organization.slug, config=config)
    except (ValueError, KeyError, TypeError, ProcessingError, FhirPathEvaluationError) as exc:
        # The engine's own errors on content it cannot process: retrying will not help.
        raise PermanentJobError(
            f"de-identification failed: {type(exc).__name__}", {"error": type(exc).__name__}
        ) from exc
    by_index = {e.raw.entry_index: e.raw for e in entries}
    # Seal everything here, before the finishing transaction: it then only inserts, and holds its locks
    # (the audit chain head among them) for as short a time as possible.
    rows = []
    for output in result.outputs:
        raw = by_index[output.index]
        row = DeidentifiedResource(
            job=job,
            raw_resource=raw,
            organization=organization,
            resource_type=raw.resource_type,
            patient_pseudonym=output.patient_pseudonym,
            config_name=config,
        )
        sealed = seal_json(output.resource, associated_data=row.associated_data)
        row.key_id, row.nonce, row.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
        rows.append(row)
    vault_key = public_key_from_text(settings.VAULT_PUBLIC_KEY)
    # One entry per (patient, kind, pseudonym): the engine reports a hash each time it makes it.
    originals = {
        (patient, kind[:64], pseudonym[:128]): original
        for patient, kind, pseudonym, original in result.vault_records
    }
    vault_rows = []
    for (patient, kind, pseudonym), original in originals.items():
        entry = PseudonymVaultEntry(
            organization=organization, patient_pseudonym=patient, kind=kind, pseudonym=pseudonym
        )
        entry.sealed_original = seal_to(
            vault_key, original.encode("utf-8"), associated_data=entry.associated_data
        )
        vault_rows.append(entry)
    vault_rows.extend(
        patient_reference_index_entries(organization=organization, originals=originals, vault_key=vault_key)
    )
    per_patient = Counter(o.patient_pseudonym for o in result.outputs)

    def writes() -> None:
        DeidentifiedResource.objects.bulk_create(rows, batch_size=500)
        PseudonymVaultEntry.objects.bulk_create(vault_rows, batch_size=500, ignore_conflicts=True)
        # The next stage's runs exist exactly when their inputs do; they are dispatched on commit.
        inference_runs_create(job=job, patient_pseudonyms=per_patient)
        for patient, count in sorted(per_patient.items()):
            audit_record(
                actor=actor,
                action="deid.resources.create",
                object_type="IngestJob",
                object_id=str(job.external_id),
                organization=organization.slug,
                patient_pseudonym=patient,
                request_id=job.request_id,
                detail={"resource_count": count, "config": config},
            )

    return StageOutcome(
        detail={
            "deidentified": len(result.outputs),
            "patients": len(result.patient_pseudonyms),
            "config": config,
        },
        writes=writes,
    )


# The blind index of the EHR's own patient references. A pseudonym made from a medical record number cannot
# be recomputed from the EHR's ``Patient/<id>``, and opening every vault entry to find one does not scale:
# beside each ``patient_reference`` entry the stage writes one of this kind whose ``pseudonym`` is a keyed
# HMAC of the reference. The web app computes the same HMAC from the id the EHR searches by and finds the
# patient's pseudonyms with one indexed query, without opening the vault.
PATIENT_REFERENCE_INDEX_KIND = "patient_reference_index"


def patient_reference_index_key(*, organization: str, reference: str) -> str:
    """The blind index of ``reference`` (``Patient/<id>``) in ``organization`` (its slug)."""
    message = f"ref|{organization}|{reference}".encode()
    return hmac.new(settings.PSEUDONYM_KEY.encode("utf-8"), message, hashlib.sha256).hexdigest()


def patient_reference_index_entries(
    *,
    organization: Organization,
    originals: Mapping[tuple[str, str, str], str],
    vault_key: X25519PublicKey,
) -> list[PseudonymVaultEntry]:
    """The index entries for the ``patient_reference`` originals of one job (keyed as in
    ``ingest_job_deidentify``: (patient pseudonym, kind, pseudonym) -> original). Sealed like any entry."""
    entries = []
    for (patient, kind, _), original in originals.items():
        if kind != "patient_reference":
            continue
        entry = PseudonymVaultEntry(
            organization=organization,
            patient_pseudonym=patient,
            kind=PATIENT_REFERENCE_INDEX_KIND,
            pseudonym=patient_reference_index_key(organization=organization.slug, reference=original),
        )
        entry.sealed_original = seal_to(
            vault_key, original.encode("utf-8"), associated_data=entry.associated_data
        )
        entries.append(entry)
    return entries


def patient_pseudonyms_for_reference(
    *, organization_id: int, organization_slug: str, reference: str
) -> list[str]:
    """Every pseudonym the EHR's ``Patient/<id>`` may have here: the one computed from the reference itself
    (the patient was only ever referenced, or has no medical record number) and those the blind index
    knows (the pseudonym came from an MRN). One query; no vault entry is opened."""
    direct = patient_pseudonym(
        key=settings.PSEUDONYM_KEY.encode("utf-8"), organization=organization_slug, identity=reference
    )
    indexed = PseudonymVaultEntry.objects.filter(
        organization_id=organization_id,
        kind=PATIENT_REFERENCE_INDEX_KIND,
        pseudonym=patient_reference_index_key(organization=organization_slug, reference=reference),
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
        action="deid.reidentify",
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
