"""Study files: the shipped ones load; a bad one is a coded error naming the field."""

from __future__ import annotations

import pytest
import yaml

from engine.core.errors import EngineError
from tests.tuning.conftest import REPO, SMALL_STUDY, run_module
from tuning.study.spec import load_study, parse_study


@pytest.mark.parametrize("phase", ["P1.2", "P1.3", "P2", "P3", "P4"])
def test_shipped_studies_load(phase):
    spec = load_study(phase, REPO / "studies")
    assert spec.phase == phase and spec.knobs and spec.terms
    assert sum(t["weight"] for t in spec.terms) == pytest.approx(1.0)
    assert {"s6_pass", "s7_pass", "conservation", "schema", "realism_floors"} <= set(spec.structural)


def _bad(edit) -> EngineError:
    doc = yaml.safe_load(SMALL_STUDY)
    edit(doc)
    with pytest.raises(EngineError) as err:
        parse_study(doc, "studies/bad.yaml")
    assert err.value.code == "E3A_TUN_010_STUDY_INVALID"
    return err.value


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["knobs"][0].update(high=1.5), "knobs[0].high"),
    (lambda d: d["knobs"][1].update(name="hubcap"), "knobs[1].name"),
    (lambda d: d["knobs"][0].update(low=0.9, high=0.1), "knobs[0].high"),
    (lambda d: d.pop("objective"), "(top level)"),
    (lambda d: d["objective"]["terms"][0].update(direction="sideways"), "objective.terms[0].direction"),
    (lambda d: d["vetoes"]["structural"].append("vibes"), "vetoes.structural[6]"),
    (lambda d: d.update(trials=0), "trials"),
    (lambda d: d.update(phase="P9"), "phase"),      # not a phase of the plan: its trials would join another study
    (lambda d: d.update(phase="P5"), "phase"),      # certification is not swept
    (lambda d: d.update(pruner={"name": "median", "max_pruned": 0}), "pruner.max_pruned"),
    (lambda d: d["knobs"].append({"name": "blend_lambda", "low": 0.1, "high": 0.2}), "knobs[3].name"),
    (lambda d: d["objective"]["terms"][0].update(within=[0.7, 0.55]), "objective.terms[0].within"),
    (lambda d: d["objective"]["terms"][0].update(weight=-1.0), "objective.terms[0].weight"),
    (lambda d: [t.update(weight=0) for t in d["objective"]["terms"]], "objective.terms"),
    (lambda d: d["objective"]["terms"][0].update(within=[0.5]), "objective.terms[0].within"),
    (lambda d: d["objective"]["terms"][0].update(within=[0.5, float("nan")]), "objective.terms[0].within[1]"),
    # an integer no float holds (YAML reads 400 nines as an exact int): float() raised OverflowError, a traceback
    (lambda d: d["objective"]["terms"][0].update(weight=10 ** 400), "objective.terms[0].weight"),
    (lambda d: d["knobs"][0].update(high=-(10 ** 400)), "knobs[0].high"),
    (lambda d: d.update(targets=[{"metric": "s4.top1_share_median", "op": "<=", "value": 10 ** 400}]),
     "targets[0].value"),
    # a step that cuts the range into more points than Optuna's decimal grid can hold: every trial failed
    (lambda d: d["knobs"][0].update(step=5e-324), "knobs[0].step"),
])
def test_bad_study_names_the_field(edit, field):
    err = _bad(edit)
    assert f"studies/bad.yaml: {field}:" in err.cause


def test_bad_study_file_cli_is_one_coded_line(tmp_path):
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "P1.2.yaml").write_text(SMALL_STUDY.replace("high: 0.008", "high: 9"))
    out = run_module(tmp_path, "tuning.sweep", "--phase", "P1.2", "--trials", "1")
    assert out.returncode == 2
    assert out.stderr.strip().startswith("E3A_TUN_010_STUDY_INVALID: studies/P1.2.yaml: knobs[0].high:")
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    missing = run_module(tmp_path, "tuning.sweep", "--phase", "P9")
    assert missing.returncode == 2 and missing.stderr.strip() == \
        "E3A_TUN_011_STUDY_NOT_FOUND: studies/P9.yaml: study file not found (phases in studies: P1.2)"


