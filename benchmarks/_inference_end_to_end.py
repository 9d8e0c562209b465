"""Phase 1 of the inference benchmark: the pipeline end to end through a real Celery worker (``-Q
deid,inference``, pinned with ``taskset``) on PostgreSQL and Redis, warmed up first; bundles POSTed one at a
time (latency) and back to back (throughput), each bundle's times read from the database."""

from __future__ import annotations

import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from _harness import Started, celery_worker_start, database_recreate, percentile
from _inference_posting import Posted, Poster, jobs_wait
from _inference_process import cores_pin, django_setup
from _worker_memory import TreeMemorySampler, process_tree

MODES = {"sequential": "one bundle at a time", "burst": "all POSTed back to back"}
MAX_WARM_UP_PAIRS = 6


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
        jobs_wait([p.job_pk for p in batch if p.job_pk is not None], timeout=timeout)
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
                    jobs_wait([one.job_pk], timeout=timeout)
    else:
        posters = [Poster(f"burst{round_}") for round_ in range(1, rounds + 1)]
        started = time.time()
        for round_, poster in enumerate(posters, start=1):
            posted += [poster.post(body, mode=mode, round_=round_, bundle=name) for name, body in bodies]
        jobs_wait([p.job_pk for p in posted if p.job_pk is not None], timeout=timeout + len(posted) * 10)
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
    used = cores_pin(cpus)
    _database_recreate(database_url)
    django_setup()
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
