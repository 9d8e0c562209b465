"""A real Celery worker whose intake stage (or, with ``SLOW_WORKER_STAGE=inference``, inference stage) pauses
on the first attempt, so a test can kill it mid-task or switch a model off while it runs.

``SLOW_WORKER_STAGE`` is a comma-separated list of: ``deid`` (the default: the first attempt of each job pauses
after its claim), ``inference`` (the first inference task pauses before it claims its runs) and
``claimed-inference`` (the first inference batch pauses after its runs are claimed, for
``SLOW_WORKER_INFERENCE_SECONDS`` when set).

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
from clinical_ai.inference import services as inference_services  # noqa: E402
from clinical_ai.inference import tasks as inference_tasks  # noqa: E402
from clinical_ai.inference.services import _execute_model_batch as _original_batch  # noqa: E402
from clinical_ai.intake.services import ingest_job_run as _original  # noqa: E402
from clinical_ai.pipeline.worker import models_run as _original_inference  # noqa: E402

_marker_dir = Path(os.environ["SLOW_WORKER_MARKER_DIR"])
_pause = float(os.environ.get("SLOW_WORKER_SECONDS", "60"))
_inference_pause = float(os.environ.get("SLOW_WORKER_INFERENCE_SECONDS", _pause))


def _slow_first_attempt(*, job: Any, actor: Any, stage: Any) -> bool:
    marker = _marker_dir / f"{job.external_id}.started"
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(_pause)
    return _original(job=job, actor=actor, stage=stage)


def _slow_first_inference(*, run_ids: Any, task_id: str, worker: str, actor: Any) -> Any:
    marker = _marker_dir / "inference.started"  # only the first inference task of the test pauses
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(_pause)
    return _original_inference(run_ids=run_ids, task_id=task_id, worker=worker, actor=actor)


def _slow_first_claimed_batch(model_id: str, runs: Any, *, actor: Any, store: Any) -> Any:
    marker = _marker_dir / "inference.started"  # only the first batch of the test pauses
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(_inference_pause)
    return _original_batch(model_id, runs, actor=actor, store=store)


# The tasks (and services) look the names up in their own modules.
_stages = set(os.environ.get("SLOW_WORKER_STAGE", "deid").split(","))
if "inference" in _stages:
    setattr(inference_tasks, "models_run", _slow_first_inference)  # noqa: B010
if "claimed-inference" in _stages:
    setattr(inference_services, "_execute_model_batch", _slow_first_claimed_batch)  # noqa: B010
if "deid" in _stages:
    setattr(tasks, "ingest_job_run", _slow_first_attempt)  # noqa: B010

if __name__ == "__main__":
    app.worker_main(sys.argv[1:])
