"""The MLflow trail process: one child process that does all of a sweep process's MLflow work.

A sweep process does not import MLflow while its trials run (a precheck that closes the phase records its
ladder step, :func:`tuning.authority.ladder.record_step`, from the sweep process). MLflow's import and SQL store take about 1.5 s of start-up, and
its client work per trial would otherwise contend with the next trial's chain for the interpreter. So
the sweep starts this child first thing (its start-up overlaps the engine's import, the world and the
anchor) and sends it small picklable requests: open the experiment, start the parent run, log a trial,
attach an artifact, write the study's plots, close the parent run. The child (:mod:`tuning.trail.server`)
answers each request in the order sent; every request returns a :class:`~concurrent.futures.Future`.

The wire is a channel of two pipes carrying :mod:`multiprocessing.connection` messages. A sender thread writes
the requests (a caller never blocks on a full pipe) and a reader thread resolves the futures. A ``--workers K``
sweep starts the child with K more channels, one per worker process forked from it: the workers log through
the trail process that already imported MLflow, instead of starting K more. How the child starts (a fresh
interpreter, or a fork of a warm one for a process's later trails) is :mod:`tuning.trail.launch`'s. When the
sweep process ends, even killed, the child reads end-of-file (on its channels and on the sweep's life pipe) and
exits (a worker's channel ends with its worker); if the child dies, every pending and later request fails with
``E3A_TUN_043_TRAIL``. An error the child raised comes back as the same coded :class:`~engine.EngineError` (a
store that cannot be opened stops the sweep) or as a :class:`TrailError` (one trial's failed logging fails that
trial only).
"""

from __future__ import annotations

import itertools
import os
import queue
import subprocess
import threading
from concurrent.futures import Future
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Mapping, Sequence

from engine import EngineError
from tuning.common.errors import E_TRACKING, E_TRAIL
from tuning.trail.environment import prepare_for_mlflow
from tuning.trail.launch import start

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])
_CLOSE = None  # the request that ends the child


class TrailError(RuntimeError):
    """An error the trail process raised that carries no engine code (MLflow's own, an OS error)."""


def _child_env() -> dict:
    env = prepare_for_mlflow(dict(os.environ))
    env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


class TrailChannel:
    """One client's side of the trail process: ``call(op, *args)`` -> Future of the op's return value.

    Two pipes carry it (requests out, replies in); a sender thread writes the requests and a reader thread
    resolves the futures. A sweep process holds channel 0 of its :class:`TrailProcess`; a ``--workers K``
    process forked from it holds one of the others (:meth:`TrailProcess.spare`), opened with :meth:`adopt`."""

    def __init__(self, out_fd: int, in_fd: int, proc: subprocess.Popen | None = None) -> None:
        self.proc = proc   # the child, when this process started it (its exit code names a death)
        self._out, self._in = Connection(out_fd, readable=False), Connection(in_fd, writable=False)
        self._ids = itertools.count()
        self._pending: dict[int, Future] = {}
        self._lock = threading.Lock()
        self._dead: str | None = None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.used = False   # a request was sent on it
        self._sender = threading.Thread(target=self._send_loop, name="trail-send", daemon=True)
        self._reader = threading.Thread(target=self._read_loop, name="trail-read", daemon=True)
        self._sender.start()
        self._reader.start()

    @classmethod
    def adopt(cls, fds: tuple[int, int]) -> "TrailChannel":
        """A spare channel this process inherited (forked ``--workers`` process): its pipe ends, now its own."""
        return cls(*fds)

    def fds(self) -> tuple[int, int]:
        return self._out.fileno(), self._in.fileno()

    def call(self, op: str, *args) -> Future:
        future: Future = Future()
        with self._lock:
            if self._dead is not None:
                future.set_exception(EngineError(E_TRAIL, self._dead))
                return future
            rid = next(self._ids)
            self._pending[rid] = future
            self.used = True
        self._queue.put((rid, op, args))
        return future

    def close(self, timeout: float = 600.0) -> None:
        """Let the trail process answer what was sent, then end this channel (its reply pipe's end-of-file)."""
        self.stop_sending(timeout)
        self.stop_reading(timeout)

    def stop_sending(self, timeout: float) -> None:
        """Send the close request after everything already sent."""
        self._queue.put(_CLOSE)
        self._sender.join(timeout)

    def stop_reading(self, timeout: float) -> None:
        """Wait for the replies to end (the trail process closes this channel's reply pipe)."""
        self._reader.join(timeout)

    # ------------------------------------------------------------------ threads
    def _send_loop(self) -> None:
        while True:
            item = self._queue.get()
            try:
                self._out.send(item)
            except (OSError, ValueError):
                if item is not _CLOSE:
                    self._fail_all("the MLflow trail process is gone (its pipe is closed)")
            if item is _CLOSE:
                self._out.close()
                return

    def _read_loop(self) -> None:
        while True:
            try:
                rid, ok, value = self._in.recv()
            except (EOFError, OSError):
                how = f"ended (exit {self.proc.wait()})" if self.proc is not None else "closed this channel"
                self._fail_all(f"the MLflow trail process {how} before answering")
                self._in.close()
                return
            with self._lock:
                future = self._pending.pop(rid)
            if ok:
                future.set_result(value)
            else:
                code, message = value
                future.set_exception(EngineError(code, message) if code else TrailError(message))

    def _fail_all(self, why: str) -> None:
        with self._lock:
            self._dead = self._dead or why
            pending, self._pending = list(self._pending.values()), {}
        for future in pending:
            if not future.done():
                future.set_exception(EngineError(E_TRAIL, why))


