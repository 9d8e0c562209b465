"""Conditional references (``Practitioner?identifier=system|value``, as modern Synthea and many EHR exports
write them) through the push path and the de-identification stage: resolved against the same Bundle or what
the organization holds, kept as identifier references otherwise, never failing the patient, never leaking."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings

from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from clinical_ai.core.sealing import open_json, seal_json
from clinical_ai.deid.models import DeidentifiedResource
from clinical_ai.fhir.references import conditional_reference_parse, identifier_key
from clinical_ai.intake.bulk import BatchWriter, batch_finish, batch_open
from clinical_ai.intake.models import BulkBatch, HeldIdentifier, HeldResource, IngestJob
from clinical_ai.intake.services import ingest_job_claim, ingest_job_run
from clinical_ai.pipeline.worker import deidentify
from tests.bulk_data import (
    CONDITIONAL_TYPES,
    ndjson_bytes,
    patient_bundle_paths,
    resources_by_type,
    shared_bundle_paths,
)
from tests.factories import post_fhir

pytestmark = pytest.mark.django_db

WORKER = Actor.worker(task_name="deid.test", task_id="t-1", hostname="unit")
NPI = "http://hl7.org/fhir/sid/us-npi"


def _smallest_patient_bundle() -> Path:
    return min(patient_bundle_paths(), key=lambda p: p.stat().st_size)


def _references(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        # A Reference: a reference string, or a logical one (a single Identifier; resources hold a list).
        if isinstance(node.get("reference"), str) or isinstance(node.get("identifier"), dict):
            yield node
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _linked_to(resource: dict[str, Any], patient_id: str) -> bool:
    for link in ("subject", "patient", "beneficiary"):
        value = resource.get(link)
        if isinstance(value, dict) and isinstance(value.get("reference"), str):
            return bool(value["reference"] == f"Patient/{patient_id}")
    return False


def _transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources
        ],
    }


def _synthea_patient(*, conditional: bool) -> list[dict[str, Any]]:
    grouped = resources_by_type([_smallest_patient_bundle()], conditional_references=conditional)
    return [resource for resources in grouped.values() for resource in resources]


def _conditional_targets(resources: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Every conditional reference the resources make, one per occurrence."""
    found = []
    for resource in resources:
        for reference in _references(resource):
            parsed = conditional_reference_parse(str(reference.get("reference", "")))
            if parsed is not None:
                found.append(parsed)
    return found


def _run(client: Client, token: str, bundle: dict[str, Any]) -> IngestJob:
    response = post_fhir(client, token, bundle)
    assert response.status_code == 200, response.content
    job = IngestJob.objects.get(request_id=response["X-Request-Id"])
    claim = ingest_job_claim(job_id=str(job.external_id), task_id="t", worker="w")
    assert claim.job is not None
    assert ingest_job_run(job=claim.job, actor=WORKER, stage=deidentify)
    job.refresh_from_db()
    return job


def _opened(job: IngestJob) -> list[dict[str, Any]]:
    rows = DeidentifiedResource.objects.filter(job=job).order_by("raw_resource__entry_index")
    return [open_json(r.sealed, associated_data=r.associated_data) for r in rows]


def _counts(job: IngestJob) -> dict[str, int]:
    """The stage's audit detail on conditional references."""
    event = AuditEvent.objects.get(action="intake.job.process", object_id=str(job.external_id))
    prefix = "conditional_references_"
    return {key.removeprefix(prefix): value for key, value in event.detail.items() if key.startswith(prefix)}


def _hold(organization: Any, resource: dict[str, Any]) -> None:
    """What bulk intake keeps of a resource of no patient: the sealed resource and its identifiers' digests."""
    held = HeldResource(
        organization=organization, resource_type=resource["resourceType"], resource_id=resource["id"]
    )
    sealed = seal_json(resource, associated_data=held.associated_data)
    held.key_id, held.nonce, held.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
    held.save()
    for identifier in resource.get("identifier") or ():
        HeldIdentifier.objects.create(
            held=held,
            organization=organization,
            resource_type=resource["resourceType"],
            identifier_sha256=identifier_key(
                key=settings.PSEUDONYM_KEY.encode("utf-8"),
                organization=organization.slug,
                resource_type=resource["resourceType"],
                system=identifier.get("system", ""),
                value=identifier["value"],
            ),
        )


