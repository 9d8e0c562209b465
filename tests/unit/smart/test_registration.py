"""ehr_client_register: what it refuses and what it records."""

from __future__ import annotations

from typing import Any

import pytest

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.models import AuditEvent
from clinical_ai.audit.services import Actor
from integrations.smart.models import EhrClient
from integrations.smart.services import (
    CLIENT_REGISTER_ACTION,
    EhrClientRegistrationError,
    ehr_client_register,
)
from tests.unit.smart.keys import ec_key, rsa_key

pytestmark = pytest.mark.django_db


def register(organization: Organization, **overrides: Any) -> EhrClient:
    arguments: dict[str, Any] = {
        "name": "EHR",
        "organization": organization,
        "scopes": "system/*.read",
        "jwks": rsa_key().jwks,
        "actor": Actor.system("tests"),
        **overrides,
    }
    return ehr_client_register(**arguments)


def test_registration_is_audited(smart_org: Organization) -> None:
    ehr = register(smart_org, scopes="system/*.read  system/Observation.c system/*.read")
    assert ehr.allowed_scopes == "system/*.read system/Observation.c"
    assert ehr.is_active
    event = AuditEvent.objects.get(action=CLIENT_REGISTER_ACTION)
    assert event.object_id == str(ehr.external_id)
    assert event.organization == "smart-site"
    assert event.detail == {
        "client_id": ehr.client_id,
        "scopes": ["system/*.read", "system/Observation.c"],
        "key_source": "inline",
        "key_ids": ["rsa-0"],
        "jwks_host": None,
    }


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"jwks": {"keys": [dict(ec_key().public_jwk, d="AAAA")]}}, "private"),
        ({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}, "private"),
        ({"jwks": None}, "exactly one"),
        ({"jwks_url": "https://keys.example.org/jwks.json"}, "exactly one"),
        ({"scopes": ""}, "at least one"),
        ({"scopes": "patient/*.read"}, "system/"),
        ({"name": "  "}, "name"),
        ({"client_id": "has space"}, "client id"),
    ],
)
def test_registration_refusals(smart_org: Organization, overrides: dict[str, Any], words: str) -> None:
    with pytest.raises(EhrClientRegistrationError, match=words):
        register(smart_org, **overrides)
    assert not EhrClient.objects.exists()
    assert not AuditEvent.objects.filter(action=CLIENT_REGISTER_ACTION).exists()