def test_a_phase_asked_where_no_study_file_is_says_where_it_looked_and_how_to_point_elsewhere(tmp_path):
    """Run from another folder than the project's, a sweep said only "studies/P1.2.yaml: study file not found"."""
    from tuning.study.spec import load_study

    with pytest.raises(EngineError) as err:
        load_study("P1.2", tmp_path / "studies")
    assert err.value.code == "E3A_TUN_011_STUDY_NOT_FOUND" and err.value.cause == (
        f"{tmp_path / 'studies' / 'P1.2.yaml'}: study file not found (no study files in {tmp_path / 'studies'}: run "
        f"from the project root, or pass --studies-dir DIR)")


def test_stale_journal_lock_left_by_a_killed_process_is_released(tmp_path, monkeypatch):
    """A SIGKILL while holding the journal lock leaves its lock file behind; the next process must not hang."""
    import os
    import time as _time

    import optuna

    from tuning.storage import stores as study_store
    from tuning.storage.stores import open_storage

    monkeypatch.setattr(study_store, "LOCK_GRACE_SECONDS", 3)   # the same release, sooner (3: Optuna's own minimum)
    LOCK_GRACE_SECONDS = study_store.LOCK_GRACE_SECONDS
    monkeypatch.chdir(tmp_path)
    journal = tmp_path / ".optuna" / "s.journal"
    storage = open_storage(None, "s")
    optuna.create_study(study_name="s", storage=storage)
    lock = journal.with_name(journal.name + ".lock")
    lock.write_text("")  # what a process killed inside the critical section leaves
    old = _time.time() - 10 * LOCK_GRACE_SECONDS
    os.utime(lock, (old, old))
    optuna.load_study(study_name="s", storage=open_storage(None, "s")).enqueue_trial({"x": 1})  # must not hang
    assert not lock.exists()
    assert len(optuna.load_study(study_name="s", storage=open_storage(None, "s")).trials) == 1


def test_tracking_store_failure_is_one_coded_line(capsys):
    import pytest
    from mlflow.exceptions import MlflowException

    from tuning.common.errors import run_cli

    def broken(argv):
        raise MlflowException("API request to http://127.0.0.1:9 failed\nwith a long trace")

    with pytest.raises(SystemExit) as ex:
        run_cli(broken, [])
    err = capsys.readouterr().err
    assert ex.value.code == 2 and err.startswith("E3A_TUN_042_TRACKING_STORE") and len(err.strip().splitlines()) == 1
    assert "tracking store failed" in err

    def refused(argv):   # the server answered and turned the request down: said as such, not as a failed store
        from mlflow.exceptions import RestException

        raise RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "Invalid model version source: 'x'."
                             "\nmore"})

    with pytest.raises(SystemExit) as ex:
        run_cli(refused, [])
    err = capsys.readouterr().err
    assert ex.value.code == 2 and err.strip() == ("E3A_TUN_042_TRACKING_STORE: the MLflow tracking store refused a "
                                                  "request (INVALID_PARAMETER_VALUE): Invalid model version source: 'x'.")


