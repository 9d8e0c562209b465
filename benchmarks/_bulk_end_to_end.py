"""The end-to-end phase of the bulk backfill benchmark: the same patients pushed to gunicorn as an EHR would,
then pulled from an EHR stand-in with Bulk Data ``$export``, each until every patient has its model results.

Real processes on PostgreSQL and Redis: gunicorn; a Celery worker on ``deid,inference`` (prefork, pinned
with ``taskset``), warmed up first as in the inference benchmark; a Celery worker on ``bulk`` that runs the
export (token, kick-off, polls, NDJSON files streamed into the bulk intake, per-patient jobs queued). The
EHR stand-in (``tests/ehr_standin.py``) is a real HTTP server in this process, guarding its endpoints with
SMART Backend Services against the source's own public key. The push path and the bulk path each get an
organization of their own, so nothing one stored is skipped by the other.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from _bulk_copies import bundle_ids, copy_text, resources_copied
from _cpu_time import (
    machine_cpu_seconds,
    process_cpu_seconds,
    program_roots,
    roots_cpu_seconds,
    tree_cpu_seconds,
)
from _harness import (
    Started,
    celery_worker_start,
    database_recreate,
    free_port,
    gunicorn_start,
)
from _inference_end_to_end import _bundle_records, _warm_up
from _inference_posting import Posted, jobs_wait
from _inference_process import cores_pin, django_setup
from _worker_memory import process_tree, rss_kib

CLIENT_ID = "bench-gateway"  # the gateway's client id at the EHR stand-in
EXPORT_ENDED = ("succeeded", "failed", "cancelled")
# The EHR stand-in prepares the files at once but answers the first status poll "in progress, retry after 1 s",
# as an EHR that takes a moment would: the driver's polling is part of what is measured.
POLLS_BEFORE_READY = 1
RETRY_AFTER_SECONDS = 1


class MemorySampler:
    """The resident set of several process trees (KiB each), sampled together every ``interval`` seconds,
    and with it the CPU seconds used so far by each tree, by PostgreSQL and Redis (all their processes), by
    this process (the EHR stand-in's threads and the polling) and by the whole machine."""

    def __init__(self, roots: Mapping[str, int], *, interval: float) -> None:
        self.roots = dict(roots)
        self.interval = interval
        self.samples: list[tuple[float, dict[str, int]]] = []
        self.cpu: list[tuple[float, dict[str, float]]] = []
        self._programs = {name: program_roots(name) for name in ("postgres", "redis-server")}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bulk-memory", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sizes = {
                name: sum(rss_kib(pid) for pid in process_tree(root)) for name, root in self.roots.items()
            }
            self.samples.append((time.time(), sizes))
            self.cpu.append((time.time(), self._cpu()))
            self._stop.wait(self.interval)

    def _cpu(self) -> dict[str, float]:
        busy, total = machine_cpu_seconds()
        return {
            **{name: tree_cpu_seconds(root) for name, root in self.roots.items()},
            **{name: roots_cpu_seconds(roots) for name, roots in self._programs.items()},
            "benchmark": process_cpu_seconds(os.getpid()),
            "machine_busy": busy,
            "machine_total": total,
        }

    def start(self) -> MemorySampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def cpu_summary(
    samples: Sequence[tuple[float, Mapping[str, float]]], since: float, until: float
) -> dict[str, Any]:
    """CPU seconds each sampled name used between the last sample at or before ``since`` and the first at or
    after ``until`` (the window those two samples span is given as ``seconds``)."""
    before = [s for s in samples if s[0] <= since] or samples[:1]
    after = [s for s in samples if s[0] >= until] or samples[-1:]
    if not before or not after or after[0][0] <= before[-1][0]:
        return {}
    (start, first), (end, last) = before[-1], after[0]
    used = {name: last[name] - first.get(name, 0.0) for name in last}
    return {"seconds": end - start, **used}


def memory_summary(
    samples: Sequence[tuple[float, Mapping[str, int]]], names: Sequence[str], since: float, until: float
) -> dict[str, Any]:
    """Start, peak and end (MiB) of the sum of ``names`` between two instants, and whether the peak of the
    last third of that window stays within 15 % of the peak of its first third."""
    window = [(at, sum(sizes.get(name, 0) for name in names) / 1024) for at, sizes in samples]
    window = [(at, mib) for at, mib in window if since <= at <= until]
    if not window:
        return {"samples": 0}
    third = (until - since) / 3
    first = max((mib for at, mib in window if at <= since + third), default=0.0)
    last = max((mib for at, mib in window if at >= until - third), default=0.0)
    drift = (last - first) / first if first else 0.0
    return {
        "samples": len(window),
        "seconds": until - since,
        "start_mib": window[0][1],
        "peak_mib": max(mib for _, mib in window),
        "end_mib": window[-1][1],
        "first_third_peak_mib": first,
        "last_third_peak_mib": last,
        "drift": drift,
        "flat": abs(drift) <= 0.15,
    }


