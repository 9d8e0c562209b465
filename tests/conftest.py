from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"

# The test identity provider (fixtures oidc_provider, oidc_provider_for) and the SMART EHR stand-in (smart_ehr),
# for every test.
pytest_plugins = ["tests.sso_harness", "tests.ehr_launch"]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it are skipped cleanly where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture
def organization(db: None) -> Any:
    from tests.factories import make_organization

    return make_organization("st-elsewhere", "St Elsewhere General")


@pytest.fixture
def other_organization(db: None) -> Any:
    from tests.factories import make_organization

    return make_organization("county-hospital", "County Hospital")


@pytest.fixture
def ehr_client(organization: Any) -> Any:
    """The EHR of our site, allowed to write and read."""
    from tests.factories import make_ehr_client

    return make_ehr_client(organization)


@pytest.fixture
def ehr_token(client: Any, ehr_client: Any) -> str:
    from tests.factories import obtain_token

    return obtain_token(client, ehr_client)
