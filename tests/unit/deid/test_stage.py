"""The de-identification stage as a worker runs it, and re-identification as only the web app may."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client, override_settings

from clinical_ai.accounts.models import Membership, Role
from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.selectors import audit_chain_verify
from clinical_ai.audit.services import Actor
from clinical_ai.core.sealing import open_json
from clinical_ai.deid.models import DeidentifiedResource, PseudonymVaultEntry
from clinical_ai.intake.models import IngestJob
from clinical_ai.intake.services import ingest_job_claim, ingest_job_run
from clinical_ai.pipeline.worker import deidentify
from clinical_ai.vault.services import patient_reidentify
from tests.factories import make_organization, post_fhir, sample_bundle

pytestmark = pytest.mark.django_db

WORKER = Actor.worker(task_name="deid.test", task_id="t-1", hostname="unit")
PHI = [
    "Okafor",
    "Margaret",
    "4471-2290",
    "Harbour View",
    "9261 4407",
    "9261 4408",
    "PO1 3AX",
    "1959-03-14",
    "Portsmouth",
]


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


def test_stage_writes_a_deidentified_copy_without_phi(client: Client, ehr_token: str) -> None:
    job = _run(client, ehr_token, sample_bundle())
    assert job.status == IngestJob.Status.SUCCEEDED, job.error
    resources = _opened(job)
    assert [r["resourceType"] for r in resources] == [
        e["resource"]["resourceType"] for e in sample_bundle()["entry"]
    ]
    text = json.dumps(resources)
    for needle in PHI:
        assert needle not in text, f"{needle!r} survived de-identification"
    # The note is still there, scrubbed, with its clinical content.
    import base64

    document = next(r for r in resources if r["resourceType"] == "DocumentReference")
    note = base64.b64decode(document["content"][0]["attachment"]["data"]).decode()
    assert "pneumonia" in note and "type 2 diabetes" in note
    # Clinical content is kept: codes and values.
    heart_rate = next(
        r for r in resources if r.get("code", {}).get("coding", [{}])[0].get("code") == "8867-4"
    )
    assert heart_rate["valueQuantity"]["value"] == 112


def test_one_pseudonym_and_one_date_shift_per_patient(client: Client, ehr_token: str) -> None:
    job = _run(client, ehr_token, sample_bundle())
    pseudonyms = set(DeidentifiedResource.objects.filter(job=job).values_list("patient_pseudonym", flat=True))
    assert len(pseudonyms) == 1 and "" not in pseudonyms
    resources = _opened(job)
    sent = sample_bundle()["entry"]

    def when(resource: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(resource["effectiveDateTime"])

    shifts = {
        (when(out) - when(original["resource"])).days
        for out, original in zip(resources, sent, strict=True)
        if "effectiveDateTime" in original["resource"]
    }
    assert len(shifts) == 1 and 0 not in shifts
    encounter_shift = (
        datetime.fromisoformat(resources[1]["period"]["start"])
        - datetime.fromisoformat(sent[1]["resource"]["period"]["start"])
    ).days
    assert {encounter_shift} == shifts


def test_pseudonym_is_stable_across_requests(client: Client, ehr_token: str) -> None:
    first = _run(client, ehr_token, sample_bundle())
    again = sample_bundle()
    again["identifier"]["value"] = "urn:uuid:9c1e7f52-3b1d-4d0e-8a55-6f2b8c1d0002"
    second = _run(client, ehr_token, again)
    p1 = set(DeidentifiedResource.objects.filter(job=first).values_list("patient_pseudonym", flat=True))
    p2 = set(DeidentifiedResource.objects.filter(job=second).values_list("patient_pseudonym", flat=True))
    assert p1 == p2


def test_stage_is_audited_with_the_patient_pseudonym(client: Client, ehr_token: str) -> None:
    job = _run(client, ehr_token, sample_bundle())
    pseudonym = DeidentifiedResource.objects.filter(job=job).first().patient_pseudonym  # type: ignore[union-attr]
    event = AuditEvent.objects.get(action="deid.resources.create")
    assert event.patient_pseudonym == pseudonym and event.actor_type == "worker"
    assert event.object_id == str(job.external_id)
    assert audit_chain_verify().ok


def _clinician(django_user_model: Any, organization: Any, username: str) -> Any:
    user = django_user_model.objects.create_user(username=username, password="x-long-password-1")
    Membership.objects.create(user=user, organization=organization, role=Role.CLINICIAN)
    return user


def test_vault_opens_for_a_clinician_of_the_site_only(
    client: Client, ehr_token: str, organization: Any, django_user_model: Any
) -> None:
    job = _run(client, ehr_token, sample_bundle())
    pseudonym = DeidentifiedResource.objects.filter(job=job).first().patient_pseudonym  # type: ignore[union-attr]
    entries = PseudonymVaultEntry.objects.filter(patient_pseudonym=pseudonym)
    assert entries.exists()
    for entry in entries:
        for needle in PHI:
            assert needle.encode() not in bytes(entry.sealed_original)
    clinician = _clinician(django_user_model, organization, "dr-local")
    originals = patient_reidentify(
        user=clinician,
        organization=organization,
        patient_pseudonym=pseudonym,
        purpose="review",
        request_id="r1",
    )
    assert "Margaret Okafor-Lindqvist" in originals["patient_name"]
    assert originals["birth_date"] == ["1959-03-14"]
    assert (
        AuditEvent.objects.filter(
            action="deid.reidentify", outcome="success", patient_pseudonym=pseudonym
        ).count()
        == 1
    )

    elsewhere = _clinician(django_user_model, make_organization("county-hospital"), "dr-elsewhere")
    with pytest.raises(PermissionDenied):
        patient_reidentify(
            user=elsewhere,
            organization=organization,
            patient_pseudonym=pseudonym,
            purpose="review",
            request_id="r2",
        )
    assert AuditEvent.objects.filter(action="deid.reidentify", outcome="failure").count() == 1


@override_settings(VAULT_PRIVATE_KEY="")
def test_a_process_without_the_private_key_cannot_reidentify(
    client: Client, ehr_token: str, organization: Any, django_user_model: Any
) -> None:
    job = _run(client, ehr_token, sample_bundle())
    pseudonym = DeidentifiedResource.objects.filter(job=job).first().patient_pseudonym  # type: ignore[union-attr]
    with pytest.raises(PermissionDenied):
        patient_reidentify(
            user=_clinician(django_user_model, organization, "dr-x"),
            organization=organization,
            patient_pseudonym=pseudonym,
            purpose="review",
            request_id="r3",
        )


def test_vault_values_are_bound_to_their_row() -> None:
    from clinical_ai.vault.crypto import (
        VaultOpenError,
        generate_vault_keys,
        open_with,
        private_key_from_text,
        public_key_from_text,
        seal_to,
    )

    private_text, public_text = generate_vault_keys()
    sealed = seal_to(public_key_from_text(public_text), b"Margaret", associated_data=b"row-1")
    private = private_key_from_text(private_text)
    assert open_with(private, sealed, associated_data=b"row-1") == b"Margaret"
    with pytest.raises(VaultOpenError):
        open_with(private, sealed, associated_data=b"row-2")
    other_private, _ = generate_vault_keys()
    with pytest.raises(VaultOpenError):
        open_with(private_key_from_text(other_private), sealed, associated_data=b"row-1")


def test_one_jobs_sealer_seals_each_value_apart_and_each_opens_alone() -> None:
    """A job seals all its vault values under one ephemeral key pair: each value still has its own nonce,
    opens by itself with the private key, only for its own row, and two jobs share nothing."""
    from clinical_ai.vault.crypto import (
        VaultOpenError,
        VaultSealer,
        generate_vault_keys,
        open_with,
        private_key_from_text,
        public_key_from_text,
    )

    private_text, public_text = generate_vault_keys()
    private = private_key_from_text(private_text)
    job = VaultSealer(public_key_from_text(public_text))
    first = job.seal(b"Margaret", associated_data=b"row-1")
    again = job.seal(b"Margaret", associated_data=b"row-1")
    other = job.seal(b"MRN 12345", associated_data=b"row-2")
    assert first != again  # a fresh nonce for each value: equal values do not look equal
    assert first[32:44] != again[32:44] != other[32:44]
    assert open_with(private, first, associated_data=b"row-1") == b"Margaret"
    assert open_with(private, again, associated_data=b"row-1") == b"Margaret"
    assert open_with(private, other, associated_data=b"row-2") == b"MRN 12345"
    with pytest.raises(VaultOpenError):
        open_with(private, other, associated_data=b"row-1")
    next_job = VaultSealer(public_key_from_text(public_text)).seal(b"Margaret", associated_data=b"row-1")
    assert next_job[:32] != first[:32]  # another job, another ephemeral key


def test_pipeline_date_shift_is_never_small() -> None:
    from clinical_ai.vault.pseudonyms import date_shift_days

    shifts = [date_shift_days(key=b"k" * 32, pseudonym=f"p{i}") for i in range(500)]
    assert all(30 <= abs(s) <= 180 for s in shifts)
    assert any(s < 0 for s in shifts) and any(s > 0 for s in shifts)


def test_system_check_catches_a_vault_key_pair_that_does_not_match() -> None:
    from clinical_ai.deid.checks import vault_keys_check
    from clinical_ai.vault.crypto import generate_vault_keys

    assert vault_keys_check(None) == []
    _, unrelated_public = generate_vault_keys()
    with override_settings(VAULT_PUBLIC_KEY=unrelated_public):
        assert [e.id for e in vault_keys_check(None)] == ["deid.E002"]
    with override_settings(VAULT_PUBLIC_KEY="not base64!"):
        assert [e.id for e in vault_keys_check(None)] == ["deid.E001"]


def test_text_pseudonyms_reach_the_vault(
    client: Client, ehr_token: str, organization: Any, django_user_model: Any
) -> None:
    import base64

    job = _run(client, ehr_token, sample_bundle())
    document = next(r for r in _opened(job) if r["resourceType"] == "DocumentReference")
    note = base64.b64decode(document["content"][0]["attachment"]["data"]).decode()
    tags = [part.split("]")[0] for part in note.split("[PERSON-")[1:]]
    assert tags, note
    pseudonym = DeidentifiedResource.objects.filter(job=job).first().patient_pseudonym  # type: ignore[union-attr]
    originals = patient_reidentify(
        user=_clinician(django_user_model, organization, "dr-tags"),
        organization=organization,
        patient_pseudonym=pseudonym,
        purpose="review",
        request_id="r9",
    )
    assert any("Okafor" in value for value in originals.get("person", [])), originals.keys()


def test_content_the_engine_cannot_process_fails_the_job_for_good(
    client: Client, ehr_token: str, tmp_path: Any
) -> None:
    config = tmp_path / "strict.json"
    config.write_text(
        json.dumps(
            {
                "fhirVersion": "R4",
                "processingErrors": "raise",
                # generalize applies to primitives only: on a HumanName it is a processing error
                "fhirPathRules": [
                    {
                        "path": "Patient.name",
                        "method": "generalize",
                        "cases": {"$this": "'x'"},
                        "otherValues": "redact",
                    }
                ],
            }
        )
    )
    with override_settings(DEID_CONFIG=str(config)):
        job = _run(client, ehr_token, sample_bundle())
    assert job.status == IngestJob.Status.FAILED
    assert job.error == "de-identification failed: ProcessingError", job.error
    assert not DeidentifiedResource.objects.filter(job=job).exists()
    failure = AuditEvent.objects.get(action="intake.job.process")
    assert failure.outcome == "failure" and failure.actor_type == "worker"
