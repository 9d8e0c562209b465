"""An EHR's FHIR server as the gateway meets it when it pulls: SMART Backend Services, FHIR Bulk Data Access
IG 2.0 ``$export``, FHIR reads, paged searches and ``Patient/$everything``, served by a real HTTP server on
the loopback interface, with knobs for the faults the tests need.

    resources = resources_by_type()                       # tests/bulk_data.py: the shared Synthea data
    private_pem, jwks = client_key_pair("ES384", kid="k1")
    with EhrStandIn(resources, client_id="gateway", client_jwks=jwks) as ehr:
        ehr.polls_before_ready = 2
        ehr.fail_next("status", 500)                      # one 500 (issue code "transient"), then as usual
        ... ehr.base_url, ehr.token_url ...
        assert [r.kind for r in ehr.requests] == [...]

What it serves (``root_url`` = ``http://127.0.0.1:PORT``, ``base_url`` = ``{root_url}/fhir``):

- ``{base}/.well-known/smart-configuration`` and ``{base}/metadata`` (a CapabilityStatement);
- ``{root}/auth/token`` (``token_url``): client_credentials with a signed client assertion (RS384 or
  ES384), checked here with PyJWT and the client's JWK Set (given inline, or fetched from
  ``client_jwks_url`` through ``clinical_ai.core.http`` at each request): ``kid`` known, ``iss`` = ``sub`` =
  the client id, ``aud`` = ``token_url``, ``exp`` in the future and at most 5 minutes ahead, ``jti`` never
  seen before. Refusals are ``400 invalid_request``/``invalid_scope`` or ``401 invalid_client``. Access
  tokens are opaque, expire after ``token_ttl`` seconds, and every FHIR and bulk endpoint wants one (401
  otherwise); the files want one only while ``requires_access_token``;
- ``{base}/$export``, ``{base}/Patient/$export``, ``{base}/Group/{id}/$export`` (GET; ``Prefer:
  respond-async`` and ``Accept: application/fhir+json`` required): 202 with ``Content-Location`` =
  ``{root}/bulkstatus/{job}``. ``_type``, ``_since`` (on ``meta.lastUpdated``; a resource loaded without one
  counts as updated when the stand-in was built), ``_typeFilter`` (``Type?element=v1,v2`` on a top-level
  element: a string, code or CodeableConcept) and ``_outputFormat`` are honoured;
- the status URL: 202 with ``Retry-After`` and ``X-Progress`` for ``polls_before_ready`` polls, then 200
  with the manifest (``transactionTime`` = the kick-off's time, ``requiresAccessToken``, ``output`` one file
  per type, or several of ``lines_per_file`` lines, ``error`` when ``error_file_lines`` is set, and, for an
  export with ``_since``, ``deleted``: one file of transaction Bundles, a DELETE entry each, for the resources
  ``resource_delete`` removed since then, plus ``deleted_file_extra_lines``);
  DELETE → 202, and the job and its files are gone (404) afterwards;
- ``{root}/bulkfiles/{job}/{name}.ndjson``: the files, with ``Range: bytes=N-`` (206 + Content-Range, 416
  past the end) unless ``range_supported`` is off;
- ``{base}/{Type}/{id}``; ``{base}/{Type}?patient=X`` (or ``subject=``, ``_id=``; other parameters are
  ignored, as a lenient server does) with ``_count`` and ``Bundle.link[next]`` =
  ``{base}/{Type}?...&_page=K`` (on ``next_link_host`` when set); ``{base}/Patient/{id}/$everything`` (paged
  alike; 404 with an OperationOutcome while ``everything_supported`` is off).

Knobs (attributes and methods, safe to set from the test's thread while the server runs):
``polls_before_ready``, ``retry_after`` (seconds or an HTTP-date, sent with each 202 and 429), ``token_ttl``,
``requires_access_token``, ``range_supported``, ``lines_per_file``, ``files_on_other_host`` (a host name for
the file URLs, e.g. "localhost", which reaches this same server; "files.example.org", which reaches
nothing), ``next_link_host``, ``everything_supported``, ``error_file_lines`` (OperationOutcome dicts),
``deleted_file_extra_lines`` (raw lines), ``deleted_type_in_manifest`` (off: the ``deleted`` entry has no
``type``), ``delay_seconds`` (every answer), ``groups`` (group id → patient ids); ``fail_next(kind, status, times)``,
``throttle(kind, times)``, ``delay_next(kind, seconds, times)``, ``drop_file_after(n_bytes, times)`` (the
file's body stops after n bytes and the connection closes), ``oversized_file(type, size)``,
``add_malformed_line(type, raw, at)``, ``resource_put(resource)``, ``resource_delete(type, id)``,
``tokens_expire()``.
Kinds: smart-config, metadata, token, kickoff, status, delete, file, read, search, everything.

``requests`` logs every request (``LoggedRequest``: kind, method, path, query, whether a bearer token came,
the Range header, the status answered).
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from clinical_ai.core.http import http_request, url_host
from tests.stand_in import loopback_server

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGORITHMS = ("RS384", "ES384")
MAX_ASSERTION_LIFETIME = 300  # SMART Backend Services: exp no more than five minutes in the future
NDJSON_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
KINDS = frozenset(
    {
        "smart-config",
        "metadata",
        "token",
        "kickoff",
        "status",
        "delete",
        "file",
        "read",
        "search",
        "everything",
    }
)
TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})
_STREAM_PIECE = 64 * 1024
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]{1,63}")


def client_key_pair(algorithm: str = "ES384", *, kid: str = "client-key-1") -> tuple[bytes, dict[str, Any]]:
    """A fresh private key (PEM) for a SMART client and its public JWK Set, as the client would register it."""
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if algorithm == "RS384":
        rsa_key = rsa.generate_private_key(65537, 2048)
        private, jwk = rsa_key, json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    elif algorithm == "ES384":
        ec_key = ec.generate_private_key(ec.SECP384R1())
        private, jwk = ec_key, json.loads(ECAlgorithm.to_jwk(ec_key.public_key()))
    else:
        raise ValueError("RS384 or ES384")
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return pem, {"keys": [{**jwk, "kid": kid, "alg": algorithm, "use": "sig"}]}


def outcome(code: str, diagnostics: str = "", severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


@dataclass
class LoggedRequest:
    kind: str
    method: str
    path: str
    query: dict[str, list[str]]
    token: bool  # an Authorization: Bearer header came (valid or not)
    range: str | None
    status: int = 0


@dataclass
class _Fault:
    status: int | None  # None: delay only
    times: int
    code: str = ""
    retry_after: str | None = None
    seconds: float = 0.0


@dataclass
class _Job:
    job_id: str
    level: str
    transaction_time: datetime
    files: dict[str, tuple[str, bytes | int]]  # name -> (type, content or oversized size)
    output: list[tuple[str, str, int]]  # (type, name, count)
    error_name: str | None
    deleted_name: str | None = None
    polls: int = 0
    deleted: bool = False
    requires_access_token: bool = True


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    tokens: dict[str, float] = field(default_factory=dict)
    jtis: dict[str, float] = field(default_factory=dict)
    jobs: dict[str, _Job] = field(default_factory=dict)
    faults: dict[str, list[_Fault]] = field(default_factory=dict)
    drops: list[int] = field(default_factory=list)


def _patient_ids(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        reference = node.get("reference")
        if isinstance(reference, str) and reference.startswith("Patient/"):
            found.add(reference.removeprefix("Patient/"))
        for value in node.values():
            _patient_ids(value, found)
    elif isinstance(node, list):
        for item in node:
            _patient_ids(item, found)
    return found


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _matches_filter(resource: dict[str, Any], element: str, wanted: set[str]) -> bool:
    value = resource.get(element)
    values: list[str] = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, str):
            values.append(item)
        elif isinstance(item, dict):
            values.extend(c.get("code", "") for c in item.get("coding") or () if isinstance(c, dict))
    return bool(wanted & set(values))


class EhrStandIn:
    """See the module's docstring. A context manager: the server runs inside the ``with`` block."""

    def __init__(
        self,
        resources_by_type: Mapping[str, Sequence[dict[str, Any]]],
        *,
        client_id: str,
        client_jwks: dict[str, Any] | None = None,
        client_jwks_url: str | None = None,
        groups: Mapping[str, Sequence[str]] | None = None,
        page_size: int = 50,
        token_ttl: int = 300,
    ) -> None:
        if (client_jwks is None) == (client_jwks_url is None):
            raise ValueError("give the client's JWK Set inline or its URL, one of them")
        self.client_id = client_id
        self.client_jwks = client_jwks
        self.client_jwks_url = client_jwks_url
        self.groups: dict[str, list[str]] = {k: list(v) for k, v in (groups or {}).items()}
        self.page_size = page_size
        self.loaded_at = datetime.now(UTC)
        # Knobs.
        self.token_ttl = token_ttl
        self.polls_before_ready = 1
        self.retry_after: str | None = "1"
        self.requires_access_token = True
        self.range_supported = True
        self.lines_per_file: int | None = None
        self.files_on_other_host: str | None = None
        self.next_link_host: str | None = None
        self.everything_supported = True
        self.error_file_lines: list[dict[str, Any]] = []
        # Lines added as they are to the ``deleted`` file of an incremental export (malformed ones).
        self.deleted_file_extra_lines: list[bytes] = []
        self.deleted_type_in_manifest = True
        self.delay_seconds = 0.0
        self._oversized: dict[str, int] = {}
        self._malformed: dict[str, list[tuple[int, bytes]]] = {}
        # Data: (type, id) -> resource, in load order; and the patients each refers to.
        self._resources: dict[tuple[str, str], dict[str, Any]] = {}
        self._patients_of: dict[tuple[str, str], set[str]] = {}
        self._deletions: list[tuple[str, str, datetime]] = []  # (type, id, when)
        for resources in resources_by_type.values():
            for resource in resources:
                self._store(copy.deepcopy(resource), stamp=False)
        self._state = _State()
        self.requests: list[LoggedRequest] = []
        self.root_url = ""
        self._server: Any = None

    # --- lifecycle ----------------------------------------------------------------------------------

    def __enter__(self) -> EhrStandIn:
        self._server = loopback_server(_handler(self))
        self.root_url = self._server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.__exit__(None, None, None)

    @property
    def port(self) -> int:
        return int(self.root_url.rsplit(":", 1)[1])

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/fhir"

    @property
    def token_url(self) -> str:
        return f"{self.root_url}/auth/token"

    # --- knobs --------------------------------------------------------------------------------------

    def fail_next(
        self, kind: str, status: int, times: int = 1, *, code: str = "", retry_after: str | None = None
    ) -> None:
        """The next ``times`` requests of ``kind`` get ``status`` with an OperationOutcome whose issue code
        is ``code`` ("transient" for 408/429/5xx, else "processing", when not given) and whose diagnostics
        name a patient (the client must never repeat them)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}")
        fault = _Fault(
            status, times, code or ("transient" if status in TRANSIENT else "processing"), retry_after
        )
        with self._state.lock:
            self._state.faults.setdefault(kind, []).append(fault)

    def throttle(self, kind: str = "status", times: int = 1, *, retry_after: str | None = "1") -> None:
        """429 Too Many Requests with Retry-After for the next ``times`` requests of ``kind``."""
        self.fail_next(kind, 429, times, code="throttled", retry_after=retry_after)

    def delay_next(self, kind: str, seconds: float, times: int = 1) -> None:
        """The next ``times`` requests of ``kind`` wait ``seconds`` before any answer (a client timeout)."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}")
        with self._state.lock:
            self._state.faults.setdefault(kind, []).append(_Fault(None, times, seconds=seconds))

    def drop_file_after(self, n_bytes: int, times: int = 1) -> None:
        """The next ``times`` file downloads send their headers (with the full Content-Length) and
        ``n_bytes`` of the body, then close the connection."""
        with self._state.lock:
            self._state.drops.extend([n_bytes] * times)

    def oversized_file(self, resource_type: str, size: int) -> None:
        """The export's file of ``resource_type`` is ``size`` bytes of valid lines (its resources over and
        over), streamed chunked with no Content-Length: only counting can cap it."""
        with self._state.lock:
            self._oversized[resource_type] = size

    def add_malformed_line(self, resource_type: str, raw: bytes, at: int = 0) -> None:
        """Exports put ``raw`` (no newline) as the line at index ``at`` of the type's first file."""
        with self._state.lock:
            self._malformed.setdefault(resource_type, []).append((at, raw))

    def resource_put(self, resource: dict[str, Any]) -> None:
        """Add or replace a resource, as an EHR update: meta.lastUpdated now, versionId + 1."""
        with self._state.lock:
            self._store(copy.deepcopy(resource), stamp=True)

    def resource_delete(self, resource_type: str, resource_id: str) -> None:
        """Delete a resource, as an EHR does: gone from later exports, and named in the ``deleted`` file of
        an export whose ``_since`` is before now."""
        with self._state.lock:
            self._resources.pop((resource_type, resource_id), None)
            self._patients_of.pop((resource_type, resource_id), None)
            self._deletions.append((resource_type, resource_id, datetime.now(UTC)))

    def tokens_expire(self) -> None:
        """Every access token given so far stops working (a client must get a new one)."""
        with self._state.lock:
            self._state.tokens.clear()

    def requests_of(self, kind: str) -> list[LoggedRequest]:
        with self._state.lock:
            return [r for r in self.requests if r.kind == kind]

    @property
    def jobs_deleted(self) -> list[str]:
        with self._state.lock:
            return [j.job_id for j in self._state.jobs.values() if j.deleted]

    # --- data ---------------------------------------------------------------------------------------

    def _store(self, resource: dict[str, Any], *, stamp: bool) -> None:
        key = (resource["resourceType"], resource["id"])
        if stamp:
            previous = (
                self._resources[key].get("meta", {}).get("versionId", "1") if key in self._resources else "0"
            )
            version = str(int(previous) + 1) if str(previous).isdigit() else "2"
            resource["meta"] = {
                **resource.get("meta", {}),
                "versionId": version,
                "lastUpdated": _instant(datetime.now(UTC)),
            }
        self._resources[key] = resource
        self._patients_of[key] = {resource["id"]} if key[0] == "Patient" else _patient_ids(resource, set())

    def _last_updated(self, resource: dict[str, Any]) -> datetime:
        text = resource.get("meta", {}).get("lastUpdated")
        if isinstance(text, str):
            try:
                return datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                pass
        return self.loaded_at

    def _selected(
        self,
        *,
        patients: set[str] | None,
        types: set[str],
        since: datetime | None,
        filters: dict[str, list[tuple[str, set[str]]]],
    ) -> dict[str, list[dict[str, Any]]]:
        chosen: dict[str, list[dict[str, Any]]] = {}
        for key, resource in self._resources.items():
            resource_type = key[0]
            if types and resource_type not in types:
                continue
            if patients is not None and not (self._patients_of[key] & patients):
                continue
            if since is not None and self._last_updated(resource) <= since:
                continue
            if resource_type in filters and not any(
                _matches_filter(resource, element, wanted) for element, wanted in filters[resource_type]
            ):
                continue
            chosen.setdefault(resource_type, []).append(resource)
        return chosen

    def _job_create(
        self,
        level: str,
        chosen: dict[str, list[dict[str, Any]]],
        transaction_time: datetime,
        *,
        since: datetime | None = None,
        types: set[str] | frozenset[str] = frozenset(),
    ) -> _Job:
        job = _Job(
            job_id=uuid.uuid4().hex,
            level=level,
            transaction_time=transaction_time,
            files={},
            output=[],
            error_name=None,
        )
        for resource_type, resources in chosen.items():
            lines = [json.dumps(r, separators=(",", ":")).encode() for r in resources]
            for at, raw in sorted(self._malformed.get(resource_type, []), key=lambda item: item[0]):
                lines.insert(min(at, len(lines)), raw)
            size = self.lines_per_file or max(len(lines), 1)
            for part, start in enumerate(range(0, len(lines), size)):
                name = f"{resource_type}-{part + 1}"
                piece = lines[start : start + size]
                content: bytes | int = b"".join(line + b"\n" for line in piece)
                if part == 0 and resource_type in self._oversized:
                    content = self._oversized[resource_type]
                job.files[name] = (resource_type, content)
                job.output.append((resource_type, name, len(piece)))
        if since is not None:
            # IG 2.0: one transaction Bundle of DELETE entries per line, for what was deleted since _since.
            deleted = [
                json.dumps(
                    {
                        "resourceType": "Bundle",
                        "type": "transaction",
                        "entry": [{"request": {"method": "DELETE", "url": f"{t}/{i}"}}],
                    },
                    separators=(",", ":"),
                ).encode()
                for t, i, when in self._deletions
                if when > since and (not types or t in types)
            ] + list(self.deleted_file_extra_lines)
            if deleted:
                job.deleted_name = "deleted-1"
                job.files[job.deleted_name] = ("Bundle", b"".join(line + b"\n" for line in deleted))
        if self.error_file_lines:
            job.error_name = "errors-1"
            raw = b"".join(json.dumps(line).encode() + b"\n" for line in self.error_file_lines)
            job.files[job.error_name] = ("OperationOutcome", raw)
        return job

    def file_bytes(self, job_id: str, name: str) -> bytes:
        """A file's content as served (for assertions); oversized files are not materialised."""
        with self._state.lock:
            content = self._state.jobs[job_id].files[name][1]
        assert isinstance(content, bytes)
        return content

    def _manifest(self, job: _Job) -> dict[str, Any]:
        file_root = self.root_url
        if self.files_on_other_host:
            file_root = f"http://{self.files_on_other_host}:{self.port}"
        url = f"{file_root}/bulkfiles/{job.job_id}"
        manifest: dict[str, Any] = {
            "transactionTime": _instant(job.transaction_time),
            "request": f"{self.base_url}/$export",
            "requiresAccessToken": job.requires_access_token,
            "output": [
                {"type": t, "url": f"{url}/{name}.ndjson", "count": count} for t, name, count in job.output
            ],
            "error": (
                [{"type": "OperationOutcome", "url": f"{url}/{job.error_name}.ndjson"}]
                if job.error_name
                else []
            ),
        }
        if job.deleted_name:
            item: dict[str, Any] = {"url": f"{url}/{job.deleted_name}.ndjson"}
            if self.deleted_type_in_manifest:
                item["type"] = "Bundle"
            manifest["deleted"] = [item]
        return manifest

    def _client_jwks(self) -> dict[str, Any]:
        if self.client_jwks is not None:
            return self.client_jwks
        assert self.client_jwks_url is not None
        reply = http_request(
            "GET",
            self.client_jwks_url,
            allowed_hosts={url_host(self.client_jwks_url)},
            timeout_seconds=5,
            max_response_bytes=256 * 1024,
            headers={"Accept": "application/json"},
            allow_plain_http=True,
        )
        if reply.status != 200:
            raise ValueError("the client's JWK Set cannot be fetched")
        document = json.loads(reply.body)
        if not isinstance(document, dict):
            raise ValueError("the client's JWK Set is not an object")
        return document

    def _assertion_check(self, assertion: str) -> str | None:
        """None when the signed assertion is good; else why not (for the stand-in's own log only)."""
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError:
            return "not a JWS"
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in ALGORITHMS or not isinstance(kid, str):
            return "alg must be RS384 or ES384 and kid given"
        try:
            jwks = self._client_jwks()
        except (OSError, ValueError):
            return "the client's JWK Set is unreachable"
        matching = [k for k in jwks.get("keys", []) if isinstance(k, dict) and k.get("kid") == kid]
        if not matching:
            return "unknown kid"
        try:
            key = jwt.PyJWK(matching[0], algorithm=algorithm)
            claims = jwt.decode(
                assertion,
                key.key,
                algorithms=[algorithm],
                audience=self.token_url,
                issuer=self.client_id,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
        except jwt.PyJWTError as exc:
            return f"signature or claims: {type(exc).__name__}"
        if claims.get("sub") != self.client_id:
            return "sub is not the client id"
        now = time.time()
        if claims["exp"] > now + MAX_ASSERTION_LIFETIME + 5:
            return "exp too far ahead"
        with self._state.lock:
            self._state.jtis = {j: e for j, e in self._state.jtis.items() if e > now}
            if claims["jti"] in self._state.jtis:
                return "jti replayed"
            self._state.jtis[claims["jti"]] = float(claims["exp"])
        return None

    def _token_issue(self) -> tuple[str, int]:
        token = secrets.token_urlsafe(24)
        with self._state.lock:
            self._state.tokens[token] = time.time() + self.token_ttl
        return token, self.token_ttl

    def _token_valid(self, authorization: str) -> bool:
        if not authorization.startswith("Bearer "):
            return False
        with self._state.lock:
            expires = self._state.tokens.get(authorization.removeprefix("Bearer ").strip())
        return expires is not None and expires > time.time()

    def _fault_take(self, kind: str) -> list[_Fault]:
        """The faults due for this request of ``kind``: at most one delay and one failure."""
        taken: list[_Fault] = []
        with self._state.lock:
            queue = self._state.faults.get(kind, [])
            for wanted_delay in (True, False):
                for fault in queue:
                    if (fault.status is None) == wanted_delay and fault.times > 0:
                        fault.times -= 1
                        taken.append(fault)
                        break
            self._state.faults[kind] = [f for f in queue if f.times > 0]
        return taken

    def _drop_take(self) -> int | None:
        with self._state.lock:
            return self._state.drops.pop(0) if self._state.drops else None


def _handler(ehr: EhrStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        _logged: LoggedRequest

        def log_message(self, format: str, *args: Any) -> None:
            pass

        # --- answering ------------------------------------------------------------------------------

        def _send(
            self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None
        ) -> None:
            self._logged.status = status
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(
            self,
            status: int,
            document: Any,
            headers: Mapping[str, str] | None = None,
            content_type: str = "application/fhir+json",
        ) -> None:
            self._send(status, json.dumps(document).encode(), content_type, headers)

        def _outcome(
            self, status: int, code: str, diagnostics: str, headers: Mapping[str, str] | None = None
        ) -> None:
            self._json(status, outcome(code, diagnostics), headers)

        def _unauthorized(self) -> None:
            self._outcome(
                401, "login", "a valid bearer token is required", {"WWW-Authenticate": 'Bearer realm="ehr"'}
            )

        # --- dispatch -------------------------------------------------------------------------------

        def _route(self) -> tuple[str, list[str]]:
            path = urlsplit(self.path).path
            parts = [unquote(p) for p in path.split("/") if p]
            if path == "/auth/token":
                return "token", parts
            if parts[:1] == ["bulkstatus"] and len(parts) == 2:
                return ("delete" if self.command == "DELETE" else "status"), parts
            if parts[:1] == ["bulkfiles"] and len(parts) == 3:
                return "file", parts
            if parts[:1] != ["fhir"]:
                return "unknown", parts
            rest = parts[1:]
            if rest == [".well-known", "smart-configuration"]:
                return "smart-config", rest
            if rest == ["metadata"]:
                return "metadata", rest
            if rest and rest[-1] == "$export":
                return "kickoff", rest
            if len(rest) == 3 and rest[0] == "Patient" and rest[2] == "$everything":
                return "everything", rest
            if len(rest) == 2:
                return "read", rest
            if len(rest) == 1:
                return "search", rest
            return "unknown", rest

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw_body = self.rfile.read(length) if length else b""
            split = urlsplit(self.path)
            query = parse_qs(split.query, keep_blank_values=True)
            kind, parts = self._route()
            authorization = self.headers.get("Authorization", "")
            self._logged = LoggedRequest(
                kind=kind,
                method=self.command,
                path=split.path,
                query=query,
                token=authorization.startswith("Bearer "),
                range=self.headers.get("Range"),
            )
            with ehr._state.lock:
                ehr.requests.append(self._logged)
            if ehr.delay_seconds:
                time.sleep(ehr.delay_seconds)
            for fault in ehr._fault_take(kind):
                if fault.status is None:
                    time.sleep(fault.seconds)
                    continue
                headers = {}
                retry_after = fault.retry_after if fault.retry_after is not None else ehr.retry_after
                if fault.status in (429, 503) and retry_after is not None:
                    headers["Retry-After"] = str(retry_after)
                self._outcome(
                    fault.status,
                    fault.code,
                    "stand-in failure while exporting Jane Doe (MRN 998877)",
                    headers,
                )
                return
            try:
                getattr(self, "_" + kind.replace("-", "_"))(parts, query, raw_body, authorization)
            except ConnectionError:
                self.close_connection = True

        do_GET = do_POST = do_DELETE = do_PUT = _serve

        def _unknown(
            self, parts: list[str], query: dict[str, list[str]], body: bytes, authorization: str
        ) -> None:
            self._outcome(404, "not-found", "no such endpoint")

        # --- SMART ---------------------------------------------------------------------------------

        def _smart_config(
            self, parts: list[str], query: dict[str, list[str]], body: bytes, authorization: str
        ) -> None:
            self._json(
                200,
                {
                    "issuer": ehr.root_url,
                    "token_endpoint": ehr.token_url,
                    "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                    "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
                    "grant_types_supported": ["client_credentials"],
                    "scopes_supported": ["system/*.rs", "system/*.read"],
                    "capabilities": ["client-confidential-asymmetric", "permission-v2"],
                },
                content_type="application/json",
            )

        def _token(
            self, parts: list[str], query: dict[str, list[str]], body: bytes, authorization: str
        ) -> None:
            if self.command != "POST":
                self._json(405, {"error": "invalid_request"}, content_type="application/json")
                return
            form = {k: v[0] for k, v in parse_qs(body.decode("ascii", "replace")).items()}
            if (
                form.get("grant_type") != "client_credentials"
                or form.get("client_assertion_type") != ASSERTION_TYPE
            ):
                self._json(400, {"error": "invalid_request"}, content_type="application/json")
                return
            problem = ehr._assertion_check(form.get("client_assertion", ""))
            if problem is not None:
                self._json(401, {"error": "invalid_client"}, content_type="application/json")
                return
            scopes = [s for s in form.get("scope", "").split() if s.startswith("system/")]
            if not scopes:
                self._json(400, {"error": "invalid_scope"}, content_type="application/json")
                return
            token, ttl = ehr._token_issue()
            self._json(
                200,
                {"access_token": token, "token_type": "bearer", "expires_in": ttl, "scope": " ".join(scopes)},
                content_type="application/json",
                headers={"Cache-Control": "no-store"},
            )

        def _metadata(
            self, parts: list[str], query: dict[str, list[str]], body: bytes, authorization: str
        ) -> None:
            operations = [
                {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}
            ]
            if ehr.everything_supported:
                operations.append(
                    {
                        "name": "everything",
                        "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                    }
                )
            self._json(
                200,
                {
                    "resourceType": "CapabilityStatement",
                    "status": "active",
                    "kind": "instance",
                    "fhirVersion": "4.0.1",
                    "format": ["json"],
                    "rest": [{"mode": "server", "operation": operations}],
                },
            )

        # --- Bulk Data ------------------------------------------------------------------------------

        def _kickoff(
            self, parts: list[str], query: dict[str, list[str]], body: bytes, authorization: str
        ) -> None:
            if not ehr._token_valid(authorization):
                self._unauthorized()
                return
            if self.headers.get("Prefer", "").strip() != "respond-async":
                self._outcome(400, "invalid", "Prefer: respond-async is required")
                return
            if self.headers.get("Accept", "application/fhir+json") != "application/fhir+json":
                self._outcome(400, "invalid", "Accept must be application/fhir+json")
                return
            output_format = query.get("_outputFormat", ["application/fhir+ndjson"])[0]
            if output_format not in NDJSON_FORMATS:
                self._outcome(400, "not-supported", "only NDJSON")
                return
            if parts == ["$export"]:
                level, patients = "system", None
            elif parts == ["Patient", "$export"]:
                level, patients = "patient", {k[1] for k in ehr._resources if k[0] == "Patient"}
            elif len(parts) == 3 and parts[0] == "Group":
                level = "group"
                if parts[1] not in ehr.groups:
                    self._outcome(404, "not-found", "no such group")
                    return
                patients = set(ehr.groups[parts[1]])
            else:
                self._outcome(404, "not-found", "no such export")
                return
            types = {t for value in query.get("_type", []) for t in value.split(",") if t}
            since = None
            if query.get("_since"):
                try:
                    since = datetime.fromisoformat(query["_since"][0].replace("Z", "+00:00"))
                except ValueError:
                    since = None
                if since is None or since.tzinfo is None:
                    self._outcome(400, "invalid", "_since must be a FHIR instant")
                    return
            filters: dict[str, list[tuple[str, set[str]]]] = {}
            for value in query.get("_typeFilter", []):
                resource_type, _, search = value.partition("?")
                element, _, wanted = search.partition("=")
                if not _RESOURCE_TYPE.fullmatch(resource_type) or not element or "&" in search:
                    self._outcome(400, "not-supported", "only Type?element=value filters are supported")
                    return
                filters.setdefault(resource_type, []).append((element, set(wanted.split(","))))
            transaction_time = datetime.now(UTC)
            with ehr._state.lock:
                chosen = ehr._selected(patients=patients, types=types, since=since, filters=filters)
                job = ehr._job_create(level, chosen, transaction_time, since=since, types=types)
                ehr._state.jobs[job.job_id] = job
            self._outcome(
                202,
                "informational",
                "export accepted",
                {"Content-Location": f"{ehr.root_url}/bulkstatus/{job.job_id}"},
            )

        def _job(self, parts: list[str]) -> _Job | None:
            with ehr._state.lock:
                job = ehr._state.jobs.get(parts[1])
            if job is None or job.deleted:
                self._outcome(404, "not-found", "no such export job (deleted or expired)")
                return None
            return job

        def _status(
            self, parts: list[str], query: dict[str, list[str]], body: bytes, authorization: str
        ) -> None:
            if not ehr._token_valid(authorization):
                self._unauthorized()
                return
            job = self._job(parts)
            if job is None:
                return
            with ehr._state.lock:
                job.polls += 1
                ready = job.polls > ehr.polls_before_ready
                job.requires_access_token = ehr.requires_access_token
            if not ready:
                headers = {"X-Progress": f"preparing: poll {job.polls} of {ehr.polls_before_ready}"}
                if ehr.retry_after is not None:
                    headers["Retry-After"] = str(ehr.retry_after)
                self._send(202, b"", "application/json", headers)
                return
            self._json(
                200,
                ehr._manifest(job),
                content_type="application/json",
                headers={"Expires": "Wed, 21 Oct 2099 07:28:00 GMT"},
            )

        def _delete(
            self, parts: list[str], query: dict[str, list[str]], body: bytes, authorization: str
        ) -> None:
            if not ehr._token_valid(authorization):
                self._unauthorized()
                return
            job = self._job(parts)
            if job is None:
                return
            with ehr._state.lock:
                job.deleted = True
            self._send(202, b"", "application/json")

        def _file(
            self, parts: list[str], query: dict[str, list[str]], body: bytes, authorization: str
        ) -> None:
            job = self._job(parts)
            if job is None:
                return
            if job.requires_access_token and not ehr._token_valid(authorization):
                self._unauthorized()
                return
            name = parts[2].removesuffix(".ndjson")
            if name not in job.files:
                self._outcome(404, "not-found", "no such file")
                return
            content = job.files[name][1]
            if isinstance(content, int):
                self._stream_oversized(job, job.files[name][0], content)
                return
            start = 0
            requested = self.headers.get("Range", "")
            match = re.fullmatch(r"bytes=(\d+)-", requested.strip())
            if match and ehr.range_supported:
                start = int(match[1])
                if start >= len(content):
                    self._send(
                        416, b"", "application/fhir+ndjson", {"Content-Range": f"bytes */{len(content)}"}
                    )
                    return
            status = 206 if start else 200
            piece = content[start:]
            self._logged.status = status
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+ndjson")
            self.send_header("Content-Length", str(len(piece)))
            if ehr.range_supported:
                self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
            self.end_headers()
            drop = ehr._drop_take()
            if drop is not None:
                self.wfile.write(piece[:drop])
                self.wfile.flush()
                self.close_connection = True
                return
            for offset in range(0, len(piece), _STREAM_PIECE):
                self.wfile.write(piece[offset : offset + _STREAM_PIECE])

        def _stream_oversized(self, job: _Job, resource_type: str, size: int) -> None:
            with ehr._state.lock:
                resources = [r for k, r in ehr._resources.items() if k[0] == resource_type]
            lines = (
                b"".join(json.dumps(r, separators=(",", ":")).encode() + b"\n" for r in resources) or b"{}\n"
            )
            self._logged.status = 200
            self.send_response(200)
            self.send_header("Content-Type", "application/fhir+ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = 0
            while sent < size:
                piece = lines[: size - sent]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                sent += len(piece)
            self.wfile.write(b"0\r\n\r\n")

        # --- FHIR reads -----------------------------------------------------------------------------

        def _read(
            self, parts: list[str], query: dict[str, list[str]], body: bytes, authorization: str
        ) -> None:
            if not ehr._token_valid(authorization):
                self._unauthorized()
                return
            with ehr._state.lock:
                resource = ehr._resources.get((parts[0], parts[1]))
            if resource is None:
                self._outcome(404, "not-found", "no such resource")
                return
            self._json(200, resource)

        def _search(
            self, parts: list[str], query: dict[str, list[str]], body: bytes, authorization: str
        ) -> None:
            if not ehr._token_valid(authorization):
                self._unauthorized()
                return
            resource_type = parts[0]
            patient = (query.get("patient") or query.get("subject") or [""])[0].removeprefix("Patient/")
            ids = set((query.get("_id") or [""])[0].split(",")) - {""}
            with ehr._state.lock:
                matches = [
                    r
                    for k, r in ehr._resources.items()
                    if k[0] == resource_type
                    and (not patient or patient in ehr._patients_of[k])
                    and (not ids or k[1] in ids)
                ]
            self._page(matches, f"/fhir/{resource_type}", query)

        def _everything(
            self, parts: list[str], query: dict[str, list[str]], body: bytes, authorization: str
        ) -> None:
            if not ehr._token_valid(authorization):
                self._unauthorized()
                return
            if not ehr.everything_supported:
                self._outcome(404, "not-supported", "$everything is not offered by this server")
                return
            types = {t for value in query.get("_type", []) for t in value.split(",") if t}
            with ehr._state.lock:
                if ("Patient", parts[1]) not in ehr._resources:
                    matches = None
                else:
                    matches = [
                        r
                        for k, r in ehr._resources.items()
                        if parts[1] in ehr._patients_of[k] and (not types or k[0] in types)
                    ]
            if matches is None:
                self._outcome(404, "not-found", "no such patient")
                return
            self._page(matches, f"/fhir/Patient/{quote(parts[1], safe='')}/$everything", query)

        def _page(self, matches: list[dict[str, Any]], path: str, query: dict[str, list[str]]) -> None:
            try:
                count = max(1, min(int((query.get("_count") or [str(ehr.page_size)])[0]), 1000))
                page = max(0, int((query.get("_page") or ["0"])[0]))
            except ValueError:
                self._outcome(400, "invalid", "_count and _page are numbers")
                return
            chosen = matches[page * count : (page + 1) * count]
            own = f"{ehr.root_url}{path}"
            rest = [(k, v) for k, values in query.items() if k != "_page" for v in values]
            links = [{"relation": "self", "url": f"{own}?{urlencode([*rest, ('_page', str(page))])}"}]
            if (page + 1) * count < len(matches):
                root = ehr.root_url if not ehr.next_link_host else f"http://{ehr.next_link_host}:{ehr.port}"
                links.append(
                    {
                        "relation": "next",
                        "url": f"{root}{path}?{urlencode([*rest, ('_page', str(page + 1))])}",
                    }
                )
            self._json(
                200,
                {
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "total": len(matches),
                    "link": links,
                    "entry": [
                        {
                            "fullUrl": f"{ehr.base_url}/{r['resourceType']}/{r['id']}",
                            "resource": r,
                            "search": {"mode": "match"},
                        }
                        for r in chosen
                    ],
                },
            )

    return Handler
