"""The inference benchmark's report: the markdown section (tables and how to read them) and the failures."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from _harness import write_section as _write_section
from _inference_end_to_end import MODES

SECTION = "Inference: end to end and batching"


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
