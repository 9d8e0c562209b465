"""The de-identification stage (workers).

``ingest_job_deidentify`` reads a job's sealed raw entries, computes the de-identified copy and seals each
pseudonym's original to the vault's public key: workers can write the vault, never read it. Reading it is
the web app's (``clinical_ai.vault``). What follows this stage is not its business: ``clinical_ai.pipeline``
adds the next stage's rows to the same transaction.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import date
from typing import Any

from django.conf import settings

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.core.rows import rows_insert
from clinical_ai.core.sealing import seal_json
from clinical_ai.deid.engine.fhirpath_values import FhirPathEvaluationError
from clinical_ai.deid.engine.methods import ProcessingError
from clinical_ai.deid.engine.pipeline import EntryInput, PipelineResult, deidentify_entries
from clinical_ai.deid.engine.text.patient_terms import patient_identifiers_from_fhir
from clinical_ai.deid.models import DeidentifiedResource, PseudonymVaultEntry
from clinical_ai.deid.runtime import anonymizer, text_scrubber
from clinical_ai.fhir.references import (
    ConditionalReferences,
    conditional_references_in,
    conditional_references_resolve,
    identifier_key,
)
from clinical_ai.intake.models import HeldIdentifier, IngestJob
from clinical_ai.intake.services import OpenedEntry, PermanentJobError, StageOutcome
from clinical_ai.vault.crypto import VaultSealer, public_key_from_text
from clinical_ai.vault.pseudonyms import (
    PATIENT_MRN_INDEX_KIND,
    PATIENT_NAME_INDEX_KIND,
    PATIENT_REFERENCE_INDEX_KIND,
    name_tokens,
)
from clinical_ai.vault.services import mrn_index_key, name_index_key, reference_index_key

logger = logging.getLogger(__name__)


def deidentify_documents(
    entries: list[EntryInput], *, organization: str, config: str, reference_date: date | None = None
) -> PipelineResult:
    """The pure pipeline with this installation's keys and engines (also used by ``manage.py deidentify``).

    ``reference_date``: the day rules that depend on today (ages over 89) count from; today when None."""
    return deidentify_entries(
        entries,
        anonymizer=anonymizer(config, reference_date),
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
    references = conditional_references_settle(organization, entries)
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
            # Ids rather than instances: the relation setters cost more than the rest of the row here.
            job_id=job.pk,
            raw_resource_id=raw.pk,
            organization_id=organization.pk,
            resource_type=raw.resource_type,
            patient_pseudonym=output.patient_pseudonym,
            config_name=config,
        )
        sealed = seal_json(output.resource, associated_data=row.associated_data)
        row.key_id, row.nonce, row.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
        rows.append(row)
    # One ephemeral key pair for all of this job's vault values (see VaultSealer).
    sealer = VaultSealer(public_key_from_text(settings.VAULT_PUBLIC_KEY))
    # One entry per (patient, kind, pseudonym): the engine reports a hash each time it makes it.
    originals = {
        (patient, kind[:64], pseudonym[:128]): original
        for patient, kind, pseudonym, original in result.vault_records
    }
    vault_rows = []
    for (patient, kind, pseudonym), original in originals.items():
        entry = PseudonymVaultEntry(
            organization_id=organization.pk, patient_pseudonym=patient, kind=kind, pseudonym=pseudonym
        )
        entry.sealed_original = sealer.seal(original.encode("utf-8"), associated_data=entry.associated_data)
        vault_rows.append(entry)
    vault_rows.extend(
        patient_reference_index_entries(organization=organization, originals=originals, sealer=sealer)
    )
    vault_rows.extend(
        patient_search_index_entries(organization=organization, originals=originals, sealer=sealer)
    )
    per_patient = Counter(o.patient_pseudonym for o in result.outputs)

    def writes() -> None:
        rows_insert(DeidentifiedResource, rows)
        rows_insert(PseudonymVaultEntry, vault_rows, ignore_conflicts=True)
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
            # Audit detail is flat (scalars only): one key per count.
            "conditional_references_resolved": references.resolved,
            "conditional_references_kept": references.kept,
            "conditional_references_unreadable": references.unreadable,
        },
        writes=writes,
        patients=dict(per_patient),
    )


IdentifierTriple = tuple[str, str, str]  # (resource type, identifier system, identifier value)


def _identifiers_of(resource: Mapping[str, Any]) -> list[IdentifierTriple]:
    identifiers = resource.get("identifier")
    resource_type = resource.get("resourceType")
    if not isinstance(identifiers, list) or not isinstance(resource_type, str):
        return []
    return [
        (resource_type, str(item.get("system") or ""), item["value"])
        for item in identifiers
        if isinstance(item, Mapping)
        and isinstance(item.get("value"), str)
        and item["value"]
        and isinstance(item.get("system", ""), str)
    ]


def conditional_reference_lookup(
    organization: Organization, entries: list[OpenedEntry]
) -> Callable[[str, str, str], str | None]:
    """The lookup ``conditional_references_resolve`` asks: the id of the one resource with that identifier,
    first among the job's own entries (a Practitioner sent in the same Bundle), then among the resources the
    organization holds (``intake.HeldIdentifier``, kept by bulk intake, by keyed digest), in one query for the
    whole job. Several matches in the same place are ambiguous: None, and the reference stays an identifier
    reference rather than a guess."""
    own: dict[IdentifierTriple, set[str]] = {}
    wanted: set[IdentifierTriple] = set()
    for entry in entries:
        resource = entry.resource
        wanted |= conditional_references_in(resource)
        if isinstance(resource.get("id"), str) and resource["id"]:
            for triple in _identifiers_of(resource):
                own.setdefault(triple, set()).add(resource["id"])
    unresolved = [triple for triple in wanted if triple not in own]
    held: dict[IdentifierTriple, set[str]] = {}
    if unresolved:
        key = settings.PSEUDONYM_KEY.encode("utf-8")
        by_digest: dict[tuple[str, str], IdentifierTriple] = {}
        for resource_type, system, value in unresolved:
            digest = identifier_key(
                key=key,
                organization=organization.slug,
                resource_type=resource_type,
                system=system,
                value=value,
            )
            by_digest[(resource_type, digest)] = (resource_type, system, value)
        rows = HeldIdentifier.objects.filter(
            organization=organization,
            resource_type__in={t for t, _ in by_digest},
            identifier_sha256__in={digest for _, digest in by_digest},
        ).values_list("resource_type", "identifier_sha256", "held__resource_id")
        for resource_type, digest, resource_id in rows:
            found = by_digest.get((resource_type, digest))
            if found is not None:
                held.setdefault(found, set()).add(resource_id)

    def lookup(resource_type: str, system: str, value: str) -> str | None:
        triple = (resource_type, system, value)
        matches = own.get(triple) or held.get(triple) or set()
        return next(iter(matches)) if len(matches) == 1 else None

    return lookup


def conditional_references_settle(
    organization: Organization, entries: list[OpenedEntry]
) -> ConditionalReferences:
    """Resolve the job's conditional references (``Practitioner?identifier=system|value``) in place, before
    de-identification: to ``Type/id`` where the job or the organization holds exactly one match, else to a
    logical identifier reference. A patient is never failed because of them."""
    lookup = conditional_reference_lookup(organization, entries)
    counts = ConditionalReferences()
    for entry in entries:
        counts += conditional_references_resolve(entry.resource, lookup)
    return counts


def patient_reference_index_entries(
    *,
    organization: Organization,
    originals: Mapping[tuple[str, str, str], str],
    sealer: VaultSealer,
) -> list[PseudonymVaultEntry]:
    """The index entries for the ``patient_reference`` originals of one job (keyed as in
    ``ingest_job_deidentify``: (patient pseudonym, kind, pseudonym) -> original). Sealed like any entry."""
    entries = []
    for (patient, kind, _), original in originals.items():
        if kind != "patient_reference":
            continue
        entry = PseudonymVaultEntry(
            organization_id=organization.pk,
            patient_pseudonym=patient,
            kind=PATIENT_REFERENCE_INDEX_KIND,
            pseudonym=reference_index_key(organization=organization.slug, reference=original),
        )
        entry.sealed_original = sealer.seal(original.encode("utf-8"), associated_data=entry.associated_data)
        entries.append(entry)
    return entries


def patient_search_index_entries(
    *,
    organization: Organization,
    originals: Mapping[tuple[str, str, str], str],
    sealer: VaultSealer,
) -> list[PseudonymVaultEntry]:
    """The entries a clinician's search by name or medical record number finds the patient by: one per
    token of the ``patient_name`` original and one for the ``patient_mrn`` original, each keyed by a keyed
    HMAC (``clinical_ai.vault.pseudonyms``); what they stand for is sealed like any entry, never stored
    in the clear."""
    entries = []
    for (patient, kind, _), original in originals.items():
        keyed: list[tuple[str, str, str]] = []
        if kind == "patient_name":
            keyed = [
                (PATIENT_NAME_INDEX_KIND, name_index_key(organization=organization.slug, token=token), token)
                for token in name_tokens(original)
            ]
        elif kind == "patient_mrn":
            keyed = [
                (
                    PATIENT_MRN_INDEX_KIND,
                    mrn_index_key(organization=organization.slug, mrn=original),
                    original,
                )
            ]
        for index_kind, index_key, value in keyed:
            entry = PseudonymVaultEntry(
                organization_id=organization.pk,
                patient_pseudonym=patient,
                kind=index_kind,
                pseudonym=index_key,
            )
            entry.sealed_original = sealer.seal(value.encode("utf-8"), associated_data=entry.associated_data)
            entries.append(entry)
    return entries
