"""Inference: the pipeline end to end through a real worker, and the models batched against unbatched, in one run.

On the Synthea patient bundles of ``../shared/data`` (one patient each):

1. **end to end**: a real Celery worker process (``-Q deid,inference``, prefork, concurrency 2, pinned with
   ``taskset`` to the cores of ``--cpus``) on PostgreSQL and Redis; the bundles are POSTed in-process with
   ``django.test.Client`` as an EHR client (real SMART token, real intake), and the worker de-identifies
   them and runs every enabled model to pending suggestions. Warm worker: warm-up bundles are sent first,
   until every pool process has run a de-identification and loaded each model, and are not counted. Each
   round of bundles is posted for a fresh organization, so pseudonyms differ and no run is skipped as
   "input unchanged". Two ways of sending: one bundle at a time (each waits for the previous one's
   suggestions: latency) and all bundles back to back (throughput). Latency is from the POST's return to
   the ``finished_at`` of the bundle's last inference run, read from the database. The worker's memory is
   the sum of the resident sets of its process tree, sampled every 0.2 s from ``/proc``.
2. **batching**: the inference stage alone, in-process, no database: the bundles de-identified with
   ``deidentify_documents`` and grouped by patient (as ``manage.py run_model`` does), each patient's
   resources filtered to the types the model declares (as the worker reads them). For each built-in model,
   one ``predict`` over all patients with the manifest's embedding batch, against one ``predict`` per
   patient with an embedding batch of 1 (a second model built from the manifest with
   ``parameters.batch_size`` 1). The findings of both must be the same.

The database named by ``--database-url`` is dropped and created again, and the Redis database of
``--broker-url`` is flushed: give ones used for nothing else (the defaults are ``clinical_ai_bench`` and
Redis database 14). Exits non-zero when any bundle, job or run failed or timed out.

    OMP_NUM_THREADS=1 python benchmarks/inference_pipeline.py --markdown docs/benchmarks.md

writes the section "Inference: end to end and batching" of that file (other sections are kept).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import multiprocessing
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from _harness import ROOT, script_environment  # this folder: the script's own

script_environment(one_blas_thread=True)

from _harness import (  # noqa: E402
    Started,
    celery_worker_start,
    database_recreate,
    machine,
    percentile,
)
from _harness import write_section as _write_section  # noqa: E402
from _worker_memory import TreeMemorySampler, process_tree  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
SYNTHEA_DIR = "synthea_r4_ms_anonymizer_samples"
NOT_PATIENT_BUNDLES = ("hospitalInformation", "practitionerInformation")
SECTION = "Inference: end to end and batching"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/clinical_ai_bench"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/14"
MODES = {"sequential": "one bundle at a time", "burst": "all POSTed back to back"}
POLL_SECONDS = 0.1
MAX_WARM_UP_PAIRS = 6


def _patient_bundles(data_dir: Path) -> list[Path]:
    folder = data_dir / SYNTHEA_DIR
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.glob("*.json") if p.is_file() and not p.name.startswith(NOT_PATIENT_BUNDLES)
    )


def _setup() -> None:
    import logging

    import django

    django.setup()
    # Presidio warns, at every registry it builds, that it skips its Spanish, Italian and Polish recognizers.
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)


def _pin(cpus: Sequence[int]) -> list[int]:
    """Pin this process to ``cpus`` (those that exist here); returns the cores it may use."""
    usable = sorted(set(cpus) & os.sched_getaffinity(0)) or sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, usable)
    return usable


def _median(values: Iterable[float]) -> float:
    found = list(values)
    return statistics.median(found) if found else math.nan


# --- phase 1: end to end through a real worker -------------------------------------------------------------


def _database_recreate(database_url: str) -> None:
    """Drop and create the benchmark's own database (never one whose name does not say so)."""
    database_recreate(database_url, marker="bench")


def _worker_start(*, cpus: Sequence[int], concurrency: int, env: Mapping[str, str], log_dir: Path) -> Started:
    return celery_worker_start(
        queues="deid,inference", concurrency=concurrency, env=env, log_path=log_dir / "worker.log", cpus=cpus
    )


@dataclass
class Posted:
    mode: str
    round: int
    bundle: str
    status: int
    request_id: str
    post_started: float  # time.time()
    post_returned: float
    job_pk: int | None = None


class Poster:
    """POSTs bundles in-process as an EHR client of a fresh organization per round."""

    def __init__(self, label: str) -> None:
        from django.test import Client

        from tests.factories import make_ehr_client, make_organization

        self.http = Client()
        organization = make_organization(f"bench-{label}-{uuid.uuid4().hex[:6]}")
        self.identity = make_ehr_client(organization)
        self._token = ""
        self._token_at = 0.0

    def token(self) -> str:
        from tests.factories import obtain_token

        if not self._token or time.monotonic() - self._token_at > 120:  # tokens live 300 s
            self._token, self._token_at = obtain_token(self.http, self.identity), time.monotonic()
        return self._token

    def post(self, body: bytes, *, mode: str, round_: int, bundle: str) -> Posted:
        from clinical_ai.intake.models import IngestJob
        from tests.factories import post_fhir

        token = self.token()
        started = time.time()
        response = post_fhir(self.http, token, body)
        returned = time.time()
        request_id = str(response.get("X-Request-Id", ""))
        posted = Posted(mode, round_, bundle, response.status_code, request_id, started, returned)
        if response.status_code in (200, 201):
            posted.job_pk = (
                IngestJob.objects.filter(request_id=request_id).values_list("pk", flat=True).first()
            )
        return posted