def _stage_seconds(job_pks: Sequence[int]) -> dict[str, Any]:
    """Where the workers' time went: each job's de-identification (claimed to finished) and each model
    run (started to finished), median and sum in seconds."""
    from clinical_ai.inference.models import InferenceRun
    from clinical_ai.intake.models import IngestJob

    deid = [
        (finished - claimed).total_seconds()
        for claimed, finished in IngestJob.objects.filter(pk__in=job_pks).values_list(
            "claimed_at", "finished_at"
        )
        if claimed and finished
    ]
    runs = [
        (finished - started).total_seconds()
        for started, finished in InferenceRun.objects.filter(ingest_job_id__in=job_pks).values_list(
            "started_at", "finished_at"
        )
        if started and finished
    ]
    return {
        "deid_median_s": statistics.median(deid) if deid else None,
        "deid_sum_s": sum(deid),
        "models_median_s": statistics.median(runs) if runs else None,
        "models_sum_s": sum(runs),
    }


def _results_finished_at(job_pks: Sequence[int]) -> tuple[float | None, dict[str, int], dict[str, int]]:
    """When the last of these jobs got its model results (its last inference run finished, or the job
    itself where it has no run), and the jobs and runs by status."""
    from clinical_ai.inference.models import InferenceRun
    from clinical_ai.intake.models import IngestJob

    jobs = list(IngestJob.objects.filter(pk__in=job_pks).values_list("pk", "status", "finished_at"))
    runs = list(InferenceRun.objects.filter(ingest_job_id__in=job_pks).values_list("status", "finished_at"))
    ends = [at.timestamp() for _, status, at in jobs if at is not None and status in ("succeeded", "failed")]
    ends += [at.timestamp() for _, at in runs if at is not None]
    return (
        max(ends, default=None),
        dict(Counter(status for _, status, _ in jobs)),
        dict(Counter(status for status, _ in runs)),
    )


def _push(bodies: Sequence[tuple[str, bytes]], *, base: str, copies: int, timeout: float) -> dict[str, Any]:
    """POST every bundle ``copies`` times (fresh ids per copy) back to back through gunicorn, with a SMART
    token as an EHR client, and wait until every patient has its model results."""
    from integrations.fhir.client import fetch_access_token, post_fhir
    from tests.factories import make_ehr_client, make_organization

    identity = make_ehr_client(make_organization(f"bench-push-{uuid.uuid4().hex[:6]}"))
    copied = [
        (name, copy, copy_text(body.decode("utf-8-sig"), bundle_ids(body), copy).encode("utf-8"))
        for copy in range(copies)
        for name, body in bodies
    ]
    resources = sum(len(json.loads(body).get("entry") or ()) for _, _, body in copied)
    posted: list[Posted] = []
    token, token_at = "", 0.0
    started = time.time()
    for name, copy, body in copied:
        if not token or time.monotonic() - token_at > 120:  # tokens live 300 s
            token = fetch_access_token(
                token_url=f"{base}/auth/token",
                client_id=identity.client_id,
                private_key_pem=identity.private_pem,
                kid=identity.kid,
                scope="system/*.write",
            )
            token_at = time.monotonic()
        request_id = f"bench-push-{uuid.uuid4().hex}"
        post_started = time.time()
        answer = post_fhir(url=f"{base}/fhir", access_token=token, body=body, request_id=request_id)
        recorded = {key.lower(): value for key, value in answer.headers.items()}.get("x-request-id", "")
        posted.append(Posted("push", copy, name, answer.status, recorded, post_started, time.time()))
    _job_pks_fill(posted)
    pks = [p.job_pk for p in posted if p.job_pk is not None]
    jobs_wait(pks, timeout=timeout + len(pks) * 10)
    records = _bundle_records(posted)
    ended, jobs, runs = _results_finished_at(pks)
    seconds = (ended - started) if ended is not None else float("nan")
    completed = sum(r["done_at"] is not None for r in records)
    return {
        "patients": len(copied),
        "completed": completed,
        "resources": resources,
        "seconds": seconds,
        "patients_per_s": completed / seconds if completed else 0.0,
        "resources_per_s": resources / seconds if completed else 0.0,
        "post_s_total": sum(p.post_returned - p.post_started for p in posted),
        "failed_http": sum(p.status not in (200, 201) for p in posted),
        "jobs": jobs,
        "runs": runs,
        "stages": _stage_seconds(pks),
    }


