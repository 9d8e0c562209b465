"""What the benchmarks that run the real service share: a free port, the benchmark's own database, gunicorn
and Celery worker processes (each in its own session, so stopping one stops its children), ES384 keys and
CDS Hooks JWTs, machine facts, percentiles, and the writers of sections in a markdown file.

Scripts of this folder import it as ``_harness`` (they put the folder on ``sys.path``, as for
``_worker_memory``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]


def script_environment(*, one_blas_thread: bool = False, **variables: str) -> None:
    """What a benchmark script sets before Django, Presidio or torch is imported: the repository on
    ``sys.path``, the throwaway test keys (tests.settings), no network lookup for the e-mail recognizer's
    suffix list and, where asked, one BLAS/OpenMP thread per process as in the worker
    (clinical_ai/celery.py). Each is a default: the caller's environment wins."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    defaults = {
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "",
        **variables,
    }
    if one_blas_thread:
        defaults.update(dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1"))
    for name, value in defaults.items():
        os.environ.setdefault(name, value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_recreate(database_url: str, *, marker: str) -> None:
    """Drop and create the benchmark's own database: never one whose name does not contain ``marker``."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    if marker not in name:
        raise SystemExit(f"refusing to drop database {name!r}: its name must contain {marker!r}")
    with psycopg.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password or None,
        dbname="postgres",
        autocommit=True,
    ) as connection:
        connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


@dataclass
class Started:
    """A server process started in its own session: ``stop`` signals the whole group (its workers too)."""

    process: subprocess.Popen[bytes]
    log_path: Path | None
    argv: list[str]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=timeout)
        except ProcessLookupError:
            pass


def die_with_parent() -> None:
    """In a child, before exec: SIGTERM when the process that started it dies, even by SIGKILL (Linux)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _spawn(
    argv: list[str], *, env: Mapping[str, str], log_path: Path | None, with_parent: bool = False
) -> Started:
    output: IO[bytes] | None = log_path.open("wb") if log_path else None
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=dict(env),
        stdout=output,
        stderr=subprocess.STDOUT if output else None,
        start_new_session=True,
        preexec_fn=die_with_parent if with_parent else None,
    )
    if output:
        output.close()  # the child holds its own copy
    return Started(process, log_path, argv)


def port_wait(port: int, server: Started, *, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or server.process.poll() is not None:
                server.stop()
                raise SystemExit(f"the server did not start:\n{server.log()[-4000:]}") from None
            time.sleep(0.5)


# Loaded in the gunicorn master before the workers fork, so that no measured call pays for importing them
# (the CDS services import the de-identification modules on first use).
PRELOADED = ("clinical_ai.deid.services",)


def gunicorn_start(
    *,
    port: int,
    workers: int,
    threads: int,
    env: Mapping[str, str],
    config_dir: Path,
    log_path: Path | None = None,
    timeout: int | None = None,
    with_parent: bool = False,
    preloaded: Sequence[str] = PRELOADED,
) -> Started:
    """gunicorn (gthread workers, the application and the modules ``preloaded`` imported in the master) on
    127.0.0.1:``port``; returns once it accepts connections."""
    config = config_dir / "gunicorn_conf.py"
    imports = "".join(f"    import {module}  # noqa: F401\n" for module in preloaded)
    config.write_text(f"def when_ready(server):\n{imports}", encoding="utf-8")
    argv = [
        str(Path(sys.executable).with_name("gunicorn")), "clinical_ai.wsgi",
        "--config", str(config), "--preload", "--bind", f"127.0.0.1:{port}",
        "--workers", str(workers), "--threads", str(threads), "--worker-class", "gthread",
        "--log-level", "warning",
    ]  # fmt: skip
    if timeout is not None:
        argv += ["--timeout", str(timeout)]
    server = _spawn(argv, env=env, log_path=log_path, with_parent=with_parent)
    port_wait(port, server)
    return server


def celery_worker_start(
    *,
    queues: str,
    concurrency: int,
    env: Mapping[str, str],
    log_path: Path,
    cpus: Sequence[int] = (),
    timeout: float = 180,
    with_parent: bool = False,
) -> Started:
    """A prefork Celery worker on ``queues``; returns once it says it is ready. ``with_parent``: it gets
    SIGTERM when this process dies (so a killed benchmark leaves no worker behind)."""
    argv = [sys.executable, "-m", "celery", "-A", "clinical_ai", "worker"]
    argv += [
        "-Q", queues, "--concurrency", str(concurrency), "--pool", "prefork",
        "--hostname", f"bench-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle",
        "--loglevel", "INFO",
    ]  # fmt: skip
    if cpus and shutil.which("taskset"):  # taskset execs celery: the pid stays the worker's main process
        argv = ["taskset", "-c", ",".join(map(str, cpus)), *argv]
    worker = _spawn(argv, env=env, log_path=log_path, with_parent=with_parent)
    deadline = time.monotonic() + timeout
    while "ready." not in worker.log():
        if worker.process.poll() is not None or time.monotonic() > deadline:
            worker.stop()
            raise SystemExit(f"the worker did not start:\n{worker.log()[-4000:]}")
        time.sleep(0.2)
    return worker


def celery_beat_start(*, env: Mapping[str, str], log_path: Path, with_parent: bool = False) -> Started:
    """Celery beat (the sweeps that re-send jobs a lost message or a dead worker left behind), its schedule
    file beside its log."""
    argv = [sys.executable, "-m", "celery", "-A", "clinical_ai", "beat", "--loglevel", "INFO"]
    argv += ["--schedule", str(log_path.with_suffix(".schedule"))]
    return _spawn(argv, env=env, log_path=log_path, with_parent=with_parent)


def es384_key(kid: str) -> tuple[bytes, dict[str, Any]]:
    """A fresh P-384 key: its private PEM and its public JWK (with ``kid``, ``alg`` and ``use``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    key = ec.generate_private_key(ec.SECP384R1())
    jwk = {**json.loads(ECAlgorithm.to_jwk(key.public_key())), "kid": kid, "alg": "ES384", "use": "sig"}
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, jwk


def cds_jwt(*, key: Any, kid: str, iss: str, aud: str, sub: str = "bench-client") -> str:
    """The JWT an EHR sends with a CDS Hooks call (ES384, fresh jti, two minutes)."""
    import jwt

    now = int(time.time())
    claims = {"iss": iss, "sub": sub, "aud": aud, "iat": now, "exp": now + 120, "jti": str(uuid.uuid4())}
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": kid, "typ": "JWT"})


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN without values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(encoding="utf-8"), re.MULTILINE)
        cpu = found.group(1).strip() if found else cpu
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "transformers": version("transformers"),
        "celery": version("celery"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
        "os": f"{platform.system()} {platform.release()}",
        "load_average": ", ".join(f"{value:.2f}" for value in os.getloadavg()),  # others on the machine
    }


def write_section(path: Path, title: str, section: str) -> None:
    """Replace the section ``## title`` of ``path`` (or add it at the end), keeping every other section."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip("\n") + "\n\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def write_between_markers(path: Path, begin: str, end: str, text: str, *, heading: str = "") -> None:
    """Put ``text`` between the markers ``begin`` and ``end`` of ``path``; where they are absent, add them at
    the end, after ``heading`` (a heading above the markers keeps them inside this section for
    ``write_section``, which ends a section at the next heading)."""
    current = path.read_text(encoding="utf-8") if path.exists() else ""
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        _, tail = rest.split(end, 1)
        path.write_text(f"{head}{begin}\n{text.rstrip()}\n{end}{tail}", encoding="utf-8")
    else:
        above = f"{heading}\n\n" if heading else ""
        path.write_text(f"{current.rstrip()}\n\n{above}{begin}\n{text.rstrip()}\n{end}\n", encoding="utf-8")
