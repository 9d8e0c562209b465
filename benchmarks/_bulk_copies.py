"""The shared Synthea patients N times over for the bulk backfill benchmark, each copy with fresh ids.

Synthea's ids are UUIDs, and a UUID appears only as itself: a resource's id, ``Type/id`` and ``urn:uuid:id``
references to it, and identifiers that repeat it (the medical record number is the patient's id). So a
copy is the same text with each id of the patients' resources replaced by a UUID derived from the copy
number; the practitioners, their roles, organizations and locations the patients refer to are served once,
unchanged. The
copies are new patients with new resources to the gateway (nothing is skipped as already stored), with the
same content and so the same cost as the originals.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

UUID_PATTERN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
COPY_NAMESPACE = uuid.UUID("5f1d6c1e-8a0b-4c41-9d0e-0b9f3b1f2a77")
# Resources of no patient, shared by all (the hospital and practitioner bundles, repeated in the patients').
SHARED_TYPES = frozenset({"Practitioner", "PractitionerRole", "Organization", "Location"})


def patient_ids(resources: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The ids a copy replaces; refuses ids that are not UUIDs (a copy could not find every use of them)."""
    ids = frozenset(str(resource["id"]) for resource in resources)
    odd = sorted(i for i in ids if not UUID_PATTERN.fullmatch(i))
    if odd:
        raise SystemExit(f"{len(odd)} resource id(s) are not UUIDs, e.g. {odd[0]!r}: cannot make copies")
    return ids


def copy_text(text: str, ids: frozenset[str], copy: int) -> str:
    """``text`` with each of ``ids`` replaced by copy ``copy``'s id for it (copy 0: unchanged)."""
    if copy == 0:
        return text

    def fresh(match: re.Match[str]) -> str:
        found = match.group(0)
        return str(uuid.uuid5(COPY_NAMESPACE, f"{copy}:{found}")) if found in ids else found

    return UUID_PATTERN.sub(fresh, text)


def resources_copied(
    resources: Mapping[str, Sequence[dict[str, Any]]], *, copies: int
) -> dict[str, list[dict[str, Any]]]:
    """Resources by type as the EHR stand-in serves them: those of ``SHARED_TYPES`` once, the patients'
    ``copies`` times (the first copy as it is)."""
    patients = {kind: group for kind, group in resources.items() if kind not in SHARED_TYPES}
    ids = patient_ids(resource for group in patients.values() for resource in group)
    served = {kind: list(group) for kind, group in resources.items() if kind in SHARED_TYPES}
    for copy in range(copies):
        for kind, group in patients.items():
            served.setdefault(kind, []).extend(
                json.loads(copy_text(json.dumps(resource), ids, copy)) for resource in group
            )
    return served


def bundle_ids(body: bytes) -> frozenset[str]:
    """The ids of a transaction bundle's patient resources (what ``copy_text`` replaces in its copies)."""
    document = json.loads(body.decode("utf-8-sig"))
    return patient_ids(
        entry["resource"]
        for entry in document.get("entry") or ()
        if entry["resource"].get("resourceType") not in SHARED_TYPES
    )
