"""A real Celery worker whose intake stage pauses on a job's first attempt, so a test can kill it mid-task.

Run as ``python -m tests.integration.slow_worker worker ...``. The pause is patched in here, in the test
tree; production code has no test hooks.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

from clinical_ai.celery import app  # noqa: E402
from clinical_ai.deid import tasks  # noqa: E402
from clinical_ai.intake.services import ingest_job_run as _original  # noqa: E402

_marker_dir = Path(os.environ["SLOW_WORKER_MARKER_DIR"])
_pause = float(os.environ.get("SLOW_WORKER_SECONDS", "60"))


def _slow_first_attempt(*, job: Any, actor: Any, stage: Any) -> bool:
    marker = _marker_dir / f"{job.external_id}.started"
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(_pause)
    return _original(job=job, actor=actor, stage=stage)


setattr(tasks, "ingest_job_run", _slow_first_attempt)  # noqa: B010 (the task looks the name up there)

if __name__ == "__main__":
    app.worker_main(sys.argv[1:])
