"""CPU seconds of a process and of every process it starts, sampled from ``/proc`` while they run (Linux).

The workers figure (:mod:`tuning.bench.scale`) divides trials by the span from the first trial's start to the
last one's end. The CPU a sweep spends in that span says why two workers get what they get: how many cores one
process keeps busy while its trials run (not over its whole run, whose start-up overlaps the trail process's MLflow
import with the engine's), and the CPU seconds a trial costs in one process and in ``--workers 2`` (the workers,
their trail process and the coordinator together). A process that has ended keeps its last sample. Off Linux
(no ``/proc``) nothing is sampled and every figure is None.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from pathlib import Path

PROC = Path("/proc")
INTERVAL_S = 0.25   # a scan of /proc reads every process's stat: about 2 ms for 80 processes


def _stat(pid: str) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of one process, None when it is gone or unreadable."""
    try:
        fields = (PROC / pid / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int, seen: dict[int, float]) -> float:
    """CPU seconds of ``root`` and its descendants now; ``seen`` (pid -> last CPU seconds) keeps the processes that
    have ended counted."""
    parents: dict[int, list[int]] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir(PROC):
        if entry.isdigit() and (st := _stat(entry)) is not None:
            parents.setdefault(st[0], []).append(int(entry))
            cpu[int(entry)] = st[1]
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in cpu:
            seen[pid] = cpu[pid]
        todo.extend(parents.get(pid, ()))
    return sum(seen.values())


class TreeCPU:
    """Samples a process tree's CPU seconds every ``interval`` seconds on a thread, until :meth:`stop`."""

    def __init__(self, pid: int, interval: float = INTERVAL_S) -> None:
        self.pid, self.interval = pid, interval
        self.times: list[float] = []
        self.cpu: list[float] = []
        self._seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-cpu", daemon=True)
        if PROC.is_dir():
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                return

    def _sample(self) -> None:
        value = tree_cpu_s(self.pid, self._seen)
        self.times.append(time.time())
        self.cpu.append(value)

    def stop(self) -> None:
        """Stop sampling (after one last sample of what is still there)."""
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join()

    def at(self, t: float) -> float | None:
        """The tree's CPU seconds at wall-clock time ``t``, interpolated between the samples around it."""
        if len(self.times) < 2 or not self.times[0] <= t <= self.times[-1]:
            return None
        i = bisect.bisect_left(self.times, t)
        if self.times[i] == t:
            return self.cpu[i]
        t0, t1, c0, c1 = self.times[i - 1], self.times[i], self.cpu[i - 1], self.cpu[i]
        return c0 + (c1 - c0) * (t - t0) / (t1 - t0)

    def between(self, t0: float, t1: float) -> float | None:
        """CPU seconds the tree spent between two wall-clock times (None off Linux or outside the samples)."""
        a, b = self.at(t0), self.at(t1)
        return None if a is None or b is None else round(b - a, 3)
