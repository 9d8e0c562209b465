"""Chaos: Synthea bundles through the real pipeline while faults are injected on a schedule; then counts.

Real components throughout: PostgreSQL (its own database, dropped and created again, ``clinical_ai_chaos`` by
default), Redis (database 12 by default, flushed), ``--workers`` Celery worker processes (``-Q deid,inference``,
prefork), and the real HTTP intake called in-process with ``django.test.Client`` as an EHR client (SMART
token). The bundles of ``../shared/data`` (the fixtures' sample bundle when that folder is missing) are POSTed
evenly over ``--seconds``; meanwhile ``--faults`` faults, spread at random (``--seed``) over the same window:

- ``kill_pool``: SIGKILL one pool process of a worker (the main process forks a new one; the task is
  redelivered: ``acks_late`` + ``reject_on_worker_lost``);
- ``kill_worker``: SIGKILL a whole worker (main process and pool) and start a new one (its claims run out
  of lease and the sweeps send the work again);
- ``restart_redis``: stop the local Redis without saving and start it again (every queued message is lost;
  the sweeps send again);
- ``restart_postgres``: ``pg_ctlcluster ... restart -m fast`` (every connection is cut);
- ``redeliver``: send a finished or running job's de-identification task and an inference batch again, with
  the task id it was claimed with and with a fresh one.

Every POST carries an ``X-Request-Id`` (the intake's idempotency key) and is retried with the same id when it
fails (PostgreSQL down). The sweeps run every ``--sweep-every`` seconds, as ``celery beat`` would. After the
window the script waits for quiescence (all jobs and runs finished, sweeping meanwhile) and counts, from the
database (``tests.integration.exactly_once``): sent, accepted (2xx), completed (every enabled model's run
succeeded, one suggestion set each), duplicated (a second run, suggestion set or audit row where one is
expected), lost (accepted, never finished), failed (finished as failed), and whether the audit chain
verifies. Exits non-zero when anything was duplicated, lost or failed, or the chain does not verify.

Restarting Redis and PostgreSQL touches every user of those servers: only run this where that is fine. The
Redis restart is skipped unless the broker is the local ``redis-server`` on 127.0.0.1:6379, the PostgreSQL
restart unless ``pg_ctlcluster`` is there and the database is on this machine.

    OMP_NUM_THREADS=1 python benchmarks/chaos.py --bundles 40 --seconds 240 --faults 12 --seed 1
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

# Shorter leases and re-dispatch delays than production, so that work left behind by a killed worker or a
# lost message is picked up again within the run; set before Django reads its settings (here and in the
# workers, which inherit the environment).
# (A lease shorter than a slow task only costs work done twice and dropped: the claim token decides.)
CHAOS_ENV = {
    "INTAKE_CLAIM_LEASE_SECONDS": "90",
    "INFERENCE_CLAIM_LEASE_SECONDS": "90",
    "INTAKE_REDISPATCH_AFTER_SECONDS": "60",
    "INFERENCE_REDISPATCH_AFTER_SECONDS": "60",
}
for _variable, _value in CHAOS_ENV.items():
    os.environ.setdefault(_variable, _value)

from _harness import script_environment  # noqa: E402  (this folder)

script_environment(one_blas_thread=True)  # the repository on sys.path, the test keys

from _bundles import DEFAULT_DATA, SYNTHEA_DIR, patient_bundles  # noqa: E402
from _harness import Started, celery_worker_start, database_recreate  # noqa: E402
from _inference_posting import Poster  # noqa: E402
from _inference_process import django_setup  # noqa: E402
from _worker_memory import process_tree  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/clinical_ai_chaos"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/12"
FAULT_KINDS = ("kill_pool", "kill_worker", "restart_redis", "restart_postgres", "redeliver")
T = TypeVar("T")


def _run_quietly(argv: Sequence[str], timeout: float = 60) -> bool:
    return subprocess.run(list(argv), capture_output=True, check=False, timeout=timeout).returncode == 0


def _wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


@dataclass
class Services:
    """Stops and starts the local Redis and PostgreSQL; each restart brings the server back at once."""

    broker_url: str
    database_url: str

    def redis_local(self) -> bool:
        return (
            self.broker_url.startswith("redis://127.0.0.1:6379") and shutil.which("redis-server") is not None
        )

    def postgres_local(self) -> bool:
        host = urlsplit(self.database_url).hostname or ""
        return (
            shutil.which("pg_ctlcluster") is not None
            and Path("/etc/postgresql").is_dir()
            and host in ("127.0.0.1", "localhost", "::1")
        )

    def redis_up(self) -> bool:
        return _run_quietly(["redis-cli", "ping"], timeout=5)

    def redis_start(self) -> None:
        if not self.redis_up():
            _run_quietly(
                [
                    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
                    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
                    "--logfile", "/var/log/redis/ci.log",
                ]
            )  # fmt: skip
        if not _wait_until(self.redis_up, 30):
            raise SystemExit("Redis did not come back")

    def redis_restart(self, down_seconds: float) -> None:
        _run_quietly(["redis-cli", "shutdown", "nosave"], timeout=10)
        try:
            _wait_until(lambda: not self.redis_up(), 10)
            time.sleep(down_seconds)
        finally:
            self.redis_start()

    def _pg_command(self) -> list[str]:
        version = sorted(path.name for path in Path("/etc/postgresql").iterdir())[-1]
        return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]

    def postgres_up(self) -> bool:
        parts = urlsplit(self.database_url)
        return _run_quietly(
            ["pg_isready", "-q", "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432)],
            timeout=5,
        )

    def postgres_restart(self) -> None:
        from django.db import connection

        try:
            _run_quietly([*self._pg_command(), "restart", "-m", "fast"])
        finally:
            if not self.postgres_up():
                _run_quietly([*self._pg_command(), "start"])
            if not _wait_until(self.postgres_up, 60):
                raise SystemExit("PostgreSQL did not come back")
            connection.close()  # this process's connection was cut too


def _name(worker: Started) -> str:
    return worker.log_path.stem if worker.log_path else str(worker.process.pid)


def with_db_retry(call: Callable[[], T], attempts: int = 20) -> T:
    """Run ``call``; when the database connection was cut (PostgreSQL restarting), reconnect and retry."""
    from django.db import DatabaseError, connection

    for attempt in range(attempts):
        try:
            return call()
        except DatabaseError:
            if attempt == attempts - 1:
                raise
            connection.close()
            time.sleep(1)
    raise AssertionError("unreachable")


@dataclass
class Fleet:
    """The worker processes; a killed one is replaced by a fresh one."""

    env: Mapping[str, str]
    log_dir: Path
    concurrency: int
    workers: list[Started] = field(default_factory=list)
    started: int = 0

    def start(self) -> Started:
        self.started += 1
        worker = celery_worker_start(
            queues="deid,inference",
            concurrency=self.concurrency,
            env=self.env,
            log_path=self.log_dir / f"worker{self.started}.log",
            with_parent=True,
        )
        self.workers.append(worker)
        return worker

    def alive(self) -> list[Started]:
        return [w for w in self.workers if w.process.poll() is None]

    def pool_pids(self, worker: Started) -> list[int]:
        return [pid for pid in process_tree(worker.process.pid) if pid != worker.process.pid]

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


@dataclass
class Sent:
    index: int
    bundle: str
    request_id: str
    status: int = 0
    attempts: int = 0
    job_pk: int | None = None


@dataclass
class Chaos:
    services: Services
    fleet: Fleet
    rng: random.Random
    faults: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)

    def note(self, message: str) -> None:
        line = f"  {time.strftime('%H:%M:%S')} {message}"
        self.log.append(line)
        print(line, flush=True)

    def inject(self, kind: str) -> None:
        getattr(self, f"_fault_{kind}")()

    def _fault_kill_pool(self) -> None:
        candidates = [(w, pid) for w in self.fleet.alive() for pid in self.fleet.pool_pids(w)]
        if not candidates:
            self.skipped["kill_pool"] += 1
            return
        worker, pid = self.rng.choice(candidates)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            self.skipped["kill_pool"] += 1
            return
        self.faults["kill_pool"] += 1
        self.note(f"SIGKILL pool process {pid} of {_name(worker)}")

    def _fault_kill_worker(self) -> None:
        alive = self.fleet.alive()
        if not alive:
            self.skipped["kill_worker"] += 1
            return
        worker = self.rng.choice(alive)
        os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=30)
        replacement = self.fleet.start()
        self.faults["kill_worker"] += 1
        self.note(f"SIGKILL whole {_name(worker)}; started {_name(replacement)}")

    def _fault_restart_redis(self) -> None:
        if not self.services.redis_local():
            self.skipped["restart_redis"] += 1
            return
        self.services.redis_restart(down_seconds=self.rng.uniform(1, 4))
        self.faults["restart_redis"] += 1
        self.note("Redis stopped (nosave: every queued message lost) and started")

    def _fault_restart_postgres(self) -> None:
        if not self.services.postgres_local():
            self.skipped["restart_postgres"] += 1
            return
        started = time.monotonic()
        self.services.postgres_restart()
        self.faults["restart_postgres"] += 1
        self.note(f"PostgreSQL restarted ({time.monotonic() - started:.1f} s)")

    def _fault_redeliver(self) -> None:
        from clinical_ai.deid.tasks import deidentify_ingest_job
        from clinical_ai.inference.models import InferenceRun
        from clinical_ai.inference.tasks import run_models
        from clinical_ai.intake.models import IngestJob

        def pick() -> tuple[Any, Any]:
            jobs = list(
                IngestJob.objects.filter(pk__in=[s.job_pk for s in self.sent if s.job_pk]).exclude(
                    claimed_task_id=""
                )
            )
            runs = list(InferenceRun.objects.filter(ingest_job__in=jobs).exclude(claimed_task_id=""))
            return (self.rng.choice(jobs) if jobs else None, self.rng.choice(runs) if runs else None)

        job, run = with_db_retry(pick)
        if job is None:
            self.skipped["redeliver"] += 1
            return
        try:
            deidentify_ingest_job.apply_async(args=(str(job.external_id),), task_id=job.claimed_task_id)
            deidentify_ingest_job.apply_async(args=(str(job.external_id),))
            if run is not None:
                ids = [str(run.external_id)]
                run_models.apply_async(args=(ids,), task_id=run.claimed_task_id, queue="inference")
                run_models.apply_async(args=(ids,), queue="inference")
        except Exception as exc:  # the broker is down: the fault did not happen
            self.skipped["redeliver"] += 1
            self.note(f"redelivery not sent ({type(exc).__name__})")
            return
        self.faults["redeliver"] += 1
        self.note(
            f"redelivered job {job.pk} ({job.status})" + (f" and run {run.pk} ({run.status})" if run else "")
        )

    def post(self, poster: Poster, body: bytes, sent: Sent) -> None:
        """POST with the same X-Request-Id until it is accepted (or 5 tries): the EHR's retry."""
        from clinical_ai.intake.models import IngestJob
        from tests.factories import post_fhir

        for _ in range(5):
            sent.attempts += 1
            try:
                token = poster.token()
                response = post_fhir(poster.http, token, body, headers={"X-Request-Id": sent.request_id})
                sent.status = response.status_code
            except Exception as exc:  # a request that failed inside (the database cut mid-request)
                sent.status = 599
                self.note(f"POST {sent.index} raised {type(exc).__name__}: {str(exc)[:160]}; retrying")
            if sent.status in (200, 201):
                sent.job_pk = with_db_retry(
                    lambda: (
                        IngestJob.objects.filter(request_id=sent.request_id)
                        .values_list("pk", flat=True)
                        .first()
                    )
                )
                return
            time.sleep(2)


