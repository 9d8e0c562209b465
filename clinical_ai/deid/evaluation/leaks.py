"""Leaks: which of a patient's known identifiers are still anywhere in the de-identified output.

For each Synthea patient bundle, the Patient resource gives the identifiers to look for: every given and
family name (with and without Synthea's digits: "Carolee951" and "Carolee"), the mother's maiden name,
every identifier value and the resource id, phone numbers, address lines, city and postal code (the birth
place's city too), and the birth date in the usual written forms. State and country are not looked for:
Safe Harbor keeps them.

The de-identified output is searched string by string (every string value of every resource, plus the
decoded text of every ``text/*`` attachment or Binary), case-insensitively, with word boundaries. A value
found counts as one leaked identifier however often it occurs; occurrences are reported too.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clinical_ai.deid.engine.pipeline import EntryInput, PipelineResult

SYNTHEA_DIR = Path("synthea_r4_ms_anonymizer_samples")
NOT_PATIENT_BUNDLES = ("hospitalInformation", "practitionerInformation")
MOTHERS_MAIDEN_NAME = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName"
BIRTH_PLACE = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace"
_TITLES = frozenset({"mr", "mrs", "ms", "miss", "mx", "dr", "prof"})
_TRAILING_DIGITS = re.compile(r"\d+$")

PIPELINE_ANYWHERE = "ours, full pipeline: whole output"
PIPELINE_NOTES = "ours, full pipeline: notes"

Deidentify = Callable[[list[EntryInput]], PipelineResult]
Redact = Callable[[Sequence[str]], list[str]]


def patient_bundles(folder: Path) -> list[Path]:
    return sorted(
        path
        for path in folder.glob("*.json")
        if path.is_file() and not path.name.startswith(NOT_PATIENT_BUNDLES)
    )


def birth_date_forms(iso: str) -> set[str]:
    """The ways a birth date is written in notes: ISO, US and UK numeric, day-month-year in words..."""
    try:
        date = dt.date.fromisoformat(iso[:10])
    except ValueError:
        return set()
    month, short = f"{date:%B}", f"{date:%b}"
    return {
        date.isoformat(),
        f"{date:%m/%d/%Y}",
        f"{date:%d/%m/%Y}",
        f"{date.month}/{date.day}/{date.year}",
        f"{date.day}/{date.month}/{date.year}",
        f"{date:%m/%d/%y}",
        f"{date:%Y%m%d}",
        f"{date.day} {month} {date.year}",
        f"{date:%d} {month} {date.year}",
        f"{month} {date.day}, {date.year}",
        f"{month} {date.day} {date.year}",
        f"{short} {date.day}, {date.year}",
        f"{short} {date.day} {date.year}",
        f"{date:%d}-{short}-{date.year}",
    }


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def _name_variants(text: str) -> set[str]:
    variants: set[str] = set()
    for token in text.split():
        token = token.strip(",")
        if token.rstrip(".").lower() in _TITLES:
            continue
        variants |= {token, _TRAILING_DIGITS.sub("", token)}
    return variants


def known_identifiers(patient: Mapping[str, Any]) -> tuple[str, ...]:
    """What the Patient resource says identifies this patient, as the strings to search for."""
    known: set[str] = set()
    for name in patient.get("name") or []:
        for part in [
            *_strings(name.get("given")),
            *_strings(name.get("family")),
            *_strings(name.get("text")),
        ]:
            known |= _name_variants(part)
    for identifier in patient.get("identifier") or []:
        known.update(_strings(identifier.get("value")))
    known.update(_strings(patient.get("id")))
    for contact in patient.get("telecom") or []:
        known.update(_strings(contact.get("value")))
    addresses = list(patient.get("address") or [])
    for extension in patient.get("extension") or []:
        if extension.get("url") == MOTHERS_MAIDEN_NAME:
            for part in _strings(extension.get("valueString")):
                known |= _name_variants(part)
        elif extension.get("url") == BIRTH_PLACE and isinstance(extension.get("valueAddress"), Mapping):
            addresses.append(extension["valueAddress"])
    for address in addresses:
        for key in ("line", "city", "district", "postalCode"):
            known.update(_strings(address.get(key)))
    birth_date = patient.get("birthDate")
    if isinstance(birth_date, str):
        known |= birth_date_forms(birth_date)
    return tuple(sorted(value.strip() for value in known if len(value.strip()) > 1))


def _text_content(holder: Mapping[str, Any]) -> str | None:
    content_type, data = holder.get("contentType"), holder.get("data")
    if not (
        isinstance(content_type, str) and content_type.lower().startswith("text/") and isinstance(data, str)
    ):
        return None
    try:
        return base64.b64decode(data).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return None


def output_strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, and the decoded text of its text attachments and Binaries."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        decoded = _text_content(value)
        if decoded is not None:
            yield decoded
        for item in value.values():
            yield from output_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from output_strings(item)


def notes(resources: Iterable[Mapping[str, Any]]) -> list[str]:
    """The decoded text of every DocumentReference's text attachments."""
    texts: list[str] = []
    for resource in resources:
        if resource.get("resourceType") != "DocumentReference":
            continue
        for content in resource.get("content") or []:
            decoded = _text_content(content.get("attachment") or {})
            if decoded is not None:
                texts.append(decoded)
    return texts


