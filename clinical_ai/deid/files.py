"""Reading FHIR files for the offline commands (``deidentify``, ``run_model``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clinical_ai.deid.engine.pipeline import EntryInput

SUFFIXES = (".json", ".ndjson")


def fhir_files(source: Path) -> list[Path]:
    """The FHIR files of a folder (recursively), or the one file given."""
    if source.is_dir():
        return sorted(p for p in source.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    return [source]


def read_fhir_file(path: Path) -> tuple[str, list[EntryInput], dict[str, Any] | None]:
    """A FHIR JSON file (a resource or a Bundle) or an NDJSON file as pipeline entries: its kind
    ("bundle", "resource", "ndjson"), the entries, and the Bundle itself when it is one."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix == ".ndjson":
        lines = [line for line in text.splitlines() if line.strip()]
        return "ndjson", [EntryInput(i, None, json.loads(line)) for i, line in enumerate(lines)], None
    document = json.loads(text)
    if document.get("resourceType") == "Bundle":
        entries = [
            EntryInput(i, entry.get("fullUrl"), entry["resource"])
            for i, entry in enumerate(document.get("entry") or [])
            if isinstance(entry.get("resource"), dict)
        ]
        return "bundle", entries, document
    return "resource", [EntryInput(0, None, document)], None