class TrailProcess:
    """The child process and its channels: channel 0 is this process's (``call``); with ``channels`` > 1
    the others are spare pipe ends for ``--workers`` processes forked from this one (:meth:`spare`), so K
    workers log through the one trail process that has already imported MLflow."""

    def __init__(self, channels: int = 1) -> None:
        theirs, mine = [], []
        for _ in range(max(1, channels)):
            req_r, req_w = os.pipe()
            resp_r, resp_w = os.pipe()
            theirs.append((req_r, resp_w))
            mine.append((req_w, resp_r))
        life_r, self._life_w = os.pipe()   # the sweep's life: nobody writes; end-of-file once this process is gone
        self.proc = start(theirs, life_r, _child_env())
        for fd in (life_r, *(fd for pair in theirs for fd in pair)):
            os.close(fd)
        self._channel = TrailChannel(*mine[0], proc=self.proc)
        self._spare: list[tuple[int, int]] = mine[1:]
        self._lent = False   # a spare channel was handed to a worker

    def call(self, op: str, *args) -> Future:
        return self._channel.call(op, *args)

    def spare(self) -> list[tuple[int, int]]:
        """The pipe ends of the channels nobody holds yet (each ``(requests out, replies in)``)."""
        self._lent = self._lent or bool(self._spare)
        return list(self._spare)

    def take_spare(self) -> tuple[int, int]:
        """One spare channel's pipe ends, now the caller's to hold and close (:meth:`TrailChannel.adopt`)."""
        self._lent = True
        return self._spare.pop(0)

    def release_spare(self) -> None:
        """Close this process's copies of the spare channels (its forked workers hold theirs; a channel nobody
        holds ends at once in the trail process)."""
        spare, self._spare = self._spare, []
        for fd in (fd for pair in spare for fd in pair):
            os.close(fd)

    def own_fds(self) -> list[int]:
        """Every pipe end this process holds (a forked worker closes those that are not its channel's)."""
        life = [] if self._life_w is None else [self._life_w]
        return [*self._channel.fds(), *(fd for pair in self._spare for fd in pair), *life]

    def close(self, timeout: float = 600.0) -> int | None:
        """Let the child finish what was sent, then end it; returns its exit code. A child nobody sent anything
        (a sweep refused before its first request) has nothing to finish: it is killed at once, not left to end
        MLflow's import first (about 2 CPU s, and the refusal's wall); it has opened at most an existing store,
        whose database keeps itself consistent under a kill."""
        idle = not self._channel.used and not self._lent
        self.release_spare()
        if idle and self.proc.poll() is None:
            self.proc.kill()
        self._channel.stop_sending(timeout)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
        finally:
            self._channel.stop_reading(5)
            self._end_life()

    def _end_life(self) -> None:
        """Close the life pipe's write end (the child has ended, or is to end now)."""
        fd, self._life_w = self._life_w, None
        if fd is not None:
            os.close(fd)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.close(timeout=5)


