from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from clinical_ai.accounts.models import Organization
from clinical_ai.audit.services import Actor
from integrations.smart import jwks as jwks_module
from integrations.smart.models import EhrClient
from integrations.smart.services import ehr_client_register
from tests.unit.smart.keys import ec_key, rsa_key


@pytest.fixture(autouse=True)
def _empty_jwks_cache() -> Iterator[None]:
    jwks_module.JWKS_CACHE.clear()
    yield
    jwks_module.JWKS_CACHE.clear()


@pytest.fixture(autouse=True)
def _smart_settings(settings: Any) -> None:
    # The SMART endpoints plus a protected test view, independent of the rest of the project's URLs.
    settings.ROOT_URLCONF = "tests.unit.smart.urls"
    settings.PUBLIC_BASE_URL = ""


@pytest.fixture
def smart_org(db: None) -> Organization:
    return Organization.objects.create(slug="smart-site", name="SMART Site")


def register(
    organization: Organization, key: Any, *, scopes: str = "system/*.read system/Observation.c"
) -> EhrClient:
    return ehr_client_register(
        name="Test EHR",
        organization=organization,
        scopes=scopes,
        jwks=key.jwks,
        actor=Actor.system("tests"),
    )


@pytest.fixture
def rsa_client(smart_org: Organization) -> EhrClient:
    return register(smart_org, rsa_key())


@pytest.fixture
def ec_client(smart_org: Organization) -> EhrClient:
    return register(smart_org, ec_key())