def sweep_all() -> None:
    from clinical_ai.inference.services import inference_runs_sweep
    from clinical_ai.intake.services import ingest_jobs_sweep

    ingest_jobs_sweep()
    inference_runs_sweep()


def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ["DATABASE_URL"] = args.database_url
    os.environ["CELERY_BROKER_URL"] = args.broker_url
    services = Services(args.broker_url, args.database_url)
    if services.redis_local():
        services.redis_start()
    database_recreate(args.database_url, marker="chaos")
    django_setup()
    import redis
    from django.core.management import call_command

    from clinical_ai.audit.selectors import audit_chain_verify
    from clinical_ai.inference.registry import enabled_models
    from tests.integration.exactly_once import pipeline_tally

    call_command("migrate", verbosity=0, interactive=False)
    redis.Redis.from_url(args.broker_url).flushdb()  # only the chaos run's own Redis database
    model_ids = [state.model_id for state in enabled_models()]

    bundles = patient_bundles(args.data_dir)
    if bundles:
        bodies = [(path.name.split("_")[0], path.read_bytes()) for path in bundles]
        source = str(args.data_dir / SYNTHEA_DIR)
    else:
        print(f"no Synthea bundles under {args.data_dir / SYNTHEA_DIR}: sending the fixtures' sample bundle")
        bodies = [("sample", (ROOT / "fixtures" / "sample-bundle.json").read_bytes())]
        source = "fixtures/sample-bundle.json"
    rng = random.Random(args.seed)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "OMP_NUM_THREADS": "1"}
    log_dir = Path(tempfile.mkdtemp(prefix="chaos-workers-"))
    fleet = Fleet(env=env, log_dir=log_dir, concurrency=args.concurrency)
    chaos = Chaos(services=services, fleet=fleet, rng=rng)
    kinds = [kind for kind in FAULT_KINDS if kind not in args.no]
    started = time.monotonic()
    try:
        for _ in range(args.workers):
            fleet.start()
        print(f"{args.workers} worker(s) ready in {time.monotonic() - started:.0f} s; logs in {log_dir}")
        # The schedule: bundles evenly over the window, faults at random times within it (none in the first
        # tenth, so some work is in flight when the first one lands).
        events: list[tuple[float, str, int]] = [
            (args.seconds * i / max(1, args.bundles), "post", i) for i in range(args.bundles)
        ]
        events += [
            (rng.uniform(0.1, 1.0) * args.seconds, rng.choice(kinds), 0)
            for _ in range(args.faults if kinds else 0)
        ]
        events.sort()
        posters: dict[int, Poster] = {}
        window_start = time.monotonic()
        last_sweep = window_start
        for at, kind, index in events:
            while time.monotonic() - window_start < at:
                if time.monotonic() - last_sweep > args.sweep_every:
                    with_db_retry(sweep_all)
                    last_sweep = time.monotonic()
                time.sleep(0.2)
            if kind == "post":
                round_ = index // len(bodies)  # a fresh organization per round: each bundle predicts anew
                if round_ not in posters:
                    posters[round_] = with_db_retry(partial(Poster, f"chaos{round_}"))
                name, body = bodies[index % len(bodies)]
                sent = Sent(index, name, f"chaos-{args.seed}-{index}-{uuid.uuid4().hex[:8]}")
                chaos.sent.append(sent)
                chaos.post(posters[round_], body, sent)
            else:
                chaos.inject(kind)
        window_s = time.monotonic() - window_start
        print(f"window over after {window_s:.0f} s; waiting for quiescence ...", flush=True)
        # Bring everything back: the workers that should run, and both servers.
        while len(fleet.alive()) < args.workers:
            fleet.start()
        if services.redis_local():
            services.redis_start()
        job_pks = [s.job_pk for s in chaos.sent if s.job_pk is not None]
        quiesce_start = time.monotonic()
        tally = with_db_retry(lambda: pipeline_tally(job_pks, model_ids=model_ids))
        while tally.lost and time.monotonic() - quiesce_start < args.quiesce_timeout and not tally.duplicated:
            time.sleep(args.sweep_every)
            with_db_retry(sweep_all)
            tally = with_db_retry(lambda: pipeline_tally(job_pks, model_ids=model_ids))
        quiesce_s = time.monotonic() - quiesce_start
        chain = audit_chain_verify()
        worker_logs = "".join(w.log() for w in fleet.workers)
    finally:
        fleet.stop()
        if services.redis_local():
            services.redis_start()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "source": source,
        "seed": args.seed,
        "models": model_ids,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "window_s": round(window_s, 1),
        "quiescence_s": round(quiesce_s, 1),
        "sent": len(chaos.sent),
        "accepted": sum(s.status in (200, 201) for s in chaos.sent),
        "post_retries": sum(s.attempts - 1 for s in chaos.sent),
        "completed": tally.completed,
        "duplicated": tally.duplicated,
        "lost": tally.lost + sum(s.status in (200, 201) and s.job_pk is None for s in chaos.sent),
        "failed": tally.failed,
        "runs": tally.runs,
        "suggestions": tally.suggestions,
        "suggestions_by_model": dict(tally.suggestions_by_model),
        "audit_chain_verified": bool(chain.ok),
        "faults": dict(sorted(chaos.faults.items())),
        "faults_skipped": dict(sorted(chaos.skipped.items())),
        "workers_started": fleet.started,
        "worker_lost_errors": worker_logs.count("WorkerLostError"),
        "task_retries": worker_logs.count(" retry: Retry in "),
        "taken_over": worker_logs.count("was taken over by another worker"),
        "problems": tally.problems[:50],
        "fault_log": chaos.log,
    }


