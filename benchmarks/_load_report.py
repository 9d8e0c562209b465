"""The load test's report: the markdown section (the tables and how to read them)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from _load_generator import INTAKE, VIEW

BEGIN, END = "<!-- load-test:begin -->", "<!-- load-test:end -->"
HEADING = "## Load: sustained intake and patient-view"
MEMORY_SLOPE_LIMIT = 2.0  # MiB/min in the second half of the sustained phase: above it, a process still grows


def _f(value: float | None, digits: int = 2) -> str:
    return (
        "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"
    )


def _ms(value: float) -> str:
    return _f(value * 1000, 0)


def render(results: Mapping[str, Any]) -> str:
    info, run = results["machine"], results["run"]
    phases: Mapping[str, Any] = results["phases"]
    names = list(phases)
    lines = [
        f"Measured {results['date']} with:",
        "",
        "```sh",
        results["command"],
        "```",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['os']}; Python {info['python']}, torch "
        f"{info['torch']}, transformers {info['transformers']}, Celery {info['celery']}, gunicorn "
        f"{info['gunicorn']}, PostgreSQL {run['postgres']}, Redis {run['redis']}; OMP_NUM_THREADS="
        f"{info['OMP_NUM_THREADS']}. Load average (1, 5, 15 min) before the run {info['load_average']}, after it "
        f"{info['load_average_after']}.",
        "",
        f"Everything on this machine, over loopback: gunicorn {run['gunicorn_workers']} workers x "
        f"{run['gunicorn_threads']} threads (gthread); Celery `-Q deid` concurrency {run['deid_concurrency']} and "
        f"`-Q inference` concurrency {run['inference_concurrency']} (prefork, separate worker processes)"
        + ("; Celery beat (the sweeps)" if run.get("beat") else "")
        + "; the load "
        f"generator in a second process ({run['loop']}). Each bundle is one of {run['bundles']} Synthea patient "
        f"bundles sent as a new patient; patient-view calls are for patients sent before, with the Patient "
        f"prefetched. Warm-up not counted: {run['warm_up']['bundles']} bundles, then "
        f"{run['warm_up']['views']} patient-view calls, at once, until their suggestions were stored "
        f"({run['warm_up']['seconds']:.0f} s).",
        "",
        "| | " + " | ".join(names) + " |",
        "|:---|" + "---:|" * len(names),
    ]

    def row(label: str, cell: Callable[[Mapping[str, Any]], str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cell(phases[n]) for n in names) + " |")

    row("seconds", lambda p: _f(p["seconds"], 0))
    row(
        "target: bundles/s, patient-view calls/s",
        lambda p: (
            "- (closed loop)"
            if str(run["loop"]).startswith("closed")
            else f"{p['target_intake_rate']:g}, {p['target_view_rate']:g}"
        ),
    )
    row("**accepted bundles/s**", lambda p: f"**{_f(p[INTAKE]['per_s'], 3)}**")
    row(
        "**completed bundles/s** (last model run finished in the phase)",
        lambda p: f"**{_f(p['completed']['in_phase_per_s'], 3)}**",
    )
    row("**patient-view calls/s** (200)", lambda p: f"**{_f(p[VIEW]['per_s'], 2)}**")
    for kind, label in ((INTAKE, "intake POST"), (VIEW, "patient-view")):
        row(f"{label} latency p50 / p95 / p99 (ms)", _latencies(kind))
        row(f"{label}: sent, errors (by status)", _errors(kind))
    row("patient-view calls with a card", lambda p: f"{_f(100 * p[VIEW]['with_cards'], 0)}%")
    row(
        "**end to end p50 / p95 (s)**, POST sent to suggestions stored",
        lambda p: (
            f"**{_f(p['completed']['end_to_end_p50_s'], 1)} / {_f(p['completed']['end_to_end_p95_s'], 1)}**"
        ),
    )
    row(
        "bundles settled / failed / unsettled at the end",
        lambda p: (
            f"{p['completed']['of_accepted']} / {p['completed']['failed_jobs']} / {p['completed']['unsettled']}"
        ),
    )
    row("de-identification task, median (s)", lambda p: _f(p["completed"]["deid_task_p50_s"], 1))
    row(
        "backlog: jobs queued or running, max / at end",
        lambda p: f"{_f(p['queue']['jobs_backlog_max'], 0)} / {_f(p['queue']['jobs_backlog_end'], 0)}",
    )
    row("backlog growth (jobs/min, least squares)", lambda p: _f(p["queue"]["jobs_backlog_slope_per_min"], 2))
    row(
        "generator's send lag p99, intake / view (ms)",
        lambda p: f"{_ms(p[INTAKE]['send_lag_p99_s'])} / {_ms(p[VIEW]['send_lag_p99_s'])}",
    )

    memory = results["memory"]
    lines += [
        "",
        f"Memory (RSS) of every server process over the {names[0]} phase ({_f(memory['seconds'], 0)} s, sampled every "
        f"{run['sample_interval']:g} s): median of the first and of the last {memory['window_s']:.0f} s, and the "
        "least-squares slope.",
        "",
        "| process | first (MiB) | last (MiB) | change (MiB) | slope (MiB/min) | slope, second half (MiB/min) "
        "| max (MiB) |",
        "|:---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, m in memory["processes"].items():
        lines.append(
            f"| {label} | {_f(m['first_mib'], 0)} | {_f(m['last_mib'], 0)} | {_f(m['change_mib'], 1)} | "
            f"{_f(m['slope_mib_per_min'], 2)} | {_f(m['slope_second_half_mib_per_min'], 2)} | {_f(m['max_mib'], 0)} |"
        )
    lines += [
        "",
        "Queue depth over time (seconds from the first request; Redis LLEN of each queue, messages delivered "
        "but not acknowledged, and the database's ingest jobs and inference runs queued + running):",
        "",
        "| t (s) | phase | deid LLEN | inference LLEN | unacked | jobs queued + running | runs queued + running |",
        "|---:|:---|---:|---:|---:|---:|---:|",
    ]
    for sample in results["queue_timeline"]:
        lines.append(
            f"| {sample['t']:.0f} | {sample['phase']} | {sample.get('redis_deid', '-')} | "
            f"{sample.get('redis_inference', '-')} | {sample.get('redis_unacked', '-')} | "
            f"{sample.get('jobs_queued', '-')} + {sample.get('jobs_running', '-')} | "
            f"{sample.get('runs_queued', '-')} + {sample.get('runs_running', '-')} |"
        )
    lines += ["", "How to read it:", "", *reading(results)]
    return "\n".join(lines) + "\n"


def reading(results: Mapping[str, Any]) -> list[str]:
    notes = []
    run, phases = results["run"], results["phases"]
    first = next(iter(phases.values()))
    slope = first["queue"]["jobs_backlog_slope_per_min"]
    steady = not math.isnan(slope) and slope * first["seconds"] / 60 < 3
    notes.append(
        f"- {next(iter(phases))}: {_f(first[INTAKE]['per_s'], 3)} bundles/s accepted and "
        f"{_f(first['completed']['in_phase_per_s'], 3)} completed; the backlog "
        + (
            f"stayed steady (at most {_f(first['queue']['jobs_backlog_max'], 0)} jobs waiting or running, "
            f"{_f(slope, 2)} jobs/min): a load the workers sustain."
            if steady
            else f"grew by {_f(slope, 2)} jobs/min: above what the workers sustain here, so end-to-end times grow "
            "with the length of the run."
        )
    )
    for name, phase in list(phases.items())[1:]:
        growth = phase["queue"]["jobs_backlog_slope_per_min"]
        drained = (
            f"The queues drained {results['drain_s']:.0f} s after the last request."
            if not phase["completed"]["unsettled"]
            else f"{phase['completed']['unsettled']} of its bundles were still unsettled "
            f"{results['drain_s']:.0f} s after the last request (--drain-timeout)."
        )
        if not math.isnan(growth) and growth * phase["seconds"] / 60 >= 3:
            notes.append(
                f"- {name}: {_f(phase[INTAKE]['per_s'], 3)} bundles/s accepted against "
                f"{_f(phase['completed']['in_phase_per_s'], 3)} completed; the backlog grew by {_f(growth, 2)} "
                f"jobs/min (max {_f(phase['queue']['jobs_backlog_max'], 0)}). Intake stays fast because it only "
                "validates, seals, stores and queues (nothing is lost: every accepted bundle is a job row); the wait "
                "moves into the queue, and the end-to-end p95 becomes "
                f"{_f(phase['completed']['end_to_end_p95_s'], 0)} s, growing with the length of the phase. "
                + drained
            )
        else:
            notes.append(
                f"- {name}: the workers kept up even at {_f(phase[INTAKE]['per_s'], 3)} bundles/s (backlog "
                f"{_f(growth, 2)} jobs/min, at most {_f(phase['queue']['jobs_backlog_max'], 0)}): raise "
                "--overload-rate to find the limit. " + drained
            )
    processes = results["memory"]["processes"]
    grown = [
        label
        for label, m in processes.items()
        if not math.isnan(m["change_mib"]) and m["change_mib"] > max(20.0, 0.05 * m["first_mib"])
    ]
    climbing = [  # still growing in the second half, to a level never reached in the first
        label
        for label, m in processes.items()
        if m["slope_second_half_mib_per_min"] > MEMORY_SLOPE_LIMIT
        and m["last_mib"] > m["first_half_max_mib"] + 5
    ]
    late = [
        label for label, m in processes.items() if m["seen_from_s"] > 2 * results["run"]["sample_interval"]
    ]
    if climbing:
        verdict = (
            f"**{', '.join(climbing)} still grew in the second half** (more than {MEMORY_SLOPE_LIMIT:g} MiB/min, "
            "to above the first half's peak): look there; in a short run one late step reads as a slope, a leak "
            "keeps its slope over a longer one."
        )
    elif grown:
        verdict = (
            f"{', '.join(grown)} grew by more than 5% (and 20 MiB) from the first to the last window, in steps that "
            f"then stayed flat (second-half slope at most {MEMORY_SLOPE_LIMIT:g} MiB/min): allocations kept after "
            "the largest requests handled at once (the allocator's high-water mark), not a steady leak."
        )
    else:
        verdict = "no process grew by more than 5% (or 20 MiB) from the first to the last window."
    notes.append(
        f"- Memory: {verdict} A first-use import or a model load shows as a step, a leak as a steady slope."
        + (
            f" Seen only after the start (restarted: a gunicorn worker past its timeout, a pool process replaced): "
            f"{', '.join(late)}."
            if late
            else " No process was restarted."
        )
    )
    notes.append(
        "- Latency is each request's own time on the wire (generator side); the send lag is how late the "
        "generator sent a request against its schedule (large values mean the generator itself fell behind). "
        "End to end runs from the POST being sent to the last model run's finish (suggestions stored), read "
        "from the database."
    )
    notes.append(
        f"- The generator, the servers, PostgreSQL and Redis share the machine's {results['machine']['cores']} "
        f"cores. A bundle's de-identification task took {_f(first['completed']['deid_task_p50_s'], 1)} s "
        f"(median, {next(iter(phases))}) against {_ms(first[INTAKE]['p50_s'])} ms for its POST: the "
        "backlog builds in the `deid` queue: de-identification, on cores it shares with everything else, bounds "
        "the intake rate the service sustains here, not the web tier."
    )
    if any(
        float(x.split(",")[0]) > float(results["machine"]["cores"])
        for x in (results["machine"]["load_average"],)
    ):
        notes.append(
            "- Other work shared the machine before the run (load average above the cores): timings are inflated."
        )
    for role, code in (run.get("exited") or {}).items():
        notes.append(
            f"- **{role} exited during the run (code {code})**: its queue was no longer served, so the figures "
            "after that are not a measure of the service; its log's errors are in the JSON."
        )
    resent = run.get("resent_by_sweeps") or {}
    if run.get("beat"):
        notes.append(
            f"- Celery beat ran the sweeps, as in production: they re-sent {resent.get('intake', 0)} ingest job(s) "
            f"and {resent.get('inference', 0)} inference run(s) (a message lost to a broker restart, or one queued "
            "longer than the re-dispatch delay; the claim is idempotent, so a second message does nothing twice)."
        )
    if run.get("worker_errors"):
        notes.append(
            f"- Server logs held {run['worker_errors']} ERROR or CRITICAL lines (the first are in the JSON)."
        )
    return notes


def _latencies(kind: str) -> Callable[[Mapping[str, Any]], str]:
    return lambda phase: " / ".join(_ms(phase[kind][q]) for q in ("p50_s", "p95_s", "p99_s"))


def _errors(kind: str) -> Callable[[Mapping[str, Any]], str]:
    def cell(phase: Mapping[str, Any]) -> str:
        figures = phase[kind]
        by_status = ", ".join(f"{status}: {n}" for status, n in sorted(figures["errors"].items()))
        return f"{figures['sent']}, {figures['sent'] - figures['ok']}" + (
            f" ({by_status})" if by_status else ""
        )

    return cell
