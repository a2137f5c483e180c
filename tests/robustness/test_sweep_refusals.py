"""A sweep refuses before it writes, and stops when its trials keep failing (issue 19 item 2).

- A study naming a metric that is not in the pack, and an unreachable MLflow server, are one coded line
  before any Optuna journal or MLflow run exists (as programs, each well inside 30 s).
- ``--max-failures`` bounds every kind of failed trial (crashed, told FAIL, chain could not run), and a
  process whose first trials all fail for one cause stops with that cause as its line
  (``TrialLoop.failed``; the read-only run root end to end is in test_read_only_mounts).
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from tests.tuning.conftest import REPO, env_for, make_project, run_module


def _nothing_written(project: Path) -> None:
    assert not (project / ".optuna").exists(), "an Optuna journal was created"
    db = project / "mlruns" / "mlflow.db"
    if db.exists():   # the store itself may be created; it holds no run
        import sqlite3

        with sqlite3.connect(db) as con:
            assert con.execute("select count(*) from runs").fetchone()[0] == 0


def _one_line(proc, prefix: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(prefix), proc.stderr[-800:]
    return lines[0]


def test_a_metric_not_in_the_pack_is_refused_before_any_journal_or_run(tmp_path):
    project = make_project(tmp_path / "proj")
    study = (project / "studies" / "P1.2.yaml").read_text()
    (project / "studies" / "bad.yaml").write_text(
        study.replace("metric: s4.escalated_multi_zone_rate", "metric: s4.no_such_rate").replace("t-P1.2", "t-bad"))
    proc = run_module(project, "tuning.sweep", "--phase", "studies/bad.yaml", "--trials", "2", "--no-progress",
                      timeout=30)
    line = _one_line(proc, "E3A_TUN_010_STUDY_INVALID: studies/bad.yaml: objective.terms[2].metric:")
    assert "s4.no_such_rate" in line
    _nothing_written(project)


def test_an_unreachable_tracking_server_is_refused_at_once(tmp_path):
    import socket

    with socket.socket() as s:   # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    project = make_project(tmp_path / "proj")
    env = env_for(project) | {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"}

    def program(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", *args], cwd=project, env=env, capture_output=True, text=True,
                              timeout=30)

    sweep = program("tuning.sweep", "--phase", "P1.2", "--trials", "2", "--no-progress")
    _one_line(sweep, "E3A_TUN_042_TRACKING_STORE: MLflow tracking server")
    promote = program("tuning.promote", "0" * 32, "--runs-root", "")
    assert "is unreachable" in _one_line(promote, "E3A_TUN_042_TRACKING_STORE:")
    _nothing_written(project)


def test_a_store_path_longer_than_sqlite_opens_is_refused_at_once(tmp_path):
    """sqlite opens no database path over 504 bytes (with its journal's name, 512): one coded line at once, where
    MLflow retried the open for about 100 s (a project at a very long path)."""
    deep = tmp_path
    while len(str(deep)) < 520:
        deep = deep / ("d" * 100)
    (deep / "mlruns").mkdir(parents=True)
    project = make_project(tmp_path / "proj")
    env = env_for(project) | {"MLFLOW_TRACKING_URI": f"sqlite:///{deep / 'mlruns' / 'mlflow.db'}"}
    rank = subprocess.run([sys.executable, "-m", "tuning.rank", "--phase", "P1.2"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=30)
    assert "longer than sqlite opens (504)" in _one_line(rank, "E3A_TUN_042_TRACKING_STORE: MLflow store")


@pytest.mark.parametrize("uri, trail", [(None, "local"), ("", "local"), ("sqlite:////p/mlruns/mlflow.db", "local"),
                                        ("file:///p/mlruns", "local"), ("/p/mlruns", "local"),
                                        ("http://10.0.0.5:5000/", "http://10.0.0.5:5000"),
                                        ("postgresql://u@db/mlflow", "postgresql://u@db/mlflow"),
                                        ("databricks", "databricks")])
def test_a_trail_is_local_or_the_uri_every_host_shares(uri, trail):
    from tuning.storage.stores import trail_of

    assert trail_of(uri) == trail


def test_a_host_joining_a_study_with_another_trail_is_refused(tmp_path):
    """A host that joins a shared study without the tracking server's address logged its trials to a store of its
    own, silently splitting the trail (7 of 12 runs on the server); the study records its trail and refuses it."""
    from engine import EngineError
    from tuning.storage.stores import open_storage, open_study
    from tuning.study.spec import load_study

    spec = load_study(REPO / "studies" / "P1.2.yaml", str(REPO / "studies"))
    storage = open_storage(f"journal:{tmp_path / 'shared.journal'}", "shared")
    first = open_study(spec, "shared", storage, spec.seeds, "h", trail="http://10.0.0.5:5000")
    assert first.user_attrs["trail"] == "http://10.0.0.5:5000"
    assert open_study(spec, "shared", storage, spec.seeds, "h", trail="http://10.0.0.5:5000").study_name == "shared"
    for other, want in (("local", "MLFLOW_TRACKING_URI=http://10.0.0.5:5000"),
                        ("http://10.0.0.6:5000", "MLFLOW_TRACKING_URI=http://10.0.0.5:5000")):
        with pytest.raises(EngineError) as err:
            open_study(spec, "shared", storage, spec.seeds, "h", trail=other)
        assert err.value.code == "E3A_TUN_050_USAGE" and want in err.value.cause, err.value.one_line()
        assert "would be split between two trails" in err.value.cause
    mine = open_storage(f"journal:{tmp_path / 'mine.journal'}", "mine")
    open_study(spec, "mine", mine, spec.seeds, "h", trail="local")
    with pytest.raises(EngineError) as err:   # and a local study joined through a server
        open_study(spec, "mine", mine, spec.seeds, "h", trail="http://10.0.0.5:5000")
    assert "run it with MLFLOW_TRACKING_URI unset" in err.value.cause


def test_a_sweep_on_another_world_cannot_join_a_study_by_its_name(tmp_path):
    """A default-world sweep given another world's suffixed study name (s-w6c18d26aaf46) joined that study when both
    authorities held the authored baseline (one base hash): the sampler learnt from two worlds. The study records
    its world; a process on another world is refused whatever the name, and the study's own world resumes it."""
    from engine import EngineError
    from tuning.storage.stores import open_storage, open_study
    from tuning.study.spec import load_study

    spec = load_study(REPO / "studies" / "P1.2.yaml", str(REPO / "studies"))
    storage = open_storage(f"journal:{tmp_path / 's.journal'}", "s-wabc")
    wc, default = ("c" * 64, "wC"), ("d" * 64, "default")
    first = open_study(spec, "s-wabc", storage, spec.seeds, "h", world=wc)
    assert (first.user_attrs["world"], first.user_attrs["world_name"]) == wc
    with pytest.raises(EngineError) as err:
        open_study(spec, "s-wabc", storage, spec.seeds, "h", world=default)
    assert err.value.code == "E3A_TUN_070_WORLD_MISMATCH" and "on world wC (cccccccccccc)" in err.value.cause
    assert open_study(spec, "s-wabc", storage, spec.seeds, "h", world=wc).study_name == "s-wabc"


# ------------------------------------------------------------------ the failure budget (TrialLoop.failed)
def _loop(max_failures: int = 5):
    from tuning.sweep.workers import TrialLoop

    sweep = types.SimpleNamespace(config=types.SimpleNamespace(max_failures=max_failures))
    return TrialLoop(sweep, trail=None)


def test_the_first_trials_failing_for_one_cause_stop_with_that_cause():
    loop = _loop()
    for run in range(3):
        assert loop.stop is None
        loop.failed(f"E3A_IO_001_PUBLISH_FAILED: could not publish runs/{run}: Read-only file system")
    assert loop.stop.code == "E3A_IO_001_PUBLISH_FAILED"
    assert loop.stop.cause.startswith("could not publish runs/2: Read-only file system (the first 3 trials")


def test_max_failures_bounds_every_kind_of_failed_trial():
    loop = _loop(max_failures=4)
    loop.failed(None)   # one trial succeeded: later failures are not "the first trials"
    causes = ["RuntimeError: boom", "E3A_TUN_041_TRIALS_FAILING: trial 3 has no value of the second objective",
              "E3A_S4_005_COUNT_CONSERVATION_BROKEN: x", "RuntimeError: boom", "E3A_IO_001_PUBLISH_FAILED: y"]
    for cause in causes[:4]:
        loop.failed(cause)
        assert loop.stop is None
    loop.failed(causes[4])
    assert loop.stop.code == "E3A_TUN_041_TRIALS_FAILING" and "5 trials failed" in loop.stop.cause
    mixed = _loop(max_failures=1)   # different causes: only the budget stops it
    mixed.failed("RuntimeError: a")
    mixed.failed("E3A_IO_001_PUBLISH_FAILED: b")
    assert mixed.stop.code == "E3A_TUN_041_TRIALS_FAILING"
    first = _loop(max_failures=0)   # no failure tolerated: the first one is the line
    first.failed("E3A_IO_001_PUBLISH_FAILED: z")
    assert first.stop.code == "E3A_IO_001_PUBLISH_FAILED"


@pytest.mark.parametrize("multi", [False, True])
def test_a_trial_whose_chain_could_not_run_or_told_fail_is_a_failure(multi):
    import optuna

    from tuning.study.objective import Evaluation
    from tuning.sweep.workers import tell_evaluation

    study = optuna.create_study(directions=["maximize", "minimize"] if multi else ["maximize"])
    broken = Evaluation({}, None, value=-1000.0, vetoes=["ENGINE_ERROR"], error="E3A_IO_001_PUBLISH_FAILED: x")
    assert tell_evaluation(study, study.ask(), broken, multi) == "E3A_IO_001_PUBLISH_FAILED: x"
    refused = Evaluation({}, None, value=-1000.0, vetoes=["SCHEMA_INVALID"], error="E3A_POL_002_SCHEMA_INVALID: y")
    assert tell_evaluation(study, study.ask(), refused, multi) == ("E3A_POL_002_SCHEMA_INVALID: y" if multi else None)
    fine = Evaluation({}, None, value=0.5, second_value=0.1)
    assert tell_evaluation(study, study.ask(), fine, multi) is None
    states = [t.state.name for t in study.trials]
    assert states == (["FAIL", "FAIL", "COMPLETE"] if multi else ["COMPLETE"] * 3)


def test_a_study_resumed_under_another_objective_is_refused(tmp_path):
    """A term's weight changed, the guardrails dropped, the study resumed under the same name: its first trials were
    scored on one J and the next on another, and the sampler and the ranking mixed them. The study records its
    objective; the same objective resumes, another is refused; changing only the knob ranges still resumes."""
    import dataclasses

    from engine import EngineError
    from tuning.storage.stores import open_storage, open_study
    from tuning.study.spec import load_study

    spec = load_study(REPO / "studies" / "P1.2.yaml", str(REPO / "studies"))
    storage = open_storage(f"journal:{tmp_path / 's.journal'}", "s")
    open_study(spec, "s", storage, spec.seeds, "h")
    assert open_study(spec, "s", storage, spec.seeds, "h").study_name == "s"
    knobs = tuple(dataclasses.replace(k, high=k.high * 0.9) if k.high else k for k in spec.knobs)
    assert open_study(dataclasses.replace(spec, knobs=knobs), "s", storage, spec.seeds, "h").study_name == "s"
    heavier = tuple({**t, "weight": t["weight"] * 10} for t in spec.terms)
    for other in (dataclasses.replace(spec, terms=heavier), dataclasses.replace(spec, guardrails=())):
        with pytest.raises(EngineError) as err:
            open_study(other, "s", storage, spec.seeds, "h")
        assert err.value.code == "E3A_TUN_050_USAGE" and "created with another objective" in err.value.cause
    # a named guardrail's value (its label is its name) and a fixed knob's value change how trials score too
    from tuning.storage.stores import objective_digest

    renamed = dataclasses.replace(spec.guardrails[0], name="my rail")
    pinned = dataclasses.replace(spec.knobs[0], low=None, high=None, log=False, step=None, choices=None,
                                 value=spec.knobs[0].low)
    first = dataclasses.replace(spec, guardrails=(renamed, *spec.guardrails[1:]), knobs=(pinned, *spec.knobs[1:]))
    storage2 = open_storage(f"journal:{tmp_path / 't.journal'}", "t")
    open_study(first, "t", storage2, spec.seeds, "h")
    moved = dataclasses.replace(renamed, value=(renamed.value or 0.0) + 0.1, anchor=False)
    other_value = dataclasses.replace(pinned, value=spec.knobs[0].high)
    for other in (dataclasses.replace(first, guardrails=(moved, *spec.guardrails[1:])),
                  dataclasses.replace(first, knobs=(other_value, *spec.knobs[1:]))):
        with pytest.raises(EngineError) as err:
            open_study(other, "t", storage2, spec.seeds, "h")
        assert err.value.code == "E3A_TUN_050_USAGE" and "created with another scoring" in err.value.cause
    # a study recorded before "scoring" existed (its objective only) resumes under that objective and records it
    import optuna

    storage3 = open_storage(f"journal:{tmp_path / 'u.journal'}", "u")
    legacy = optuna.create_study(study_name="u", storage=storage3, directions=spec.directions)
    for key, value in {"phase": spec.phase, "seeds": list(spec.seeds), "objective": objective_digest(spec),
                       "base_parameter_hash": "h"}.items():
        legacy.set_user_attr(key, value)
    assert open_study(spec, "u", storage3, spec.seeds, "h").user_attrs["scoring"]


@pytest.mark.parametrize("url, cause", [("/tmp", "Could not parse SQLAlchemy URL"), ("bogus://x", "bogus")])
def test_a_storage_url_that_is_none_says_why_and_what_one_is(url, cause):
    """It said only the exception's class (ArgumentError, NoSuchModuleError)."""
    from engine import EngineError
    from tuning.storage.stores import open_storage

    with pytest.raises(EngineError) as err:
        open_storage(url, "s")
    assert err.value.code == "E3A_TUN_040_STORAGE" and cause in err.value.cause
    assert err.value.cause.endswith("a storage is journal:PATH, sqlite:///PATH or postgresql://USER@HOST:PORT/DB")


def test_a_sweep_on_policies_changed_outside_a_promotion_is_refused_before_any_journal_or_run(tmp_path, monkeypatch):
    """Files edited by hand after their lineage installed them: no trial of a sweep on them could be promoted
    (promote refuses the folder, and once restored the trials' base is no longer the authority), so the sweep
    refuses at its start with promote's line, writing nothing; the same folder restored sweeps again."""
    import yaml

    from engine import PolicySet
    from tests.tuning.conftest import run_here

    project = make_project(tmp_path / "proj")
    policies = project / "policies"
    installed = PolicySet.from_dir(policies).parameter_hash
    (policies / "lineage.yaml").write_text(yaml.safe_dump({"promotions": [
        {"promoted_utc": "2026-01-01T00:00:00+00:00", "mlflow_run_id": None, "parameter_hash": installed}]}))
    mixture = policies / "zone_mixture_policy.yaml"
    original = mixture.read_text()
    theta = next(line for line in original.splitlines() if line.startswith("theta_mix:"))
    mixture.write_text(original.replace(theta, "theta_mix: 0.2"))   # a hand edit the lineage never installed
    edited = PolicySet.from_dir(policies).parameter_hash
    assert edited != installed

    proc = run_here(project, "tuning.sweep", "--phase", "P1.2", "--trials", "1", "--no-progress")
    line = _one_line(proc, f"E3A_TUN_028_AUTHORITY_DISAGREES: policies/ holds policies {edited[:12]}")
    assert f"installed {installed[:12]}" in line and "refusing to run a P1.2 sweep on it" in line
    _nothing_written(project)

    mixture.write_text(original)   # restored: what the lineage installed is swept as before
    from tuning.sweep.config import SweepConfig
    from tuning.sweep.coordinator import Sweep

    monkeypatch.chdir(project)
    assert Sweep(SweepConfig(phase="P1.2", trials=1, progress=False)).base.parameter_hash == installed
