"""The load test's run: the service started as production runs it (gunicorn, a Celery worker per queue, beat)
on its own PostgreSQL database and Redis database, warmed up, driven by the generator process, sampled and
drained. Every process started is stopped on exit, Ctrl-C or error."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _harness import (
    ROOT,
    Started,
    celery_beat_start,
    celery_worker_start,
    database_recreate,
    die_with_parent,
    es384_key,
    free_port,
    gunicorn_start,
)
from _load_generator import CDS_ISS, INTAKE, VIEW, Generator, Phase, Template, records_read
from _load_measure import outcomes_read, queues_drain
from _load_sampling import Sampler

ORGANIZATION = "load-hospital"
# The generator is the entry script itself, run again with --generate and the plan.
ENTRY_SCRIPT = Path(__file__).resolve().with_name("load.py")


def _seed(cds_jwk: Mapping[str, Any]) -> dict[str, Any]:
    """The organization, its EHR client (SMART, ES384) and the EHR as a CDS Hooks issuer."""
    from clinical_ai.audit.services import Actor
    from integrations.cds_hooks.registration import cds_issuer_register
    from tests.factories import make_ehr_client, make_organization

    organization = make_organization(ORGANIZATION, "Load Hospital")
    ehr = make_ehr_client(organization)
    cds_issuer_register(
        iss=CDS_ISS,
        name="Load EHR",
        ehr_client=ehr.client,
        jwks={"keys": [dict(cds_jwk)]},
        actor=Actor.system("load"),
    )
    return {"ehr_client_id": ehr.client_id, "ehr_private_pem": ehr.private_pem.decode(), "ehr_kid": ehr.kid}


class Interrupted(Exception):
    pass


def interrupt_on_signal(signum: int, _frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _warm_up(
    templates: Sequence[Template], plan: Mapping[str, Any], *, count: int, views: int, timeout: float
) -> dict[str, Any]:
    """Send ``count`` bundles at once, then ``views`` patient-view calls at once, so that (very likely) every
    gunicorn worker has served both, each de-identification pool process has loaded its engines and the
    inference worker its models; wait for the bundles' suggestions. Not counted: first-use imports and model
    loads would otherwise show as latency and as memory growth in the first minute."""
    out = Path(plan["output"]).with_suffix(".warm.jsonl")
    generator = Generator(
        {**plan, "output": str(out)}, templates=sorted(templates, key=lambda t: len(t.body))
    )
    started = time.time()
    generator.token()
    for kind, number in ((INTAKE, count), (VIEW, views)):
        threads = [
            threading.Thread(target=generator.call, args=(kind, "warm", time.time())) for _ in range(number)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    records = records_read(out)
    accepted = [r.request_id for r in records if r.kind == INTAKE and 200 <= r.status < 300]
    if len(accepted) < count or any(r.status != 200 for r in records if r.kind == VIEW):
        raise SystemExit(f"warm-up requests failed: {[(r.kind, r.status, r.error) for r in records]}")
    queues_drain(accepted, timeout=timeout, generator_done_at=time.time())
    generator.call(VIEW, "warm", time.time())  # a patient with suggestions: the card path is warm too
    generator.output.close()
    return {
        "bundles": count,
        "views": views + 1,
        "seconds": time.time() - started,
        "statuses": dict(Counter(r.status for r in records)),
    }


def phases_plan(args: argparse.Namespace) -> list[Phase]:
    if args.clients:
        return [Phase("closed loop", args.seconds, 0.0, 0.0)]
    phases = [Phase("sustained", args.seconds, args.intake_rate, args.view_rate)]
    if args.overload_seconds > 0 and args.overload_rate > 0:
        phases.append(Phase("overload", args.overload_seconds, args.overload_rate, args.view_rate))
    return phases


def _stop_generator(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def _server_versions() -> tuple[str, str]:
    import redis
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = str((cursor.fetchone() or ["?"])[0])
    broker = os.environ["CELERY_BROKER_URL"]
    return postgres, str(redis.Redis.from_url(broker).info("server").get("redis_version", "?"))


def run(args: argparse.Namespace, bundles: Sequence[Path], phases: Sequence[Phase]) -> dict[str, Any]:
    """Start the service, warm it up, run the generator, sample, drain; returns the raw results."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="clinical-ai-load-") as scratch, ExitStack() as stack:
        tmp = args.log_dir
        tmp.mkdir(parents=True, exist_ok=True)
        for name in ("requests.jsonl", "requests.warm.jsonl"):  # appended to by the generator
            (tmp / name).unlink(missing_ok=True)
        port = free_port()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": args.database_url,
            "CELERY_BROKER_URL": args.broker_url,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "DB_CONN_MAX_AGE": "60",
            "CLINICAL_AI_VAR_DIR": scratch,  # one for all processes (tests.settings makes one each)
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
        }
        os.environ.update(env)
        print(
            f"database {urlsplit(args.database_url).path.lstrip('/')}: recreating and migrating ...",
            flush=True,
        )
        database_recreate(args.database_url, marker="load")
        subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
        import logging

        import django
        import redis

        redis.Redis.from_url(args.broker_url).flushdb()  # only the load test's own Redis database
        django.setup()
        logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
        cds_pem, cds_jwk = es384_key("load-es384")
        seeded = _seed(cds_jwk)
        results["postgres"], results["redis"] = _server_versions()

        print("starting the Celery workers and gunicorn ...", flush=True)
        servers: dict[str, Started] = {}
        for queue, concurrency in (
            ("deid", args.deid_concurrency),
            ("inference", args.inference_concurrency),
        ):
            worker = celery_worker_start(
                queues=queue,
                concurrency=concurrency,
                env=env,
                log_path=tmp / f"celery-{queue}.log",
                with_parent=True,
            )
            stack.callback(worker.stop)
            servers[f"celery-{queue}"] = worker
        if args.beat:  # as in production: the sweeps re-send what a lost message or a broker restart left
            beat = celery_beat_start(env=env, log_path=tmp / "celery-beat.log", with_parent=True)
            stack.callback(beat.stop)
            servers["celery-beat"] = beat
        server = gunicorn_start(
            port=port,
            workers=args.workers,
            threads=args.threads,
            env=env,
            config_dir=tmp,
            log_path=tmp / "gunicorn.log",
            timeout=args.gunicorn_timeout,
            with_parent=True,
            # Every view module too, so that no worker's first request pays for the imports (the warm-up
            # cannot reach every worker).
            preloaded=("clinical_ai.deid.services", "clinical_ai.urls"),
        )
        stack.callback(server.stop)
        servers = {"gunicorn": server, **servers}
        sampler = Sampler(servers, args.broker_url, args.sample_interval).start()
        stack.callback(sampler.stop)

        plan: dict[str, Any] = {
            "port": port,
            "bundles": [str(p) for p in bundles],
            "phases": [asdict(p) for p in phases],
            "clients": args.clients,
            "intake_share": args.intake_share,
            "arrivals": args.arrivals,
            "seed": args.seed,
            "max_in_flight": args.max_in_flight,
            "http_timeout": args.http_timeout,
            "output": str(tmp / "requests.jsonl"),
            "cds_private_pem": cds_pem.decode(),
            "cds_kid": "load-es384",
            **seeded,
        }
        templates = [Template.load(p) for p in bundles]
        warm_bundles = args.workers + args.deid_concurrency
        print(f"warming up ({warm_bundles} bundles at once) ...", flush=True)
        results["warm_up"] = _warm_up(
            templates,
            plan,
            count=warm_bundles,
            views=args.workers * args.threads,
            timeout=args.drain_timeout,
        )
        print(f"  warm after {results['warm_up']['seconds']:.0f} s", flush=True)

        total = sum(p.seconds for p in phases)
        plan["start_at"] = (
            time.time() + 3
        )  # the generator's imports and bundles load before the first request
        plan_path = tmp / "plan.json"
        plan_path.write_text(json.dumps(plan), encoding="utf-8")
        print(
            f"load: {', '.join(f'{p.name} {p.seconds:g} s' for p in phases)} "
            + (
                f"({args.clients} closed-loop clients)"
                if args.clients
                else f"(bundles/s {', '.join(f'{p.intake_rate:g}' for p in phases)}; views/s {args.view_rate:g})"
            )
            + " ...",
            flush=True,
        )
        generator = subprocess.Popen(
            [sys.executable, str(ENTRY_SCRIPT), "--generate", str(plan_path)],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        stack.callback(_stop_generator, generator)
        try:
            generator.wait(timeout=total + 3 + args.http_timeout + 60)
        except subprocess.TimeoutExpired:
            print("the generator overran its time: stopped", file=sys.stderr)
        _stop_generator(generator)
        generator_done_at = time.time()
        records = records_read(Path(plan["output"]))
        accepted = [r.request_id for r in records if r.kind == INTAKE and 200 <= r.status < 300]
        print(
            f"  {len(records)} requests; draining the queues (at most {args.drain_timeout:g} s) ...",
            flush=True,
        )

        def exited() -> dict[str, int]:
            return {role: code for role, s in servers.items() if (code := s.process.poll()) is not None}

        results["drain_s"] = queues_drain(
            accepted,
            timeout=args.drain_timeout,
            generator_done_at=generator_done_at,
            give_up=lambda: bool(exited()),
        )
        results["exited"] = exited()
        time.sleep(args.sample_interval)  # one more sample of the drained queues
        outcomes = outcomes_read(records)
        sampler.stop()
        logs = "".join(s.log() for s in servers.values())
        results["resent"] = {
            what: sum(int(n) for n in re.findall(rf"{what} sweep re-dispatched (\d+)", logs))
            for what in ("intake", "inference")
        }
        results["server_log_errors"] = {  # the first few, for the JSON
            role: lines[:30]
            for role, s in servers.items()
            if (lines := [line for line in s.log().splitlines() if re.search(r" (ERROR|CRITICAL) ", line)])
        }
        results["worker_errors"] = sum(
            len(re.findall(r" (?:ERROR|CRITICAL) ", s.log())) for s in servers.values()
        )
        results.update(
            start_at=plan["start_at"],
            generator_done_at=generator_done_at,
            records=records,
            outcomes=outcomes,
            memory=sampler.memory,
            queues=sampler.queues,
            labels=sampler.labels,
        )
    return results