def _job_pks_fill(posted: Sequence[Posted]) -> None:
    """Each accepted POST's job (found by the request id the gateway answered with)."""
    from clinical_ai.intake.models import IngestJob

    for p in posted:
        if p.status in (200, 201) and p.request_id:
            p.job_pk = IngestJob.objects.filter(request_id=p.request_id).values_list("pk", flat=True).first()


def _bulk(
    resources: Mapping[str, Sequence[dict[str, Any]]],
    *,
    copies: int,
    workers: Mapping[str, Started],
    interval: float,
    timeout: float,
) -> dict[str, Any]:
    """Serve the patients ``copies`` times from the EHR stand-in, register it as a source, ask for an export
    (run by the bulk worker) and wait until every patient has its model results; memory sampled all along."""
    from clinical_ai.audit.services import Actor
    from clinical_ai.intake.models import IngestJob
    from clinical_ai.intake.selectors import batch_progress, batch_refresh_status
    from integrations.bulk.models import BulkExport
    from integrations.bulk.services import export_request, source_create, source_jwks
    from tests.ehr_standin import EhrStandIn
    from tests.factories import make_organization

    served = resources_copied(resources, copies=copies)
    actor = Actor.system("benchmark")
    organization = make_organization(f"bench-bulk-{uuid.uuid4().hex[:6]}")
    with EhrStandIn(served, client_id=CLIENT_ID, client_jwks={"keys": []}) as ehr:
        ehr.polls_before_ready, ehr.retry_after = POLLS_BEFORE_READY, str(RETRY_AFTER_SECONDS)
        source = source_create(
            organization=organization,
            name=f"bench-{uuid.uuid4().hex[:6]}",
            fhir_base_url=ehr.base_url,
            client_id=CLIENT_ID,
            actor=actor,
        )
        ehr.client_jwks = source_jwks(source)  # the EHR registers the gateway's public key
        sampler = MemorySampler({name: w.process.pid for name, w in workers.items()}, interval=interval)
        sampler.start()
        time.sleep(2 * interval)
        started = time.time()
        export = export_request(source=source, actor=actor, full=True, requested_by="benchmark")
        deadline = time.monotonic() + timeout
        while export.status not in EXPORT_ENDED and time.monotonic() < deadline:
            time.sleep(0.2)
            export.refresh_from_db()
        pks: list[int] = []
        finished: set[int] = set()  # jobs failed, or succeeded with every model run finished
        if export.batch_id is not None:
            pks = list(IngestJob.objects.filter(batch_id=export.batch_id).values_list("pk", flat=True))
            finished = jobs_wait(pks, timeout=max(deadline - time.monotonic(), 1.0))
        ended, jobs, runs = _results_finished_at(pks)
        time.sleep(2 * interval)
        sampler.stop()
        served_requests = Counter(r.kind for r in ehr.requests)
    export = BulkExport.objects.select_related("batch").get(pk=export.pk)
    batch = export.batch
    progress: dict[str, Any] = {}
    if batch is not None:  # as the sources page and the commands see it
        batch_refresh_status(batch)
        batch.refresh_from_db()
        seen = batch_progress(batch)
        progress = {
            "status_text": seen.status_text,
            "resources_per_second": seen.resources_per_second,
            "patients_per_second": seen.patients_per_second,
        }
    until = ended if ended is not None else time.time()
    seconds = until - started
    patients = len(finished) - jobs.get("failed", 0)  # with their model results
    lines = batch.lines_read if batch else 0
    received = batch.received_at.timestamp() if batch and batch.received_at else None
    claimed = min(
        (
            at.timestamp()
            for at in IngestJob.objects.filter(pk__in=pks).values_list("claimed_at", flat=True)
            if at
        ),
        default=None,
    )
    names = sorted(workers)
    memory = {
        "interval_s": interval,
        "all": memory_summary(sampler.samples, names, started, until),
        **{name: memory_summary(sampler.samples, [name], started, until) for name in names},
    }
    if received:  # the bulk worker while it downloads and stages
        memory["bulk_downloading"] = memory_summary(sampler.samples, ["bulk"], started, received)
    if claimed:  # the pipeline worker while it processes the batch's patients
        memory["pipeline_processing"] = memory_summary(sampler.samples, ["pipeline"], claimed, until)
    cpu = {"whole": cpu_summary(sampler.cpu, started, until)}
    if received:
        cpu["receiving"] = cpu_summary(sampler.cpu, started, received)
        cpu["processing"] = cpu_summary(sampler.cpu, received, until)
    return {
        "copies": copies,
        "served": sum(map(len, served.values())),
        "export_status": export.status,
        "export_error": export.error,
        "export_polls": export.polls,
        "retry_after_s": RETRY_AFTER_SECONDS,
        "stand_in_requests": dict(served_requests),
        "batch_status": batch.status if batch else "none",
        "batch_progress": progress,
        "lines_read": lines,
        "resources_staged": batch.resources_staged if batch else 0,
        "references_held": batch.references_held if batch else 0,
        "duplicates_skipped": batch.duplicates_skipped if batch else 0,
        "lines_refused": batch.lines_refused if batch else 0,
        "errors": dict(batch.errors) if batch else {},
        "patients_total": batch.patients_total if batch else 0,
        "patients": patients,
        "jobs": jobs,
        "runs": runs,
        "stages": _stage_seconds(pks),
        "seconds": seconds,
        "receive_s": (received - started) if received else None,
        "process_s": (until - received) if received else None,
        "patients_per_s": patients / seconds if patients else 0.0,
        "resources_per_s": lines / seconds if patients else 0.0,
        "memory": memory,
        "cpu": cpu,
    }


