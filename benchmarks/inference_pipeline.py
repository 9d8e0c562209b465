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
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _harness import script_environment  # this folder: the script's own

script_environment(one_blas_thread=True)

# The parts of the benchmark, in this folder: how a phase runs, the two phases, the report.
from _bundles import DEFAULT_DATA, SYNTHEA_DIR, patient_bundles  # noqa: E402
from _harness import machine  # noqa: E402
from _inference_batching import phase_batching  # noqa: E402
from _inference_end_to_end import phase_end_to_end  # noqa: E402
from _inference_process import in_fresh_process  # noqa: E402
from _inference_report import SECTION, failures, render, write_section  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/clinical_ai_bench"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/14"


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

    bundles = patient_bundles(args.data_dir)[: args.bundles]
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
        results["end_to_end"] = in_fresh_process(
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
        results["batching"] = in_fresh_process(phase_batching, bundles, repeat=args.repeat, cpus=args.cpus)
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