def _finished_jobs(job_pks: Iterable[int]) -> set[int]:
    """Jobs whose de-identification failed, or succeeded with every inference run finished."""
    from clinical_ai.inference.models import InferenceRun
    from clinical_ai.intake.models import IngestJob

    pks = list(job_pks)
    ended = dict(
        IngestJob.objects.filter(
            pk__in=pks, status__in=[IngestJob.Status.SUCCEEDED, IngestJob.Status.FAILED]
        ).values_list("pk", "status")
    )
    running = set(
        InferenceRun.objects.filter(
            ingest_job_id__in=list(ended),
            status__in=[InferenceRun.Status.QUEUED, InferenceRun.Status.RUNNING],
        ).values_list("ingest_job_id", flat=True)
    )
    return {pk for pk, status in ended.items() if status == IngestJob.Status.FAILED or pk not in running}


def _wait(job_pks: Iterable[int], *, timeout: float) -> set[int]:
    """Wait until the jobs are finished or ``timeout`` seconds pass; returns the finished ones."""
    waiting = set(job_pks)
    done: set[int] = set()
    deadline = time.monotonic() + timeout
    while waiting and time.monotonic() < deadline:
        newly = _finished_jobs(waiting)
        done |= newly
        waiting -= newly
        if waiting:
            time.sleep(POLL_SECONDS)
    return done


def _warm_up(
    bodies: Sequence[tuple[str, bytes]], *, worker_pid: int, model_ids: Sequence[str], timeout: float
) -> dict[str, Any]:
    """Send the smallest bundle, two at a time from two organizations (so both pool processes get one),
    until every pool process has de-identified a job and loaded every model. Returns what was sent."""
    from clinical_ai.inference.models import InferenceRun
    from clinical_ai.intake.models import IngestJob

    name, body = min(bodies, key=lambda item: len(item[1]))
    pool = set(process_tree(worker_pid)) - {worker_pid}
    stages = ["deid", *model_ids]
    warm: set[tuple[int, str]] = set()
    posted: list[Posted] = []
    started = time.time()
    for pair in range(MAX_WARM_UP_PAIRS):
        batch = [Poster(f"warm{pair}{i}").post(body, mode="warm-up", round_=0, bundle=name) for i in (0, 1)]
        posted += batch
        _wait([p.job_pk for p in batch if p.job_pk is not None], timeout=timeout)
        jobs = [p.job_pk for p in posted if p.job_pk is not None]
        for claimed_by in IngestJob.objects.filter(pk__in=jobs).values_list("claimed_by", flat=True):
            warm.add((_pid_of(claimed_by), "deid"))
        for model_id, claimed_by in InferenceRun.objects.filter(ingest_job_id__in=jobs).values_list(
            "model_id", "claimed_by"
        ):
            warm.add((_pid_of(claimed_by), model_id))
        if all((pid, stage) in warm for pid in pool for stage in stages):
            break
    cold = sorted(f"{pid}:{stage}" for pid in pool for stage in stages if (pid, stage) not in warm)
    return {
        "bundle": name,
        "bundles": len(posted),
        "seconds": time.time() - started,
        "pool_processes": len(pool),
        "cold": cold,
    }


def _pid_of(claimed_by: str) -> int:
    _, _, pid = claimed_by.rpartition("/")
    return int(pid) if pid.isdigit() else -1


def _bundle_records(posted: Sequence[Posted]) -> list[dict[str, Any]]:
    """Each posted bundle with its job's and runs' times from the database."""
    from clinical_ai.inference.models import InferenceRun
    from clinical_ai.intake.models import IngestJob

    jobs = IngestJob.objects.in_bulk([p.job_pk for p in posted if p.job_pk is not None])
    runs_by_job: dict[int, list[InferenceRun]] = {}
    for run in InferenceRun.objects.filter(ingest_job_id__in=list(jobs)):
        runs_by_job.setdefault(run.ingest_job_id or 0, []).append(run)
    records = []
    for p in posted:
        job = jobs.get(p.job_pk) if p.job_pk is not None else None
        runs = runs_by_job.get(p.job_pk or 0, [])
        finished = [r.finished_at.timestamp() for r in runs if r.finished_at]
        done = job is not None and job.status in ("succeeded", "failed") and len(finished) == len(runs)
        last = max(finished) if finished and done else None
        if last is None and job is not None and job.status == "succeeded" and not runs and job.finished_at:
            last = job.finished_at.timestamp()
        record: dict[str, Any] = {
            "mode": p.mode,
            "round": p.round,
            "bundle": p.bundle,
            "http_status": p.status,
            "job_status": job.status if job else "none",
            "post_s": p.post_returned - p.post_started,
            "post_started": p.post_started,
            "post_returned": p.post_returned,
            "done_at": last,
            "latency_s": (last - p.post_returned) if last is not None else None,
            "deid_wait_s": (job.claimed_at.timestamp() - p.post_returned) if job and job.claimed_at else None,
            "deid_s": (job.finished_at - job.claimed_at).total_seconds()
            if job and job.claimed_at and job.finished_at
            else None,
            "runs": [
                {
                    "model_id": r.model_id,
                    "status": r.status,
                    "wait_s": (r.started_at.timestamp() - job.finished_at.timestamp())
                    if r.started_at and job and job.finished_at
                    else None,
                    "run_s": (r.finished_at - r.started_at).total_seconds()
                    if r.started_at and r.finished_at
                    else None,
                    "timings": dict(r.timings or {}),
                    "unchanged": any("input unchanged" in str(m) for m in r.messages or []),
                    "error": r.error,
                }
                for r in runs
            ],
        }
        records.append(record)
    return records


