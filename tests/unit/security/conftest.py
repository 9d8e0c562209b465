"""The people of the security tests, and the objects their URLs name.

People: a clinician of our site, a clinician of another site, an auditor and an admin (staff) of our site,
a superuser, and our site's EHR (a SMART Backend Services client, also registered as a CDS Hooks issuer);
all people with the same known password. Objects: a suggestion (with its FHIR output resources) of each
site, an audit event, a model of the shipped catalogue.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor, audit_record
from clinical_ai.review.models import OutputResource, Suggestion
from integrations.cds_hooks.keys import JWKS_CACHE
from integrations.cds_hooks.models import CdsIssuer
from integrations.cds_hooks.registration import cds_issuer_register
from tests.factories import EhrIdentity
from tests.unit.audit.conftest import (  # noqa: F401  (fixtures)
    _audit_permit_closed_afterwards,
    audit_transactional_db,
)
from tests.unit.audit.personas import (  # noqa: F401  (fixtures: the same people as the audit tests)
    admin,
    auditor,
    clinician,
    other_site_clinician,
    superuser,
)
from tests.unit.cds_hooks.conftest import ISS, KeyPair, ehr_pseudonym, make_key
from tests.unit.review.conftest import PASSWORD, store_finding
from tests.unit.review.findings import news2_finding, news2_manifest

__all__ = ["PASSWORD"]

MODEL_ID = "news2"  # of the shipped catalogue (fixtures/models)


@pytest.fixture(autouse=True)
def _security_settings(settings: Any) -> Iterator[None]:
    settings.PUBLIC_BASE_URL = ""
    settings.CDS_HOOKS_BASE_URL = ""
    settings.CDS_HOOKS_MODEL_BUDGET_MS = 60
    JWKS_CACHE.clear()
    yield
    JWKS_CACHE.clear()


@pytest.fixture(scope="session")
def cds_key() -> KeyPair:
    return make_key("ES384")


@pytest.fixture
def cds_issuer(ehr_client: EhrIdentity, cds_key: KeyPair) -> CdsIssuer:
    return cds_issuer_register(
        iss=ISS,
        name="St Elsewhere EHR",
        ehr_client=ehr_client.client,
        jwks={"keys": [cds_key.jwk]},
        actor=Actor.system("tests"),
    )


@dataclass(frozen=True)
class World:
    """What the URLs of the matrix name: ours and another site's."""

    suggestion: Suggestion
    other_suggestion: Suggestion
    output: OutputResource
    other_output: OutputResource
    model_id: str
    audit_seq: int
    pseudonym: str


@pytest.fixture
def world(organization: Organization, other_organization: Organization) -> World:
    pseudonym = ehr_pseudonym(organization)
    suggestion = store_finding(organization, news2_finding(pseudonym), news2_manifest(), pseudonym=pseudonym)
    other = store_finding(
        other_organization, news2_finding("pt-other"), news2_manifest(), pseudonym="pt-other"
    )
    output = OutputResource.objects.filter(suggestion=suggestion).order_by("pk").first()
    other_output = OutputResource.objects.filter(suggestion=other).order_by("pk").first()
    assert output is not None and other_output is not None
    event = audit_record(
        actor=Actor.system("tests"),
        action="accounts.organization.create",
        object_type="Organization",
        object_id=str(organization.pk),
        patient_pseudonym=pseudonym,
    )
    assert isinstance(event, AuditEvent)
    return World(
        suggestion=suggestion,
        other_suggestion=other,
        output=output,
        other_output=other_output,
        model_id=MODEL_ID,
        audit_seq=event.seq,
        pseudonym=pseudonym,
    )
