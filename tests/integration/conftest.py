"""Integration tests: PostgreSQL, Redis and real Celery worker processes (never eager mode).

They need DATABASE_URL on PostgreSQL and CELERY_BROKER_URL on Redis (what `make test` and CI set); with
anything else they are skipped with the reason.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def _why_not_ready() -> str | None:
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        return "integration tests need DATABASE_URL on PostgreSQL"
    if not settings.CELERY_BROKER_URL.startswith("redis://"):
        return "integration tests need CELERY_BROKER_URL on Redis"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _why_not_ready()
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


def redis_client():
    import redis

    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


@pytest.fixture
def clean_broker() -> None:
    """Start each test with empty queues in the test's Redis database."""
    redis_client().flushdb()


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log_path: Path
    name: str

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready." in self.log():
                return
            if self.process.poll() is not None:
                raise AssertionError(f"worker {self.name} exited early:\n{self.log()[-4000:]}")
            time.sleep(0.2)
        raise AssertionError(f"worker {self.name} not ready in {timeout}s:\n{self.log()[-4000:]}")

    def kill_all(self) -> None:
        """SIGKILL the whole worker: main process and pool children, no chance to clean up."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill_all()


@dataclass
class WorkerFactory:
    tmp_path: Path
    started: list[WorkerProcess] = field(default_factory=list)

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        from django.db import connection

        db = connection.settings_dict
        url = f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": url,  # the test database, not the one in the caller's environment
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "OMP_NUM_THREADS": "1",
            **extra,
        }

    def start(
        self,
        *,
        slow_seconds: float | None = None,
        concurrency: int = 1,
        env: dict[str, str] | None = None,
        queues: str = "deid,inference,bulk",
    ) -> WorkerProcess:
        name = f"it-{uuid.uuid4().hex[:8]}"
        extra = dict(env or {})
        if slow_seconds is None:
            argv = [sys.executable, "-m", "celery", "-A", "clinical_ai", "worker"]
        else:
            argv = [sys.executable, "-m", "tests.integration.slow_worker", "worker"]
            extra.update(
                {"SLOW_WORKER_SECONDS": str(slow_seconds), "SLOW_WORKER_MARKER_DIR": str(self.tmp_path)}
            )
        argv += [
            "-Q", queues, "--concurrency", str(concurrency), "--pool", "prefork",
            "--hostname", f"{name}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
        ]  # fmt: skip
        log_path = self.tmp_path / f"{name}.log"
        log = log_path.open("wb")
        process = subprocess.Popen(
            argv, cwd=ROOT, env=self.env(extra), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        worker = WorkerProcess(process, log_path, name)
        self.started.append(worker)
        worker.wait_ready()
        return worker


@pytest.fixture
def workers(transactional_db: None, clean_broker: None, tmp_path: Path) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(tmp_path)
    yield factory
    for worker in factory.started:
        worker.stop()


def wait_for(predicate: Callable[[], bool], *, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
