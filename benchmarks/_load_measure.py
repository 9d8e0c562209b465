"""The load test's measurements, from the requests sent, the database and the samples: per phase throughput,
latency, errors and end-to-end times; memory and backlog trends; the queue timeline."""

from __future__ import annotations

import argparse
import datetime as dt
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

from _harness import percentile
from _load_generator import INTAKE, VIEW, Phase, Record


def outcomes_read(records: Sequence[Record]) -> dict[str, dict[str, Any]]:
    """For each accepted bundle (by request id): its job's status and when its last model run finished."""
    from clinical_ai.inference.models import InferenceRun
    from clinical_ai.intake.models import IngestJob

    wanted = [r.request_id for r in records if r.kind == INTAKE and 200 <= r.status < 300]
    jobs = {
        row["request_id"]: row
        for row in IngestJob.objects.filter(request_id__in=wanted).values(
            "pk", "request_id", "status", "claimed_at", "finished_at"
        )
    }
    runs: dict[int, list[dict[str, Any]]] = {}
    for run in InferenceRun.objects.filter(ingest_job_id__in=[j["pk"] for j in jobs.values()]).values(
        "ingest_job_id", "model_id", "status", "started_at", "finished_at"
    ):
        runs.setdefault(int(run["ingest_job_id"] or 0), []).append(dict(run))
    outcomes: dict[str, dict[str, Any]] = {}
    for request_id, job in jobs.items():
        job_runs = runs.get(int(job["pk"]), [])
        settled = job["status"] == "failed" or (
            job["status"] == "succeeded" and all(r["status"] not in ("queued", "running") for r in job_runs)
        )
        finished = [r["finished_at"].timestamp() for r in job_runs if r["finished_at"]]
        done_at = None
        if settled and job["status"] == "succeeded":
            job_end = job["finished_at"].timestamp() if job["finished_at"] else None
            done_at = max(finished) if finished else job_end
        outcomes[request_id] = {
            "job_status": job["status"],
            "runs": dict(Counter(str(r["status"]) for r in job_runs)),
            "done_at": done_at,
            "deid_s": (job["finished_at"] - job["claimed_at"]).total_seconds()
            if job["claimed_at"] and job["finished_at"]
            else None,
        }
    return outcomes


def queues_drain(
    request_ids: Sequence[str],
    *,
    timeout: float,
    generator_done_at: float,
    give_up: Callable[[], bool] = lambda: False,
) -> float:
    """Wait until every accepted bundle is settled, ``timeout`` passes or ``give_up()`` (a worker died);
    returns the seconds waited."""
    from django.db import OperationalError, connections

    from clinical_ai.inference.models import InferenceRun
    from clinical_ai.intake.models import IngestJob

    deadline = generator_done_at + timeout
    while time.time() < deadline:
        try:
            busy = (
                IngestJob.objects.filter(
                    request_id__in=request_ids, status__in=["queued", "running"]
                ).exists()
                or InferenceRun.objects.filter(
                    ingest_job__request_id__in=request_ids, status__in=["queued", "running"]
                ).exists()
            )
        except OperationalError:  # PostgreSQL restarted: ask again
            connections.close_all()
            busy = True
        if not busy or give_up():
            break
        time.sleep(1)
    return time.time() - generator_done_at