def render(results: Mapping[str, Any]) -> str:
    faults = ", ".join(f"{kind} {n}" for kind, n in results["faults"].items()) or "none"
    lines = [
        f"sent {results['sent']}, accepted {results['accepted']} (POST retries {results['post_retries']})",
        f"completed {results['completed']}, duplicated {results['duplicated']}, lost {results['lost']}, "
        f"failed {results['failed']}",
        f"runs {results['runs']}, suggestions {results['suggestions']} {results['suggestions_by_model']}",
        f"audit chain verified: {'yes' if results['audit_chain_verified'] else 'NO'}",
        f"faults injected: {faults}"
        + (f" (skipped: {results['faults_skipped']})" if results["faults_skipped"] else ""),
        f"workers started {results['workers_started']}; WorkerLostError {results['worker_lost_errors']}, "
        f"task retries {results['task_retries']}, results dropped after a take-over {results['taken_over']}",
        f"window {results['window_s']} s, quiescence after {results['quiescence_s']} s",
    ]
    lines += [f"problem: {p}" for p in results["problems"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--bundles", type=int, default=40, help="bundles to POST (the folder's, cycled)")
    parser.add_argument("--seconds", type=float, default=240, help="the window the bundles and faults span")
    parser.add_argument("--faults", type=int, default=None, help="faults to inject (default: one per 20 s)")
    parser.add_argument("--no", action="append", default=[], choices=FAULT_KINDS, help="leave a kind out")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=1, help="pool processes per worker")
    parser.add_argument("--sweep-every", type=float, default=15, help="seconds between sweeps")
    parser.add_argument("--quiesce-timeout", type=float, default=600)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="dropped and created again")
    parser.add_argument("--broker-url", default=DEFAULT_BROKER_URL, help="a Redis database, flushed")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if args.faults is None:
        args.faults = max(1, int(args.seconds // 20))
    if not args.broker_url.startswith("redis://"):
        raise SystemExit("--broker-url must be a Redis URL")
    print(
        f"chaos: {args.bundles} bundles and {args.faults} faults over {args.seconds:.0f} s, seed {args.seed}",
        flush=True,
    )
    results = run(args)
    print("")
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    bad = results["duplicated"] or results["lost"] or results["failed"] or not results["audit_chain_verified"]
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
