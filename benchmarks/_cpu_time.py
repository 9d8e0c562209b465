"""CPU time, read from ``/proc``: of a process tree (a worker and its pool), of every process of a program
(PostgreSQL, Redis), of this process, and of the whole machine. psutil is not a dependency.

A process's own time is ``utime + stime`` (fields 14 and 15 of ``/proc/<pid>/stat``); the time of children it
has already waited for is in its ``cutime + cstime``, so a tree's total is the sum of all four over the
processes alive now: a pool process replaced during the run still counts, through its parent.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from _worker_memory import process_tree

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> tuple[str, list[str]] | None:
    """The command name and the fields after it (state first) of ``/proc/<pid>/stat``; None when gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (command) state ppid ...": the command may hold spaces and parentheses.
    return stat[stat.find("(") + 1 : stat.rfind(")")], stat[stat.rfind(")") + 2 :].split()


def process_cpu_seconds(pid: int) -> float:
    """``pid``'s CPU seconds, its waited-for children's included (0 when it has gone)."""
    found = _stat_fields(pid)
    if found is None or len(found[1]) < 15:
        return 0.0
    fields = found[1]
    # After the command: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICKS


def tree_cpu_seconds(root: int) -> float:
    return sum(process_cpu_seconds(pid) for pid in process_tree(root))


def program_roots(command: str) -> list[int]:
    """The processes named ``command`` whose parent is not: e.g. PostgreSQL's postmaster, whose backends
    and background workers are its tree."""
    named: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            found = _stat_fields(int(entry.name))
            if found is not None and found[0] == command and len(found[1]) > 1:
                named[int(entry.name)] = int(found[1][1])
    return sorted(pid for pid, parent in named.items() if parent not in named)


def roots_cpu_seconds(roots: Iterable[int]) -> float:
    return sum(tree_cpu_seconds(root) for root in roots)


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores since boot, from the ``cpu`` line of ``/proc/stat``."""
    fields = [int(value) for value in (PROC / "stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    busy = user + nice + system + irq + softirq + steal
    return busy / TICKS, (busy + idle + iowait) / TICKS
