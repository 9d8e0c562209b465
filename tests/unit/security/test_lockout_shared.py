"""The lockout counts are shared by every process: two database connections (threads) failing at once make
one count and one lock, and wrong passwords typed in another OS process lock this one out.

No module-level ``django_db`` mark: ``audit_transactional_db`` sets the database up (see
tests/unit/audit/test_append_only.py), so the SQLite flush afterwards passes the append-only trigger.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from clinical_ai.accounts.lockout import Scope, lockout_failure_record, username_key
from clinical_ai.accounts.models import LoginThrottle
from clinical_ai.audit.models import AuditEvent
from tests.unit.security.conftest import PASSWORD
from tests.unit.security.test_lockout import _limits, log_in  # noqa: F401  (the limits fixture)

ROOT = Path(__file__).resolve().parents[3]


def test_two_connections_failing_at_once_share_one_count(audit_transactional_db: None) -> None:
    """Two threads, each with its own database connection, as two gunicorn workers would be. On PostgreSQL
    they fail at the same moment; SQLite's shared in-memory test database refuses concurrent writers
    outright ("table is locked"), so there they take turns (still two connections, one count)."""
    key = username_key("dr-ward")
    concurrent = connection.vendor == "postgresql"
    barrier = threading.Barrier(2 if concurrent else 1)
    errors: list[BaseException] = []

    def fail_twice() -> None:
        try:
            barrier.wait()
            for _ in range(2):
                lockout_failure_record(scope=Scope.LOGIN_USER, key=key)
        except BaseException as exc:  # reported below; a thread must not swallow it
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=fail_twice) for _ in range(2)]
    for thread in threads:
        thread.start()
        if not concurrent:
            thread.join()
    for thread in threads:
        thread.join()
    assert errors == []
    row = LoginThrottle.objects.get(scope=Scope.LOGIN_USER, key=key)
    assert row.failures == 4 and row.locked_until is not None
    assert AuditEvent.objects.filter(action="auth.lockout").count() == 1  # one lock, not one per thread


def test_a_lock_made_by_another_process_holds_here(audit_transactional_db: None, clinician: Any) -> None:
    """Wrong passwords typed in another OS process (another gunicorn worker) lock this one out."""
    if connection.vendor != "postgresql":
        pytest.skip("the test database is in this process's memory; run with DATABASE_URL=postgres://...")
    db = connection.settings_dict
    url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    script = (
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "for _ in range(3):\n"
        "    r = Client().post('/accounts/login/', {'username': 'dr-ward', 'password': 'wrong'})\n"
        "    assert r.status_code == 200, r.status_code\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": url,
        "LOGIN_MAX_FAILURES": "3",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert log_in("dr-ward", PASSWORD).status_code == 429
