"""CDS Hooks: latency of ``patient-view`` under concurrent clients, against a real server.

A gunicorn server (gthread workers) on PostgreSQL serves the CDS services; the patient's suggestions are
precomputed (stored the way the inference stage stores them: a NEWS2 risk and a problem-list gap), so each
call is the production read path: JWT verification (ES384, jti stored), the patient's pseudonyms, the
suggestions opened and turned into cards, the issued-card rows and the audit row. ``--clients`` threads
each sign a fresh JWT and POST a patient-view request (with the patient prefetched) in a loop for
``--seconds``; warm-up calls (which also load the de-identification modules in every worker) are not
counted. Latency is the client-side time of one POST (signing excluded).

The database of ``--database-url`` is dropped and created again: give one used for nothing else (default
``cdshooks_bench``). Test-only keys (tests.settings) are used; nothing leaves the machine.

    python benchmarks/cds_hooks_latency.py --seconds 20 --clients 20 --markdown docs/cds-hooks.md

prints the table and writes it into the "Latency" section of that file (between its markers).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _harness import ROOT, script_environment  # this folder: the script's own

script_environment()

from _harness import cds_jwt, es384_key, free_port, gunicorn_start, write_between_markers  # noqa: E402

SERVICE_PATH = "/cds-services/clinical-ai-patient-view"
PATIENT_ID = "bench-1"
BEGIN, END = "<!-- cds-hooks-latency:begin -->", "<!-- cds-hooks-latency:end -->"


def _recreate_database(url: str) -> None:
    import psycopg

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not re.fullmatch(r"[a-z0-9_]+", name) or name in ("postgres", "test"):
        raise SystemExit(f"refusing to drop database {name!r}")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def _seed(private_pem: bytes, public_jwk: dict[str, Any]) -> None:
    """Organization, EHR client, CDS issuer and the patient's precomputed suggestions (in this process)."""
    import django

    django.setup()
    from django.conf import settings
    from django.db import connections

    from clinical_ai.audit.services import Actor
    from clinical_ai.vault.pseudonyms import patient_pseudonym
    from integrations.cds_hooks.registration import cds_issuer_register
    from tests.factories import make_ehr_client, make_organization
    from tests.unit.review.conftest import store_finding
    from tests.unit.review.findings import news2_finding, news2_manifest, problem_finding, problem_manifest

    organization = make_organization("bench-hospital", "Bench Hospital")
    ehr = make_ehr_client(organization)
    cds_issuer_register(
        iss="https://ehr.bench.example",
        name="Bench EHR",
        ehr_client=ehr.client,
        jwks={"keys": [public_jwk]},
        actor=Actor.system("benchmark"),
    )
    pseudonym = patient_pseudonym(
        key=settings.PSEUDONYM_KEY.encode("utf-8"),
        organization=organization.slug,
        identity=f"Patient/{PATIENT_ID}",
    )
    store_finding(organization, news2_finding(pseudonym), news2_manifest(), pseudonym=pseudonym)
    store_finding(organization, problem_finding(), problem_manifest(), pseudonym=pseudonym)
    connections.close_all()


def _body() -> bytes:
    return json.dumps(
        {
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "fhirServer": "https://ehr.bench.example/fhir",
            "context": {"userId": "Practitioner/1", "patientId": PATIENT_ID},
            "prefetch": {"patient": {"resourceType": "Patient", "id": PATIENT_ID, "gender": "female"}},
        }
    ).encode()


class Caller:
    def __init__(self, port: int, key: Any, kid: str) -> None:
        self.port, self.key, self.kid = port, key, kid
        self.aud = f"http://127.0.0.1:{port}{SERVICE_PATH}"
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def token(self) -> str:
        return cds_jwt(key=self.key, kid=self.kid, iss="https://ehr.bench.example", aud=self.aud)

    def once(self) -> tuple[float, int, int]:
        token, body = self.token(), _body()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        started = time.perf_counter()
        try:
            self.connection.request("POST", SERVICE_PATH, body=body, headers=headers)
            response = self.connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            return time.perf_counter() - started, 0, 0
        elapsed = time.perf_counter() - started
        cards = len(json.loads(data).get("cards", [])) if response.status == 200 else 0
        return elapsed, response.status, cards


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/cdshooks_bench")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=10, help="threads per gunicorn worker")
    parser.add_argument("--markdown", type=Path, help="write the table into this file's latency section")
    args = parser.parse_args()

    kid = "bench-es384"
    pem, jwk = es384_key(kid)

    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": args.database_url,
        "CELERY_BROKER_URL": "",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "DB_CONN_MAX_AGE": "60",
    }
    os.environ.update(env)
    _recreate_database(args.database_url)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True)
    _seed(pem, jwk)

    config_dir = tempfile.TemporaryDirectory(prefix="cds-bench-")
    server = gunicorn_start(
        port=port, workers=args.workers, threads=args.threads, env=env, config_dir=Path(config_dir.name)
    )
    try:
        warm = [Caller(port, pem, kid) for _ in range(args.clients)]
        for _ in range(3):
            threads = [threading.Thread(target=c.once) for c in warm]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        status, cards = warm[0].once()[1:]
        if status != 200 or cards != 2:
            raise SystemExit(f"warm-up call answered {status} with {cards} cards")

        latencies: list[float] = []
        statuses: Counter[int] = Counter()
        lock = threading.Lock()
        stop_at = time.monotonic() + args.seconds

        def run(caller: Caller) -> None:
            while time.monotonic() < stop_at:
                elapsed, code, _ = caller.once()
                with lock:
                    latencies.append(elapsed)
                    statuses[code] += 1

        started = time.monotonic()
        threads = [threading.Thread(target=run, args=(c,)) for c in warm]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - started
    finally:
        server.stop()
        config_dir.cleanup()

    ok = statuses[200]
    errors = sum(count for code, count in statuses.items() if code != 200)
    table = "\n".join(
        [
            f"{args.clients} concurrent clients, {args.seconds:g} s, gunicorn {args.workers} workers x "
            f"{args.threads} threads (gthread), PostgreSQL, {os.cpu_count()} CPUs ({platform.machine()}), "
            f"clients on the same machine; patient-view with 2 precomputed suggestions per call.",
            "",
            "| requests | errors | throughput (req/s) | p50 (ms) | p95 (ms) | p99 (ms) | max (ms) |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {ok + errors} | {errors} | {ok / wall:.1f} | {statistics.median(latencies) * 1000:.0f} | "
            f"{_percentile(latencies, 0.95) * 1000:.0f} | {_percentile(latencies, 0.99) * 1000:.0f} | "
            f"{max(latencies) * 1000:.0f} |",
        ]
    )
    print(table)
    if errors:
        print(f"status codes: {dict(statuses)}")
    if args.markdown is not None:
        write_between_markers(args.markdown, BEGIN, END, table)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
