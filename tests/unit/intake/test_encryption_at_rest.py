"""PHI never reaches the database file in clear: a bundle goes in through HTTP, then the raw SQLite file
(with its WAL) is searched byte for byte."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
NEEDLES = [b"Okafor-Lindqvist", b"Margaret", b"4471-2290", b"Harbour View", b"023 9261", b"Portsmouth"]

SCRIPT = textwrap.dedent(
    """
    import django
    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    call_command("migrate", verbosity=0)
    from tests.factories import make_ehr_client, make_organization, obtain_token, post_fhir, sample_bundle
    http = Client()
    identity = make_ehr_client(make_organization("st-elsewhere"))
    token = obtain_token(http, identity)
    response = post_fhir(http, token, sample_bundle())
    assert response.status_code == 200, response.content
    connection.close()
    """
)


def test_phi_is_not_in_the_database_file(tmp_path: Path) -> None:
    db_file = tmp_path / "intake.sqlite3"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{db_file}",
        "CELERY_BROKER_URL": "",  # the filesystem broker under the var dir below
        "CLINICAL_AI_VAR_DIR": str(tmp_path / "var"),
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("intake.sqlite3*"))
    assert b"st-elsewhere" in raw  # the search works: non-PHI text is there in clear
    assert b"intake.job.create" in raw
    for needle in NEEDLES:
        assert needle not in raw, f"{needle!r} found in clear in the database file"
    # The queued message (a file of the filesystem broker) carries the job id and nothing else.
    messages = [json.loads(p.read_bytes()) for p in (tmp_path / "var" / "broker").rglob("*.msg")]
    assert len(messages) == 1
    args, kwargs, _ = json.loads(base64.b64decode(messages[0]["body"]))
    assert kwargs == {} and len(args) == 1 and str(uuid.UUID(args[0])) == args[0]
    assert messages[0]["headers"]["task"] == "clinical_ai.deid.deidentify_ingest_job"
    assert all(needle not in json.dumps(messages[0]).encode() for needle in NEEDLES)
