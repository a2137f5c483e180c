"""The K processes of ``--workers K``: each runs :func:`tuning.sweep.coordinator.worker_process` with a picklable
:class:`WorkerSpec` (the sweep's :class:`~tuning.sweep.config.SweepConfig`, the parent MLflow run, its index),
opens the same study on the shared storage and runs a :class:`~tuning.sweep.workers.TrialLoop` until the
budget is COMPLETE.

How a worker starts (:func:`start_method`):

- **fork** (Linux): the worker is a copy of the coordinator, taken once the coordinator has loaded the world,
  computed the anchor and warmed the search stages (:meth:`tuning.study.fidelity.MultiFidelityObjective.warm`).
  It inherits all of that (:func:`inherited`) instead of importing, reading the catalogue and computing the
  anchor again, and it logs through the coordinator's MLflow trail process, on a channel of its own
  (:meth:`tuning.trail.process.TrailProcess.spare`), instead of starting one more process that imports MLflow.
  It opens its own storage, study and coordinator: nothing of the coordinator's storage is used after the fork.
- **spawn** (any other platform, or ``SEG3A_WORKER_START=spawn``): a fresh interpreter that builds its sweep from
  the spec (the world, the anchor) and starts its own trail process.

Both give the same trials' records: a trial's evaluation is a pure function of the study, seed, base, world and
knob values, whichever process computes it.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, replace

from engine import EngineError
from tuning.common.errors import E_TRIALS_FAILING, E_USAGE
from tuning.sweep.config import SweepConfig

START_ENV = "SEG3A_WORKER_START"
STOP_GRACE_S = 30.0   # an interrupted sweep's workers end within this, or are killed (stop_workers)
_FORKED: dict = {}   # set just before the fork: what a forked worker takes over (see inherited)


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker process needs (picklable): the sweep's config, the parent run, its index."""

    config: SweepConfig
    parent_run_id: str
    index: int
    of: int = 1   # how many workers share this machine's cores (each runs S3/S4 on its share of them)


def worker_specs(sweep, parent_run_id: str) -> list[WorkerSpec]:
    """One spec per worker: the sweep's config (one seed set, target and study for all), no bar of their own."""
    remaining = None if sweep.deadline is None else max(sweep.deadline - time.monotonic(), 0.001)
    config = replace(sweep.config, trials=sweep.target, study=sweep.study_name, workers=1, progress=False,
                     json=False, timeout=remaining)
    return [WorkerSpec(config, parent_run_id, i, sweep.config.workers) for i in range(sweep.config.workers)]


def start_method() -> str:
    """``fork`` on Linux, else ``spawn``; ``SEG3A_WORKER_START`` (fork|spawn) chooses (E3A_TUN_050 otherwise)."""
    chosen = os.environ.get(START_ENV, "").strip()
    if chosen and chosen not in ("fork", "spawn"):
        raise EngineError(E_USAGE, f"{START_ENV}={chosen!r}: expected fork or spawn")
    if chosen:
        return chosen
    return "fork" if sys.platform.startswith("linux") else "spawn"


def trail_channels(config: SweepConfig) -> int:
    """Channels of the sweep's trail process: its own, and one per forked worker."""
    if config.workers > 1 and not config.cluster and start_method() == "fork":
        return 1 + config.workers
    return 1


def inherited(spec: WorkerSpec) -> tuple[object | None, tuple[int, int] | None]:
    """In a forked worker: the coordinator's sweep (its world and warm objective) and this worker's trail channel
    (None: start a trail process of its own). Every other pipe end the coordinator held is closed here, so each
    channel ends with the one process that uses it. In a spawned worker: (None, None)."""
    if not _FORKED:
        return None, None
    channels = _FORKED["channels"]
    own = channels[spec.index] if spec.index < len(channels) else None
    for fd in _FORKED["fds"]:
        if own is None or fd not in own:
            try:
                os.close(fd)
            except OSError:
                pass
    sweep = _FORKED["sweep"]
    _FORKED.clear()
    return sweep, own