def test_a_sweep_whose_trail_cannot_open_its_store_is_one_coded_line(tmp_path):
    """``mlruns`` is a file: the trail process's OS error (a TrailError traceback before) is the store's code."""
    from tests.tuning.conftest import make_project

    import subprocess
    import sys

    from tests.tuning.conftest import env_for

    root = make_project(tmp_path / "proj")
    (root / "mlruns").write_text("not a folder\n")
    env = {k: v for k, v in env_for(root).items() if k != "MLFLOW_TRACKING_URI"}   # the default store, ./mlruns
    out = subprocess.run([sys.executable, "-m", "tuning.sweep", "--phase", "P1.2", "--trials", "1", "--no-progress"],
                         cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    assert out.stderr.strip().splitlines() == [f"E3A_TUN_042_TRACKING_STORE: MLflow tracking store failed: "
                                               f"FileExistsError: [Errno 17] File exists: '{root / 'mlruns'}'"]


@pytest.mark.parametrize("cand, base, expected", [
    (0.40, 0.30, 0.10),     # both below the corridor: up is toward it
    (0.30, 0.40, -0.10),
    (0.94, 0.77, -0.17),    # both above: up is away from it (a world escalating too much already)
    (0.72, 0.77, 0.05),
    (0.60, 0.50, 0.05),     # into the corridor from below: the distance closed, no more
    (0.60, 0.80, 0.10),     # into it from above
    (0.80, 0.50, -0.05),    # across it: 0.05 below -> 0.10 above
    (0.60, 0.65, 0.0),      # inside: no reward for moving within it
])
def test_a_corridor_term_scores_the_distance_closed(cand, base, expected):
    from tuning.study.objective import toward_corridor

    assert toward_corridor(cand, base, 0.55, 0.70) == pytest.approx(expected, abs=1e-12)


def test_the_p4_rate_term_pulls_a_world_above_the_corridor_back():
    """J4's escalation-rate term rewards moving toward [0.55, 0.70]: below it (the default world, about 0.37 at
    most) it is ``up`` exactly as before; above it a higher rate scores lower."""
    from tuning.study.objective import phase_j

    spec = load_study("P4", REPO / "studies")
    (term,) = [t for t in spec.terms if t["metric"] == "s1.escalation_rate"]

    def j(rate_cand, rate_base):
        def pack(rate):
            return {"s1": {"escalation_rate": rate, "zone_count_curve_major_dip_max_abs": 0.2,
                           "zone_count_curve_monotonic_violations": 1}}
        return phase_j(spec, pack(rate_cand), pack(rate_base))[1][term["name"]]

    assert j(0.37, 0.30) == 0.37 - 0.30                 # bit for bit the former ``up`` delta
    assert j(0.94, 0.77) < 0 < j(0.72, 0.77)


def test_a_storage_that_fails_mid_run_is_one_coded_line(capsys):
    """The database server stopped under a sweep: Optuna's StorageInternalError over SQLAlchemy's
    OperationalError was a chain of tracebacks, exit 1; it is the storage's code with the database's cause."""
    import optuna
    import sqlalchemy.exc

    from tuning.common.errors import run_cli

    def sweep(argv):
        try:
            raise sqlalchemy.exc.OperationalError("COMMIT", {}, ConnectionError("server closed the connection"))
        except sqlalchemy.exc.OperationalError as exc:
            raise optuna.exceptions.StorageInternalError("An exception is raised during the commit.") from exc

    with pytest.raises(SystemExit) as ex:
        run_cli(sweep, [])
    err = capsys.readouterr().err.strip().splitlines()
    assert ex.value.code == 2 and len(err) == 1 and err[0].startswith("E3A_TUN_040_STORAGE: the study's storage")
    assert "OperationalError" in err[0] and "server closed the connection" in err[0]


def test_two_objective_terms_of_one_name_are_refused():
    """J sums the terms' deltas by name: a second term of one name replaced the first, and J was silently another
    (an alias repeating a term too)."""
    import pytest
    import yaml

    from engine import EngineError
    from tuning.study.spec import parse_study

    doc = yaml.safe_load((REPO / "studies" / "P1.2.yaml").read_text())
    first = dict(doc["objective"]["terms"][0])
    doc["objective"]["terms"].append({**first, "weight": 0.5})
    with pytest.raises(EngineError) as err:
        parse_study(doc, "x.yaml")
    n = len(doc["objective"]["terms"]) - 1
    assert err.value.code == "E3A_TUN_010_STUDY_INVALID" and f"objective.terms[{n}].name" in err.value.cause
    assert f"term {first['name']!r} listed twice" in err.value.cause
