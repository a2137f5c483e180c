"""The trial loop runs ahead of a slow trail process only while the study reads no history, so a slow
or fast MLflow process never changes a sampled parameter, a value or a pruning decision."""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from types import SimpleNamespace

import optuna

from tests.tuning.conftest import load
from tuning.storage.sampler_streams import history_free_trials
from tuning.sweep.workers import TrialLoop


def _spec(sampler, pruner=None, multi=False):
    return SimpleNamespace(sampler=sampler, pruner=pruner, multi_objective=multi)


def test_history_free_trials_follows_the_sampler_and_the_pruner():
    assert history_free_trials(_spec({"name": "tpe", "n_startup_trials": 8})) == 8
    assert history_free_trials(_spec({"name": "random"})) == float("inf")
    median = {"name": "median", "n_startup_trials": 3}
    assert history_free_trials(_spec({"name": "tpe", "n_startup_trials": 8}, median)) == 3
    assert history_free_trials(_spec({"name": "random"}, median)) == 3
    assert history_free_trials(_spec({"name": "tpe", "n_startup_trials": 8}, median, multi=True)) == 8
    assert history_free_trials(_spec({"name": "tpe"}, {"name": "none"})) == 10


def _loop(told: int, limit: float, pending: int, logged: int = 0):
    """A loop over a real study with ``told`` trials told and ``pending`` asked, ``logged`` of them logged;
    finishing a pending trial tells it."""
    study = optuna.create_study()
    for _ in range(told):
        t = study.ask()
        study.tell(t, 0.0)
    finished = []

    def finish(trial, ev, result, future):
        study.tell(trial, 0.0)
        finished.append(trial.number - told)
        return 1

    loop = TrialLoop(SimpleNamespace(study=study, history_free=limit), trail=None)
    loop._finish = finish
    futures = [Future() for _ in range(pending)]
    for f in futures[:logged]:
        f.set_result("run")
    return loop, finished, deque((study.ask(), None, None, f) for f in futures)


def test_catch_up_waits_for_nothing_while_history_free_and_is_lag_one_after():
    loop, finished, pending = _loop(told=2, limit=10, pending=4)
    assert loop._catch_up(pending) == 0 and len(pending) == 4          # 2 + 3 < 10: runs ahead
    loop, finished, pending = _loop(told=2, limit=10, pending=4, logged=2)
    assert loop._catch_up(pending) == 2 and finished == [0, 1]         # what is logged is told, in order
    loop, finished, pending = _loop(told=2, limit=5, pending=4)
    assert loop._catch_up(pending) == 3 and finished == [0, 1, 2]      # 2 + 3 >= 5: lag 1 (it would wait)
    assert len(pending) == 1


def test_a_slow_trail_changes_no_parameter(project, monkeypatch):
    """The same study (3 start-up trials, then TPE) with the trail's answers delayed 0.2 s each."""
    from tuning.sweep.__main__ import main
    from tuning.trail.process import SweepTrail

    assert main(["--phase", "P1.2", "--trials", "6", "--study", "fast", "--json", "--no-progress"]) == 0
    original = SweepTrail.log_trial

    def slow(self, *args):
        inner, outer = original(self, *args), Future()

        def later():
            time.sleep(0.2)
            try:
                outer.set_result(inner.result())
            except Exception as exc:  # noqa: BLE001
                outer.set_exception(exc)

        threading.Thread(target=later, daemon=True).start()
        return outer

    monkeypatch.setattr(SweepTrail, "log_trial", slow)
    assert main(["--phase", "P1.2", "--trials", "6", "--study", "slow", "--json", "--no-progress"]) == 0
    fast, slow_ = (sorted(load(s).trials, key=lambda t: t.number) for s in ("fast", "slow"))
    assert [(t.params, t.values, t.state) for t in fast] == [(t.params, t.values, t.state) for t in slow_]
    starts = [t.datetime_start for t in slow_]
    first_told = slow_[0].datetime_complete
    assert sum(s < first_told for s in starts) >= 3, "the start-up trials ran ahead of the slow trail"
