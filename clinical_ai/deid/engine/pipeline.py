"""De-identify the entries of one request, patient by patient. Pure Python: nothing here imports Django.

Each entry is tied to its patient (the Patient itself, or whatever points at it through ``subject``,
``patient``, ``beneficiary``...). Every patient gets a keyed-HMAC pseudonym that is stable across requests
and sites' EHR ids, and one date shift used for all their dates, structured and in text, so intervals and
trends survive. The patient's own identifiers from the structured record are handed to the text scrubber.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from clinical_ai.deid.engine.methods import SECURITY_LABELS, Operation
from clinical_ai.deid.engine.types import (
    PatientContext,
    PatientIdentifiers,
    PseudonymSink,
    TextItem,
    TextScrubber,
)
from clinical_ai.fhir.compartment import PATIENT_LINKS
from clinical_ai.vault.pseudonyms import date_shift_days, patient_identity, patient_mrn, patient_pseudonym


class Anonymizer(Protocol):
    def anonymize(
        self,
        resource: dict[str, Any],
        *,
        patient: PatientContext | None = None,
        scrubber: TextScrubber | None = None,
        sink: PseudonymSink | None = None,
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class EntryInput:
    index: int
    full_url: str | None
    resource: Mapping[str, Any]


@dataclass(frozen=True)
class EntryOutput:
    index: int
    resource: dict[str, Any]
    patient_pseudonym: str  # "" when the resource belongs to no patient (Practitioner, Organization...)
    full_url: str | None = None  # as the configuration rewrote it (hashed with the references)


@dataclass
class PatientGroup:
    identity: str
    patient_resource: Mapping[str, Any] | None
    related: list[Mapping[str, Any]] = field(default_factory=list)
    entries: list[EntryInput] = field(default_factory=list)


def _reference_of(resource: Mapping[str, Any]) -> str | None:
    for link in PATIENT_LINKS:
        value = resource.get(link)
        candidates = value if isinstance(value, list) else [value]
        for candidate in candidates:
            if isinstance(candidate, dict) and isinstance(candidate.get("reference"), str):
                return str(candidate["reference"])
    return None


def group_by_patient(entries: Sequence[EntryInput]) -> tuple[list[PatientGroup], list[EntryInput]]:
    """Group entries by patient; return the groups and the entries that belong to nobody."""
    groups: dict[str, PatientGroup] = {}
    aliases: dict[str, str] = {}  # fullUrl / Patient/id -> identity
    for entry in entries:
        if entry.resource.get("resourceType") == "Patient":
            identity = patient_identity(entry.resource, entry.full_url)
            group = groups.setdefault(identity, PatientGroup(identity, entry.resource))
            group.patient_resource = entry.resource
            group.entries.append(entry)
            for alias in (
                entry.full_url,
                f"Patient/{entry.resource.get('id')}" if entry.resource.get("id") else None,
            ):
                if alias:
                    aliases[alias] = identity
    orphans: list[EntryInput] = []
    for entry in entries:
        if entry.resource.get("resourceType") == "Patient":
            continue
        reference = _reference_of(entry.resource)
        linked: str | None = aliases.get(reference or "")
        if linked is None and reference and reference.startswith("Patient/"):
            linked = reference  # a patient the EHR holds; this request does not carry their record
        if linked is None:
            orphans.append(entry)
            continue
        group = groups.setdefault(linked, PatientGroup(linked, None))
        group.entries.append(entry)
        if entry.resource.get("resourceType") == "RelatedPerson":
            group.related.append(entry.resource)
    return list(groups.values()), orphans


def _entry_json(entry: EntryInput) -> dict[str, Any]:
    return (
        {"fullUrl": entry.full_url, "resource": dict(entry.resource)}
        if entry.full_url
        else {"resource": dict(entry.resource)}
    )


IdentifierExtractor = Callable[[Mapping[str, Any], Sequence[Mapping[str, Any]]], PatientIdentifiers]


class _SinkBoundScrubber:
    """Passes the patient's sink to a scrubber that can report its text pseudonyms (``[PERSON-3f9a1c]``), so
    the vault can map them back too; a scrubber without that ability is used as it is."""

    def __init__(self, inner: TextScrubber, sink: PseudonymSink) -> None:
        self._inner = inner
        self._sink = sink
        self._accepts_sink = "sink" in inspect.signature(inner.scrub_texts).parameters

    def scrub_texts(self, items: Sequence[TextItem], *, patient: PatientContext | None) -> list[str]:
        if self._accepts_sink:
            result: list[str] = self._inner.scrub_texts(items, patient=patient, sink=self._sink)  # type: ignore[call-arg]
            return result
        return self._inner.scrub_texts(items, patient=patient)


class _PatientSink:
    """Adds the patient's pseudonym to what the engine reports, for the vault."""

    def __init__(self, records: list[tuple[str, str, str, str]], patient: str) -> None:
        self._records = records
        self._patient = patient

    def record(self, *, kind: str, pseudonym: str, original: str) -> None:
        self._records.append((self._patient, kind, pseudonym, original))


