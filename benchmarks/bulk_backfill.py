"""Bulk backfill: the shared Synthea patients pulled from an EHR with Bulk Data ``$export``, end to end
(pulled, de-identified, model results), beside the push path and beside the limit, all in one run.

1. **limit**, each part in a fresh single-threaded process: the structured de-identification rules alone
   (``deidentify_entries`` with a scrubber that records the strings it is given and changes nothing: the
   de-identification benchmark's own collection phase) and spaCy NER alone over those strings (the
   scrubber's tokenizer + NER path, each patient's distinct strings once, as the scrubber analyses them).
   ``limit = patients / (NER seconds + rules seconds)``: one process doing nothing but that work.
2. **push path**: gunicorn, a real Celery worker on ``deid,inference`` (prefork, ``--concurrency`` pool
   processes pinned with ``taskset`` to ``--cpus``), warmed up first; the patient bundles POSTed back to
   back over HTTP as an EHR does (``integrations/fhir/client.py``, a SMART Backend Services token), each
   patient ``--copies`` times with fresh ids, until every patient has its model results.
3. **bulk path**: the EHR stand-in (``tests/ehr_standin.py``, a real HTTP server guarded by SMART Backend
   Services) serving the same patients as NDJSON, ``--copies`` times with fresh ids (the practitioners,
   organizations and locations once); an EHR source registered for it (its public key given to the
   stand-in); the export run by a Celery worker on the ``bulk`` queue (token, kick-off, polls, files
   streamed into the bulk intake, one job per patient) and the same pipeline worker, until every patient has
   its model results. The resident memory of both workers' process trees is sampled every ``--interval``
   seconds over the whole bulk run.

Patients/s and resources/s of both paths, the bulk path against the limit (target: at least 0.75) and
against the push path, memory start/peak/end and whether it stays flat (the peak of the last third of the
run within 15 % of the peak of the first third).

The database named by ``--database-url`` is dropped and created again, and the Redis database of
``--broker-url`` is flushed: give ones used for nothing else (the defaults are ``clinical_ai_bench_bulk``
and Redis database 11). Exits non-zero when a patient, job, run or the export failed.

    OMP_NUM_THREADS=1 python benchmarks/bulk_backfill.py --markdown docs/benchmarks.md

writes the section "Bulk backfill" of that file (other sections are kept).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _harness import script_environment  # this folder: the script's own

script_environment(one_blas_thread=True)

from _bulk_end_to_end import phase_backfill  # noqa: E402
from _bulk_limit import phase_ner, phase_rules  # noqa: E402
from _bundles import DEFAULT_DATA, SYNTHEA_DIR, patient_bundles  # noqa: E402
from _harness import machine, version, write_section  # noqa: E402
from _inference_process import in_fresh_process  # noqa: E402

SECTION = "Bulk backfill"
TARGET = 0.75
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/clinical_ai_bench_bulk"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/11"


def _cpus(value: str) -> list[int]:
    try:
        return sorted({int(part) for part in value.split(",") if part.strip()})
    except ValueError as exc:
        raise argparse.ArgumentTypeError("a comma-separated list of core numbers, e.g. 0,1") from exc


def _limit(bundles: Sequence[Path], *, cpus: Sequence[int], repeat: int) -> dict[str, Any]:
    print(f"limit: the structured rules alone over {len(bundles)} patients ...", flush=True)
    rules = in_fresh_process(phase_rules, bundles, cpus=cpus)
    strings: list[list[str]] = rules.pop("strings")
    print(f"  {rules['seconds']:.2f} s; spaCy NER alone over their free text ...", flush=True)
    ner = in_fresh_process(phase_ner, strings, repeat=repeat, cpus=cpus)
    print(f"  {ner['seconds']:.2f} s", flush=True)
    seconds = rules["seconds"] + ner["seconds"]
    resources = sum(
        len(json.loads(path.read_text(encoding="utf-8-sig")).get("entry") or ()) for path in bundles
    )
    return {
        "patients": len(bundles),
        "resources": resources,
        "ner_passes": repeat,
        "strings": sum(map(len, strings)),
        "rules": rules,
        "ner": ner,
        "seconds": seconds,
        "patients_per_s": len(bundles) / seconds,
    }


# --- report -------------------------------------------------------------------------------------------------


def _f(value: float | None, digits: int = 2) -> str:
    return (
        "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"


def ratios(results: dict[str, Any]) -> dict[str, float]:
    bulk, push, limit = results["backfill"]["bulk"], results["backfill"]["push"], results["limit"]
    return {
        "bulk_vs_limit": bulk["patients_per_s"] / limit["patients_per_s"],
        "bulk_vs_push": bulk["patients_per_s"] / push["patients_per_s"]
        if push["patients_per_s"]
        else math.nan,
        "push_vs_limit": push["patients_per_s"] / limit["patients_per_s"],
    }


MEMORY_ROWS = (
    ("all", "both workers, whole bulk run"),
    ("bulk", "bulk worker (export), whole run"),
    ("pipeline", "pipeline worker (deid, inference), whole run"),
    ("bulk_downloading", "bulk worker, while downloading and staging"),
    ("pipeline_processing", "pipeline worker, while processing the batch"),
)


def _memory_table(memory: dict[str, Any]) -> list[str]:
    lines = [
        "| process trees (RSS, MiB) | start | peak | end | peak, first third | peak, last third | drift | flat |",
        "|:---|---:|---:|---:|---:|---:|---:|:---|",
    ]
    for key, label in MEMORY_ROWS:
        row = memory.get(key)
        if not row or not row.get("samples"):
            continue
        lines.append(
            f"| {label} ({row['samples']} samples, {row['seconds']:.0f} s) | {row['start_mib']:,.0f} | "
            f"{row['peak_mib']:,.0f} | {row['end_mib']:,.0f} | {row['first_third_peak_mib']:,.0f} | "
            f"{row['last_third_peak_mib']:,.0f} | {100 * row['drift']:+.1f}% | {'yes' if row['flat'] else 'NO'} |"
        )
    return lines


CPU_ROWS = (
    ("bulk", "bulk worker (export: download, staging)"),
    ("pipeline", "pipeline worker (de-identification, models)"),
    ("postgres", "PostgreSQL (all its processes)"),
    ("redis-server", "Redis"),
)
CPU_WINDOWS = (("receiving", "receiving"), ("processing", "processing"), ("whole", "whole run"))
GATEWAY = ("bulk", "pipeline", "postgres", "redis-server")


def cpu_floor(results: dict[str, Any]) -> dict[str, float] | None:
    """What the CPU the gateway used allows at best: its processes' core-seconds over the whole bulk run,
    spread perfectly over the cores the workers may use, with nothing idle and nothing else running."""
    backfill = results["backfill"]
    whole = backfill["bulk"].get("cpu", {}).get("whole") or {}
    if not whole:
        return None
    cores = len(backfill["cpus"])
    used = sum(whole.get(name, 0.0) for name in GATEWAY)
    seconds = used / cores
    patients = backfill["bulk"]["patients"]
    best = patients / seconds / results["limit"]["patients_per_s"] if seconds and patients else math.nan
    return {"core_seconds": used, "cores": cores, "floor_s": seconds, "best_vs_limit": best}


def _cpu_table(cpu: dict[str, Any]) -> list[str]:
    windows = [(key, label) for key, label in CPU_WINDOWS if cpu.get(key)]
    if not windows:
        return []
    lines = [
        "| CPU (core-seconds) | "
        + " | ".join(f"{label} ({cpu[key]['seconds']:.1f} s)" for key, label in windows)
        + " |",
        "|:---|" + "---:|" * len(windows),
    ]
    for name, label in CPU_ROWS:
        lines.append(f"| {label} | " + " | ".join(_f(cpu[key].get(name)) for key, _ in windows) + " |")
    lines.append(
        "| the EHR stand-in and this benchmark (one process) | "
        + " | ".join(_f(cpu[key].get("benchmark")) for key, _ in windows)
        + " |"
    )
    lines.append(
        "| anything else on the machine | "
        + " | ".join(
            _f(cpu[key]["machine_busy"] - sum(cpu[key].get(n, 0.0) for n in (*GATEWAY, "benchmark")))
            for key, _ in windows
        )
        + " |"
    )
    lines.append(
        "| **machine busy, of available** | "
        + " | ".join(
            f"**{_f(cpu[key]['machine_busy'])} of {_f(cpu[key]['machine_total'])}**" for key, _ in windows
        )
        + " |"
    )
    return lines


def _stages_line(limit: dict[str, Any], push: dict[str, Any], bulk: dict[str, Any], pool: int) -> str:
    """Per patient, the worker's de-identification and model runs against the limit's work."""
    pushed, pulled = push["stages"], bulk["stages"]
    return (
        f"- Where the workers' time goes: the limit's work is {_f(limit['seconds'] / limit['patients'])} s "
        f"per patient (NER + rules, one process). In the pipeline worker ({pool} pool processes) a patient's "
        f"de-identification job takes a median {_f(pushed['deid_median_s'])} s pushed and "
        f"{_f(pulled['deid_median_s'])} s pulled ({_f(pushed['deid_sum_s'], 0)} s and "
        f"{_f(pulled['deid_sum_s'], 0)} s in all), the model runs {_f(pushed['models_sum_s'], 0)} s and "
        f"{_f(pulled['models_sum_s'], 0)} s in all. Besides NER and the rules, the job runs the recognizers "
        "and the patient-informed patterns on every string, seals and stores each resource and its "
        "pseudonyms, and audits."
    )


def _cpu_section(results: dict[str, Any]) -> list[str]:
    floor = cpu_floor(results)
    if floor is None:
        return []
    target = "below" if floor["best_vs_limit"] < TARGET else "above"
    return [
        *_cpu_table(results["backfill"]["bulk"]["cpu"]),
        "",
        f"**CPU: the gateway's processes (both workers, PostgreSQL, Redis) used {_f(floor['core_seconds'], 1)} "
        f"core-seconds over the bulk run. On {floor['cores']} cores that is at least {_f(floor['floor_s'], 1)} s "
        "even if the staging were hidden entirely behind the processing and no core ever waited: at most "
        f"{_f(floor['best_vs_limit'])}x the limit with this much work, {target} the {TARGET:.2f} target.**",
        "",
    ]


def render(results: dict[str, Any], command: str) -> str:
    limit, backfill = results["limit"], results["backfill"]
    push, bulk = backfill["push"], backfill["bulk"]
    rate = ratios(results)
    info = results["machine"]
    met = "met" if rate["bulk_vs_limit"] >= TARGET else "NOT met"
    flat = bulk["memory"].get("all", {}).get("flat")
    table = [
        "| | patients | resources | seconds | patients/s | resources/s | against the limit |",
        "|:---|---:|---:|---:|---:|---:|---:|",
        f"| limit: NER + rules alone, one process | {limit['patients']} | "
        f"{limit['resources']:,} | {_f(limit['seconds'])} | {_f(limit['patients_per_s'], 3)} | "
        f"{_f(limit['resources'] / limit['seconds'], 0)} | 1.00 |",
        f"| push: bundles POSTed to gunicorn | {push['completed']} | {push['resources']:,} | {_f(push['seconds'])} "
        f"| {_f(push['patients_per_s'], 3)} | {_f(push['resources_per_s'], 0)} | {_f(rate['push_vs_limit'])} |",
        f"| bulk: `$export` pulled by the bulk worker | {bulk['patients']} | {bulk['lines_read']:,} | "
        f"{_f(bulk['seconds'])} | {_f(bulk['patients_per_s'], 3)} | {_f(bulk['resources_per_s'], 0)} | "
        f"{_f(rate['bulk_vs_limit'])} |",
    ]
    memory = bulk["memory"]
    lines = [
        f"## {SECTION}",
        "",
        f"Measured {results['date']} with:",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['os']}; Python {info['python']}, spaCy "
        f"{info['spacy']}, Celery {info['celery']}, PostgreSQL {backfill['postgres']}, Redis {backfill['redis']}; "
        f"OMP_NUM_THREADS={info['OMP_NUM_THREADS']}; load average before {info['load_average']}, after "
        f"{info['load_average_after']}. Pipeline worker: {backfill['concurrency']} pool processes on cores "
        f"{','.join(map(str, backfill['cpus']))}; bulk worker: 1 pool process on the same cores; gunicorn: 1 "
        f"worker, 2 threads; models: {', '.join(backfill['models']) or 'none'}.",
        "",
        f"Input: the {limit['patients']} shared Synthea patients; the push and bulk paths send each "
        f"{bulk['copies']} time(s) with fresh ids ({bulk['served']:,} resources served by the EHR stand-in, "
        "the practitioners, organizations and locations once).",
        "",
        *table,
        "",
        f"**Bulk: {_f(bulk['patients_per_s'], 3)} patients/s, {_f(rate['bulk_vs_limit'])}x the limit "
        f"(target at least {TARGET:.2f}: {met}) and {_f(rate['bulk_vs_push'])}x the push path; "
        f"{_f(bulk['resources_per_s'], 0)} resources/s. Memory of both workers over the bulk run: start "
        f"{_f(memory.get('all', {}).get('start_mib'), 0)} MiB, peak {_f(memory.get('all', {}).get('peak_mib'), 0)} "
        f"MiB, end {_f(memory.get('all', {}).get('end_mib'), 0)} MiB, "
        f"{'flat' if flat else 'NOT flat'} (last third's peak {100 * memory.get('all', {}).get('drift', 0):+.1f}% "
        "against the first third's).**",
        "",
        *_memory_table(memory),
        "",
        *_cpu_section(results),
        "How to read it:",
        "",
        "- All figures come from one run, one phase after the other on the same machine. A load average above "
        "the number of cores means other processes shared it: rates are then lower than on an idle machine and "
        "vary between phases; the ratios are what the target is about.",
        f"- The limit is the work no path can skip, in one single-threaded process: the structured rules alone "
        f"({_f(limit['rules']['seconds'])} s for the {limit['patients']} patients) plus spaCy NER alone over "
        f"the free text they hand to the scrubber ({_f(limit['ner']['seconds'])} s for "
        f"{limit['ner']['units']:,} distinct strings, {limit['ner']['characters']:,} characters; "
        f"{limit['strings']:,} strings in all). The paths run the recognizers and replacements as well, store "
        "everything sealed, run the models, and use the machine's cores: their pipeline worker has "
        f"{backfill['concurrency']} pool processes, so a ratio above 1 is possible, and the ratio says how "
        "much of one core's bare de-identification rate the whole service delivers. NER alone is the "
        f"fastest of {limit['ner_passes']} passes.",
        f"- Push: {push['patients']} POSTs back to back from one client ({_f(push['post_s_total'])} s in the "
        f"POSTs themselves), from the first POST to the last model result; jobs: {_counts(push['jobs'])}; "
        f"runs: {_counts(push['runs'])}.",
        f"- Bulk: from the export request to the last model result: {_f(bulk['receive_s'])} s until every line "
        f"was staged (token, kick-off, {bulk['export_polls']} status poll(s) with the stand-in's Retry-After of "
        f"{bulk['retry_after_s']} s, the files streamed into the bulk intake), then {_f(bulk['process_s'])} s for the patients' jobs. "
        f"Lines read {bulk['lines_read']:,}: staged {bulk['resources_staged']:,}, held as references "
        f"{bulk['references_held']:,}, duplicates skipped {bulk['duplicates_skipped']:,}, refused "
        f"{bulk['lines_refused']:,}; patients {bulk['patients']} of {bulk['patients_total']}; jobs: "
        f"{_counts(bulk['jobs'])}; runs: {_counts(bulk['runs'])}; export {bulk['export_status']}, batch "
        f"{bulk['batch_status']}. The batch's own figures, as an admin sees them: "
        f"{_f(bulk['batch_progress'].get('resources_per_second'), 0)} resources/s while receiving, "
        f"{_f(bulk['batch_progress'].get('patients_per_second'), 3)} patients/s while processing (patients "
        "de-identified, from the last line received to the batch found finished after the last model result).",
        _stages_line(limit, push, bulk, backfill["concurrency"]),
        "- Memory: the resident sets of each worker's process tree (main process and pool), summed, sampled "
        f"every {memory['interval_s']} s. Flat: the peak of the last third of the window within 15 % of the "
        "peak of its first third; the per-worker rows use the window in which that worker works (the bulk "
        "worker while it downloads, the pipeline worker while it processes the batch's patients). More "
        "copies (`--copies`) make the windows longer for the same memory when it is flat.",
        "",
    ]
    return "\n".join(lines)


def failures(results: dict[str, Any]) -> list[str]:
    backfill = results["backfill"]
    push, bulk = backfill["push"], backfill["bulk"]
    problems = []
    if push["failed_http"] or push["completed"] < push["patients"]:
        problems.append(f"push: {push['completed']} of {push['patients']} patients completed")
    if push["jobs"].get("failed") or push["runs"].get("failed"):
        problems.append(f"push: jobs {_counts(push['jobs'])}; runs {_counts(push['runs'])}")
    if bulk["export_status"] != "succeeded":
        problems.append(f"bulk: export {bulk['export_status']} ({bulk['export_error']})")
    expected = results["patients"] * bulk["copies"]
    if bulk["patients"] < expected:
        problems.append(f"bulk: {bulk['patients']} of {expected} patients completed")
    if bulk["jobs"].get("failed") or bulk["runs"].get("failed"):
        problems.append(f"bulk: jobs {_counts(bulk['jobs'])}; runs {_counts(bulk['runs'])}")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--copies", type=int, default=3, help="times the patients are sent, fresh ids each")
    parser.add_argument("--repeat", type=int, default=2, help="timed passes of NER alone (fastest counts)")
    parser.add_argument("--cpus", type=_cpus, default=[0, 1], help="cores for the workers and this process")
    parser.add_argument("--concurrency", type=int, default=2, help="the pipeline worker's pool processes")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between memory samples")
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="dropped and created again")
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL, help="a Redis database, flushed")
    parser.add_argument("--timeout", type=float, default=600, help="seconds each path may take per copy")
    parser.add_argument("--markdown", type=Path, default=None, help="write the section into this file")
    parser.add_argument("--json", type=Path, default=None, help="write the raw figures here")
    args = parser.parse_args(argv)
    if args.copies < 1:
        parser.error("--copies must be at least 1")

    bundles = patient_bundles(args.data_dir)
    if not bundles:
        print(f"no Synthea bundles under {args.data_dir / SYNTHEA_DIR}: bulk backfill benchmark skipped")
        return 0
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {**machine(), "spacy": version("spacy")},
        "patients": len(bundles),
    }
    results["limit"] = _limit(bundles, cpus=args.cpus, repeat=args.repeat)
    print(f"end to end: push, then bulk, {len(bundles)} patients x {args.copies} ...", flush=True)
    results["backfill"] = in_fresh_process(
        phase_backfill,
        bundles,
        copies=args.copies,
        concurrency=args.concurrency,
        cpus=args.cpus,
        database_url=args.database_url,
        broker_url=args.broker_url,
        timeout=args.timeout,
        interval=args.interval,
    )
    results["machine"]["load_average_after"] = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    results["ratios"] = ratios(results)
    command = "OMP_NUM_THREADS=1 python benchmarks/bulk_backfill.py" + "".join(
        f" {flag}" for flag in (argv if argv is not None else sys.argv[1:])
    )
    section = render(results, command)
    print("")
    print(section)
    if args.markdown:
        write_section(args.markdown, SECTION, section)
        print(f"wrote the section {SECTION!r} of {args.markdown}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    problems = failures(results)
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
