"""How a trail process starts: a fresh interpreter, or a fork of a warm one.

A trail process's start-up is MLflow's import and its SQL store's (about 1.5 CPU s); its work per sweep is
small. A process that starts one trail (``python -m tuning.sweep``) starts it as a fresh interpreter
(``subprocess``), whose import overlaps the sweep's own start-up. A process that starts more (a test session, a
benchmark, anything that runs several sweeps) pays that import once: from its second trail on, each is forked
by Python's own :mod:`multiprocessing` forkserver, started with MLflow and the store preloaded
(:data:`PRELOAD`), and costs a fork (about 0.06 CPU s). ``SEG3A_TRAIL_START=spawn|forkserver`` chooses for every
trail of the process (E3A_TUN_050 otherwise). A process whose ``__main__`` a forkserver child would re-run (a
script given by its path) always spawns.

Either way the child is handed the same things: its channels' pipe ends, the read end of the sweep's *life
pipe* (nobody writes to it; it reads end-of-file once every process holding the write end is gone, so a
SIGKILLed sweep is seen even though a forked trail's parent is the forkserver), and, for a fork, the caller's
environment, working directory and stderr as they are now (the forkserver's are those of whenever it started).
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
from multiprocessing.connection import wait
from typing import Mapping

from engine import EngineError
from tuning.common.errors import E_USAGE

START_ENV = "SEG3A_TRAIL_START"
PRELOAD = ("tuning.trail.server", "tuning.trail.tracking", "mlflow", "mlflow.store.tracking.sqlalchemy_store")
_STARTED: dict[int, int] = {}   # pid -> trail processes it started (a forked process starts counting again)
_LOCK = threading.Lock()


def start_method() -> str:
    """``spawn`` for a process's first trail, ``forkserver`` for the later ones (where the platform has it, and the
    process's ``__main__`` would not be re-run: :func:`_main_stays_put`); ``SEG3A_TRAIL_START`` chooses for all."""
    chosen = os.environ.get(START_ENV, "").strip()
    if chosen and chosen not in ("spawn", "forkserver"):
        raise EngineError(E_USAGE, f"{START_ENV}={chosen!r}: expected spawn or forkserver")
    with _LOCK:
        started = _STARTED.get(os.getpid(), 0)
        _STARTED[os.getpid()] = started + 1
    if "forkserver" not in multiprocessing.get_all_start_methods() or not _main_stays_put():
        return "spawn"
    return chosen or ("spawn" if started == 0 else "forkserver")


def _main_stays_put() -> bool:
    """Would a forkserver child leave this process's ``__main__`` alone? :mod:`multiprocessing` re-runs a main
    given as a file or as a plain module (``python script.py``, ``python -m module``) in every child it starts;
    that would re-run a user's unguarded script, and import what it imports, in each trail. It does not for
    ``python -m package`` (a ``__main__`` module), ``-c``, the REPL or a notebook, so those may fork."""
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None)
    if name is not None:
        return name == "__main__" or name.endswith(".__main__")
    return getattr(main, "__file__", None) is None


def start(channels: list[tuple[int, int]], life_fd: int, env: Mapping[str, str]):
    """Start the trail child on ``channels`` (each its ``(requests in, replies out)`` ends) and the life pipe's read
    end; returns a handle with ``pid``, ``poll()``, ``wait(timeout)`` and ``kill()`` as :class:`subprocess.Popen`.
    The caller closes its copies of the ends it passed."""
    if start_method() == "spawn":
        code = f"from tuning.trail.server import serve; serve({channels!r}, {life_fd})"
        passed = [life_fd, *(fd for pair in channels for fd in pair)]
        return subprocess.Popen([sys.executable, "-c", code], pass_fds=passed, env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL)
    return ForkedTrail(channels, life_fd, env)


class PassedFd:
    """A file descriptor handed to a forked child by :mod:`multiprocessing`'s own fd passing (``reduction.DupFd``,
    as its ``Connection`` objects are): in the child it is the child's own descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self):
        from multiprocessing import reduction
        return _rebuild_fd, (reduction.DupFd(self.fd),)


def _rebuild_fd(dup) -> int:
    return dup.detach()


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


class ForkedTrail:
    """A trail process forked by the forkserver, behind :class:`subprocess.Popen`'s ``pid``/``poll``/``wait``/
    ``kill``. Daemonic, so an interpreter that exits without closing its trail does not wait for it (a closed
    trail has already ended). Its exit code is read once, under a lock (two threads may wait on it)."""

    def __init__(self, channels: list[tuple[int, int]], life_fd: int, env: Mapping[str, str]) -> None:
        from tuning.trail.environment import prepare_for_mlflow
        from tuning.trail.server import serve_forked

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(PRELOAD))
        prepare_for_mlflow()   # the forkserver imports MLflow with this process's environment
        passed = [(PassedFd(a), PassedFd(b)) for a, b in channels]
        self._process = ctx.Process(target=serve_forked, name="mlflow-trail", daemon=True,
                                    args=(passed, PassedFd(life_fd), PassedFd(2) if _is_open(2) else None, dict(env),
                                          os.getcwd()))
        self._process.start()
        self.pid = self._process.pid
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        with self._lock:
            return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        if not wait([self._process.sentinel], timeout):
            raise subprocess.TimeoutExpired(f"trail process {self.pid}", timeout)
        return self.poll()

    def kill(self) -> None:
        if self.poll() is None:
            self._process.kill()