def _slope_per_minute(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of value against time, per minute (NaN with fewer than 3 points)."""
    if len(points) < 3:
        return math.nan
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return math.nan
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / spread


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def summarize(
    records: Sequence[Record],
    outcomes: Mapping[str, Mapping[str, Any]],
    phases: Sequence[Phase],
    windows: Mapping[str, tuple[float, float]],
) -> dict[str, Any]:
    """Per phase: throughput, latency, errors and end-to-end times."""
    summary: dict[str, Any] = {}
    for phase in phases:
        start, end = windows[phase.name]
        seconds = max(end - start, 1e-9)
        mine = [r for r in records if r.phase == phase.name]
        figures: dict[str, Any] = {"seconds": seconds, "target_intake_rate": phase.intake_rate}
        figures["target_view_rate"] = phase.view_rate
        for kind in (INTAKE, VIEW):
            of_kind = [r for r in mine if r.kind == kind]
            ok = [r for r in of_kind if 200 <= r.status < 300]
            latencies = [r.ended - r.started for r in ok]
            errors = Counter(r.error or str(r.status) for r in of_kind if not 200 <= r.status < 300)
            figures[kind] = {
                "sent": len(of_kind),
                "ok": len(ok),
                "per_s": len(ok) / seconds,
                "p50_s": percentile(latencies, 0.5),
                "p95_s": percentile(latencies, 0.95),
                "p99_s": percentile(latencies, 0.99),
                "max_s": max(latencies, default=math.nan),
                "send_lag_p99_s": percentile([max(0.0, r.started - r.scheduled) for r in of_kind], 0.99),
                "errors": dict(errors),
                "error_rate": (len(of_kind) - len(ok)) / len(of_kind) if of_kind else 0.0,
            }
        views = [r for r in mine if r.kind == VIEW and r.status == 200]
        figures[VIEW]["with_cards"] = sum(1 for r in views if r.cards) / len(views) if views else math.nan
        accepted = [r for r in mine if r.kind == INTAKE and 200 <= r.status < 300]
        done = [(r, outcomes.get(r.request_id, {})) for r in accepted]
        end_to_end = [o["done_at"] - r.started for r, o in done if o.get("done_at") is not None]
        completed_in_phase = sum(
            1
            for outcome in outcomes.values()
            if outcome.get("done_at") is not None and start <= outcome["done_at"] < end
        )
        figures["completed"] = {
            "in_phase_per_s": completed_in_phase / seconds,
            "of_accepted": len(end_to_end),
            "failed_jobs": sum(1 for _, o in done if o.get("job_status") == "failed"),
            "failed_runs": sum(int(o.get("runs", {}).get("failed", 0)) for _, o in done),
            "unsettled": sum(
                1 for _, o in done if o.get("done_at") is None and o.get("job_status") != "failed"
            ),
            "end_to_end_p50_s": percentile(end_to_end, 0.5),
            "end_to_end_p95_s": percentile(end_to_end, 0.95),
            "end_to_end_max_s": max(end_to_end, default=math.nan),
            "deid_task_p50_s": _median([o["deid_s"] for _, o in done if o.get("deid_s") is not None]),
        }
        summary[phase.name] = figures
    return summary


def memory_summary(samples: Sequence[Mapping[str, Any]], start: float, end: float) -> dict[str, Any]:
    """Per process, over [start, end]: the median RSS of the first and the last window (a minute, or a third
    of the time when shorter) and the least-squares slope."""
    window = min(60.0, (end - start) / 3)
    by_label: dict[str, list[tuple[float, float]]] = {}
    pids: dict[str, set[int]] = {}
    for sample in samples:
        if start <= sample["at"] <= end:
            by_label.setdefault(sample["label"], []).append((sample["at"], sample["rss_mib"]))
            pids.setdefault(sample["label"], set()).add(sample["pid"])
    processes = {}
    for label, points in sorted(by_label.items()):
        first = [v for t, v in points if t < start + window]
        last = [v for t, v in points if t > end - window]
        processes[label] = {
            "pids": sorted(pids[label]),
            "samples": len(points),
            "first_mib": _median(first),
            "last_mib": _median(last),
            "change_mib": _median(last) - _median(first),
            "slope_mib_per_min": _slope_per_minute(points),
            # A step that settles (first-use allocations, the allocator's high-water mark after the largest
            # requests handled at once) is flat here; a leak is not.
            "slope_second_half_mib_per_min": _slope_per_minute(
                [p for p in points if p[0] >= (start + end) / 2]
            ),
            "max_mib": max(v for _, v in points),
            "first_half_max_mib": max((v for t, v in points if t < (start + end) / 2), default=math.nan),
            "seen_from_s": points[0][0] - start,
            "seen_until_s": points[-1][0] - start,
        }
    return {"window_s": window, "processes": processes}


def queue_summary(samples: Sequence[Mapping[str, Any]], start: float, end: float) -> dict[str, Any]:
    """Backlog (bundles whose de-identification has not finished: jobs queued or running) over [start, end]."""
    points = [(s["at"], float(s["jobs_queued"] + s["jobs_running"])) for s in samples if "jobs_queued" in s]
    points = [(t, v) for t, v in points if start <= t <= end]
    runs = [(s["at"], float(s["runs_queued"] + s["runs_running"])) for s in samples if "runs_queued" in s]
    runs = [(t, v) for t, v in runs if start <= t <= end]
    return {
        "jobs_backlog_max": max((v for _, v in points), default=math.nan),
        "jobs_backlog_end": points[-1][1] if points else math.nan,
        "jobs_backlog_slope_per_min": _slope_per_minute(points),
        "runs_backlog_max": max((v for _, v in runs), default=math.nan),
        "runs_backlog_slope_per_min": _slope_per_minute(runs),
    }


def queue_timeline(
    samples: Sequence[Mapping[str, Any]], t0: float, windows: Mapping[str, tuple[float, float]], rows: int
) -> list[dict[str, Any]]:
    """About ``rows`` queue samples, evenly spaced, each with seconds from ``t0`` and its phase."""
    samples = [s for s in samples if s["at"] >= t0]  # from the first request on
    if not samples:
        return []
    step = max(1, math.ceil(len(samples) / rows))
    picked = list(samples[::step])
    if picked[-1] is not samples[-1]:
        picked.append(samples[-1])
    timeline = []
    for sample in picked:
        phase = next((n for n, (a, b) in windows.items() if a <= sample["at"] < b), "drain")
        timeline.append({**sample, "t": sample["at"] - t0, "phase": phase})
    return timeline


def results_assemble(
    args: argparse.Namespace,
    raw: Mapping[str, Any],
    phases: Sequence[Phase],
    *,
    bundles: int,
    info: Mapping[str, Any],
    command: str,
) -> dict[str, Any]:
    """The figures of the report and the JSON, from the run's raw results (``_load_run.run``)."""
    start = float(raw["start_at"])
    windows: dict[str, tuple[float, float]] = {}
    for phase in phases:
        windows[phase.name] = (start, start + phase.seconds)
        start += phase.seconds
    records: list[Record] = raw["records"]
    phase_figures = summarize(records, raw["outcomes"], phases, windows)
    for name, (a, b) in windows.items():
        phase_figures[name]["queue"] = queue_summary(raw["queues"], a, b)
    first_start, first_end = windows[phases[0].name]
    memory = memory_summary(raw["memory"], first_start, first_end)
    memory["seconds"] = first_end - first_start
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": info,
        "run": {
            "postgres": raw["postgres"],
            "redis": raw["redis"],
            "gunicorn_workers": args.workers,
            "gunicorn_threads": args.threads,
            "deid_concurrency": args.deid_concurrency,
            "inference_concurrency": args.inference_concurrency,
            "loop": f"closed loop, {args.clients} clients, {args.intake_share:g} of requests bundles"
            if args.clients
            else f"open loop, {args.arrivals} arrivals",
            "bundles": bundles,
            "sample_interval": args.sample_interval,
            "warm_up": raw["warm_up"],
            "worker_errors": raw["worker_errors"],
            "beat": args.beat,
            "resent_by_sweeps": raw["resent"],
            "exited": raw["exited"],
            "phases": [asdict(p) for p in phases],
        },
        "phases": phase_figures,
        "drain_s": raw["drain_s"],
        "memory": memory,
        "memory_whole_run": memory_summary(
            raw["memory"], float(raw["start_at"]), float(raw["generator_done_at"])
        ),
        "queue_timeline": queue_timeline(raw["queues"], float(raw["start_at"]), windows, rows=24),
    }
    return results
