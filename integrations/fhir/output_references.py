"""Mapping the gateway's pseudonymous references back to the EHR's own ids, for what is served or pushed.

The stored outputs name the patient by pseudonym (``PSEUDONYM_SYSTEM``) and each cited record by the id of
its de-identified copy (``SOURCE_SYSTEM``). ``reference_maps_gather`` builds both maps for a page of
resources in two queries (the patient from the vault, opened with the private key only the web process
holds; each record from the sealed original it was received as); ``references_restore`` applies them.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from clinical_ai.core.sealing import open_json
from clinical_ai.deid.models import DeidentifiedResource, PseudonymVaultEntry
from clinical_ai.inference.engine.fhir_output import PSEUDONYM_SYSTEM, SOURCE_SYSTEM
from clinical_ai.vault.crypto import VaultOpenError, open_with, private_key_from_text

logger = logging.getLogger(__name__)


FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def _identifier_of(node: Mapping[str, Any], system: str) -> str | None:
    identifier = node.get("identifier")
    if "resourceType" in node or not isinstance(identifier, Mapping):
        return None
    value = identifier.get("value")
    return value if identifier.get("system") == system and isinstance(value, str) else None


def references_restore(
    resource: Mapping[str, Any],
    patient_refs: Mapping[str, Mapping[str, Any]],
    source_refs: Mapping[str, str],
) -> dict[str, Any]:
    """A copy of ``resource`` whose pseudonymous references point at the EHR's own records again.

    ``patient_refs``: pseudonym -> the Reference to serve instead (``{"reference": "Patient/123", ...}``);
    keyed by pseudonym so that a reference is only ever rewritten to the patient it names.
    ``source_refs``: de-identified row id -> ``"<Type>/<EHR id>"``. A reference with no entry in its map
    is kept as it is. Works anywhere in the tree, contained resources included.
    """

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(item) for item in node]
        if not isinstance(node, Mapping):
            return node
        pseudonym = _identifier_of(node, PSEUDONYM_SYSTEM)
        if pseudonym is not None and pseudonym in patient_refs:
            restored = dict(patient_refs[pseudonym])
            if isinstance(node.get("display"), str):
                restored["display"] = node["display"]
            return restored
        source = _identifier_of(node, SOURCE_SYSTEM)
        if source is not None and source in source_refs:
            target = source_refs[source]
            restored = {"reference": target, "type": target.split("/", 1)[0]}
            if isinstance(node.get("display"), str):
                restored["display"] = node["display"]
            return restored
        return {key: walk(value) for key, value in node.items()}

    result: dict[str, Any] = walk(resource)
    return result


def _identifier_values(node: Any, system: str) -> Iterator[str]:
    if isinstance(node, list):
        for item in node:
            yield from _identifier_values(item, system)
    elif isinstance(node, Mapping):
        value = _identifier_of(node, system)
        if value is not None:
            yield value
        for child in node.values():
            yield from _identifier_values(child, system)


def patient_reference_from_vault(kind: str, original: str) -> dict[str, Any] | None:
    """The Reference to serve for one opened vault entry (``patient_reference`` or ``patient_identity``)."""
    if original.startswith("Patient/") and FHIR_ID.match(original.removeprefix("Patient/")):
        return {"reference": original, "type": "Patient"}
    if kind == "patient_identity" and original.startswith("identifier:"):
        system, _, value = original.removeprefix("identifier:").partition("|")
        identifier = {"system": system, "value": value} if system else {"value": value}
        return {"type": "Patient", "identifier": identifier}
    return None  # a fullUrl identity: nothing the EHR can resolve


@dataclass(frozen=True)
class ReferenceMaps:
    patients: dict[str, dict[str, Any]]  # pseudonym -> Reference
    sources: dict[str, str]  # de-identified row external id -> "Type/id"
    opened: tuple[str, ...]  # the pseudonyms whose vault entries were opened (for the audit row)


def _original_reference(resource_type: str, document: Mapping[str, Any]) -> str | None:
    resource = document.get("resource")
    resource_id = resource.get("id") if isinstance(resource, Mapping) else None
    if not isinstance(resource_id, str):
        request = document.get("request")
        url = request.get("url") if isinstance(request, Mapping) else None
        method = request.get("method") if isinstance(request, Mapping) else None
        if method == "PUT" and isinstance(url, str) and url.startswith(f"{resource_type}/"):
            resource_id = url.removeprefix(f"{resource_type}/").split("?", 1)[0]
    if isinstance(resource_id, str) and FHIR_ID.match(resource_id):
        return f"{resource_type}/{resource_id}"
    return None


def reference_maps_gather(*, organization_id: int, bodies: Sequence[Mapping[str, Any]]) -> ReferenceMaps:
    """Both maps for ``references_restore`` over a page of resources: one query for the vault, one for the
    cited records. Patients stay pseudonymous where this process holds no vault private key."""
    pseudonyms = sorted({p for body in bodies for p in _identifier_values(body, PSEUDONYM_SYSTEM)})
    source_ids: set[uuid.UUID] = set()
    for body in bodies:
        for value in _identifier_values(body, SOURCE_SYSTEM):
            try:
                source_ids.add(uuid.UUID(value))
            except ValueError:
                continue
    patients: dict[str, dict[str, Any]] = {}
    opened: list[str] = []
    if pseudonyms and settings.VAULT_PRIVATE_KEY:
        private = private_key_from_text(settings.VAULT_PRIVATE_KEY)
        found: dict[str, dict[str, dict[str, Any]]] = {}
        entries = PseudonymVaultEntry.objects.filter(
            organization_id=organization_id,
            patient_pseudonym__in=pseudonyms,
            kind__in=("patient_reference", "patient_identity"),
        ).order_by("pk")
        for entry in entries:
            try:
                original = open_with(
                    private, bytes(entry.sealed_original), associated_data=entry.associated_data
                ).decode("utf-8")
            except VaultOpenError:
                logger.warning("vault entry %s does not open with this key", entry.pk)
                continue
            reference = patient_reference_from_vault(entry.kind, original)
            if reference is not None:
                # The latest entry of a kind wins (the EHR may have renumbered the patient).
                found.setdefault(entry.patient_pseudonym, {})[entry.kind] = reference
        for pseudonym, by_kind in found.items():
            patients[pseudonym] = by_kind.get("patient_reference") or by_kind["patient_identity"]
        opened = [p for p in pseudonyms if p in found]
    sources: dict[str, str] = {}
    if source_ids:
        rows = DeidentifiedResource.objects.filter(
            organization_id=organization_id, external_id__in=source_ids
        ).select_related("raw_resource")
        for row in rows:
            raw = row.raw_resource
            document = open_json(raw.sealed, associated_data=raw.associated_data)
            target = _original_reference(raw.resource_type, document) if isinstance(document, dict) else None
            if target is not None:
                sources[str(row.external_id)] = target
    return ReferenceMaps(patients=patients, sources=sources, opened=tuple(opened))
