"""The child side of :mod:`tuning.trail.process`: the one process of a sweep that imports MLflow.

``serve(channels)`` answers requests ``(id, op, args)`` on each channel (a pair of pipe ends) in the order they
arrive, each with ``(id, True, value)`` or ``(id, False, (code, one line))``, until every channel has sent its
close request or reached end-of-file (its process ended, even killed), or the sweep process is gone. Channel 0
is the sweep process's; the others are its forked ``--workers`` processes', each with its own
:class:`TrailServer` (its trials' runs, its Pareto tags) over the one MLflow client. The ops are the public
methods of :class:`TrailServer`; each is a thin step over :class:`tuning.trail.tracking.SweepTracker`. It never
prints: stdout is not the sweep's, and an error goes back to the sweep, which reports it as its own coded line.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Mapping, Sequence

# Optuna's importance and visualization packages import scikit-learn (for the fANOVA and MDI evaluators) and
# matplotlib (for optuna.visualization.matplotlib) as soon as they are imported: about 2.5 s of a trail process's
# close. The trail draws plotly figures and ranks importances with Optuna's default evaluator (PED-ANOVA, numpy
# only), so it needs neither: marked absent in this process (None in sys.modules, Python's own way to make an
# import fail), Optuna's try_import records them as unavailable and the close's imports take about 0.1 s. MLflow's
# client imports IPython on its first request (about 0.5 s) only to ask whether it runs in a notebook; this process
# is started with ``python -c``, never in one, and every such import in MLflow is guarded by ``except ImportError``.
# pandas too: MLflow's import loads it for its datasets, evaluation and tables (about 0.4 CPU s of a trail process's
# start, every such import guarded); the trail logs none of them, and the engine's digests read columns through pyarrow.
UNUSED_HERE = ("sklearn", "matplotlib", "IPython", "pandas")

OPS = ("open", "start_parent", "warm_close", "tidy", "watch_front", "log_parent", "log_trial", "log_text_artifact",
       "missing_runs", "reconcile", "tag_pareto", "write_plots", "finish_parent", "end_parent")


class TrailServer:
    """The MLflow state of one sweep process: its client, experiment and parent run."""

    def __init__(self) -> None:
        self.tracker = None
        self.mlc = None
        self.prepare_error: BaseException | None = None
        self.warming: threading.Thread | None = None
        self.pareto_known: dict[str, bool] = {}   # the pareto tag of the runs this process created or set
        self.front = None                          # FrontTracker of this process's feasible trials
        self.pending_front: tuple | None = None

    def sibling(self) -> "TrailServer":
        """The state of another channel of this process: the same MLflow client (or the same start-up error)."""
        other = TrailServer()
        other.mlc, other.prepare_error = self.mlc, self.prepare_error
        return other

    def prepare(self) -> None:
        """MLflow's import and the store's client, before the first request arrives (the sweep process is
        loading the engine meanwhile); a store that cannot be opened is the first request's error. A store that
        does not exist yet is created by the first request, once the sweep has found its study valid."""
        try:
            from tuning.trail.store_init import store_exists
            from tuning.trail.tracking import client

            if store_exists():
                self.mlc = client()
        except BaseException as exc:  # noqa: BLE001 - reported by open()
            self.prepare_error = exc

    def open(self, phase: str, study_name: str, objective_name: str, parent_run_id: str | None,
             experiment: str | None = None) -> str:
        """The experiment of the sweep (``3A-<phase>`` unless named; created when new); returns its id."""
        from tuning.trail.tracking import SweepTracker

        if self.prepare_error is not None:
            raise self.prepare_error
        try:
            self.tracker = SweepTracker(phase, study_name, objective_name, parent_run_id, mlc=self.mlc,
                                        experiment=experiment)
        except BaseException as exc:
            self.prepare_error = exc
            raise
        return self._open_tracker().experiment_id

    def _open_tracker(self):
        """The tracker, or the error that kept the store from opening (every later request fails with it)."""
        if self.tracker is None:
            raise self.prepare_error or RuntimeError("the trail was not opened")
        return self.tracker

    def start_parent(self, params: Mapping, tags: Mapping[str, str]) -> str:
        """The sweep's parent run, at once (trial runs name it)."""
        return self._open_tracker().start_parent(params, tags, close_dead=False)

    def warm_close(self) -> bool:
        """Import the close's plotting modules on a side thread (Optuna's plots and importances, plotly's figures
        and templates: a few tenths of a CPU second without the packages of :data:`UNUSED_HERE`), once; the sweep
        asks for it when this process may close its study soon (:func:`tuning.sweep.workers.close_is_near`). True
        if it started now."""
        if self.warming is not None:
            return False
        self.warming = threading.Thread(target=_warm_close_imports, name="warm-close", daemon=True)
        self.warming.start()
        return True

    def tidy(self, key_metrics: Sequence[str]) -> None:
        """What need not delay the first trial: this study's dead sweeps' runs become KILLED, and the UI's
        ranking view is set."""
        from tuning.trail.ui_view import ensure_rank_view

        tracker = self._open_tracker()
        tracker.close_dead_parents()
        ensure_rank_view(tracker.mlc, tracker.experiment_id, list(key_metrics))

    def log_parent(self, metrics: Mapping[str, float], tags: Mapping[str, str]) -> None:
        from tuning.trail.tracking import log_batch

        tracker = self._open_tracker()
        log_batch(tracker.mlc, tracker.parent_run_id, metrics=metrics, tags=tags)

    def log_trial(self, number: int, original_number: int, result, policies, params: Mapping) -> tuple[str, float]:
        """The trial's run (a run joining this process's Pareto front is created with ``pareto=true``); returns
        its id and the seconds its logging took."""
        t0 = time.perf_counter()
        point = (result.J, result.second)
        joins = bool(self.front is not None and result.feasible and result.second == result.second
                     and result.second is not None and self.front.admits(*point))
        run_id = self._open_tracker().log_trial(number, original_number, result, policies, params, on_front=joins)
        if result.second is not None:
            self.pareto_known[run_id] = joins
            if joins:
                self.pending_front = (run_id, *point)   # the runs it pushes off the front: after the reply
        return run_id, time.perf_counter() - t0

    def watch_front(self, second_direction: str) -> None:
        """Keep the ``pareto`` tags of this process's runs current while the trials run (in the time between
        trial runs): the close then writes only what the whole study's front changes."""
        from tuning.study.pareto import FrontTracker

        self.front = FrontTracker(second_direction)

    def orphaned(self, op: str, reply: tuple) -> None:
        """The sweep died while this request ran (SIGKILL), so nobody will tell its trial: a trial run it just
        logged is deleted. Otherwise it would be a second run of that trial. Its retry deletes the runs of
        its dead attempt before logging its own, but it may have searched for them before this one existed,
        and the close's reconcile may already be over. A run logged while the sweep was still alive is found
        by that retry's search, which starts only once the death is known."""
        _rid, ok, value = reply
        if op == "log_trial" and ok:
            self._open_tracker().mlc.delete_run(value[0])

    def after_reply(self) -> None:
        """Work a request leaves for after its answer: the front's tags of the trial just logged."""
        item, self.pending_front = self.pending_front, None
        if item is None:
            return
        from tuning.trail.pareto_tags import set_pareto_tag

        _joined, left = self.front.add(*item)   # the run that joined was created with pareto=true
        for run_id in left:
            set_pareto_tag(self.tracker.mlc, run_id, False)
            self.pareto_known[run_id] = False

    def log_text_artifact(self, run_id: str, name: str, text: str) -> None:
        with tempfile.TemporaryDirectory(prefix="trail-") as tmp:
            path = Path(tmp, name)
            path.write_text(text, encoding="utf-8")
            self._open_tracker().mlc.log_artifact(run_id, str(path))

    def missing_runs(self, run_ids: Sequence[str]) -> dict:
        """Which of ``run_ids`` this tracking store does not hold, and the store's URI."""
        from mlflow.exceptions import MlflowException

        mlc, missing = self._open_tracker().mlc, []
        for run_id in run_ids:
            try:
                mlc.get_run(run_id)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                missing.append(run_id)
        return {"missing": missing, "store": mlc.tracking_uri}

    def reconcile(self, done: Sequence[tuple[int, int, str | None]]) -> int:
        return self._open_tracker().reconcile_trial_runs(done)

    def tag_pareto(self, rows: Sequence, on_front: set[int], second_metric: str, title: str) -> None:
        """Every trial run's ``pareto`` tag and the parent run's ``pareto.html``."""
        self._warmed()
        from tuning.trail.pareto_tags import pareto_html, set_pareto_tag, tag_front

        tracker = self._open_tracker()
        tag_front(tracker.mlc, rows, on_front, tracker.experiment_id, tracker.study_name, self.pareto_known)
        ids = {r.mlflow_run_id for r in rows if r.mlflow_run_id}
        for run_id in [k for k, v in self.pareto_known.items() if v and k not in ids]:   # not COMPLETE after all
            set_pareto_tag(tracker.mlc, run_id, False)
        self.pareto_known = {r.mlflow_run_id: r.trial in on_front for r in rows if r.mlflow_run_id}
        self.log_text_artifact(tracker.parent_run_id, "pareto.html",
                               pareto_html(rows, on_front, second_metric, title))

    def write_plots(self, study_name: str, directions: Sequence, trials: Sequence) -> list[str]:
        """The study's Optuna plots on the parent run, drawn from the trials the sweep process sent (the snapshot
        its close ranked), copied into an in-memory study: this process opens no Optuna storage (on PostgreSQL
        that alone took most of a second of a closing sweep)."""
        self._warmed()
        import optuna

        from tuning.storage.stores import quiet_optuna

        quiet_optuna()
        study = optuna.create_study(study_name=study_name, directions=list(directions))
        study.add_trials(list(trials))
        return self._open_tracker().write_parent_plots(study)

    def _warmed(self) -> None:
        if self.warming is not None:
            self.warming.join()   # its imports are complete (a module half-imported by it is not usable)

    def finish_parent(self, summary: Mapping, status: str) -> None:
        self._open_tracker().finish_parent(summary, status)

    def end_parent(self, status: str) -> None:
        """The parent run ends without a summary (a sweep that failed)."""
        if self.tracker is not None and self.tracker.parent_run_id:
            self.tracker.mlc.set_terminated(self.tracker.parent_run_id, status=status)


