"""The process table as the tests read it (Linux ``/proc``): a process's parent, its children, whether it still
runs (a zombie has ended), its command line. One reading of ``/proc/<pid>/stat`` for every program test."""

from __future__ import annotations

import os


def _fields(pid: int) -> list[str] | None:
    """(state, parent pid, ...) of /proc/<pid>/stat, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def parent_of(pid: int) -> int | None:
    fields = _fields(pid)
    return None if fields is None else int(fields[1])


def alive(pid: int) -> bool:
    """Does ``pid`` still run (gone, or a zombie, has ended)?"""
    fields = _fields(pid)
    return fields is not None and fields[0] != "Z"


def children(pid: int) -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and parent_of(int(entry)) == pid]


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""
