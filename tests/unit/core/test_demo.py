"""The README's first command, for real: `manage.py demo` (what `make demo` runs) brings up the web server
and a worker on SQLite and the filesystem broker, the sample bundle goes through the HTTP intake and is
de-identified by the worker, and Ctrl-C stops everything."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _job_statuses(db: Path) -> list[str]:
    if not db.exists():
        return []
    with sqlite3.connect(db, timeout=5) as conn:
        try:
            return [row[0] for row in conn.execute("SELECT status FROM intake_ingestjob")]
        except sqlite3.OperationalError:
            return []


def test_demo_runs_the_whole_path_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    keep = ("PATH", "HOME", "LANG", "PIP_FIND_LINKS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        {"DEBUG": "1", "CLINICAL_AI_VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "clinical_ai.settings"}
    )
    port = _free_port()
    log = (tmp_path / "demo.log").open("wb")
    demo = subprocess.Popen(
        [sys.executable, "manage.py", "demo", "--addr", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    db = tmp_path / "clinical_ai.sqlite3"
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and "succeeded" not in _job_statuses(db):
            assert demo.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
            time.sleep(1)
        output = (tmp_path / "demo.log").read_text()
        assert f"clinical-ai demo is running at http://127.0.0.1:{port}/" in output
        assert "sample bundle sent as the EHR client: HTTP 200" in output
        assert _job_statuses(db) == ["succeeded"], output[-3000:]
    finally:
        os.killpg(demo.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        code = demo.wait(timeout=60)
    assert code == 0, (tmp_path / "demo.log").read_text()[-3000:]
    assert "stopping the web server and the worker" in (tmp_path / "demo.log").read_text()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "the web server is still listening"
