"""Test doubles for the structured de-identification engine (pure Python, no database)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from clinical_ai.deid.engine.types import PatientContext, PatientIdentifiers, TextItem

REPO = Path(__file__).resolve().parents[4]
SAMPLE_BUNDLE = REPO / "fixtures" / "sample-bundle.json"


class FakeScrubber:
    """Stands in for the Presidio scrubber: replaces the patient's own identifiers (what the real one
    guarantees at least) and records how it was called."""

    def __init__(self) -> None:
        self.calls: list[list[TextItem]] = []

    def scrub_texts(self, items: Sequence[TextItem], *, patient: PatientContext | None) -> list[str]:
        self.calls.append(list(items))
        results = []
        for item in items:
            text = item.text
            if patient is not None:
                ids = patient.identifiers
                needles = [*ids.names, *ids.given_names, *ids.family_names, *ids.identifiers, *ids.phones]
                needles += [*ids.address_parts, *ids.other]
                for needle in sorted((n for n in needles if n), key=len, reverse=True):
                    text = text.replace(needle, "[REDACTED]")
            results.append(text)
        return results


class UpperScrubber:
    """Marks what went through the scrubber without knowing anything about the patient."""

    def __init__(self) -> None:
        self.calls = 0

    def scrub_texts(self, items: Sequence[TextItem], *, patient: PatientContext | None) -> list[str]:
        self.calls += 1
        return [item.text.upper() for item in items]


class RecordingSink:
    def __init__(self) -> None:
        self.records: list[tuple[str, str, str]] = []

    def record(self, *, kind: str, pseudonym: str, original: str) -> None:
        self.records.append((kind, pseudonym, original))


def patient_identifiers(patient: Mapping[str, Any]) -> PatientIdentifiers:
    """What the Django layer hands the scrubber, built from a Patient resource."""
    names = [n for n in patient.get("name", []) if isinstance(n, dict)]
    given = [g for n in names for g in n.get("given", [])]
    family = [n["family"] for n in names if n.get("family")]
    addresses = patient.get("address", [])
    return PatientIdentifiers(
        names=[" ".join([*n.get("given", []), n.get("family", "")]).strip() for n in names],
        given_names=given,
        family_names=family,
        identifiers=[i["value"] for i in patient.get("identifier", []) if i.get("value")],
        phones=[
            t["value"] for t in patient.get("telecom", []) if t.get("system") == "phone" and t.get("value")
        ],
        emails=[
            t["value"] for t in patient.get("telecom", []) if t.get("system") == "email" and t.get("value")
        ],
        address_parts=[
            part
            for a in addresses
            for part in [*a.get("line", []), a.get("city"), a.get("district"), a.get("postalCode")]
            if part
        ],
        birth_date=patient.get("birthDate"),
    )


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8-sig"))
