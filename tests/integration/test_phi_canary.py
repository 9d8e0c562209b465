"""The privacy boundary, end to end through a real worker: planted identifiers go in through the FHIR API
and must not appear in the worker's log, the web process's log records, anything written to the broker
(every command sent to Redis while the test runs, deid and inference messages and kombu's bookkeeping alike,
message bodies decoded), the task results (there is no result backend: none is configured and no result
key appears in Redis), the audit rows, the job rows, the de-identified copy, what the models were given, the
runs, the suggestions or the FHIR outputs. Only the sealed raw store and the sealed vault hold them."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from clinical_ai.audit.models import AuditEvent
from clinical_ai.celery import app as celery_app
from clinical_ai.core.sealing import open_json
from clinical_ai.deid.models import DeidentifiedResource, PseudonymVaultEntry
from clinical_ai.inference.models import InferenceRun
from clinical_ai.inference.registry import catalogue
from clinical_ai.inference.services import patient_context_load
from clinical_ai.intake.models import IngestJob
from clinical_ai.review.models import OutputResource, Suggestion
from clinical_ai.review.services import output_resource_body, suggestion_payload
from tests.factories import make_ehr_client, make_organization, obtain_token, post_fhir, sample_bundle
from tests.integration.conftest import WorkerFactory, redis_client, wait_for

CANARIES = {
    "name": "Zebulon Quillfeather",
    "family": "Quillfeather",
    "mrn": "MRN-88213377",
    "phone": "0151 496 0732",
    "street": "41 Marigold Crescent",
    "email": "zebulon.q@example.org",
}


def _planted_bundle() -> dict[str, Any]:
    bundle = sample_bundle()
    patient = bundle["entry"][0]["resource"]
    patient["name"] = [{"family": CANARIES["family"], "given": ["Zebulon"]}]
    patient["identifier"][0]["value"] = CANARIES["mrn"]
    patient["telecom"] = [
        {"system": "phone", "value": CANARIES["phone"]},
        {"system": "email", "value": CANARIES["email"]},
    ]
    patient["address"][0]["line"] = [CANARIES["street"]]
    note = (
        f"Seen on ward 7. {CANARIES['name']} ({CANARIES['mrn']}) reports chest pain since yesterday. "
        f"Lives at {CANARIES['street']}; contact {CANARIES['phone']} or {CANARIES['email']}. "
        "ECG shows sinus tachycardia. Plan: troponin, CT pulmonary angiogram."
    )
    document = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DocumentReference"
    )
    document["content"][0]["attachment"]["data"] = base64.b64encode(note.encode()).decode()
    bundle["identifier"]["value"] = "urn:uuid:0d9f3a55-1111-4c4c-9d9d-canary000001"
    return bundle


def _assert_clean(text: str, where: str) -> None:
    for label, value in CANARIES.items():
        assert value not in text, f"canary {label} ({value!r}) found in {where}"
        assert value.lower() not in text.lower(), f"canary {label} found (case-folded) in {where}"


class _BrokerTap:
    """Every message published to the deid queue, read from Redis before a worker takes it."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    def drain_copy(self, queue: str = "deid") -> None:
        self.messages.extend(redis_client().lrange(queue, 0, -1))


class _RedisMonitor:
    """Every command any client sends to the test's Redis database while it runs (Redis MONITOR): what the
    web process publishes to deid, what the worker publishes to inference before another of its processes
    takes it, the unacked bookkeeping, and any result a backend would store."""

    # redis-py gives the command with MONITOR's escaping of quotes undone; tolerate it either way.
    _BODY = re.compile(r'\\?"body\\?": \\?"([A-Za-z0-9+/=]+)')

    def __init__(self) -> None:
        self.commands: list[str] = []
        self._stop = threading.Event()
        self._db = int(redis_client().connection_pool.connection_kwargs.get("db", 0))
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _RedisMonitor:
        self._thread.start()
        assert self._ready.wait(10), "MONITOR did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        redis_client().ping()  # a command, so that the monitor's next read returns and sees the flag
        self._thread.join(10)

    def _run(self) -> None:
        import redis

        # No socket timeout: the monitor may wait longer than the default between two commands.
        connection = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=None)
        with connection.monitor() as monitor:
            self._ready.set()
            while not self._stop.is_set():
                command = monitor.next_command()
                if int(command.get("db", -1)) == self._db:
                    self.commands.append(str(command["command"]))

    def texts(self) -> list[str]:
        """Each command, and each base64 message body in it decoded."""
        out = []
        for command in self.commands:
            out.append(command)
            for body in self._BODY.findall(command):
                out.append(base64.b64decode(body + "=" * (-len(body) % 4)).decode("utf-8", "replace"))
        return out


def test_there_is_no_result_backend_to_hold_task_results() -> None:
    """Job rows are the results (docs: DESIGN); a result backend would keep task return values."""
    assert settings.CELERY_RESULT_BACKEND is None and settings.CELERY_TASK_IGNORE_RESULT is True
    assert celery_app.conf.result_backend is None
    assert celery_app.conf.task_ignore_result is True
    for name, task in celery_app.tasks.items():
        if name.startswith(("clinical_ai.", "integrations.")):
            assert task.ignore_result, f"{name} keeps its result"


