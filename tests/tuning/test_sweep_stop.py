"""An interrupted sweep always ends. A ``--workers`` process that is stopped (Ctrl-C, SIGTERM) waits for its trail
only briefly (:data:`tuning.sweep.workers.STOP_LOG_WAIT_S`): a trial whose run is not logged by then stays RUNNING
for the next sweep to fail and run again. Its coordinator kills a worker that has not ended ``STOP_GRACE_S`` after
its SIGTERM (:func:`tuning.sweep.pool.stop_workers`). A sweep once hung for good after a group SIGTERM: a worker
waited on a trail reply that never came, and its coordinator joined that worker without a bound."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future
from types import SimpleNamespace

import optuna
from optuna.trial import TrialState

from tuning.sweep import workers as workers_mod
from tuning.sweep.pool import stop_workers
from tuning.sweep.workers import TrialLoop


def _deaf() -> None:
    """A worker that ignores SIGTERM and never ends by itself (one waiting on a trail that never answers)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        time.sleep(1)


def _obedient() -> None:
    while True:
        time.sleep(1)


def test_stop_workers_kills_a_worker_that_ignores_its_sigterm_and_spares_one_that_ends():
    ctx = multiprocessing.get_context("fork")
    deaf, obedient = ctx.Process(target=_deaf), ctx.Process(target=_obedient)
    deaf.start()
    obedient.start()
    time.sleep(0.3)   # the deaf one has installed its SIG_IGN
    t0 = time.monotonic()
    stop_workers([deaf, obedient], grace_s=1.0)
    took = time.monotonic() - t0
    assert not deaf.is_alive() and not obedient.is_alive()
    assert deaf.exitcode == -signal.SIGKILL, "ignored its SIGTERM: killed once the grace was spent"
    assert obedient.exitcode == -signal.SIGTERM, "ended on its SIGTERM: never killed"
    assert took < 30, f"stop_workers waited {took:.1f} s on a 1 s grace"


def test_stop_workers_on_workers_already_gone_returns_at_once():
    ctx = multiprocessing.get_context("fork")
    done = ctx.Process(target=os._exit, args=(0,))
    done.start()
    done.join()
    never = ctx.Process(target=_obedient)   # never started (pid None): nothing to stop
    stop_workers([done, never], grace_s=60.0)
    assert done.exitcode == 0 and never.pid is None


def _loop_over(study, futures: list[Future], stop_at: int):
    """A TrialLoop over a real study: its n-th evaluation stages a trial whose run the trail logs through
    ``futures[n]``, and the evaluation numbered ``stop_at`` is interrupted (KeyboardInterrupt, as Ctrl-C raises)."""
    told = []

    class Coordinator:
        seen = (0, 0)

        def next_trial(self, target, pending, timed_out):
            return study.ask()

        def told(self, trial):
            told.append(trial.number)

        def close(self):
            pass

    sweep = SimpleNamespace(study=study, coordinator=Coordinator(), target=100, history_free=0,
                            objective=SimpleNamespace(anchor=None), timed_out=lambda: False,
                            spec=SimpleNamespace(multi_objective=False, key_metrics=()))
    loop = TrialLoop(sweep, trail=None, index=1, may_close=False)
    calls = iter(range(len(futures) + 1))

    def evaluate(trial):
        n = next(calls)
        if n == stop_at:
            raise KeyboardInterrupt
        result = SimpleNamespace(with_run=lambda *run: SimpleNamespace(user_attr=lambda keys: {"run": run}))
        return trial, SimpleNamespace(vetoes=[], value=float(n), error=None), result, futures[n]

    loop._evaluate = evaluate
    return loop, told


def _run_in_thread(loop) -> tuple[threading.Thread, list]:
    raised: list = []

    def run():
        try:
            loop.run()
        except BaseException as exc:  # noqa: BLE001 - the test reads what ended the loop
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, raised


def test_a_stopped_loop_ends_though_its_trail_never_answers(monkeypatch):
    """Stopped with a trial whose run the trail never logs: the loop ends within the bound, raising the stop, and
    leaves that trial RUNNING (not told: the next sweep fails it as a dead worker's and runs it again)."""
    monkeypatch.setattr(workers_mod, "STOP_LOG_WAIT_S", 0.5)
    study = optuna.create_study()
    never = Future()   # the trail's reply that never comes
    loop, told = _loop_over(study, [never], stop_at=1)
    thread, raised = _run_in_thread(loop)
    thread.join(30)
    assert not thread.is_alive(), "the stopped loop waited on its trail without a bound"
    assert [type(e) for e in raised] == [KeyboardInterrupt]
    # trial 0 waited for its run, trial 1 was being evaluated: neither is told
    assert [t.state for t in study.trials] == [TrialState.RUNNING] * 2 and told == []
    assert loop.stop_wait() == 0.0, "its trail's close is not waited for either (the deadline is spent)"


def test_a_stopped_loop_still_tells_a_trial_whose_run_is_logged(monkeypatch):
    """The bound leaves the clean-up as it was: a trial whose run the trail has logged is told COMPLETE, one whose
    logging failed is left RUNNING (its run may be missing), and the stop is raised."""
    monkeypatch.setattr(workers_mod, "STOP_LOG_WAIT_S", 5.0)
    study = optuna.create_study()
    logged, failed = Future(), Future()
    logged.set_result(("run-a", 0.1))
    failed.set_exception(RuntimeError("the tracking store refused"))
    loop, told = _loop_over(study, [logged, failed], stop_at=2)
    thread, raised = _run_in_thread(loop)
    thread.join(30)
    assert not thread.is_alive()
    assert [type(e) for e in raised] == [KeyboardInterrupt]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.RUNNING, TrialState.RUNNING]
    assert told == [0]
    assert study.trials[0].value == 0.0


def test_an_unstopped_loop_has_no_bound():
    loop = TrialLoop(SimpleNamespace(), trail=None)
    assert loop.stop_wait() is None and loop._logged(Future()) is True


def test_stop_workers_with_no_grace_kills_at_once():
    ctx = multiprocessing.get_context("fork")
    deaf = ctx.Process(target=_deaf)
    deaf.start()
    time.sleep(0.3)
    stop_workers([deaf], grace_s=0.0)
    assert deaf.exitcode == -signal.SIGKILL
