"""The close's work in the trail process: the reconcile lists only the runs Optuna did not record, and the study's
plots are drawn from the trials the sweep process sent, in a process that never loads scikit-learn or matplotlib
(Optuna's importance and visualization packages would import both, for evaluators and a backend the trail never
uses)."""

from __future__ import annotations

import optuna
import pytest

import tuning.trail.tracking as tracking
from tuning.trail.process import SweepTrail
from tuning.trail.server import UNUSED_HERE
from tuning.trail.tracking import SweepTracker, client


def _trail_with_duplicates(study: str):
    """A study's trail as a tracking server can leave it: trial 0 logged twice (an HTTP retry of create_run),
    trial 1 retried as trial 2 (its dead attempt's run left behind), trial 3 not COMPLETE, and a run of another
    study under the same experiment."""
    tracker = SweepTracker("P1.2", study, "J")
    tracker.start_parent({}, {}, close_dead=False)
    mlc, exp = tracker.mlc, tracker.experiment_id

    def run(key_study: str, original: int) -> str:
        tags = {"run_kind": tracking.RUN_KIND_TRIAL, "study": key_study, "trial_key": f"{key_study}#{original}"}
        return mlc.create_run(exp, tags=tags).info.run_id

    runs = {"t0": run(study, 0), "t0_dup": run(study, 0), "t1_dead": run(study, 1), "t2": run(study, 1),
            "t3": run(study, 3), "other": run(study + "-other", 0)}
    done = [(0, 0, runs["t0"]), (2, 1, runs["t2"])]   # (number, original number, recorded run)
    return tracker, runs, done


def _alive(tracker, runs: dict) -> set[str]:
    return {name for name, rid in runs.items() if tracker.mlc.get_run(rid).info.lifecycle_stage == "active"}


@pytest.mark.parametrize("in_max", [tracking.RECONCILE_IN_MAX, 0])   # NOT IN the recorded runs, or the listing
def test_the_reconcile_deletes_only_unrecorded_runs_of_complete_trials(project, monkeypatch, in_max):
    monkeypatch.setattr(tracking, "RECONCILE_IN_MAX", in_max)
    tracker, runs, done = _trail_with_duplicates(f"rec-{in_max}")
    assert tracker.reconcile_trial_runs(done) == 2
    assert _alive(tracker, runs) == {"t0", "t2", "t3", "other"}
    assert tracker.reconcile_trial_runs(done) == 0   # nothing left to delete
    assert tracker.reconcile_trial_runs([]) == 0


def test_the_reconcile_keeps_every_run_of_a_trial_with_no_recorded_run(project):
    tracker, runs, _ = _trail_with_duplicates("rec-none")
    assert tracker.reconcile_trial_runs([(0, 0, None), (2, 1, None)]) == 0
    assert _alive(tracker, runs) == set(runs)


def _shared_objects(pid: int) -> str:
    with open(f"/proc/{pid}/maps") as f:
        return f.read()


def test_the_plots_are_drawn_from_the_sent_trials_without_scikit_learn_matplotlib_or_pandas(project, monkeypatch):
    # a spawned trail process, whose every import is its own (a forked one shares its forkserver's preloaded MLflow,
    # pandas included, imported once in that process)
    monkeypatch.setenv("SEG3A_TRAIL_START", "spawn")
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=3))
    study.optimize(lambda t: (t.suggest_float("a", 0, 1) + t.suggest_int("b", 0, 4), t.suggest_float("c", 0, 1)),
                   n_trials=15)
    study.enqueue_trial({"a": 0.5, "b": 1, "c": 0.5})
    study.ask()   # a RUNNING trial in the snapshot is not plotted
    trail = SweepTrail("P1.2", "t-plots", "J")
    try:
        parent = trail.start_parent({}, {}, []).result(timeout=120)
        written = trail.write_plots("t-plots", study.directions, study.get_trials()).result(timeout=120)
        assert written == ["optimization_history", "parallel_coordinate", "param_importances"]
        pid = trail._process.proc.pid
        maps = _shared_objects(pid)
        for name in ("sklearn", "matplotlib", "pandas"):   # their compiled modules would be mapped had they been imported
            assert f"/{name}/" not in maps, name
        assert {"sklearn", "matplotlib", "IPython", "pandas"} == set(UNUSED_HERE)
        trail.finish_parent({"trials_complete": 15})
    finally:
        trail.close()
    files = {a.path: a.file_size for a in client().list_artifacts(parent)}
    for name in written:
        assert files[f"{name}.html"] > 100_000   # plotly.js inline: renders offline