def _measure(
    mode: str,
    bodies: Sequence[tuple[str, bytes]],
    *,
    rounds: int,
    timeout: float,
) -> tuple[list[Posted], float, float]:
    """POST every bundle ``rounds`` times (a fresh organization per round) and wait for the suggestions.
    Returns the posted bundles, the start and the end (``time.time()``)."""
    posted: list[Posted] = []
    started = time.time()
    if mode == "sequential":
        for round_ in range(1, rounds + 1):
            poster = Poster(f"seq{round_}")
            for name, body in bodies:
                one = poster.post(body, mode=mode, round_=round_, bundle=name)
                posted.append(one)
                if one.job_pk is not None:
                    _wait([one.job_pk], timeout=timeout)
    else:
        posters = [Poster(f"burst{round_}") for round_ in range(1, rounds + 1)]
        started = time.time()
        for round_, poster in enumerate(posters, start=1):
            posted += [poster.post(body, mode=mode, round_=round_, bundle=name) for name, body in bodies]
        _wait([p.job_pk for p in posted if p.job_pk is not None], timeout=timeout + len(posted) * 10)
    return posted, started, time.time()


def _mode_summary(
    records: Sequence[dict[str, Any]], started: float, sampler: TreeMemorySampler
) -> dict[str, Any]:
    ended = [r["done_at"] for r in records if r["done_at"] is not None]
    window_end = max(ended, default=time.time())
    latencies = [r["latency_s"] for r in records if r["latency_s"] is not None]
    runs = [run for r in records for run in r["runs"]]
    by_model: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_model.setdefault(run["model_id"], []).append(run)
    return {
        "bundles": len(records),
        "completed": len(ended),
        "seconds": window_end - started,
        "bundles_per_s": len(ended) / (window_end - started) if ended else 0.0,
        "latency_p50": percentile(latencies, 0.5),
        "latency_p95": percentile(latencies, 0.95),
        "latency_max": max(latencies, default=math.nan),
        "post_s": _median(r["post_s"] for r in records),
        "deid_wait_s": _median(r["deid_wait_s"] for r in records if r["deid_wait_s"] is not None),
        "deid_s": _median(r["deid_s"] for r in records if r["deid_s"] is not None),
        "models": {
            model_id: {
                "wait_s": _median(run["wait_s"] for run in model_runs if run["wait_s"] is not None),
                "run_s": _median(run["run_s"] for run in model_runs if run["run_s"] is not None),
                "predict_ms": _median(
                    float(run["timings"]["predict_ms"])
                    for run in model_runs
                    if "predict_ms" in run["timings"]
                ),
                "read_ms": _median(
                    float(run["timings"]["read_ms"]) for run in model_runs if "read_ms" in run["timings"]
                ),
            }
            for model_id, model_runs in sorted(by_model.items())
        },
        "runs": dict(Counter(run["status"] for run in runs)),
        "unchanged_runs": sum(run["unchanged"] for run in runs),
        "model_loads": sum(float(run["timings"].get("load_ms", 0)) > 0 for run in runs),
        "failed_http": sum(r["http_status"] not in (200, 201) for r in records),
        "failed_jobs": sum(r["job_status"] != "succeeded" for r in records),
        "peak_rss_mib": sampler.peak_mib(started, window_end),
    }


