"""Resident memory of a process tree (a Celery worker and its pool processes), sampled from ``/proc``.

psutil is not a dependency: a process's parent is the fourth field of ``/proc/<pid>/stat`` and its resident
set ``VmRSS`` in ``/proc/<pid>/status``. A process that ends between two reads is simply not counted.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


def _parent_of(pid: int) -> int | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (command) state ppid ...": the command may hold spaces and parentheses, so split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[1]) if len(fields) > 1 else None


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants that are alive now."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def rss_kib(pid: int) -> int:
    """The process's resident set in KiB (0 when it has gone)."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


@dataclass(frozen=True)
class Sample:
    at: float  # time.time()
    rss_kib: int  # the whole tree
    processes: int


class TreeMemorySampler:
    """Sum the RSS of a process tree every ``interval`` seconds on a background thread."""

    def __init__(self, root: int, *, interval: float = 0.2) -> None:
        self.root = root
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="worker-memory", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = process_tree(self.root)
            self.samples.append(Sample(time.time(), sum(rss_kib(pid) for pid in pids), len(pids)))
            self._stop.wait(self.interval)

    def start(self) -> TreeMemorySampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def peak_mib(self, since: float = 0.0, until: float = float("inf")) -> float:
        """The highest sum sampled between two ``time.time()`` instants, in MiB (0 without samples)."""
        window = [s.rss_kib for s in list(self.samples) if since <= s.at <= until]
        return max(window, default=0) / 1024

    def last(self) -> Sample | None:
        return self.samples[-1] if self.samples else None