def test_planted_identifiers_stay_inside_the_sealed_stores(
    client: Client, workers: WorkerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with _RedisMonitor() as monitor:
        _planted_identifiers_stay_inside_the_sealed_stores(client, workers)
    pushed = {
        command.split(" ", 2)[1] for command in monitor.commands if command.startswith(("LPUSH ", "RPUSH "))
    }
    assert {"deid", "inference"} <= pushed, f"both queues' messages were seen: {pushed}"
    texts = monitor.texts()
    assert any('"task": "clinical_ai.' in t or "clinical_ai." in t for t in texts)
    for text in texts:
        _assert_clean(text, "a command sent to the broker")
    assert not redis_client().keys("celery-task-meta-*"), "a task result was stored in the broker"
    for record in caplog.records:
        _assert_clean(
            f"{record.getMessage()} {record.args!r} {record.exc_text or ''}", f"a log record of {record.name}"
        )


def _planted_identifiers_stay_inside_the_sealed_stores(client: Client, workers: WorkerFactory) -> None:
    token = obtain_token(client, make_ehr_client(make_organization()))
    tap = _BrokerTap()
    response = post_fhir(client, token, _planted_bundle())  # published on commit, no worker running yet
    assert response.status_code == 200
    tap.drain_copy()
    assert tap.messages, "the job id was queued"
    for raw in tap.messages:
        envelope = json.loads(raw)
        _assert_clean(json.dumps(envelope), "a broker message envelope")
        _assert_clean(base64.b64decode(envelope["body"]).decode(), "a broker message body")

    worker = workers.start()
    job = IngestJob.objects.get()

    def finished() -> bool:
        job.refresh_from_db()
        return job.status in (IngestJob.Status.SUCCEEDED, IngestJob.Status.FAILED)

    wait_for(finished, timeout=120, what="the de-identification of the planted bundle")
    assert job.status == IngestJob.Status.SUCCEEDED, job.error
    _assert_clean(worker.log(), "the worker's log")
    _assert_clean(json.dumps([job.response_body, job.error, job.request_id]), "the job row")
    for event in AuditEvent.objects.all():
        _assert_clean(
            json.dumps(
                [event.actor_id, event.object_id, event.request_id, event.patient_pseudonym, event.detail]
            ),
            f"audit event {event.seq} ({event.action})",
        )
    rows = DeidentifiedResource.objects.filter(job=job)
    assert rows.count() == job.resource_count
    for row in rows:
        resource = open_json(row.sealed, associated_data=row.associated_data)
        text = json.dumps(resource)
        for attachment in resource.get("content", []):
            data = attachment.get("attachment", {}).get("data")
            if data:
                text += base64.b64decode(data).decode("utf-8", "replace")
        _assert_clean(text, f"the de-identified {row.resource_type}")
        for needle in CANARIES.values():
            assert needle.encode() not in bytes(row.ciphertext)
    # The vault holds what re-identification needs, sealed: never in clear.
    assert PseudonymVaultEntry.objects.filter(organization=job.organization).exists()
    for entry in PseudonymVaultEntry.objects.all():
        for needle in CANARIES.values():
            assert needle.encode() not in bytes(entry.sealed_original)

    # The inference stage: the runs' messages, what each model was given, the runs and their outputs.
    def runs_finished() -> bool:
        runs = InferenceRun.objects.filter(ingest_job=job)
        return runs.exists() and not runs.filter(status__in=["queued", "running"]).exists()

    wait_for(runs_finished, timeout=180, what="the inference runs")
    for run in InferenceRun.objects.filter(ingest_job=job):
        assert run.status == InferenceRun.Status.SUCCEEDED, run.error
        manifest = catalogue().manifest(run.model_id, run.model_version)
        assert manifest is not None
        context = patient_context_load(run, manifest)
        model_input = json.dumps([r.resource for r in context.resources])
        for source in context.resources:
            for attachment in source.resource.get("content", []):
                data = attachment.get("attachment", {}).get("data")
                if data:
                    model_input += base64.b64decode(data).decode("utf-8", "replace")
        _assert_clean(model_input, f"the input of {run.model_id}")
        _assert_clean(
            json.dumps([run.features, run.messages, run.guidance_response, run.error]), f"run {run.pk}"
        )
    suggestions = Suggestion.objects.filter(run__ingest_job=job)
    assert suggestions.exists()
    for suggestion in suggestions:
        _assert_clean(json.dumps(suggestion_payload(suggestion)), f"suggestion {suggestion.finding_key}")
    for output in OutputResource.objects.filter(organization=job.organization):
        _assert_clean(json.dumps(output_resource_body(output)), f"output {output.resource_type}")
    _assert_clean(worker.log(), "the worker's log after inference")
    for event in AuditEvent.objects.filter(action="inference.run"):
        _assert_clean(json.dumps([event.object_id, event.detail]), f"audit event {event.seq}")