def phase_end_to_end(
    bundles: Sequence[Path],
    *,
    rounds: int,
    concurrency: int,
    cpus: Sequence[int],
    database_url: str,
    broker_url: str,
    timeout: float,
) -> dict[str, Any]:
    if not broker_url.startswith("redis://"):
        raise SystemExit("the end-to-end phase needs --broker-url on Redis")
    os.environ["DATABASE_URL"] = database_url
    os.environ["CELERY_BROKER_URL"] = broker_url
    used = _pin(cpus)
    _database_recreate(database_url)
    _setup()
    import redis
    from django.core.management import call_command
    from django.db import connection

    from clinical_ai.inference.registry import enabled_models
    from clinical_ai.review.models import Suggestion

    started = time.perf_counter()
    call_command("migrate", verbosity=0, interactive=False)
    migrate_s = time.perf_counter() - started
    redis.Redis.from_url(broker_url).flushdb()  # only the benchmark's own Redis database
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = str((cursor.fetchone() or ["?"])[0])
    redis_version = str(redis.Redis.from_url(broker_url).info("server").get("redis_version", "?"))
    model_ids = [state.model_id for state in enabled_models()]
    bodies = [(path.name.split("_")[0], path.read_bytes()) for path in bundles]
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "OMP_NUM_THREADS": "1",
    }
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as log_dir:
        worker = _worker_start(cpus=used, concurrency=concurrency, env=env, log_dir=Path(log_dir))
        sampler = TreeMemorySampler(worker.process.pid).start()
        try:
            time.sleep(1)
            ready_mib = sampler.peak_mib(time.time() - 1)
            print(f"  worker ready ({ready_mib:,.0f} MiB); warming up ...", flush=True)
            warm = _warm_up(bodies, worker_pid=worker.process.pid, model_ids=model_ids, timeout=timeout)
            time.sleep(1)
            warm["idle_rss_mib"] = sampler.peak_mib(time.time() - 1)
            print(f"  warm after {warm['bundles']} bundle(s), {warm['idle_rss_mib']:,.0f} MiB", flush=True)
            modes: dict[str, Any] = {}
            all_records: list[dict[str, Any]] = []
            for mode in MODES:
                print(f"  {mode}: {len(bodies)} bundles x {rounds} round(s) ...", flush=True)
                posted, mode_started, _ = _measure(mode, bodies, rounds=rounds, timeout=timeout)
                records = _bundle_records(posted)
                all_records += records
                modes[mode] = _mode_summary(records, mode_started, sampler)
                print(
                    f"    {modes[mode]['bundles_per_s']:.3f} bundles/s, p50 {modes[mode]['latency_p50']:.2f} s",
                    flush=True,
                )
            worker_log = worker.log()
        finally:
            sampler.stop()
            worker.stop()
    measured = Suggestion.objects.exclude(run__ingest_job__organization__slug__startswith="bench-warm")
    suggestions: dict[str, dict[str, int]] = {}
    for mode_name, model_id, count in _suggestion_counts(measured):
        suggestions.setdefault(mode_name, {})[model_id] = count
    for mode, summary in modes.items():
        summary["suggestions"] = suggestions.get(mode, {})
    return {
        "cpus": used,
        "concurrency": concurrency,
        "taskset": bool(shutil.which("taskset")),
        "rounds": rounds,
        "worker_command": " ".join("python" if a == sys.executable else a for a in worker.argv),
        "worker_torch_threads": env["OMP_NUM_THREADS"],
        "pool_processes": warm["pool_processes"],
        "postgres": postgres,
        "redis": redis_version,
        "migrate_s": migrate_s,
        "ready_rss_mib": ready_mib,
        "warm_up": warm,
        "models": model_ids,
        "modes": modes,
        "records": all_records,
        "worker_errors": len(re.findall(r"\] (?:ERROR|CRITICAL)/", worker_log)),
    }


def _suggestion_counts(suggestions: Any) -> list[tuple[str, str, int]]:
    """(mode, model id, pending suggestions), the mode read from the organization's slug ("bench-seq1-...")."""
    from django.db.models import Count

    counts: Counter[tuple[str, str]] = Counter()
    for row in (
        suggestions.filter(status="pending")
        .values("run__ingest_job__organization__slug", "model_id")
        .annotate(n=Count("pk"))
    ):
        slug = str(row["run__ingest_job__organization__slug"])
        mode = "sequential" if slug.startswith("bench-seq") else "burst"
        counts[(mode, str(row["model_id"]))] += int(row["n"])
    return [(mode, model_id, n) for (mode, model_id), n in sorted(counts.items())]


# --- phase 2: the inference stage alone, batched and unbatched ---------------------------------------------


