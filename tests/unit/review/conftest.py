"""The review tests' people and suggestions.

People: a clinician of our site, a clinician of another site, an auditor and an admin of our site; all with
the same known password. Suggestions are stored as the inference stage stores them (``suggestions_plan``,
the run's FHIR resources, ``suggestions_create``), from a real NEWS2 finding or a problem-list finding;
``queue_rows`` makes many cheap ones for the queue's paging and query counts.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from clinical_ai.accounts.models import Membership, Organization, Role
from clinical_ai.core.sealing import seal_json
from clinical_ai.inference.engine.fhir_output import (
    RunContext,
    device_for_model,
    run_output_issues,
    run_resources,
)
from clinical_ai.inference.engine.manifest import ModelManifest
from clinical_ai.inference.engine.types import Finding, ModelResult
from clinical_ai.inference.models import InferenceRun
from clinical_ai.review.creation import output_resources_put, suggestions_create, suggestions_plan
from clinical_ai.review.models import Suggestion
from tests.unit.review.findings import news2_finding, news2_manifest, problem_finding, problem_manifest

PASSWORD = "correct horse battery staple"
PATIENT = "4f0c2a9e1b7d4c3a8e6f5d2c1b0a9e8d"


def make_user(username: str, organization: Organization | None, role: str | None, **extra: Any) -> Any:
    user = get_user_model().objects.create_user(username=username, password=PASSWORD, **extra)
    if organization is not None and role is not None:
        Membership.objects.create(user=user, organization=organization, role=role)
    return user


@pytest.fixture
def clinician(organization: Organization) -> Any:
    return make_user("dr-ward", organization, Role.CLINICIAN, first_name="Wanda", last_name="Ward")


@pytest.fixture
def other_site_clinician(other_organization: Organization) -> Any:
    return make_user("dr-county", other_organization, Role.CLINICIAN)


@pytest.fixture
def auditor(organization: Organization) -> Any:
    return make_user("auditor-ann", organization, Role.AUDITOR)


@pytest.fixture
def admin(organization: Organization) -> Any:
    return make_user("admin-abe", organization, Role.ADMIN, is_staff=True)


def store_finding(
    organization: Organization,
    finding: Finding,
    manifest: ModelManifest,
    *,
    pseudonym: str = PATIENT,
) -> Suggestion:
    """One suggestion stored the way the inference stage stores a run's finding (in one transaction)."""
    with transaction.atomic():
        return _store_finding(organization, finding, manifest, pseudonym=pseudonym)


def _store_finding(
    organization: Organization, finding: Finding, manifest: ModelManifest, *, pseudonym: str
) -> Suggestion:
    run = InferenceRun.objects.create(
        organization=organization,
        patient_pseudonym=pseudonym,
        model_id=manifest.id,
        model_version=manifest.version,
        status=InferenceRun.Status.SUCCEEDED,
        input_sha256="a" * 64,
    )
    result = ModelResult(pseudonym, (finding,))
    plan = suggestions_plan(run=run, manifest=manifest, result=result)
    context = RunContext(
        run_id=str(run.external_id),
        model=manifest,
        patient_pseudonym=pseudonym,
        occurred=timezone.now(),
        input_sha256=run.input_sha256,
    )
    output = run_resources(context, plan.result, plan.ids_by_key)
    assert run_output_issues(output) == []
    rows = suggestions_create(
        run=run,
        manifest=manifest,
        plan=plan,
        resources_by_key={key: found.resources for key, found in output.per_finding.items()},
    )
    output_resources_put(
        organization_id=organization.pk,
        patient_pseudonym="",
        resources=[device_for_model(manifest)],
        replace_existing=False,
    )
    assert len(rows) == 1
    return Suggestion.objects.get(external_id=rows[0].external_id)


@pytest.fixture
def risk_suggestion(organization: Organization) -> Suggestion:
    return store_finding(organization, news2_finding(PATIENT), news2_manifest())


@pytest.fixture
def problem_suggestion(organization: Organization) -> Suggestion:
    return store_finding(organization, problem_finding(), problem_manifest())


@pytest.fixture
def other_site_suggestion(other_organization: Organization) -> Suggestion:
    return store_finding(
        other_organization, news2_finding("pt-other"), news2_manifest(), pseudonym="pt-other"
    )


QueueRows = Callable[..., list[Suggestion]]


@pytest.fixture
def queue_rows() -> QueueRows:
    """``queue_rows(organization, n, urgency=..., model_id=..., age=timedelta, pseudonym=...)``: n cheap
    pending suggestions with sealed summaries "<prefix> <i>" (no FHIR resources)."""

    def make(
        organization: Organization,
        count: int,
        *,
        urgency: str = "warning",
        model_id: str = "news2",
        age: timedelta = timedelta(0),
        pseudonym: str | None = None,
        status: str = Suggestion.Status.PENDING,
        prefix: str = "Row",
    ) -> list[Suggestion]:
        run = InferenceRun.objects.create(
            organization=organization,
            patient_pseudonym=pseudonym or uuid.uuid4().hex,
            model_id=model_id,
            model_version="1.0.0",
            status=InferenceRun.Status.SUCCEEDED,
        )
        rows = []
        for i in range(count):
            row = Suggestion(
                run=run,
                organization=organization,
                patient_pseudonym=pseudonym or uuid.uuid4().hex,
                model_id=model_id,
                model_version="1.0.0",
                finding_key=f"key-{i}",
                kind="risk",
                urgency=urgency,
                urgency_rank={"critical": 0, "warning": 1, "info": 2}[urgency],
                status=status,
            )
            sealed = seal_json({"summary": f"{prefix} {i}"}, associated_data=row.associated_data)
            row.key_id, row.nonce, row.ciphertext = sealed.key_id, sealed.nonce, sealed.ciphertext
            rows.append(row)
        Suggestion.objects.bulk_create(rows)
        stored = list(Suggestion.objects.filter(run=run).order_by("pk"))
        if age:
            Suggestion.objects.filter(run=run).update(created_at=timezone.now() - age)
        return stored

    return make
