"""What the load test samples while it runs: the resident set of every server process, and the depth of the
queues (Redis and the database's job tables)."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from _harness import Started
from _worker_memory import process_tree, rss_kib

QUEUES = ("deid", "inference")
# kombu's Redis transport keeps a queue's priorities 3, 6 and 9 in lists of their own: "<queue>\x06\x16<p>".
KOMBU_PRIORITY_SEPARATOR = "\x06\x16"


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
