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
import datetime as dt
import http.client
import json
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _harness import ROOT, script_environment  # this folder: the script's own

script_environment(one_blas_thread=True)

from _harness import (  # noqa: E402
    Started,
    cds_jwt,
    celery_beat_start,
    celery_worker_start,
    database_recreate,
    die_with_parent,
    es384_key,
    free_port,
    gunicorn_start,
    machine,
    percentile,
    version,
    write_between_markers,
)
from _worker_memory import process_tree, rss_kib  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data"
SYNTHEA_DIR = "synthea_r4_ms_anonymizer_samples"
NOT_PATIENT_BUNDLES = ("hospitalInformation", "practitionerInformation")
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/clinical_ai_load"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/13"
SERVICE_PATH = "/cds-services/clinical-ai-patient-view"
CDS_ISS = "https://ehr.load.example"
ORGANIZATION = "load-hospital"
MR_SYSTEM = "http://hospital.smarthealthit.org"  # the medical record numbers of the Synthea bundles
QUEUES = ("deid", "inference")
# kombu's Redis transport keeps a queue's priorities 3, 6 and 9 in lists of their own: "<queue>\x06\x16<p>".
KOMBU_PRIORITY_SEPARATOR = "\x06\x16"
BEGIN, END = "<!-- load-test:begin -->", "<!-- load-test:end -->"
HEADING = "## Load: sustained intake and patient-view"
INTAKE, VIEW = "intake", "patient-view"
MEMORY_SLOPE_LIMIT = 2.0  # MiB/min in the second half of the sustained phase: above it, a process still grows


# --- the load generator (a second process) -----------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    intake_rate: float  # bundles/s (open loop)
    view_rate: float  # calls/s (open loop)


@dataclass
class Record:
    kind: str
    phase: str
    scheduled: float  # time.time(): when the request was due (open loop) or its client was free (closed)
    started: float
    ended: float
    status: int  # 0: no HTTP answer (see error)
    error: str = ""
    request_id: str = ""
    patient: str = ""
    cards: int = 0


@dataclass(frozen=True)
class Template:
    """A Synthea bundle and its patient's id, which is replaced with a fresh UUID at each send."""

    name: str
    body: bytes
    patient_id: str

    @classmethod
    def load(cls, path: Path) -> Template:
        body = path.read_bytes()
        document = json.loads(body)
        for entry in document.get("entry", []):
            resource = entry.get("resource") or {}
            if resource.get("resourceType") == "Patient" and resource.get("id"):
                return cls(path.name.split("_")[0], body, str(resource["id"]))
        raise SystemExit(f"{path}: no Patient with an id")

    def as_new_patient(self) -> tuple[str, bytes]:
        patient = str(uuid.uuid4())
        # The id is a UUID, so it appears only as itself: Patient.id, its fullUrl, the references to it and
        # the medical record number (which the de-identification takes for the patient's identity).
        return patient, self.body.replace(self.patient_id.encode(), patient.encode())