class CountingEncoder:
    """Forwards to the model's sentence encoder, counting the texts and the forward passes."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.texts = 0
        self.passes = 0

    def encode(self, texts: Sequence[str], *, batch_size: int | None = None) -> Any:
        size = batch_size or int(self.inner.batch_size)
        self.texts += len(texts)
        self.passes += math.ceil(len(texts) / size)
        return self.inner.encode(texts, batch_size=batch_size)


def _service_view(context: Any, manifest: Any) -> Any:
    """The patient as the worker reads it (``patient_context_load``): the types the model declares and
    Patient, newest first (here: last in the bundle first), identical copies once, at most the configured cap."""
    from django.conf import settings

    from clinical_ai.core.sealing import canonical_json
    from clinical_ai.inference.engine.types import PatientContext

    types = {item.resource_type for item in manifest.inputs} | {"Patient"}
    seen: set[bytes] = set()
    kept = []
    for source in reversed(context.resources):
        if source.resource_type not in types:
            continue
        key = canonical_json(source.resource)
        if key not in seen:
            seen.add(key)
            kept.append(source)
    return PatientContext(context.patient_pseudonym, tuple(kept[: settings.INFERENCE_MAX_INPUT_RESOURCES]))


def _findings(results: Sequence[Any]) -> list[dict[str, float | None]]:
    return [{f.key: f.score for f in result.findings} for result in results]


def phase_batching(bundles: Sequence[Path], *, repeat: int, cpus: Sequence[int]) -> dict[str, Any]:
    used = _pin(cpus)
    _setup()
    import torch

    from clinical_ai.inference.management.commands.run_model import patient_contexts
    from clinical_ai.inference.registry import catalogue, inference_device, model_build

    patient_contexts(min(bundles, key=lambda p: p.stat().st_size), organization="warm-up")  # engines loaded
    started = time.perf_counter()
    contexts = [c for path in bundles for c in patient_contexts(path, organization="benchmark")]
    deid_s = time.perf_counter() - started
    device = inference_device()
    models: dict[str, Any] = {}
    for model_id in sorted(catalogue().models):
        manifest = catalogue().manifest(model_id)
        assert manifest is not None
        patients = [_service_view(c, manifest) for c in contexts]
        built_at = time.perf_counter()
        batched = model_build(manifest, device=device)
        load_s = time.perf_counter() - built_at
        unbatched = model_build(
            replace(manifest, parameters={**manifest.parameters, "batch_size": 1}), device=device
        )
        encoders: dict[str, CountingEncoder] = {}
        for label, model in (("batched", batched), ("unbatched", unbatched)):
            if getattr(model, "encoder", None) is not None:
                encoders[label] = CountingEncoder(model.encoder)  # type: ignore[attr-defined]
                model.encoder = encoders[label]  # type: ignore[attr-defined]
        batch_size = int(manifest.parameters.get("batch_size", 0)) or None
        batched.predict(patients[:1])  # warm-up: first-call allocations, caches
        unbatched.predict(patients[:1])
        timings: dict[str, list[float]] = {"batched": [], "unbatched": []}
        outputs: dict[str, list[Any]] = {}
        counted: dict[str, tuple[int, int]] = {}
        for _ in range(repeat):  # interleaved, so drift hits both alike
            for label in ("batched", "unbatched"):
                encoder = encoders.get(label)
                if encoder is not None:
                    encoder.texts = encoder.passes = 0
                clock = time.perf_counter()
                if label == "batched":
                    results = batched.predict(patients)
                else:
                    results = [result for patient in patients for result in unbatched.predict([patient])]
                timings[label].append(time.perf_counter() - clock)
                outputs[label] = results
                counted[label] = (encoder.texts, encoder.passes) if encoder else (0, 0)
        same_keys = [set(a) == set(b) for a, b in zip(*map(_findings, outputs.values()), strict=True)]
        score_gaps = [
            abs((a[key] or 0.0) - (b[key] or 0.0))
            for a, b in zip(*map(_findings, outputs.values()), strict=True)
            for key in set(a) & set(b)
        ]
        sentences = sum(int(r.features.get("sentence_count", 0)) for r in outputs["batched"])
        models[model_id] = {
            "version": manifest.version,
            "kind": manifest.kind,
            "patients": len(patients),
            "resources": sum(len(p.resources) for p in patients),
            "input_types": sorted({item.resource_type for item in manifest.inputs}),
            "embedding_batch": batch_size if manifest.kind == "transformers" else None,
            "load_s": load_s,
            "sentences": sentences,
            "findings": sum(len(r.findings) for r in outputs["batched"]),
            "identical": all(same_keys),
            "patients_differing": same_keys.count(False),
            "max_score_gap": max(score_gaps, default=0.0),
            **{
                label: {
                    "seconds": min(timings[label]),
                    "all_seconds": timings[label],
                    "encoder_texts": counted[label][0],
                    "encoder_passes": counted[label][1],
                }
                for label in ("batched", "unbatched")
            },
        }
    return {
        "cpus": used,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": device,
        "patients": len(contexts),
        "deid_s": deid_s,
        "models": models,
    }


def _run_in_process(function: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Run ``function`` in a fresh process (its memory and imports its own) and return its result."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        result: dict[str, Any] = pool.apply(function, args, kwargs)
    return result


# --- report -------------------------------------------------------------------------------------------------


def _s(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def failures(results: Mapping[str, Any]) -> list[str]:
    problems = []
    for mode, summary in (results.get("end_to_end") or {}).get("modes", {}).items():
        failed_runs = summary["runs"].get("failed", 0)
        for what, count in (
            ("POSTs not accepted", summary["failed_http"]),
            ("jobs not succeeded", summary["failed_jobs"]),
            ("bundles not finished", summary["bundles"] - summary["completed"]),
            ("runs failed", failed_runs),
            ("runs skipped", summary["runs"].get("skipped", 0)),
        ):
            if count:
                problems.append(f"{mode}: {count} {what}")
    for model_id, figures in (results.get("batching") or {}).get("models", {}).items():
        if not figures["identical"]:
            problems.append(
                f"{model_id}: batched and unbatched findings differ for {figures['patients_differing']}"
            )
    return problems


def _render_end_to_end(e2e: Mapping[str, Any]) -> list[str]:
    modes = e2e["modes"]
    names = list(modes)
    model_ids = sorted({m for summary in modes.values() for m in summary["models"]})

    def row(label: str, cell: Callable[[Mapping[str, Any]], str]) -> str:
        return "| " + label + " | " + " | ".join(cell(modes[name]) for name in names) + " |"

    lines = [
        "| | " + " | ".join(MODES[name] for name in names) + " |",
        "|:---|" + "---:|" * len(names),
        row("bundles (one patient each)", lambda m: f"{m['completed']} of {m['bundles']}"),
        row("wall time, first POST to last suggestion (s)", lambda m: _s(m["seconds"], 1)),
        row("**bundles/s**", lambda m: f"**{_s(m['bundles_per_s'], 3)}**"),
        row(
            "**latency p50 (s)**, POST returned to last run finished", lambda m: f"**{_s(m['latency_p50'])}**"
        ),
        row("**latency p95 (s)**", lambda m: f"**{_s(m['latency_p95'])}**"),
        row("latency max (s)", lambda m: _s(m["latency_max"])),
        row("POST, median (s): validation, sealing, commit", lambda m: _s(m["post_s"])),
        row("de-id task claimed, after the POST returned, median (s)", lambda m: _s(m["deid_wait_s"])),
        row("de-identification task, median (s)", lambda m: _s(m["deid_s"])),
    ]

    def of(model_id: str, *keys: str, digits: int = 2) -> Callable[[Mapping[str, Any]], str]:
        def cell(mode: Mapping[str, Any]) -> str:
            figures = mode["models"].get(model_id, {})
            return " / ".join(_s(figures.get(key), digits) for key in keys)

        return cell

    def suggested(model_id: str) -> Callable[[Mapping[str, Any]], str]:
        return lambda mode: str(mode.get("suggestions", {}).get(model_id, 0))

    for model_id in model_ids:
        lines += [
            row(f"{model_id}: wait after de-id, median (s)", of(model_id, "wait_s")),
            row(f"{model_id}: run, claim to finish, median (s)", of(model_id, "run_s")),
            row(
                f"{model_id}: of which predict / read inputs, median (ms)",
                of(model_id, "predict_ms", "read_ms", digits=0),
            ),
        ]
    lines += [
        row("**peak worker RSS (MiB)**, whole process tree", lambda m: f"**{m['peak_rss_mib']:,.0f}**"),
        row(
            "runs: succeeded / failed / skipped",
            lambda m: (
                f"{m['runs'].get('succeeded', 0)} / {m['runs'].get('failed', 0)} / {m['runs'].get('skipped', 0)}"
            ),
        ),
        row(
            "runs skipped as 'input unchanged'; model loads while measured",
            lambda m: f"{m['unchanged_runs']}; {m['model_loads']}",
        ),
    ]
    lines += [row(f"pending suggestions: {model_id}", suggested(model_id)) for model_id in model_ids]
    return lines


def _render_batching(batching: Mapping[str, Any]) -> list[str]:
    lines = [
        "| model | way | predict calls | embedding batch | best time (s) | patients/s | ms/patient "
        "| sentences/s | texts encoded | encoder passes | speed-up |",
        "|:---|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model_id, m in batching["models"].items():
        for label in ("batched", "unbatched"):
            figures = m[label]
            seconds = figures["seconds"]
            embedding = m["embedding_batch"]
            lines.append(
                f"| {model_id} {m['version']} | {label} | {1 if label == 'batched' else m['patients']} "
                f"| {('-' if embedding is None else (embedding if label == 'batched' else 1))} "
                f"| {seconds:.3f} | {m['patients'] / seconds:,.1f} | {1000 * seconds / m['patients']:,.1f} "
                f"| {(_s(m['sentences'] / seconds, 0) if m['sentences'] else '-')} "
                f"| {figures['encoder_texts'] or '-'} | {figures['encoder_passes'] or '-'} "
                f"| {m['unbatched']['seconds'] / seconds:.2f}x |"
            )
    return lines


def render(results: Mapping[str, Any], command: str) -> str:
    info = results["machine"]
    e2e, batching = results.get("end_to_end"), results.get("batching")
    lines = [
        f"## {SECTION}",
        "",
        f"Measured {results['date']} with:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['os']}; Python {info['python']}, "
        f"transformers {info['transformers']}, Celery {info['celery']}"
        + (f", torch {batching['torch']} on {batching['device']}" if batching else "")
        + (f", PostgreSQL {e2e['postgres']}, Redis {e2e['redis']}" if e2e else "")
        + f"; OMP_NUM_THREADS={info['OMP_NUM_THREADS']}. Load average (1, 5, 15 min) before the run "
        f"{info['load_average']}, after it {info.get('load_average_after', '?')}: other work on the machine "
        "shares the cores when it is above the cores used.",
        "",
    ]
    if e2e:
        warm = e2e["warm_up"]
        pinned = (
            f"pinned with `taskset -c {','.join(map(str, e2e['cpus']))}`"
            if e2e["taskset"]
            else "not pinned (no taskset)"
        )
        lines += [
            "### End to end: POST to pending suggestions, through a real worker",
            "",
            f"{len(e2e['cpus'])} cores in all: one Celery worker (`{e2e['worker_command']}`), "
            f"{pinned}, concurrency {e2e['concurrency']} ({e2e['pool_processes']} pool processes, torch threads "
            f"{e2e['worker_torch_threads']} each), on PostgreSQL and Redis; the bundles are POSTed by the benchmark "
            "process itself (`django.test.Client`, real SMART token and intake), pinned to the same cores. "
            f"Models enabled: {', '.join(e2e['models'])}. Warm worker: {warm['bundles']} warm-up bundle(s) "
            f"({warm['bundle']}, {warm['seconds']:.0f} s) until each pool process had de-identified a job and "
            "loaded every model"
            + (f" (still cold: {', '.join(warm['cold'])})" if warm["cold"] else "")
            + f"; not counted. Worker memory: {e2e['ready_rss_mib']:,.0f} MiB when ready, "
            f"{warm['idle_rss_mib']:,.0f} MiB idle after warm-up. Each round of "
            f"{e2e['modes']['sequential']['bundles'] // max(1, e2e['rounds'])} Synthea patient bundles is posted "
            f"for a fresh organization; {e2e['rounds']} round(s) per way of sending.",
            "",
            *_render_end_to_end(e2e),
            "",
        ]
    if batching:
        lines += [
            "### Inference stage alone: batched against unbatched, in-process",
            "",
            f"{batching['patients']} Synthea patients de-identified in-process ({batching['deid_s']:.1f} s) and "
            "grouped by patient; each model gets the resource types its manifest declares, as in the worker. "
            f"Cores {','.join(map(str, batching['cpus']))}, torch threads {batching['torch_threads']}. "
            f"Batched: one `predict` over all patients, the manifest's embedding batch. Unbatched: one `predict` "
            "per patient with a model built from the manifest with `parameters.batch_size` 1. Best of "
            f"{len(next(iter(batching['models'].values()))['batched']['all_seconds'])} interleaved passes after "
            "a warm-up call.",
            "",
            *_render_batching(batching),
            "",
        ]
        for model_id, m in batching["models"].items():
            verdict = (
                "identical findings (the same keys for every patient)"
                if m["identical"]
                else f"findings DIFFER for {m['patients_differing']} patient(s)"
            )
            lines.append(
                f"- {model_id}: {m['findings']} findings over {m['patients']} patients "
                f"({m['resources']:,} input resources, types "
                f"{', '.join(m['input_types']) or 'none declared: Patient only'}"
                + (f", {m['sentences']:,} sentences read" if m["sentences"] else "")
                + f"); batched and unbatched give {verdict}"
                + (f", scores within {m['max_score_gap']:.1e}" if m["identical"] and m["findings"] else "")
                + f". Model build {m['load_s']:.1f} s."
            )
        lines.append("")
    lines += ["How to read it:", "", *_reading(results), ""]
    problems = failures(results)
    if problems:
        lines += ["**Failures:** " + "; ".join(problems) + ".", ""]
    return "\n".join(lines)


def _reading(results: Mapping[str, Any]) -> list[str]:
    notes: list[str] = []
    e2e, batching = results.get("end_to_end"), results.get("batching")
    if e2e:
        seq = e2e["modes"]["sequential"]
        burst = e2e["modes"]["burst"]
        inference = sum(m["run_s"] for m in seq["models"].values() if not math.isnan(m["run_s"]))
        deid = seq["deid_s"]
        dominant = "de-identification" if deid > inference else "inference"
        notes.append(
            f"- One bundle at a time, the median bundle spends {_s(seq['post_s'])} s in the POST (before the "
            f"latency clock starts), {_s(deid)} s in its de-identification task and {_s(inference)} s in its "
            f"inference runs together (claim to finish, including reading and decrypting the inputs and storing "
            f"suggestions, audit rows and FHIR outputs); the rest of the {_s(seq['latency_p50'])} s is queueing "
            f"and hand-over. **{dominant.capitalize()} dominates** the worker's share."
        )
        waits = [m["wait_s"] for m in seq["models"].values() if not math.isnan(m["wait_s"])]
        if waits:
            notes.append(
                f"- Between the end of the de-identification task and the claim of an inference run, "
                f"{_s(min(waits))} to {_s(max(waits))} s pass (median, one bundle at a time): dispatch on "
                "commit, Redis, and the worker fetching the message."
                + (
                    " The negative 'de-id task claimed' means the worker had claimed the job before the POST's "
                    "response was back: the job is dispatched on commit, before the view returns."
                    if seq["deid_wait_s"] < 0
                    else ""
                )
            )
        faster = burst["bundles_per_s"] > seq["bundles_per_s"]
        notes.append(
            f"- Back to back, {_s(burst['bundles_per_s'], 3)} bundles/s against {_s(seq['bundles_per_s'], 3)} one "
            + (
                "at a time: the two pool processes overlap."
                if faster
                else "at a time: no gain here. The POSTs run in the benchmark process on the same cores as the "
                "two pool processes, so a burst leaves them less CPU"
                + (
                    ", and other work on the machine took its share (see the load average)."
                    if _busy(results)
                    else "."
                )
            )
            + f" The median de-identification task took {_s(burst['deid_s'])} s against {_s(seq['deid_s'])} s "
            "one at a time: the same work with less CPU each. Latency then includes the queue (all bundles wait "
            "for the de-identification of those posted before them), so it grows with the number sent."
        )
        notes.append(
            "- In the service a Synthea bundle is one patient, so each inference task carries one patient: "
            "batching across patients happens only when a bundle (or an NDJSON file) holds several, or when "
            "the sweep sends several runs of a model at once. Within one patient the problem-list model still "
            "encodes all its spans in batches of the manifest's size."
        )
    if batching:
        for model_id, m in batching["models"].items():
            ratio = m["unbatched"]["seconds"] / m["batched"]["seconds"]
            if m["embedding_batch"]:
                notes.append(
                    f"- {model_id}: batching gives {ratio:.2f}x. It comes from two things: texts met by several "
                    f"patients are encoded once ({m['batched']['encoder_texts']:,} texts against "
                    f"{m['unbatched']['encoder_texts']:,} one patient at a time) and forward passes of "
                    f"{m['embedding_batch']} texts instead of one ({m['batched']['encoder_passes']:,} passes "
                    f"against {m['unbatched']['encoder_passes']:,})."
                )
            else:
                notes.append(
                    f"- {model_id}: rules over the latest vital signs, "
                    f"{1000 * m['batched']['seconds'] / m['patients']:.1f} ms a patient; batching changes "
                    f"little ({ratio:.2f}x), as expected for a model with no tensor work."
                )
    if batching:
        for model_id, m in batching["models"].items():
            if m["findings"] == 0:
                notes.append(
                    f"- {model_id} found nothing on these patients"
                    + (
                        ": as expected, since Synthea codes every condition its notes mention, so a "
                        "complete record has no gap (docs/models-eval-problem-list.md counts any proposal on "
                        "such a record as a false positive, and removes coded conditions to measure recall). "
                        "Its time is still spent reading and encoding the notes, which is what is measured here."
                        if model_id == "problem-list-gaps"
                        else "."
                    )
                )
    if _busy(results):
        info = results["machine"]
        notes.append(
            f"- The machine was shared during this run (load average {info['load_average']} before, "
            f"{info.get('load_average_after', '?')} after, on {info['cores']} cores): absolute times are inflated, "
            "the back-to-back figures most. The batched/unbatched ratios, measured in interleaved passes, hold up "
            "better."
        )
    if e2e and batching:
        notes.append(
            f"- De-identifying the same patients in one process took {batching['deid_s']:.1f} s "
            f"({batching['deid_s'] / max(1, batching['patients']):.2f} s a patient), against "
            + ", ".join(
                f"{1000 * m['batched']['seconds'] / m['patients']:.0f} ms ({model_id})"
                for model_id, m in batching["models"].items()
            )
            + " a patient for the models batched."
        )
    notes.append(
        "- Memory is the resident set summed over the worker's main process and its pool processes; pages they "
        "share (copy-on-write after the fork) are counted once per process, so the sum overstates what the "
        "machine gives them."
    )
    return notes


def _busy(results: Mapping[str, Any]) -> bool:
    """Whether other work shared the cores: a 1-minute load average above the cores used, before or after."""
    info = results["machine"]
    cores = len((results.get("end_to_end") or results.get("batching") or {}).get("cpus", [])) or int(
        info["cores"]
    )
    loads = [info.get("load_average", ""), info.get("load_average_after", "")]
    return any(float(load.split(",")[0]) > cores for load in loads if load)


def write_section(path: Path, section: str) -> None:
    """Replace this benchmark's section of ``path`` (or add it), keeping any other section."""
    _write_section(path, SECTION, section)


