"""Reading FHIR files for the offline commands (``deidentify``, ``run_model``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clinical_ai.deid.engine.pipeline import EntryInput

SUFFIXES = (".json", ".ndjson")


class FhirFileError(ValueError):
    """A file that is not FHIR JSON or NDJSON; the message says where (line of an NDJSON file) and why."""


def fhir_files(source: Path, *, recursive: bool = True, suffixes: tuple[str, ...] = SUFFIXES) -> list[Path]:
    """The FHIR files of a folder (its subfolders too when ``recursive``), or the one file given."""
    if source.is_dir():
        found = source.rglob("*") if recursive else source.glob("*")
        return sorted(p for p in found if p.suffix in suffixes and p.is_file())
    return [source]


def read_documents(path: Path, *, bulk: bool = False) -> tuple[str, list[dict[str, Any]]]:
    """The JSON objects of a FHIR file and its kind: ("bundle" | "resource", [the document]) for a JSON
    file, ("ndjson", [one per line]) for an NDJSON file (``.ndjson``, or any file when ``bulk``).
    Raises :class:`FhirFileError` for anything else, naming the line of an NDJSON file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise FhirFileError(f"cannot read it ({type(exc).__name__}: {exc})") from exc
    if bulk or path.suffix == ".ndjson":
        documents = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                documents.append(_resource(line, f"line {number}: "))
        return "ndjson", documents
    document = _resource(text, "")
    return ("bundle" if document["resourceType"] == "Bundle" else "resource"), [document]


def _resource(text: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FhirFileError(f"{where}not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from exc
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise FhirFileError(f"{where}not a FHIR resource (a JSON object with a string resourceType)")
    return value


def read_fhir_file(path: Path) -> tuple[str, list[EntryInput], dict[str, Any] | None]:
    """A FHIR JSON file (a resource or a Bundle) or an NDJSON file as pipeline entries: its kind
    ("bundle", "resource", "ndjson"), the entries, and the Bundle itself when it is one."""
    kind, documents = read_documents(path)
    return (kind, *entries_of(kind, documents))


def entries_of(kind: str, documents: list[dict[str, Any]]) -> tuple[list[EntryInput], dict[str, Any] | None]:
    """Pipeline entries of what :func:`read_documents` read, and the Bundle when it is one. Bundle entries
    without a resource are left out (there is nothing to de-identify in them)."""
    if kind == "ndjson":
        return [EntryInput(i, None, document) for i, document in enumerate(documents)], None
    document = documents[0]
    if kind == "bundle":
        entries = [
            EntryInput(i, entry.get("fullUrl"), entry["resource"])
            for i, entry in enumerate(document.get("entry") or [])
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
        ]
        return entries, document
    return [EntryInput(0, None, document)], None