def _assert_no_conditional_left_and_identifiers_hashed(
    outputs: list[dict[str, Any]], originals: set[str], names: set[str]
) -> None:
    text = json.dumps(outputs)
    assert "?identifier=" not in text
    for name in names:
        assert name not in text
    for resource in outputs:
        for reference in _references(resource):
            identifier = reference.get("identifier")
            if isinstance(identifier, dict):
                assert identifier.get("value") not in originals  # hashed like any Identifier.value
                assert "display" not in reference or reference["display"] in ("", None)


@pytest.mark.parametrize("config", ["inference", "safe-harbor"])
def test_a_pushed_bundle_with_conditional_references_resolves_them_within_the_bundle(
    client: Client, ehr_token: str, config: str
) -> None:
    resources = _synthea_patient(conditional=True)
    targets = _conditional_targets(resources)
    assert len(targets) > 10  # Synthea refers to its practitioners and organizations everywhere
    with override_settings(DEID_CONFIG=config):
        job = _run(client, ehr_token, _transaction(resources))

    assert job.status == IngestJob.Status.SUCCEEDED, job.error
    # Every target is in the same Bundle (Synthea writes them into each patient's file): all resolved.
    assert _counts(job) == {
        "resolved": len(targets),
        "kept": 0,
        "unreadable": 0,
    }
    outputs = _opened(job)
    assert len(outputs) == len(resources)
    practitioners = [r for r in resources if r["resourceType"] == "Practitioner"]
    names = {n["family"] for p in practitioners for n in p["name"]}
    _assert_no_conditional_left_and_identifiers_hashed(outputs, set(), names)
    # Resolved references point at the de-identified Practitioner as a plain reference would.
    plain = _opened(_run(client, ehr_token, _transaction(_synthea_patient(conditional=False))))

    def references_by_resource(docs: list[dict[str, Any]]) -> list[list[str]]:
        return sorted(sorted(str(r.get("reference")) for r in _references(doc)) for doc in docs)

    assert references_by_resource(outputs) == references_by_resource(plain)


def test_targets_held_by_the_organization_resolve_and_the_rest_stay_identifier_references(
    client: Client, ehr_token: str, organization: Any, other_organization: Any
) -> None:
    resources = _synthea_patient(conditional=True)
    # As modern Synthea (and a Bulk Data export) deliver them: practitioners and organizations elsewhere.
    shared = [r for r in resources if r["resourceType"] in CONDITIONAL_TYPES]
    patient_only = [r for r in resources if r["resourceType"] not in CONDITIONAL_TYPES | {"PractitionerRole"}]
    practitioners = [r for r in shared if r["resourceType"] == "Practitioner"]
    organizations = [r for r in shared if r["resourceType"] == "Organization"]
    assert practitioners and organizations
    for practitioner in practitioners:
        _hold(organization, practitioner)  # held here
    for other in organizations:
        _hold(other_organization, other)  # held, but by another organization: never matched
    targets = _conditional_targets(patient_only)
    held_here = {("Practitioner", i["system"], i["value"]) for p in practitioners for i in p["identifier"]}
    expected_resolved = sum(1 for target in targets if target in held_here)
    assert 0 < expected_resolved < len(targets)

    job = _run(client, ehr_token, _transaction(patient_only))

    assert job.status == IngestJob.Status.SUCCEEDED, job.error
    assert _counts(job) == {
        "resolved": expected_resolved,
        "kept": len(targets) - expected_resolved,
        "unreadable": 0,
    }
    outputs = _opened(job)
    kept = [r for doc in outputs for r in _references(doc) if "identifier" in r and "reference" not in r]
    assert len(kept) == len(targets) - expected_resolved
    assert {r["type"] for r in kept} == {"Organization"}
    originals = {i["value"] for r in shared for i in r.get("identifier", ())}
    names = {str(o["name"]) for o in organizations}
    _assert_no_conditional_left_and_identifiers_hashed(outputs, originals, names)


