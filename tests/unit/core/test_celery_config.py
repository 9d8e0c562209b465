"""The queue rules every task relies on: JSON only, late acks, requeue on worker loss, one queue per stage.

Checked against what a worker really registers (the app's task modules imported as ``celery worker`` imports
them) and what the project really sends: the task names of the job tables, the routes and the beat schedule.
A name that no task carries is dropped by the worker ("unregistered task"), so every name sent must be here.
"""

from __future__ import annotations

import fnmatch
import sys
from typing import Any

import pytest

from clinical_ai.celery import app
from clinical_ai.core.jobs import JobTable

PROJECT_PREFIXES = ("clinical_ai.", "integrations.")


@pytest.fixture(scope="module")
def registered() -> dict[str, Any]:
    """The project's tasks as a worker registers them: ``celery worker`` imports the default modules (the
    autodiscovered ``tasks`` module of every installed app) before it consumes anything."""
    app.loader.import_default_modules()
    return {name: task for name, task in app.tasks.items() if name.startswith(PROJECT_PREFIXES)}


@pytest.fixture(scope="module")
def job_tables(registered: dict[str, Any]) -> list[JobTable]:
    """Every job table the loaded project defines, wherever it lives: each names the task that works its
    rows, and its rows are sent by that name (``core.queue.task_send``)."""
    found: dict[int, JobTable] = {}
    for name, module in list(sys.modules.items()):
        if name.startswith(PROJECT_PREFIXES) and module is not None:
            for value in list(vars(module).values()):
                if isinstance(value, JobTable):
                    found[id(value)] = value
    return list(found.values())


def _queue_of(task_name: str) -> str:
    route = app.amqp.router.route({}, task_name, args=(), kwargs={})
    return str(route["queue"].name)


def test_json_only_and_no_result_backend() -> None:
    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_ignore_result is True


def test_the_worker_registers_the_pipeline_tasks(registered: dict[str, Any]) -> None:
    # The names are the contract with messages already on the queues: they must not change.
    assert {
        "clinical_ai.deid.deidentify_ingest_job",
        "clinical_ai.inference.run_models",
        "clinical_ai.intake.sweep",
        "clinical_ai.inference.sweep",
    } <= set(registered)


def test_every_job_table_names_a_registered_task(
    registered: dict[str, Any], job_tables: list[JobTable]
) -> None:
    assert {table.model._meta.label for table in job_tables} >= {"intake.IngestJob", "inference.InferenceRun"}
    unregistered = {
        table.model._meta.label: table.task_name for table in job_tables if table.task_name not in registered
    }
    assert unregistered == {}


def test_job_tasks_are_safe_to_redeliver(registered: dict[str, Any], job_tables: list[JobTable]) -> None:
    """A job's task may be killed at any moment: its message goes back to the queue, and a time limit
    stops a task that hangs (the soft one first, so it can record why)."""
    for table in job_tables:
        task = registered[table.task_name]
        assert task.acks_late is True, table.task_name
        assert task.reject_on_worker_lost is True, table.task_name
        assert task.ignore_result is True, table.task_name
        assert task.time_limit and task.soft_time_limit, table.task_name
        assert task.soft_time_limit < task.time_limit, table.task_name


def test_each_stage_has_its_own_queue_and_routing_key(registered: dict[str, Any]) -> None:
    queues = {q.name: q for q in app.conf.task_queues}
    assert set(queues) == {"deid", "inference", "bulk"}
    assert queues["inference"].routing_key == "inference"
    assert queues["deid"].routing_key == "deid"
    assert queues["bulk"].routing_key == "bulk"
    assert _queue_of("clinical_ai.deid.deidentify_ingest_job") == "deid"
    assert _queue_of("clinical_ai.inference.run_models") == "inference"
    assert _queue_of("clinical_ai.inference.sweep") == "inference"
    assert _queue_of("clinical_ai.intake.sweep") == "deid"
    # Bulk Data pulls (long downloads) never hold up de-identification or inference.
    assert _queue_of("integrations.bulk.export_run") == "bulk"
    assert _queue_of("integrations.bulk.schedule") == "bulk"


def test_every_task_lands_on_a_queue_a_worker_consumes(registered: dict[str, Any]) -> None:
    queues = {q.name for q in app.conf.task_queues}
    assert {name: _queue_of(name) for name in registered if _queue_of(name) not in queues} == {}


def test_every_route_matches_a_registered_task(registered: dict[str, Any]) -> None:
    """A route for tasks that no longer exist (renamed, moved) would leave their successors unrouted."""
    routes = app.conf.task_routes
    assert routes
    dead = [pattern for pattern in routes if not fnmatch.filter(registered, pattern)]
    assert dead == []


def test_every_beat_entry_names_a_registered_task(registered: dict[str, Any]) -> None:
    schedule = app.conf.beat_schedule
    assert {"intake-sweep", "inference-sweep"} <= set(schedule)
    unregistered = {entry: spec["task"] for entry, spec in schedule.items() if spec["task"] not in registered}
    assert unregistered == {}