def run_pool(sweep, parent_run_id: str, target, progress=None, trail_process=None) -> list[dict]:
    """Run ``--workers K`` processes on the sweep's storage and wait for them (the bar follows the study).
    ``target(spec, cache_reports)`` is the module-level function each process runs (``tuning.sweep.worker_process``);
    ``trail_process``: the sweep's :class:`~tuning.trail.process.TrailProcess`, whose spare channels forked
    workers log through. Returns what each worker that finished put on ``cache_reports`` (its chain cache's report,
    :func:`tuning.study.cache_budget.cache_report`, with its ``worker`` index), by index."""
    from tuning.storage.recovery import counts

    method = start_method()
    ctx = multiprocessing.get_context(method)
    cache_reports, received = ctx.SimpleQueue(), []
    procs = [ctx.Process(target=target, args=(spec, cache_reports), name=f"sweep-worker-{spec.index}")
             for spec in worker_specs(sweep, parent_run_id)]
    if method == "fork":
        spare = trail_process.spare() if trail_process is not None else []
        _FORKED.update(sweep=sweep, channels=spare, fds=trail_process.own_fds() if trail_process is not None else [])
    try:
        try:
            for p in procs:
                p.start()
        finally:
            _FORKED.clear()
            if trail_process is not None:
                trail_process.release_spare()   # each channel is now its worker's alone
        while any(p.is_alive() for p in procs):
            time.sleep(0.5)
            _drain(cache_reports, received)   # read as they come: a worker never waits on a full pipe to exit
            if progress is not None:
                progress.n = min(sweep.coordinator.spent(counts(sweep.study)), sweep.target)   # as the budget counts
                sweep.show_best(progress)
    except BaseException:
        stop_workers(procs)
        raise
    finally:   # never returns with a worker alive (a second Ctrl-C in stop_workers lands here)
        for p in procs:
            if p.is_alive() and p.pid is not None:
                p.kill()
            if p.pid is not None:
                p.join()
    codes = [p.exitcode for p in procs]
    # the study is read once more only when a worker was killed: did the others finish its budget?
    done = any(c is not None and c < 0 for c in codes) and sweep.coordinator.spent(counts(sweep.study)) >= sweep.target
    failure, note = workers_outcome(codes, done)
    if failure:
        raise EngineError(E_TRIALS_FAILING, failure)
    if note:
        print(f"note: {note}", file=sys.stderr)
    if progress is not None:
        progress.n = min(sweep.coordinator.spent(counts(sweep.study)), sweep.target)   # as the budget counts
        progress.refresh()
    _drain(cache_reports, received)
    return sorted(received, key=lambda r: r["worker"])


def stop_workers(procs, grace_s: float = STOP_GRACE_S) -> None:
    """Stop the workers of an interrupted sweep: SIGTERM to each live one (it tells Optuna what its trail has
    logged, within :data:`tuning.sweep.workers.STOP_LOG_WAIT_S`, and ends), then SIGKILL to any still alive
    ``grace_s`` later. A killed worker's RUNNING trial is failed and run again by the next sweep, as after any kill;
    a worker that cannot end (waiting on a trail that never answers) never keeps its sweep from ending."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    end = time.monotonic() + grace_s
    for p in procs:
        if p.pid is not None:
            p.join(max(0.0, end - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()


def workers_outcome(exitcodes: list, budget_done: bool) -> tuple[str | None, str | None]:
    """(the sweep's failure, a note) from its workers' exit codes: a worker that failed (a coded error, exit 2) fails
    the sweep; one killed by a signal (a negative code) fails it only when the others did not finish the budget
    (they retry its trial as a dead worker's): then the sweep closes as any other, and says so."""
    failed = [c for c in exitcodes if c is not None and c > 0]
    killed = [c for c in exitcodes if c is not None and c < 0]
    if failed or (killed and not budget_done):
        first = (failed or killed)[0]
        return f"{len(failed) + len(killed)} worker process(es) failed (exit {first})", None
    if killed:
        return None, (f"{len(killed)} worker process(es) killed (signal {-killed[0]}); the others finished the "
                      f"budget, retrying its trial")
    return None, None


def _drain(cache_reports, received: list) -> None:
    while not cache_reports.empty():
        received.append(cache_reports.get())
