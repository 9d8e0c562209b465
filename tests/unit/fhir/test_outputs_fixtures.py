"""Data for the output read/search and push tests: an EHR bundle run through the real de-identification stage
(real keys, real vault), and the resources a model run would have produced for its patients, stored with
``output_resources_put``. The fixtures are imported by test_outputs_*.py and test_push*.py."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from clinical_ai.audit.services import Actor
from clinical_ai.deid.models import DeidentifiedResource
from clinical_ai.inference.engine.fhir_output import PSEUDONYM_SYSTEM, SOURCE_SYSTEM
from clinical_ai.intake.models import IngestJob
from clinical_ai.intake.services import ingest_job_claim, ingest_job_run
from clinical_ai.pipeline import worker as pipeline
from clinical_ai.review.creation import output_resources_put
from clinical_ai.review.models import OutputResource
from clinical_ai.vault.pseudonyms import patient_pseudonym
from tests.factories import EhrIdentity, obtain_token, post_fhir

WORKER = Actor.worker(task_name="tests.outputs", task_id="t-1", hostname="tests")
MR_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}
MRN_SYSTEM = "urn:oid:2.16.840.1.113883.19.5"
MRN = "MRN-0001"


def _observation(subject: str, resource_id: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "9279-1"}]},
        "subject": {"reference": subject},
        "valueQuantity": {"value": 24, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
    }
    if resource_id is not None:
        resource["id"] = resource_id
    return resource


def _put(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": f"http://ehr.example.org/fhir/{resource['resourceType']}/{resource['id']}",
        "resource": resource,
        "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
    }


def ehr_bundle() -> dict[str, Any]:
    """Three patients as an EHR sends them: pat-123 with a medical record number (so its pseudonym comes from
    the MRN, not from its id), pat-456 without one, and pat-789 only referenced, never sent."""
    with_mrn = {
        "resourceType": "Patient",
        "id": "pat-123",
        "identifier": [{"type": MR_TYPE, "system": MRN_SYSTEM, "value": MRN}],
        "name": [{"family": "Quillfeather", "given": ["Adeline"]}],
        "birthDate": "1948-05-17",
    }
    without_mrn = {
        "resourceType": "Patient",
        "id": "pat-456",
        "name": [{"family": "Brightwater", "given": ["Tobias"]}],
        "birthDate": "1961-11-02",
    }
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            _put(with_mrn),
            _put(without_mrn),
            _put(_observation("Patient/pat-123", "obs-1")),
            _put(_observation("Patient/pat-456", "obs-2")),
            _put(_observation("Patient/pat-789", "obs-3")),
            {
                "fullUrl": "urn:uuid:6a1e7e0e-5a43-4d7c-9f5b-1d2c3b4a5f60",
                "resource": _observation("Patient/pat-123"),
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }


@dataclass
class EhrGraph:
    """What the stage made of ``ehr_bundle``: each EHR patient's pseudonym and each entry's de-identified id
    (by the entry's EHR reference; the entry without an id as "Observation/?")."""

    organization_id: int
    pseudonyms: dict[str, str]  # "Patient/pat-123" -> pseudonym
    sources: dict[str, str]  # "Observation/obs-1" -> DeidentifiedResource.external_id
    stored: list[OutputResource] = field(default_factory=list)


def deidentify(http: Client, identity: EhrIdentity, bundle: dict[str, Any]) -> IngestJob:
    token = obtain_token(http, identity, scope="system/*.write")
    response = post_fhir(http, token, bundle)
    assert response.status_code == 200, response.content
    job = IngestJob.objects.get(request_id=response["X-Request-Id"])
    claim = ingest_job_claim(job_id=str(job.external_id), task_id="t", worker="w")
    assert claim.job is not None
    assert ingest_job_run(job=claim.job, actor=WORKER, stage=pipeline.deidentify)
    job.refresh_from_db()
    assert job.status == IngestJob.Status.SUCCEEDED, job.error
    return job


def ehr_graph_build(http: Client, identity: EhrIdentity) -> EhrGraph:
    bundle = ehr_bundle()
    job = deidentify(http, identity, bundle)
    rows = DeidentifiedResource.objects.filter(job=job).select_related("raw_resource")
    by_index = {row.raw_resource.entry_index: row for row in rows}
    pseudonyms: dict[str, str] = {}
    sources: dict[str, str] = {}
    for index, entry in enumerate(bundle["entry"]):
        resource = entry["resource"]
        row = by_index[index]
        key = f"{resource['resourceType']}/{resource.get('id', '?')}"
        sources[key] = str(row.external_id)
        if resource["resourceType"] == "Observation":
            pseudonyms.setdefault(resource["subject"]["reference"], row.patient_pseudonym)
    return EhrGraph(identity.client.organization_id, pseudonyms, sources)


def patient_ref(pseudonym: str) -> dict[str, Any]:
    return {"type": "Patient", "identifier": {"system": PSEUDONYM_SYSTEM, "value": pseudonym}}


def source_ref(deidentified_id: str, resource_type: str = "Observation") -> dict[str, Any]:
    return {"identifier": {"system": SOURCE_SYSTEM, "value": deidentified_id}, "type": resource_type}


def risk_assessment(
    pseudonym: str, sources: list[str], *, resource_id: str | None = None, status: str = "preliminary"
) -> dict[str, Any]:
    return {
        "resourceType": "RiskAssessment",
        "id": resource_id or str(uuid.uuid4()),
        "status": status,
        "subject": patient_ref(pseudonym),
        "occurrenceDateTime": "2026-11-25T10:00:00+00:00",
        "basis": [source_ref(s) for s in sources],
        "prediction": [{"rationale": "NEWS2 5 (medium)"}],
    }


def detected_issue(pseudonym: str, sources: list[str]) -> dict[str, Any]:
    return {
        "resourceType": "DetectedIssue",
        "id": str(uuid.uuid4()),
        "status": "preliminary",
        "patient": patient_ref(pseudonym),
        "detail": "Problem list gap",
        "evidence": [{"detail": [source_ref(s) for s in sources]}],
    }


def outputs_put(
    organization_id: int, pseudonym: str, resources: list[dict[str, Any]]
) -> list[OutputResource]:
    return output_resources_put(
        organization_id=organization_id, patient_pseudonym=pseudonym, resources=resources
    )


@pytest.fixture
def ehr_graph(client: Client, ehr_client: EhrIdentity) -> EhrGraph:
    return ehr_graph_build(client, ehr_client)


@pytest.mark.django_db
def test_the_graph_has_three_patients_and_the_mrn_patient_is_not_its_id(ehr_graph: EhrGraph) -> None:
    assert set(ehr_graph.pseudonyms) == {"Patient/pat-123", "Patient/pat-456", "Patient/pat-789"}
    key = settings.PSEUDONYM_KEY.encode()
    slug = "st-elsewhere"
    assert ehr_graph.pseudonyms["Patient/pat-123"] == patient_pseudonym(
        key=key, organization=slug, identity=f"identifier:{MRN_SYSTEM}|{MRN}"
    )
    assert ehr_graph.pseudonyms["Patient/pat-123"] != patient_pseudonym(
        key=key, organization=slug, identity="Patient/pat-123"
    )
    assert ehr_graph.pseudonyms["Patient/pat-456"] == patient_pseudonym(
        key=key, organization=slug, identity="Patient/pat-456"
    )
