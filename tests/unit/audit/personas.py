"""The people of the audit and accounts tests: a clinician of our site, one of another site, an auditor, an
admin (by role) and a superuser; all with the same known password. Imported by both conftests."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from clinical_ai.accounts.models import Membership, Organization, Role

PASSWORD = "correct horse battery staple"


def make_user(username: str, organization: Organization | None, role: str | None, **extra: Any) -> Any:
    user = get_user_model().objects.create_user(username=username, password=PASSWORD, **extra)
    if organization is not None and role is not None:
        Membership.objects.create(user=user, organization=organization, role=role)
    return user


@pytest.fixture
def clinician(organization: Organization) -> Any:
    return make_user("dr-ward", organization, Role.CLINICIAN)


@pytest.fixture
def other_site_clinician(other_organization: Organization) -> Any:
    return make_user("dr-county", other_organization, Role.CLINICIAN)


@pytest.fixture
def auditor(organization: Organization) -> Any:
    return make_user("auditor-ann", organization, Role.AUDITOR)


@pytest.fixture
def admin(organization: Organization) -> Any:
    return make_user("admin-abe", organization, Role.ADMIN, is_staff=True)


@pytest.fixture
def superuser(db: None) -> Any:
    return make_user("root", None, None, is_staff=True, is_superuser=True)


@pytest.fixture(autouse=True)
def _console_urls(settings: Any) -> None:
    """The project's URLs plus the audit console, accounts views and FHIR AuditEvent search."""
    settings.ROOT_URLCONF = "tests.unit.audit.urls"
    settings.PUBLIC_BASE_URL = ""