@dataclass
class PipelineResult:
    outputs: list[EntryOutput]
    # (patient pseudonym, kind, pseudonym, original) for the vault; originals are PHI
    vault_records: list[tuple[str, str, str, str]]
    patient_pseudonyms: list[str]
    # Indexes of the entries that ``processingErrors: skip`` emptied (their output is the empty resource).
    skipped: list[int] = field(default_factory=list)


def skipped_resource(resource_type: str) -> dict[str, Any]:
    """What a skipped resource becomes, as the reference tool writes it: its type and a REDACTED label."""
    return {"resourceType": resource_type, "meta": {"security": [dict(SECURITY_LABELS[Operation.REDACT])]}}


def _anonymize_alone(
    anonymizer: Anonymizer,
    entry: EntryInput,
    *,
    patient: PatientContext | None,
    scrubber: TextScrubber | None,
    sink: PseudonymSink | None,
) -> dict[str, Any] | None:
    """One entry on its own, as a Bundle entry; None when ``processingErrors: skip`` emptied it (the
    engine then returns an empty Bundle instead of a Bundle of one entry)."""
    single = {"resourceType": "Bundle", "type": "collection", "entry": [_entry_json(entry)]}
    produced = anonymizer.anonymize(single, patient=patient, scrubber=scrubber, sink=sink).get("entry") or []
    if len(produced) == 1 and isinstance(produced[0], dict) and isinstance(produced[0].get("resource"), dict):
        return dict(produced[0])
    return None


# Encounter.location[].physicalType (or the Location's) codes, as the review pages name them.
_PLACE_KINDS = {"wa": "ward", "bd": "bed", "ro": "room"}
_CURRENT_ENCOUNTER = ("in-progress", "arrived", "triaged", "onleave")


def _place_kind(concept: Any) -> str | None:
    codings = concept.get("coding") if isinstance(concept, dict) else None
    for coding in codings if isinstance(codings, list) else []:
        if isinstance(coding, dict) and coding.get("code") in _PLACE_KINDS:
            return _PLACE_KINDS[str(coding["code"])]
    return None


