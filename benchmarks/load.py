"""Load: sustained FHIR intake and CDS Hooks patient-view calls against the real service, for minutes.

The script starts what production runs, on this machine: gunicorn (``--workers`` gthread workers) on
PostgreSQL, Redis as the broker, one Celery worker process for the ``deid`` queue and one for ``inference``
(prefork, ``--deid-concurrency`` and ``--inference-concurrency`` pool processes). A load generator, a
second process (this script with ``--generate``), talks to it over loopback as an EHR would: it obtains a
SMART Backend Services token (client assertion JWT -> /auth/token) and POSTs Synthea patient bundles to
/fhir, and signs a CDS Hooks JWT (ES384) for every patient-view call, for patients it has sent before
(their pending suggestions become the cards). Each bundle is sent as a new patient: the Synthea patient's id
and medical record number are replaced by a fresh UUID, so every bundle costs a full de-identification and
model run (nothing is skipped as "input unchanged").

Open loop by default: requests are sent at ``--intake-rate`` bundles/s and ``--view-rate`` calls/s (Poisson
arrivals, seeded) whatever the server does, for ``--seconds`` (the sustained phase); then, unless
``--overload-seconds 0``, at ``--overload-rate`` bundles/s (above what the workers keep up with) to show what
happens beyond it. ``--clients K`` runs closed loop instead: K clients each send the next request when the
last answered, a bundle with probability ``--intake-share``, else a patient-view call.

Meanwhile this process samples, every ``--sample-interval`` seconds, the resident set of every gunicorn and
Celery process and the queue depth (Redis LLEN of the ``deid`` and ``inference`` queues, and the database's
queued and running ingest jobs and inference runs). At the end it waits (at most ``--drain-timeout``
seconds) for the queues to drain, joins each accepted bundle to its job and runs in the database (end to
end: POST sent to the last model run finished, i.e. its suggestions stored), prints the report and writes
``--json`` and the markdown section (between markers) of ``--markdown``.

The database of ``--database-url`` is dropped and created again, and the Redis database of ``--broker-url``
is flushed: give ones used for nothing else (defaults ``clinical_ai_load`` and Redis database 13). Test-only
keys (tests.settings) are used; nothing leaves the machine. Every process started is stopped on exit,
Ctrl-C or error.

    OMP_NUM_THREADS=1 python benchmarks/load.py --seconds 300 --markdown docs/benchmarks.md --json var/load.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from _harness import ROOT, script_environment  # this folder: the script's own

script_environment(one_blas_thread=True)

# The parts of the load test, in this folder: the generator process, the run, sampling, measures, report.
from _bundles import DEFAULT_DATA, SYNTHEA_DIR, patient_bundles  # noqa: E402
from _harness import machine, version, write_between_markers  # noqa: E402
from _load_generator import INTAKE, VIEW, Record, generate  # noqa: E402
from _load_measure import results_assemble  # noqa: E402
from _load_report import BEGIN, END, HEADING, render  # noqa: E402
from _load_run import Interrupted, interrupt_on_signal, phases_plan, run  # noqa: E402

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/clinical_ai_load"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/13"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)  # the generator process: its plan
    parser.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA, help="holds the Synthea patients folder"
    )
    parser.add_argument("--bundles", type=int, default=None, help="only the first N patient bundles")
    parser.add_argument("--seconds", type=float, default=300, help="the sustained phase (or the closed loop)")
    parser.add_argument("--intake-rate", type=float, default=0.2, help="bundles/s, sustained phase")
    parser.add_argument("--view-rate", type=float, default=2.0, help="patient-view calls/s, every phase")
    parser.add_argument("--overload-rate", type=float, default=1.0, help="bundles/s, overload phase")
    parser.add_argument("--overload-seconds", type=float, default=120, help="0: no overload phase")
    parser.add_argument("--arrivals", choices=("poisson", "uniform"), default="poisson")
    parser.add_argument("--clients", type=int, default=0, help="closed loop with K clients instead of rates")
    parser.add_argument("--intake-share", type=float, default=0.05, help="closed loop: share of bundles")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker")
    parser.add_argument("--gunicorn-timeout", type=int, default=60, help="gunicorn's worker timeout (s)")
    parser.add_argument("--deid-concurrency", type=int, default=2, help="pool processes of the deid worker")
    parser.add_argument("--inference-concurrency", type=int, default=1, help="of the inference worker")
    parser.add_argument(
        "--no-beat",
        dest="beat",
        action="store_false",
        help="run no celery beat (the intake and inference sweeps)",
    )
    parser.add_argument("--sample-interval", type=float, default=2.0, help="seconds between samples")
    parser.add_argument("--drain-timeout", type=float, default=600, help="seconds to wait for the queues")
    parser.add_argument("--http-timeout", type=float, default=120, help="seconds a request may take")
    parser.add_argument(
        "--max-in-flight", type=int, default=64, help="open loop: concurrent requests at most"
    )
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="dropped and created again")
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL, help="a Redis database, flushed")
    parser.add_argument("--markdown", type=Path, default=None, help="write the section into this file")
    parser.add_argument("--json", type=Path, default=None, help="write the figures and samples here")
    parser.add_argument(
        "--log-dir", type=Path, default=ROOT / "var" / "load", help="server logs and the requests sent"
    )
    args = parser.parse_args(argv)
    if args.generate is not None:
        return generate(args.generate)

    bundles = patient_bundles(args.data_dir)[: args.bundles]
    if not bundles:
        print(
            f"load test: no Synthea patient bundles in {args.data_dir / SYNTHEA_DIR} (the shared data folder, "
            "../shared/data, is absent or incomplete); give --data-dir",
            file=sys.stderr,
        )
        return 2
    if not args.broker_url.startswith("redis://"):
        parser.error("--broker-url must be a Redis URL (the queue depth is read from it)")
    phases = phases_plan(args)
    command = "OMP_NUM_THREADS=1 python benchmarks/load.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    info = {**machine(), "torch": version("torch"), "gunicorn": version("gunicorn")}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt_on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background (ignored)
    try:
        raw = run(args, bundles, phases)
    except (Interrupted, KeyboardInterrupt) as exc:
        print(
            f"load test interrupted ({type(exc).__name__} {exc}); every process it started is stopped",
            file=sys.stderr,
        )
        return 130
    info["load_average_after"] = ", ".join(f"{value:.2f}" for value in os.getloadavg())

    results = results_assemble(args, raw, phases, bundles=len(bundles), info=info, command=command)
    phase_figures: dict[str, Any] = results["phases"]
    records: list[Record] = raw["records"]
    section = render(results)
    print("")
    print(f"{HEADING}\n\n{section}")
    if args.markdown is not None:
        write_between_markers(args.markdown, BEGIN, END, section, heading=HEADING)
        print(f"wrote the load-test section of {args.markdown}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        detail = {
            **results,
            "queue_samples": raw["queues"],
            "memory_samples": raw["memory"],
            "requests": [asdict(r) for r in records],
            "outcomes": raw["outcomes"],
            "server_log_errors": raw["server_log_errors"],
        }
        args.json.write_text(json.dumps(detail, indent=1, default=str) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    problems = sum(p[k]["sent"] - p[k]["ok"] for p in phase_figures.values() for k in (INTAKE, VIEW))
    problems += sum(
        p["completed"]["failed_jobs"] + p["completed"]["unsettled"] for p in phase_figures.values()
    )
    return 1 if problems or raw["exited"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
