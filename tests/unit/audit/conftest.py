from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from clinical_ai.audit.models import AuditPurgePermit
from tests.unit.audit.personas import (  # noqa: F401  (fixtures)
    _console_urls,
    admin,
    auditor,
    clinician,
    other_site_clinician,
    superuser,
)

# Any sequence number: the flush after a transactional test removes every row.
_EVERYTHING = 2**62


@pytest.fixture
def _audit_permit_closed_afterwards(django_db_blocker: Any) -> Iterator[None]:
    yield
    with django_db_blocker.unblock():
        AuditPurgePermit.objects.filter(pk=1).update(below_seq=0)


@pytest.fixture
def audit_transactional_db(_audit_permit_closed_afterwards: None, transactional_db: None) -> Iterator[None]:
    """``transactional_db`` for tests that write audit rows, on SQLite too.

    The database flush that ends a transactional test deletes every table's rows; on SQLite that is a
    row-by-row DELETE, which the append-only trigger refuses. This opens the purge permit just for that
    flush (teardown order: this fixture, then the flush, then the permit is closed again). PostgreSQL
    flushes with TRUNCATE, which row triggers do not see, so there it changes nothing.
    """
    yield
    AuditPurgePermit.objects.filter(pk=1).update(below_seq=_EVERYTHING)
