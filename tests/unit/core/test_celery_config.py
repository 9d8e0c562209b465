"""The queue rules every task relies on: JSON only, late acks, requeue on worker loss, one queue per stage."""

from __future__ import annotations

from clinical_ai.celery import app
from clinical_ai.deid.tasks import deidentify_ingest_job as process_ingest_job


def test_json_only_and_no_result_backend() -> None:
    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_ignore_result is True


def test_intake_task_is_safe_to_redeliver() -> None:
    assert process_ingest_job.acks_late is True
    assert process_ingest_job.reject_on_worker_lost is True
    assert process_ingest_job.time_limit and process_ingest_job.soft_time_limit
    assert process_ingest_job.soft_time_limit < process_ingest_job.time_limit


def _queue_of(task_name: str) -> str:
    route = app.amqp.router.route({}, task_name, args=(), kwargs={})
    return str(route["queue"].name)


def test_each_stage_has_its_own_queue_and_routing_key() -> None:
    queues = {q.name: q for q in app.conf.task_queues}
    assert set(queues) == {"deid", "inference"}
    assert queues["inference"].routing_key == "inference"
    assert queues["deid"].routing_key == "deid"
    assert _queue_of("clinical_ai.deid.deidentify_ingest_job") == "deid"
    assert _queue_of("clinical_ai.inference.run_model") == "inference"
    assert _queue_of("clinical_ai.deid.deidentify") == "deid"
