"""Fixtures of the bad-input proofs: hypothesis profiles, a token of a real EHR client, the WSGI app called
in-process, and the per-property case counts (var/badinput-counts.json and a summary line)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings

from tests.factories import EhrIdentity, make_ehr_client, obtain_token

from .harness import CASE_COUNTS

# Each example reuses the function-scoped db, client and token: deltas of row counts are compared per
# example, so state carried from one example to the next is harmless (and the audit log only grows).
_COMMON: dict[str, Any] = {
    "deadline": None,
    "derandomize": True,
    "database": None,
    "print_blob": True,
    "suppress_health_check": [
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
}
# ci: the whole package in about 2-3 minutes of CPU on 2 cores; dev: a quick look; deep: a long soak.
settings.register_profile("badinput-ci", max_examples=100, **_COMMON)
settings.register_profile("badinput-dev", max_examples=15, **_COMMON)
settings.register_profile("badinput-deep", max_examples=600, **{**_COMMON, "derandomize": False})
PROFILE = os.environ.get("BADINPUT_PROFILE", "badinput-ci")
COUNTS_FILE = Path(__file__).resolve().parents[3] / "var" / "badinput-counts.json"


def examples(share: float = 1.0) -> int:
    """max_examples for one property: the profile's, scaled for the costlier ones."""
    base: int = settings.get_profile(PROFILE).max_examples
    return max(5, int(base * share))


@pytest.fixture
def writer(organization: Any) -> EhrIdentity:
    return make_ehr_client(organization, scopes="system/*.write system/*.read")


@pytest.fixture
def token(client: Client, writer: EhrIdentity) -> str:
    return obtain_token(client, writer, scope="system/*.write system/*.read")


@pytest.fixture
def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def wsgi_app(token: str) -> Iterator[WSGIHandler]:
    """Django's WSGI handler, called in-process within the test's transaction. As the test client does,
    keep the request signals from closing the connection that holds that transaction (on PostgreSQL that
    would close the transaction itself). After ``token``: the test client's own request reconnects them."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield WSGIHandler()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not CASE_COUNTS:
        return
    COUNTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    counts = dict(sorted(CASE_COUNTS.items()))
    COUNTS_FILE.write_text(
        json.dumps({"profile": PROFILE, "total": sum(counts.values()), "cases": counts}, indent=2) + "\n",
        encoding="utf-8",
    )
    terminalreporter.write_line(
        f"badinput: {sum(counts.values())} cases in {len(counts)} properties/operations "
        f"(profile {PROFILE}); per case: {COUNTS_FILE}"
    )