def test_an_ambiguous_identifier_is_kept_not_guessed(
    client: Client, ehr_token: str, organization: Any
) -> None:
    practitioner = {
        "resourceType": "Practitioner",
        "id": "a1",
        "identifier": [{"system": NPI, "value": "555"}],
    }
    _hold(organization, practitioner)
    _hold(organization, {**practitioner, "id": "a2"})  # two held practitioners share the NPI
    _hold(
        organization,
        {"resourceType": "Practitioner", "id": "b1", "identifier": [{"system": NPI, "value": "666"}]},
    )
    patient = {"resourceType": "Patient", "id": "p1", "gender": "female"}
    observations = [
        {
            "resourceType": "Observation",
            "id": f"o{value}",
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": "Patient/p1"},
            "performer": [
                {"reference": f"Practitioner?identifier={NPI}|{value}", "display": "Dr. Ambiguous"}
            ],
        }
        for value in ("555", "666")
    ]
    job = _run(client, ehr_token, _transaction([patient, *observations]))

    assert job.status == IngestJob.Status.SUCCEEDED, job.error
    assert _counts(job) == {"resolved": 1, "kept": 1, "unreadable": 0}
    outputs = {doc["resourceType"] + str(index): doc for index, doc in enumerate(_opened(job))}
    performers = [doc["performer"][0] for doc in outputs.values() if doc["resourceType"] == "Observation"]
    assert sum(1 for p in performers if "identifier" in p and p["type"] == "Practitioner") == 1
    assert sum(1 for p in performers if str(p.get("reference", "")).startswith("Practitioner/")) == 1
    assert "Ambiguous" not in json.dumps(performers)
    assert "555" not in json.dumps(performers)


def test_unreadable_conditional_references_never_fail_the_patient(client: Client, ehr_token: str) -> None:
    patient = {"resourceType": "Patient", "id": "p1", "gender": "male"}
    observation = {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"text": "pulse"},
        "subject": {"reference": "Patient/p1"},
        "performer": [
            {"reference": "Practitioner?name=Quentin%20Blackwood"},
            {"reference": f"Practitioner?identifier={NPI}|1,{NPI}|2"},
            {"reference": "Organization?identifier=urn:org|%E2%82"},
        ],
    }
    job = _run(client, ehr_token, _transaction([patient, observation]))

    assert job.status == IngestJob.Status.SUCCEEDED, job.error
    assert _counts(job) == {"resolved": 0, "kept": 0, "unreadable": 3}
    text = json.dumps(_opened(job))
    assert "Quentin" not in text and "Blackwood" not in text  # the reference string is hashed as any other


def test_bulk_intake_holds_the_targets_and_the_stage_resolves_every_reference(organization: Any) -> None:
    """The Bulk Data path end to end: NDJSON by type (modern Synthea: conditional references; practitioners
    and organizations in their own files), held by bulk intake (helper-B's BatchWriter, keyed with
    identifier_key), resolved by the de-identification stage of the patient's job."""
    paths = [_smallest_patient_bundle(), *shared_bundle_paths()]
    grouped = resources_by_type(paths, conditional_references=True)
    patient_resources = [r for t, rs in grouped.items() if t not in CONDITIONAL_TYPES for r in rs]
    batch = batch_open(organization=organization, origin=BulkBatch.Origin.FILE, label="synthea", actor=WORKER)
    writer = BatchWriter(batch, actor=WORKER)
    # Practitioners and organizations may come after the records that refer to them: all are held first
    # here, as an export's files are all read before the batch is finished and its jobs run.
    for resource_type, resources in sorted(grouped.items()):
        writer.feed(f"{resource_type}.ndjson", [ndjson_bytes(resources)])
    assert HeldIdentifier.objects.filter(organization=organization).exists()
    assert batch_finish(batch, actor=WORKER) >= 1

    job = (
        IngestJob.objects.filter(batch=batch, status=IngestJob.Status.QUEUED)
        .order_by("-resource_count")
        .first()
    )
    assert job is not None
    claim = ingest_job_claim(job_id=str(job.external_id), task_id="t", worker="w")
    assert claim.job is not None
    assert ingest_job_run(job=claim.job, actor=WORKER, stage=deidentify)
    job.refresh_from_db()

    assert job.status == IngestJob.Status.SUCCEEDED, job.error
    # Every target (a practitioner by NPI, an organization by Synthea's identifier) is held: all resolved.
    patient_id = grouped["Patient"][0]["id"]
    in_job = [r for r in patient_resources if _linked_to(r, patient_id)]
    assert job.resource_count == len(in_job) + 1
    assert _counts(job) == {"resolved": len(_conditional_targets(in_job)), "kept": 0, "unreadable": 0}
    _assert_no_conditional_left_and_identifiers_hashed(_opened(job), set(), set())