def _warm_close_imports() -> None:
    """Load what the close needs (Optuna, its plots, plotly's templates) while the process waits for trials."""
    try:
        import optuna  # noqa: F401
        import plotly.graph_objects  # noqa: F401
        import plotly.io as pio

        import tuning.study.pareto  # noqa: F401
        import tuning.storage.stores  # noqa: F401
        from tuning.trail.tracking import _visualization
        _visualization()
        for name in ("plotly", "plotly_white"):   # Optuna's plots and the Pareto plot: built on first use
            pio.templates[name]
    except Exception:  # noqa: BLE001 - a warm-up only; the close imports (and reports) for itself
        pass


def _error(exc: BaseException) -> tuple[str | None, str]:
    from engine import EngineError

    if isinstance(exc, EngineError):
        return exc.code, exc.cause
    from tuning.common.errors import _tracking_error

    coded = _tracking_error(exc)
    if coded is not None:
        return coded.code, coded.cause
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    return None, f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _answer(server: TrailServer, message: tuple) -> tuple:
    rid, op, args = message
    try:
        if op not in OPS:
            raise ValueError(f"unknown trail op {op!r}")
        return rid, True, getattr(server, op)(*args)
    except BaseException as exc:  # noqa: BLE001 - every error goes back to the sweep
        return rid, False, _error(exc)


