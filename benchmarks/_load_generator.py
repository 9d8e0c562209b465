"""The load test's generator: a second process that talks to the service over loopback as an EHR would.

It obtains a SMART Backend Services token and POSTs Synthea bundles to /fhir, each as a new patient, and
signs a CDS Hooks JWT (ES384) for every patient-view call; open loop (Poisson or uniform arrivals at the
phase's rates, whatever the server does) or closed loop (K clients, one request each at a time). One JSON
line per request is appended to the plan's output file, which the orchestrating process reads back.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _harness import cds_jwt

SERVICE_PATH = "/cds-services/clinical-ai-patient-view"
CDS_ISS = "https://ehr.load.example"
MR_SYSTEM = "http://hospital.smarthealthit.org"  # the medical record numbers of the Synthea bundles
INTAKE, VIEW = "intake", "patient-view"


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


def records_read(path: Path) -> list[Record]:
    """The requests the generator wrote to ``path`` (none when it wrote nothing)."""
    if not path.exists():
        return []
    return [
        Record(**json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]