class SweepTrail:
    """A sweep process's side of its trail: the experiment, the parent run and every trial's run, each
    request a Future. Errors of requests nobody waited for are raised by :meth:`close`."""

    def __init__(self, phase: str, study_name: str, objective_name: str, parent_run_id: str | None = None,
                 process: TrailProcess | TrailChannel | None = None, experiment: str | None = None) -> None:
        self.phase, self.study_name, self.objective_name = phase, study_name, objective_name
        self._process = process if process is not None else TrailProcess()
        self._experiment = self._process.call("open", phase, study_name, objective_name, parent_run_id, experiment)
        self._parent: Future | None = None
        if parent_run_id is not None:
            self._parent = Future()
            self._parent.set_result(parent_run_id)
        self._unwatched: list[Future] = []
        self._deferred: list[tuple] = []   # requests sent after the next trial's run (see :meth:`defer`)
        self._warm_sent = False

    @property
    def process(self):
        """The trail process (or the channel of it) this side talks to."""
        return self._process

    def _call(self, op: str, *args) -> Future:
        self._send_deferred()
        future = self._process.call(op, *args)
        self._unwatched.append(future)
        return future

    def defer(self, op: str, *args) -> None:
        """Send this request after the next trial's run request (or before any other request): what the
        first trial's run need not wait for (the anchor's metrics, tidying the experiment)."""
        self._deferred.append((op, *args))

    def _send_deferred(self) -> None:
        deferred, self._deferred = self._deferred, []
        for op, *args in deferred:
            self._unwatched.append(self._process.call(op, *args))

    @property
    def experiment_id(self) -> str:
        """The experiment's id; a store the trail process cannot open (an OS error: ``mlruns`` is a file, a
        read-only folder) is the store's coded error, as MLflow's own failures are, not a traceback."""
        try:
            return self._experiment.result()
        except TrailError as exc:
            raise EngineError(E_TRACKING, f"MLflow tracking store failed: {exc}") from None

    @property
    def parent_run_id(self) -> str | None:
        return None if self._parent is None else self._parent.result()

    def start_parent(self, params: Mapping, tags: Mapping[str, str], key_metrics: Sequence[str]) -> Future:
        """The sweep's parent run (its tags name this process: a killed sweep's run is found by its pid); the
        experiment is tidied (dead sweeps' runs KILLED, the UI's ranking view) after the first trial's run."""
        self._parent = self._call("start_parent", dict(params), {"pid": str(os.getpid()), **tags})
        self.defer("tidy", list(key_metrics))
        return self._parent

    def warm_close(self) -> None:
        """Have the trail process import what the close needs (its plots), once, on a side thread: a process
        that will not close its study (another host claims it) never pays for it."""
        if not self._warm_sent:
            self._warm_sent = True
            self._call("warm_close")

    def watch_front(self, second_direction: str) -> Future:
        """A two-objective study: the trail process keeps its runs' ``pareto`` tags current as trials come in."""
        return self._call("watch_front", second_direction)

    def log_parent(self, metrics: Mapping[str, float], tags: Mapping[str, str] = {},
                   soon: bool = False) -> Future | None:
        """Metrics and tags on the parent run (``soon``: after the next trial's run, see :meth:`defer`;
        its error, if any, is raised by :meth:`close`)."""
        if soon:
            self.defer("log_parent", dict(metrics), dict(tags))
            return None
        return self._call("log_parent", dict(metrics), dict(tags))

    def log_trial(self, number: int, original_number: int, result, policies, params: Mapping) -> Future:
        """The trial's run (its :class:`~tuning.study.trial_result.TrialResult`, policy files and knob values);
        the Future's value is (the run id, the seconds its logging took). The caller waits on it (a trial is
        told only once its run exists)."""
        future = self._process.call("log_trial", number, original_number, result, policies, dict(params))
        self._send_deferred()
        return future

    def log_text_artifact(self, run_id: str, name: str, text: str) -> Future:
        return self._call("log_text_artifact", run_id, name, text)

    def missing_runs(self, run_ids: Sequence[str]) -> Future:
        """``{"missing": [the run ids the store does not hold], "store": its URI}``."""
        return self._call("missing_runs", list(run_ids))

    def reconcile(self, done: Sequence[tuple[int, int, str | None]]) -> Future:
        return self._call("reconcile", list(done))

    def tag_pareto(self, rows: Sequence, on_front: set[int], second_metric: str, title: str) -> Future:
        return self._call("tag_pareto", list(rows), set(on_front), second_metric, title)

    def write_plots(self, study_name: str, directions: Sequence, trials: Sequence) -> Future:
        """The study's plots on the parent run, drawn from the trials this process read (its close's snapshot)."""
        return self._call("write_plots", study_name, list(directions), list(trials))

    def finish_parent(self, summary: Mapping, status: str = "FINISHED") -> Future:
        return self._call("finish_parent", dict(summary), status)

    def end_parent(self, status: str) -> Future:
        return self._call("end_parent", status)

    def close(self, check: bool = True, timeout: float | None = None) -> None:
        """Wait for every request (at most ``timeout`` seconds, default 600), end the process; with ``check``, raise
        the first error nobody saw."""
        self._send_deferred()
        try:
            if check:
                for future in self._unwatched:
                    future.result()
        finally:
            if timeout is None:
                self._process.close()
            else:
                self._process.close(timeout)