def _undo(server: TrailServer, op: str, reply: tuple) -> None:
    """:meth:`TrailServer.orphaned`, best effort: a failed clean-up never ends the process (its other channels, a
    forked worker's coordinator, still use it); the close's reconcile deletes what is left."""
    try:
        server.orphaned(op, reply)
    except Exception:  # noqa: BLE001
        pass


def serve_forked(channels: list, life_fd: int, stderr_fd: int | None, env: Mapping[str, str], cwd: str) -> None:
    """:func:`serve` in a process the forkserver forked (:mod:`tuning.trail.launch`): the sweep's environment,
    working directory and stderr first (the forkserver's are those of whenever it started; none when the sweep
    has none), no stdin or stdout."""
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(stderr_fd if stderr_fd is not None else null, 2)
    if stderr_fd is not None:
        os.close(stderr_fd)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    serve(channels, life_fd)


def serve(channels: list[tuple[int, int]], life_fd: int) -> None:
    """Answer the channels until each has ended, or the sweep is gone: its life pipe (``life_fd``, which nobody
    writes to) reads end-of-file once no process holds the write end, even after a SIGKILL."""
    # Ctrl-C, and SIGTERM sent to the whole process group (``timeout``, a container's or a service manager's
    # stop), reach this process too: the sweep handles them; this process finishes what was sent and ends at the
    # sweep's end-of-file, so an interrupted sweep's logged trials keep their runs and its run is ended
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for name in UNUSED_HERE:
        sys.modules.setdefault(name, None)
    # MLflow's import and its store's client load with the collector paused, then are frozen (gc.freeze, Python's
    # own mechanism for a process's long-lived start-up objects): later full collections traverse only what the
    # requests allocate. In a 40-trial sweep a trail process spent 0.40-0.52 CPU s of its ~7 in 6-8 full
    # collections, most of them during or right after that import. No data lives here, so nothing large is frozen.
    gc.disable()
    first = TrailServer()
    first.prepare()
    gc.freeze()
    gc.enable()
    live = {}   # requests connection -> (replies connection, that channel's server)
    for i, (read_fd, write_fd) in enumerate(channels):
        live[Connection(read_fd, writable=False)] = (Connection(write_fd, readable=False),
                                                     first if i == 0 else first.sibling())

    _answer_until_done(live, Connection(life_fd, writable=False))
    from tuning.common.errors import exit_now

    exit_now(0)   # no teardown of MLflow's and SQLAlchemy's heap (about 0.6 s); atexit handlers still run