def _patterns(known: Sequence[str]) -> list[tuple[str, re.Pattern[str]]]:
    return [(value, re.compile(rf"(?<!\w){re.escape(value)}(?!\w)", re.IGNORECASE)) for value in known]


def find_known(texts: Iterable[str], known: Sequence[str]) -> Counter[str]:
    """Occurrences of each known identifier in ``texts``."""
    patterns = _patterns(known)
    found: Counter[str] = Counter()
    for text in texts:
        for value, pattern in patterns:
            hits = len(pattern.findall(text))
            if hits:
                found[value] += hits
    return found


@dataclass
class PatientLeaks:
    bundle: str
    resources: int
    notes: int
    note_characters: int
    known: tuple[str, ...]
    named_in_input: Counter[str]  # known identifiers anywhere in the original bundle (a check of the search)
    named_in_notes: Counter[str]  # ... in its original notes
    survivors: dict[str, Counter[str]] = field(default_factory=dict)  # column -> identifier -> occurrences

    def as_dict(self) -> dict[str, Any]:
        return {
            "bundle": self.bundle,
            "resources": self.resources,
            "notes": self.notes,
            "note_characters": self.note_characters,
            "known_identifiers": len(self.known),
            "named_in_input": len(self.named_in_input),
            "mentions_in_input": sum(self.named_in_input.values()),
            "named_in_notes": len(self.named_in_notes),
            "mentions_in_notes": sum(self.named_in_notes.values()),
            "survivors": {
                column: {"identifiers": len(found), "occurrences": sum(found.values()), "values": dict(found)}
                for column, found in self.survivors.items()
            },
        }


def bundle_entries(bundle: Mapping[str, Any]) -> list[EntryInput]:
    return [
        EntryInput(index, entry.get("fullUrl"), entry["resource"])
        for index, entry in enumerate(bundle.get("entry") or [])
        if isinstance(entry.get("resource"), Mapping)
    ]


def patient_leaks(
    path: Path, *, deidentify: Deidentify | None, redactors: Mapping[str, Redact]
) -> PatientLeaks:
    """Run the pipeline (if given) on one bundle and each text redactor on its notes; count survivors."""
    bundle = json.loads(path.read_text(encoding="utf-8-sig"))
    entries = bundle_entries(bundle)
    resources = [entry.resource for entry in entries]
    patient = next((r for r in resources if r.get("resourceType") == "Patient"), None)
    if patient is None:
        raise ValueError(f"{path.name}: no Patient resource")
    known = known_identifiers(patient)
    original_notes = notes(resources)
    leaks = PatientLeaks(
        bundle=path.stem,
        resources=len(entries),
        notes=len(original_notes),
        note_characters=sum(len(text) for text in original_notes),
        known=known,
        named_in_input=find_known(output_strings(resources), known),
        named_in_notes=find_known(original_notes, known),
    )
    if deidentify is not None:
        outputs = [output.resource for output in deidentify(entries).outputs]
        leaks.survivors[PIPELINE_ANYWHERE] = find_known(output_strings(outputs), known)
        leaks.survivors[PIPELINE_NOTES] = find_known(notes(outputs), known)
    for column, redact in redactors.items():
        leaks.survivors[column] = find_known(redact(original_notes), known)
    return leaks