def phase_backfill(
    bundles: Sequence[Path],
    *,
    copies: int,
    concurrency: int,
    cpus: Sequence[int],
    database_url: str,
    broker_url: str,
    timeout: float,
    interval: float,
) -> dict[str, Any]:
    """Start the service, warm the pipeline worker up, run the push path then the bulk path."""
    if not broker_url.startswith("redis://"):
        raise SystemExit("the backfill needs --broker-url on Redis")
    used = cores_pin(cpus)
    port = free_port()
    scratch = tempfile.mkdtemp(prefix="bench-bulk-")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "DB_CONN_MAX_AGE": "60",
        "CLINICAL_AI_VAR_DIR": scratch,  # one for all processes (tests.settings makes one each)
        "OMP_NUM_THREADS": "1",
    }
    os.environ.update(env)
    # Only the servers are reached on the port: this process warms the worker up in-process (Django's test
    # client, whose token audience is http://testserver/auth/token).
    env["PUBLIC_BASE_URL"] = f"http://127.0.0.1:{port}"
    database_recreate(database_url, marker="bench")
    django_setup()
    import redis
    from django.core.management import call_command
    from django.db import connection

    from clinical_ai.inference.registry import enabled_models
    from tests.bulk_data import resources_by_type, synthea_bundle_paths

    call_command("migrate", verbosity=0, interactive=False)
    redis.Redis.from_url(broker_url).flushdb()  # only the benchmark's own Redis database
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = str((cursor.fetchone() or ["?"])[0])
    model_ids = [state.model_id for state in enabled_models()]
    bodies = [(path.name.split("_")[0], path.read_bytes()) for path in bundles]
    resources = resources_by_type(synthea_bundle_paths())
    log_dir = Path(scratch)
    workers: dict[str, Started] = {}
    server: Started | None = None
    try:
        workers["pipeline"] = celery_worker_start(
            queues="deid,inference",
            concurrency=concurrency,
            env=env,
            log_path=log_dir / "worker-pipeline.log",
            cpus=used,
            with_parent=True,
        )
        workers["bulk"] = celery_worker_start(
            queues="bulk",
            concurrency=1,
            env=env,
            log_path=log_dir / "worker-bulk.log",
            cpus=used,
            with_parent=True,
        )
        server = gunicorn_start(
            port=port,
            workers=1,
            threads=2,
            env=env,
            config_dir=log_dir,
            log_path=log_dir / "gunicorn.log",
            with_parent=True,
            preloaded=("clinical_ai.deid.services", "clinical_ai.urls"),
        )
        print("  warming the pipeline worker up ...", flush=True)
        warm = _warm_up(
            bodies, worker_pid=workers["pipeline"].process.pid, model_ids=model_ids, timeout=timeout
        )
        print(f"  push: {len(bodies)} bundles x {copies} ...", flush=True)
        push = _push(bodies, base=f"http://127.0.0.1:{port}", copies=copies, timeout=timeout)
        print(f"    {push['patients_per_s']:.3f} patients/s", flush=True)
        print(f"  bulk: {len(bodies)} patients x {copies} from the EHR stand-in ...", flush=True)
        bulk = _bulk(resources, copies=copies, workers=workers, interval=interval, timeout=timeout * copies)
        print(f"    {bulk['patients_per_s']:.3f} patients/s ({bulk['export_status']})", flush=True)
        logs = {name: worker.log() for name, worker in workers.items()}
    finally:
        for started in [*workers.values(), *([server] if server else [])]:
            started.stop()
    return {
        "cpus": used,
        "concurrency": concurrency,
        "postgres": postgres,
        "redis": str(redis.Redis.from_url(broker_url).info("server").get("redis_version", "?")),
        "models": model_ids,
        "warm_up": warm,
        "push": push,
        "bulk": bulk,
        "worker_errors": {
            name: len(re.findall(r"\] (?:ERROR|CRITICAL)/", log)) for name, log in logs.items()
        },
        "log_dir": scratch,
    }