def _answer_until_done(live: dict, life: Connection) -> None:
    """Answer each request in the order its channel sent it, until every channel has ended or the sweep is gone
    (``life``: its life pipe, at end-of-file)."""
    def sweep_alive() -> bool:
        return not wait([life], 0)

    def drop(requests: Connection) -> None:
        replies, _server = live.pop(requests)
        requests.close()
        replies.close()

    while live and sweep_alive():
        for requests in wait([*live, life]):
            if requests is life:
                break
            replies, server = live[requests]
            try:
                message = requests.recv()
            except (EOFError, OSError):
                drop(requests)   # its process is gone
                continue
            if not sweep_alive():
                # a killed sweep (SIGKILL: its channel may still hold requests) tells Optuna nothing more: what
                # it sent is not logged, so a trial failed as a dead worker's and retried elsewhere never leaves
                # a run of its own
                break
            if message is None:
                drop(requests)
                continue
            reply = _answer(server, message)
            if not sweep_alive():
                _undo(server, message[1], reply)
                break
            try:
                replies.send(reply)
            except (OSError, ValueError):
                # its process died while this request ran (a SIGKILLed worker: nobody reads its replies)
                _undo(server, message[1], reply)
                drop(requests)
                continue
            try:
                server.after_reply()
            except Exception:  # noqa: BLE001 - a live tag only; the close writes the whole front again
                server.pending_front = None
