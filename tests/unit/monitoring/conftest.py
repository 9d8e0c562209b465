"""Synthetic monitoring streams: runs with features on chosen days, suggestions with signed decisions, and
the de-identified Patient resources that give a decision its age band and sex.

Rows are created directly (not through the pipeline), the way the stored rows look: a run's ``features``
dict, a decision's sealed payload (empty here), a Patient sealed like the de-identification stage seals it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from clinical_ai.accounts.models import Membership, Organization, Role
from clinical_ai.core.sealing import seal_json
from clinical_ai.deid.models import DeidentifiedResource
from clinical_ai.inference.models import InferenceRun
from clinical_ai.inference.registry import catalogue
from clinical_ai.intake.models import IngestJob, RawResource
from clinical_ai.review.models import Decision, Suggestion

MODEL = "sepsis-watch"
VERSION = "1.0.0"
NOW = datetime.fromisoformat("2026-03-02T12:00:00+00:00")
_counter = itertools.count()


def manifest(version: str = VERSION) -> dict[str, Any]:
    return {
        "id": MODEL,
        "version": version,
        "name": "Sepsis <watch>",
        "kind": "rules",
        "entrypoint": "tests.nowhere:build",
        "default_enabled": True,
        "artifacts": [],
        "inputs": [
            {
                "name": "respiratory_rate",
                "resourceType": "Observation",
                "codes": ["http://loinc.org|9279-1"],
                "required": True,
                "description": "Breaths per minute.",
            }
        ],
        "card": {
            "clinical_summary": "Flags adults whose vital signs suggest sepsis. Adults only.",
            "intended_use": "Flags adults whose vital signs suggest sepsis.",
            "intended_users": "Ward nurses and doctors.",
            "inputs": "The latest vital signs.",
            "development": "Rules from a guideline.",
            "validation": {
                "summary": "Checked against the guideline's table.",
                "figures": [{"name": "Boundary cases", "value": "12 of 12 pass", "source": "tests/x.py"}],
            },
            "limitations": ["Adults only.", "Vitals <script>must</script> be recent."],
        },
    }


@pytest.fixture
def models_dir(settings: Any, tmp_path: Path) -> Iterator[Path]:
    (tmp_path / MODEL).mkdir()
    (tmp_path / MODEL / "manifest.json").write_text(json.dumps(manifest()), encoding="utf-8")
    settings.INFERENCE_MODEL_DIRS = [tmp_path]
    catalogue.cache_clear()
    yield tmp_path
    catalogue.cache_clear()


@pytest.fixture(autouse=True)
def monitoring_settings(settings: Any) -> None:
    settings.MONITORING_REFERENCE_DAYS = 14
    settings.MONITORING_WINDOW_DAYS = 14
    settings.MONITORING_MIN_RUNS = 30
    settings.MONITORING_PSI_WARNING = 0.1
    settings.MONITORING_PSI_ALERT = 0.25
    settings.MONITORING_OUTCOME_WINDOW_DAYS = 90
    settings.MONITORING_OUTCOME_WEEKS = 26
    settings.MONITORING_SUBGROUP_MIN_DECIDED = 20
    settings.MONITORING_SUBGROUP_ALPHA = 0.05


def pseudonym() -> str:
    return hashlib.sha256(f"patient-{next(_counter)}".encode()).hexdigest()[:32]


def make_runs(
    organization: Organization,
    features: Sequence[dict[str, Any]],
    *,
    at: datetime,
    version: str = VERSION,
    pseudonyms: Sequence[str] | None = None,
) -> list[InferenceRun]:
    """One succeeded run per features dict, all created at ``at`` (spread over its minutes)."""
    runs = InferenceRun.objects.bulk_create(
        [
            InferenceRun(
                organization=organization,
                patient_pseudonym=pseudonyms[i] if pseudonyms else pseudonym(),
                model_id=MODEL,
                model_version=version,
                status=InferenceRun.Status.SUCCEEDED,
                features=one,
            )
            for i, one in enumerate(features)
        ]
    )
    for i, run in enumerate(runs):
        # created_at is set on insert: move it to the day the stream says.
        run.created_at = at + timedelta(minutes=i)
    InferenceRun.objects.bulk_update(runs, ["created_at"])
    return runs


@pytest.fixture
def reviewer(organization: Organization) -> Any:
    user = get_user_model().objects.create_user(username="dr-ward", password="x" * 20)
    Membership.objects.create(user=user, organization=organization, role=Role.CLINICIAN)
    return user


def decide(
    run: InferenceRun, outcome: str, *, clinician: Any, signed_at: datetime, key: str = "finding"
) -> Decision:
    suggestion = Suggestion(
        run=run,
        organization=run.organization,
        patient_pseudonym=run.patient_pseudonym,
        model_id=run.model_id,
        model_version=run.model_version,
        finding_key=key,
        kind="risk",
        urgency=Suggestion.Urgency.WARNING,
        urgency_rank=1,
        status=outcome,
    )
    sealed = seal_json({}, associated_data=suggestion.associated_data)
    suggestion.key_id, suggestion.nonce, suggestion.ciphertext = (
        sealed.key_id,
        sealed.nonce,
        sealed.ciphertext,
    )
    suggestion.save()
    decision = Decision(
        suggestion=suggestion,
        organization=run.organization,
        clinician=clinician,
        clinician_display="Dr Ward",
        outcome=outcome,
        reason_code="not-clinically-relevant" if outcome == Decision.Outcome.REJECTED else "",
        signed_at=signed_at,
        signature_sha256="0" * 64,
    )
    sealed = seal_json({}, associated_data=decision.associated_data)
    decision.key_id, decision.nonce, decision.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
    decision.save()
    return decision


@pytest.fixture
def ingest_job(organization: Organization) -> IngestJob:
    from tests.factories import make_ehr_client

    identity = make_ehr_client(organization)
    return IngestJob.objects.create(
        organization=organization,
        client=identity.client,
        kind=IngestJob.Kind.TRANSACTION,
        status=IngestJob.Status.SUCCEEDED,
        input_sha256="0" * 64,
        resource_count=0,
        response_status=200,
        response_body={},
    )


def make_patient(
    job: IngestJob, patient_pseudonym: str, *, birth_date: str, gender: str
) -> DeidentifiedResource:
    """A de-identified Patient as the stage stores it: sealed, bound to its row, raw copy alongside."""
    index = next(_counter)
    sealed_raw = seal_json({"resourceType": "Patient"}, associated_data=f"raw:{index}")
    raw = RawResource.objects.create(
        job=job,
        entry_index=index,
        resource_type="Patient",
        key_id=sealed_raw.key_id,
        nonce=sealed_raw.nonce,
        ciphertext=sealed_raw.ciphertext,
    )
    row = DeidentifiedResource(
        job=job,
        raw_resource=raw,
        organization=job.organization,
        resource_type="Patient",
        patient_pseudonym=patient_pseudonym,
        config_name="test",
    )
    resource = {"resourceType": "Patient", "id": patient_pseudonym, "birthDate": birth_date, "gender": gender}
    sealed = seal_json(resource, associated_data=row.associated_data)
    row.key_id, row.nonce, row.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
    row.save()
    return row


def birth_date_for(age: int, *, on: date) -> str:
    return date(on.year - age, 1, 15).isoformat()