def _current_places(group: PatientGroup, locations: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(ward|bed|room, name) of where the patient is now: the locations of their current Encounter (one
    in progress, else the last one sent), by the name the Encounter gives or the Location's own. A
    location of no known kind counts as the ward."""
    encounters = [e.resource for e in group.entries if e.resource.get("resourceType") == "Encounter"]
    current = [e for e in encounters if e.get("status") in _CURRENT_ENCOUNTER] or encounters[-1:]
    places: dict[str, str] = {}
    for encounter in current[-1:]:
        for item in encounter.get("location") or []:
            if not isinstance(item, dict) or item.get("status") in ("completed", "planned"):
                continue
            pointer = item.get("location")
            reference: Mapping[str, Any] = pointer if isinstance(pointer, dict) else {}
            target = locations.get(str(reference.get("reference") or ""), {})
            name = reference.get("display") or target.get("name")
            kind = _place_kind(item.get("physicalType")) or _place_kind(target.get("physicalType"))
            if isinstance(name, str) and name.strip():
                places.setdefault(kind or "ward", name.strip())
    return sorted(places.items())


def _header_records(
    group: PatientGroup, pseudonym: str, locations: Mapping[str, Mapping[str, Any]]
) -> list[tuple[str, str, str, str]]:
    """What the web app needs to show an authorized clinician who this patient is: the EHR's ids, name,
    medical record number, birth date, administrative sex, and ward and bed from the current Encounter."""
    records = [(pseudonym, "patient_identity", pseudonym, group.identity)]
    patient = group.patient_resource
    for kind, place in _current_places(group, locations):
        records.append((pseudonym, kind, pseudonym, place))
    if patient is None:
        return records
    if patient.get("id"):
        records.append((pseudonym, "patient_reference", pseudonym, f"Patient/{patient['id']}"))
    for name in patient.get("name") or []:
        if isinstance(name, dict):
            text = name.get("text") or " ".join([*name.get("given", []), name.get("family", "")]).strip()
            if text:
                records.append((pseudonym, "patient_name", pseudonym, str(text)))
                break
    mrn = patient_mrn(patient)
    if mrn:
        records.append((pseudonym, "patient_mrn", pseudonym, mrn))
    if patient.get("birthDate"):
        records.append((pseudonym, "birth_date", pseudonym, str(patient["birthDate"])))
    if isinstance(patient.get("gender"), str) and patient["gender"]:
        records.append((pseudonym, "administrative_sex", pseudonym, patient["gender"]))
    return records


def _locations(entries: Sequence[EntryInput]) -> dict[str, Mapping[str, Any]]:
    """The bundle's Location resources, by the ways an Encounter may point at them."""
    found: dict[str, Mapping[str, Any]] = {}
    for entry in entries:
        if entry.resource.get("resourceType") != "Location":
            continue
        for alias in (
            entry.full_url,
            f"Location/{entry.resource['id']}" if entry.resource.get("id") else None,
        ):
            if alias:
                found[alias] = entry.resource
    return found


def _entry_output(
    entry: EntryInput, out: dict[str, Any] | None, pseudonym: str, skipped: list[int]
) -> EntryOutput:
    if out is None:
        skipped.append(entry.index)
        return EntryOutput(entry.index, skipped_resource(str(entry.resource.get("resourceType"))), pseudonym)
    return EntryOutput(entry.index, out["resource"], pseudonym, out.get("fullUrl"))


def deidentify_entries(
    entries: Sequence[EntryInput],
    *,
    anonymizer: Anonymizer,
    scrubber: TextScrubber | None,
    identifiers_of: IdentifierExtractor,
    pseudonym_key: bytes,
    organization: str,
) -> PipelineResult:
    groups, orphans = group_by_patient(entries)
    locations = _locations(entries)
    outputs: list[EntryOutput] = []
    vault: list[tuple[str, str, str, str]] = []
    skipped: list[int] = []
    for group in groups:
        pseudonym = patient_pseudonym(key=pseudonym_key, organization=organization, identity=group.identity)
        identifiers = (
            identifiers_of(group.patient_resource, group.related)
            if group.patient_resource is not None
            else PatientIdentifiers()
        )
        context = PatientContext(
            pseudonym=pseudonym,
            date_shift_days=date_shift_days(key=pseudonym_key, pseudonym=pseudonym),
            identifiers=identifiers,
        )
        vault.extend(_header_records(group, pseudonym, locations))
        sink = _PatientSink(vault, pseudonym)
        # One collection per patient: the engine scrubs all of the patient's free text in one batch.
        collection = {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [_entry_json(e) for e in group.entries],
        }
        bound = _SinkBoundScrubber(scrubber, sink) if scrubber is not None else None
        result = anonymizer.anonymize(collection, patient=context, scrubber=bound, sink=sink)
        produced: list[dict[str, Any] | None] = list(result.get("entry") or [])
        if len(produced) != len(group.entries):
            # ``processingErrors: skip`` emptied the whole collection: redo the patient's entries one by one,
            # so that only the resources that fail are emptied.
            produced = [
                _anonymize_alone(anonymizer, e, patient=context, scrubber=bound, sink=sink)
                for e in group.entries
            ]
        for entry, out in zip(group.entries, produced, strict=True):
            outputs.append(_entry_output(entry, out, pseudonym, skipped))
    for entry in orphans:
        out = _anonymize_alone(anonymizer, entry, patient=None, scrubber=scrubber, sink=None)
        outputs.append(_entry_output(entry, out, "", skipped))
    outputs.sort(key=lambda o: o.index)
    skipped.sort()
    return PipelineResult(
        outputs,
        vault,
        [
            patient_pseudonym(key=pseudonym_key, organization=organization, identity=g.identity)
            for g in groups
        ],
        skipped,
    )
