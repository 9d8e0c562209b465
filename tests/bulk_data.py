"""The shared Synthea transaction bundles as a Bulk Data export would deliver them: resources by type, with
``urn:uuid:`` references rewritten to ``Type/id``, each resource once, and NDJSON bytes.

Used by the bulk intake tests, the EHR stand-in and the pull tests. The data lives in
``../shared/data/synthea_r4_ms_anonymizer_samples`` and is never copied into the repository; tests that need
it are skipped cleanly where it is absent."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

SYNTHEA = (
    Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "synthea_r4_ms_anonymizer_samples"
)

# Modern Synthea references these by identifier ("Practitioner?identifier=system|value").
CONDITIONAL_TYPES = frozenset({"Practitioner", "Organization", "Location"})


def synthea_bundle_paths() -> list[Path]:
    """Every bundle of the shared set: the 11 patients, then the hospital and practitioner bundles."""
    if not SYNTHEA.is_dir():
        pytest.skip("../shared/data/synthea_r4_ms_anonymizer_samples is not present")
    paths = sorted(SYNTHEA.glob("*.json"))
    patients = [p for p in paths if not p.name.startswith(("hospitalInformation", "practitionerInformation"))]
    shared = [p for p in paths if p not in patients]
    return patients + shared


def patient_bundle_paths(count: int | None = None) -> list[Path]:
    """The patients' bundles only (the first ``count`` of them, by file name)."""
    paths = [
        p
        for p in synthea_bundle_paths()
        if not p.name.startswith(("hospitalInformation", "practitionerInformation"))
    ]
    return paths if count is None else paths[:count]


def shared_bundle_paths() -> list[Path]:
    """The hospital and practitioner bundles (organizations, locations, practitioners, roles)."""
    return [
        p
        for p in synthea_bundle_paths()
        if p.name.startswith(("hospitalInformation", "practitionerInformation"))
    ]


def _bundle_read(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8-sig") as handle:
        bundle: dict[str, Any] = json.load(handle)
    return bundle


def _references_rewrite(node: Any, targets: dict[str, str]) -> None:
    if isinstance(node, dict):
        reference = node.get("reference")
        if isinstance(reference, str) and reference in targets:
            node["reference"] = targets[reference]
        for value in node.values():
            _references_rewrite(value, targets)
    elif isinstance(node, list):
        for item in node:
            _references_rewrite(item, targets)


def _conditional_reference(resource: dict[str, Any]) -> str | None:
    for identifier in resource.get("identifier") or ():
        system, value = identifier.get("system"), identifier.get("value")
        if system and value:
            return f"{resource['resourceType']}?identifier={system}|{value}"
    return None


def resources_by_type(
    paths: Sequence[Path] | None = None, *, conditional_references: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """The resources of ``paths`` (all shared bundles by default), grouped by type in file order.

    A resource found in several bundles (the patients' bundles repeat their practitioners and
    organizations) appears once. With ``conditional_references`` a reference to a Practitioner,
    Organization or Location that has an identifier becomes ``Type?identifier=system|value``."""
    bundles = [_bundle_read(p) for p in (synthea_bundle_paths() if paths is None else paths)]
    targets: dict[str, str] = {}
    by_full_url: dict[str, dict[str, Any]] = {}
    for bundle in bundles:
        for entry in bundle.get("entry") or ():
            resource = entry["resource"]
            full_url = entry.get("fullUrl") or ""
            if full_url:
                targets[full_url] = f"{resource['resourceType']}/{resource['id']}"
                by_full_url[full_url] = resource
    if conditional_references:
        for full_url, resource in by_full_url.items():
            if resource["resourceType"] in CONDITIONAL_TYPES:
                conditional = _conditional_reference(resource)
                if conditional is not None:
                    targets[full_url] = conditional
                    targets[f"{resource['resourceType']}/{resource['id']}"] = conditional
    grouped: dict[str, list[dict[str, Any]]] = {}
    seen: set[tuple[str, str]] = set()
    for bundle in bundles:
        for entry in bundle.get("entry") or ():
            resource = json.loads(json.dumps(entry["resource"]))
            key = (resource["resourceType"], resource["id"])
            if key in seen:
                continue
            seen.add(key)
            _references_rewrite(resource, targets)
            grouped.setdefault(resource["resourceType"], []).append(resource)
    return grouped


def ndjson_bytes(resources: Iterable[dict[str, Any]]) -> bytes:
    """One compact JSON object per line, each line ending with a newline."""
    return b"".join(
        json.dumps(resource, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"
        for resource in resources
    )


def ndjson_files(
    directory: Path, paths: Sequence[Path] | None = None, *, conditional_references: bool = False
) -> list[Path]:
    """Write ``<Type>.ndjson`` files into ``directory`` (as a Bulk Data export names them); returns them."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for resource_type, resources in sorted(
        resources_by_type(paths, conditional_references=conditional_references).items()
    ):
        path = directory / f"{resource_type}.ndjson"
        path.write_bytes(ndjson_bytes(resources))
        written.append(path)
    return written