class Generator:
    """Sends the requests of ``plan`` and appends one JSON line per answered (or failed) request."""

    def __init__(self, plan: Mapping[str, Any], *, templates: Sequence[Template] = ()) -> None:
        self.plan = plan
        self.base = f"http://127.0.0.1:{plan['port']}"
        self.templates = list(templates) or [Template.load(Path(p)) for p in plan["bundles"]]
        self.random = random.Random(plan["seed"])
        self.lock = threading.Lock()
        self.sent = 0
        self.patients: list[str] = []  # accepted ones: patient-view calls are for them
        self.output = Path(plan["output"]).open("a", encoding="utf-8")  # noqa: SIM115 (closed in run)
        self._token, self._token_at = "", 0.0
        self._token_lock = threading.Lock()
        self.ehr_key = plan["ehr_private_pem"].encode()
        self.cds_key = plan["cds_private_pem"].encode()

    # The EHR's side of the protocol: a SMART token for intake, a signed JWT per CDS Hooks call.

    def token(self, *, renew: bool = False) -> str:
        from integrations.fhir.client import fetch_access_token

        with self._token_lock:
            if renew or not self._token or time.monotonic() - self._token_at > 120:  # tokens live 300 s
                self._token = fetch_access_token(
                    token_url=f"{self.base}/auth/token",
                    client_id=self.plan["ehr_client_id"],
                    private_key_pem=self.ehr_key,
                    kid=self.plan["ehr_kid"],
                    scope="system/*.write",
                    timeout=self.plan["http_timeout"],
                )
                self._token_at = time.monotonic()
            return self._token

    def intake(self, phase: str, scheduled: float) -> Record:
        from integrations.fhir.client import ClientError, post_fhir

        with self.lock:
            template = self.templates[self.sent % len(self.templates)]
            self.sent += 1
        patient, body = template.as_new_patient()
        request_id = f"load-{uuid.uuid4().hex}"
        started = time.time()
        try:
            token = self.token()
        except (OSError, http.client.HTTPException, ClientError) as exc:
            error = f"token: {_error_name(exc)}"
            return Record(INTAKE, phase, scheduled, started, time.time(), 0, error, request_id, patient)
        started = time.time()
        try:
            answer = post_fhir(
                url=f"{self.base}/fhir",
                access_token=token,
                body=body,
                request_id=request_id,
                timeout=self.plan["http_timeout"],
            )
            status, error = answer.status, ""
        except (OSError, http.client.HTTPException) as exc:
            status, error = 0, _error_name(exc)
        record = Record(INTAKE, phase, scheduled, started, time.time(), status, error, request_id, patient)
        if 200 <= status < 300:
            with self.lock:
                self.patients.append(patient)
        return record

    def view(self, phase: str, scheduled: float) -> Record:
        with self.lock:
            patient = self.random.choice(self.patients) if self.patients else "load-not-sent"
        body = json.dumps(
            {
                "hook": "patient-view",
                "hookInstance": str(uuid.uuid4()),
                "fhirServer": f"{CDS_ISS}/fhir",
                "context": {"userId": "Practitioner/load", "patientId": patient},
                "prefetch": {
                    "patient": {
                        "resourceType": "Patient",
                        "id": patient,
                        "identifier": [
                            {
                                "type": {
                                    "coding": [
                                        {
                                            "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                            "code": "MR",
                                        }
                                    ]
                                },
                                "system": MR_SYSTEM,
                                "value": patient,
                            }
                        ],
                    }
                },
            }
        ).encode()
        token = cds_jwt(key=self.cds_key, kid=self.plan["cds_kid"], iss=CDS_ISS, aud=self.base + SERVICE_PATH)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.plan["port"], timeout=self.plan["http_timeout"]
        )
        started = time.time()
        cards, error = 0, ""
        try:
            connection.request("POST", SERVICE_PATH, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
            status = response.status
            if status == 200:
                cards = len(json.loads(data).get("cards", []))
        except (OSError, http.client.HTTPException, ValueError) as exc:
            status, error = 0, _error_name(exc)
        finally:
            connection.close()
        return Record(VIEW, phase, scheduled, started, time.time(), status, error, "", patient, cards)

    def write(self, record: Record) -> None:
        line = json.dumps(asdict(record))
        with self.lock:
            self.output.write(line + "\n")
            self.output.flush()

    def call(self, kind: str, phase: str, scheduled: float) -> None:
        try:
            record = self.intake(phase, scheduled) if kind == INTAKE else self.view(phase, scheduled)
        except Exception as exc:  # a bug on the generator's side must show in the report, not stop the run
            record = Record(kind, phase, scheduled, time.time(), time.time(), 0, f"generator: {exc!r}"[:200])
        self.write(record)

    # Open loop: the schedule does not wait for answers. Closed loop: K clients, one request each at a time.

    def run_open(self, phases: Sequence[Phase]) -> None:
        with ThreadPoolExecutor(max_workers=self.plan["max_in_flight"]) as pool:
            start = float(self.plan["start_at"])
            for phase in phases:
                for at, kind in self.arrivals(phase, start):
                    delay = at - time.time()
                    if delay > 0:
                        time.sleep(delay)
                    pool.submit(self.call, kind, phase.name, at)
                start += phase.seconds

    def arrivals(self, phase: Phase, start: float) -> list[tuple[float, str]]:
        due: list[tuple[float, str]] = []
        for kind, rate in ((INTAKE, phase.intake_rate), (VIEW, phase.view_rate)):
            at = start
            while rate > 0:
                gap = self.random.expovariate(rate) if self.plan["arrivals"] == "poisson" else 1 / rate
                at += gap
                if at >= start + phase.seconds:
                    break
                due.append((at, kind))
        return sorted(due)

    def run_closed(self, phase: Phase, clients: int, intake_share: float) -> None:
        time.sleep(max(0.0, float(self.plan["start_at"]) - time.time()))
        stop_at = time.time() + phase.seconds

        def client(seed: int) -> None:
            chooser = random.Random(seed)
            while time.time() < stop_at:
                kind = INTAKE if chooser.random() < intake_share else VIEW
                self.call(kind, phase.name, time.time())

        threads = [threading.Thread(target=client, args=(self.plan["seed"] + i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def run(self) -> None:
        try:
            phases = [Phase(**p) for p in self.plan["phases"]]
            if self.plan["clients"]:
                self.run_closed(phases[0], self.plan["clients"], self.plan["intake_share"])
            else:
                self.run_open(phases)
        finally:
            self.output.close()


def _error_name(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)  # urllib's URLError wraps the socket error
    return type(reason if isinstance(reason, BaseException) else exc).__name__


def generate(plan_path: Path) -> int:
    Generator(json.loads(plan_path.read_text(encoding="utf-8"))).run()
    return 0


# --- sampling memory and queues (this process) -------------------------------------------------------------


@dataclass
class Sampler:
    """Every ``interval`` seconds: the RSS of every process of each server, and the queue depths."""

    servers: Mapping[str, Started]  # role -> server (its main process; children are its workers)
    broker_url: str
    interval: float
    memory: list[dict[str, Any]] = field(default_factory=list)  # {"at", "label", "pid", "rss_mib"}
    queues: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[int, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, name="load-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def label(self, role: str, main_pid: int, pid: int) -> str:
        if pid not in self.labels:
            kind = "master" if role == "gunicorn" else "main"
            if pid != main_pid:
                kind = "worker" if role == "gunicorn" else "pool"
                kind += (
                    f" {sum(1 for label in self.labels.values() if label.startswith(f'{role} {kind}')) + 1}"
                )
            self.labels[pid] = f"{role} {kind}"
        return self.labels[pid]

    def _run(self) -> None:
        from django.db import connections

        try:
            self._sample()
        finally:
            connections.close_all()  # this thread's own

    def _sample(self) -> None:
        import redis
        from django.db import connections

        client = redis.Redis.from_url(self.broker_url)
        while not self._stop.is_set():
            at = time.time()
            for role, server in self.servers.items():
                for pid in sorted(process_tree(server.process.pid)):
                    rss = rss_kib(pid)
                    if rss:
                        label = self.label(role, server.process.pid, pid)
                        self.memory.append({"at": at, "label": label, "pid": pid, "rss_mib": rss / 1024})
            try:
                self.queues.append({"at": at, **queue_depth(client)})
            except Exception as exc:  # a restart of Redis or PostgreSQL during the run: a gap, not a crash
                self.queues.append({"at": at, "error": type(exc).__name__})
                connections.close_all()  # reconnect at the next sample
            self._stop.wait(self.interval)


def queue_depth(client: Any) -> dict[str, int]:
    from django.db.models import Count

    from clinical_ai.inference.models import InferenceRun
    from clinical_ai.intake.models import IngestJob

    depth: dict[str, int] = {}
    for queue in QUEUES:
        keys = [queue, *(f"{queue}{KOMBU_PRIORITY_SEPARATOR}{p}" for p in (3, 6, 9))]
        depth[f"redis_{queue}"] = sum(int(client.llen(key)) for key in keys)
    depth["redis_unacked"] = int(client.hlen("unacked"))
    for prefix, model in (("jobs", IngestJob), ("runs", InferenceRun)):
        counts = dict(
            model.objects.filter(status__in=["queued", "running"])
            .values_list("status")
            .annotate(n=Count("pk"))
            .values_list("status", "n")
        )
        depth[f"{prefix}_queued"] = int(counts.get("queued", 0))
        depth[f"{prefix}_running"] = int(counts.get("running", 0))
    return depth


# --- the run (this process) ---------------------------------------------------------------------------------


def _patient_bundles(data_dir: Path) -> list[Path]:
    folder = data_dir / SYNTHEA_DIR
    if not folder.is_dir():
        return []
    return sorted(
        p for p in folder.glob("*.json") if p.is_file() and not p.name.startswith(NOT_PATIENT_BUNDLES)
    )


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


def _outcomes(records: Sequence[Record]) -> dict[str, dict[str, Any]]:
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


def _drain(
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


def _records(path: Path) -> list[Record]:
    if not path.exists():
        return []
    return [
        Record(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


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


# --- the report ----------------------------------------------------------------------------------------------


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


def _timeline(
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


class _Interrupted(Exception):
    pass


def _on_signal(signum: int, _frame: Any) -> None:
    raise _Interrupted(signal.Signals(signum).name)


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
    records = _records(out)
    accepted = [r.request_id for r in records if r.kind == INTAKE and 200 <= r.status < 300]
    if len(accepted) < count or any(r.status != 200 for r in records if r.kind == VIEW):
        raise SystemExit(f"warm-up requests failed: {[(r.kind, r.status, r.error) for r in records]}")
    _drain(accepted, timeout=timeout, generator_done_at=time.time())
    generator.call(VIEW, "warm", time.time())  # a patient with suggestions: the card path is warm too
    generator.output.close()
    return {
        "bundles": count,
        "views": views + 1,
        "seconds": time.time() - started,
        "statuses": dict(Counter(r.status for r in records)),
    }


def _phases(args: argparse.Namespace) -> list[Phase]:
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
            [sys.executable, str(Path(__file__).resolve()), "--generate", str(plan_path)],
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
        records = _records(Path(plan["output"]))
        accepted = [r.request_id for r in records if r.kind == INTAKE and 200 <= r.status < 300]
        print(
            f"  {len(records)} requests; draining the queues (at most {args.drain_timeout:g} s) ...",
            flush=True,
        )

        def exited() -> dict[str, int]:
            return {role: code for role, s in servers.items() if (code := s.process.poll()) is not None}

        results["drain_s"] = _drain(
            accepted,
            timeout=args.drain_timeout,
            generator_done_at=generator_done_at,
            give_up=lambda: bool(exited()),
        )
        results["exited"] = exited()
        time.sleep(args.sample_interval)  # one more sample of the drained queues
        outcomes = _outcomes(records)
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

    bundles = _patient_bundles(args.data_dir)[: args.bundles]
    if not bundles:
        print(
            f"load test: no Synthea patient bundles in {args.data_dir / SYNTHEA_DIR} (the shared data folder, "
            "../shared/data, is absent or incomplete); give --data-dir",
            file=sys.stderr,
        )
        return 2
    if not args.broker_url.startswith("redis://"):
        parser.error("--broker-url must be a Redis URL (the queue depth is read from it)")
    phases = _phases(args)
    command = "OMP_NUM_THREADS=1 python benchmarks/load.py" + "".join(
        f" {a}" for a in (argv if argv is not None else sys.argv[1:])
    )
    info = {**machine(), "torch": version("torch"), "gunicorn": version("gunicorn")}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background (ignored)
    try:
        raw = run(args, bundles, phases)
    except (_Interrupted, KeyboardInterrupt) as exc:
        print(
            f"load test interrupted ({type(exc).__name__} {exc}); every process it started is stopped",
            file=sys.stderr,
        )
        return 130
    info["load_average_after"] = ", ".join(f"{value:.2f}" for value in os.getloadavg())

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
            "bundles": len(bundles),
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
        "queue_timeline": _timeline(raw["queues"], float(raw["start_at"]), windows, rows=24),
    }
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