def _cpus(value: str) -> list[int]:
    try:
        return sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError("a comma-separated list of core numbers, e.g. 0,1") from exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--bundles", type=int, default=None, help="only the first N patient bundles")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all bundles per way of sending")
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed passes of the batching phase (best counts)"
    )
    parser.add_argument("--cpus", type=_cpus, default=[0, 1], help="cores for the worker and the poster")
    parser.add_argument("--concurrency", type=int, default=2, help="the worker's pool processes")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="dropped and created again")
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL, help="a Redis database, flushed")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a bundle may take")
    parser.add_argument("--skip-end-to-end", action="store_true")
    parser.add_argument("--skip-batching", action="store_true")
    parser.add_argument("--markdown", type=Path, default=None, help="write the section into this file")
    parser.add_argument("--json", type=Path, default=None, help="write the raw figures here")
    args = parser.parse_args(argv)

    bundles = _patient_bundles(args.data_dir)[: args.bundles]
    if not bundles:
        print(f"no Synthea bundles under {args.data_dir / SYNTHEA_DIR}: inference benchmark skipped")
        return 0
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "bundles": len(bundles),
    }
    if not args.skip_end_to_end:
        print(
            f"end to end: {len(bundles)} bundles x {args.rounds} round(s) per way of sending ...", flush=True
        )
        results["end_to_end"] = _run_in_process(
            phase_end_to_end,
            bundles,
            rounds=args.rounds,
            concurrency=args.concurrency,
            cpus=args.cpus,
            database_url=args.database_url,
            broker_url=args.broker_url,
            timeout=args.timeout,
        )
    if not args.skip_batching:
        print(f"batching: {len(bundles)} patients, {args.repeat} passes ...", flush=True)
        results["batching"] = _run_in_process(phase_batching, bundles, repeat=args.repeat, cpus=args.cpus)
    results["machine"]["load_average_after"] = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    command = "OMP_NUM_THREADS=1 python benchmarks/inference_pipeline.py" + "".join(
        f" {flag}" for flag in (argv if argv is not None else sys.argv[1:])
    )
    section = render(results, command)
    print("")
    print(section)
    if args.markdown:
        write_section(args.markdown, section)
        print(f"wrote the section {SECTION!r} of {args.markdown}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    problems = failures(results)
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
