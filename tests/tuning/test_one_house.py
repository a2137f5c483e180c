"""One house (issue 9): one CLI error path, one ranking, one gate table, the sweep's config and workers as
plain values, and no writes through Optuna's private attributes."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import pickle
import pkgutil
import re
import subprocess
import sys
import types
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

import tuning
from engine.core.errors import EngineError
from tests.tuning.conftest import REPO, env_for

# bench_peer is the hand-written Optuna + MLflowCallback loop tuning.bench measures the harness against: it is
# a user's script on purpose (its own argparse, its own exit), not one of our CLIs
PEER = {"bench_peer"}


def _cli_module(name: str) -> str:
    """``python -m tuning.X`` runs ``tuning/X.py`` or, for a CLI that is a package, ``tuning/X/__main__.py``."""
    return f"tuning.{name}.__main__" if (REPO / "tuning" / name / "__main__.py").exists() else f"tuning.{name}"


def _cli_source(name: str) -> Path:
    return REPO / "tuning" / (f"{name}/__main__.py" if (REPO / "tuning" / name / "__main__.py").exists() else f"{name}.py")


CLI_MODULES = sorted(m.name for m in pkgutil.iter_modules(tuning.__path__)
                     if m.name not in PEER and hasattr(importlib.import_module(_cli_module(m.name)), "main"))


# ---------------------------------------------------------------------------------------- one error path
def test_every_cli_module_is_found():
    assert {"sweep", "rank", "prune", "promote", "certify", "campaign", "dashboard", "local_services",
            "bench_distributed", "ladder"} <= set(CLI_MODULES)


@pytest.mark.parametrize("name", CLI_MODULES)
def test_bad_argument_is_one_coded_line_exit_2(name, tmp_path, monkeypatch, capsys):
    from tuning.common.errors import invoke

    monkeypatch.chdir(tmp_path)
    code = invoke(importlib.import_module(_cli_module(name)).main, ["--no-such-option-xyz"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and re.match(r"E3A_[A-Z0-9_]+: ", lines[0]), err
    assert "Traceback" not in err and "usage:" not in err
    assert not list(tmp_path.iterdir()), "a usage error writes nothing"


@pytest.mark.parametrize("name", CLI_MODULES)
def test_every_cli_runs_through_the_one_wrapper(name):
    """``python -m tuning.X`` is ``run_cli(main)`` and nothing prints a coded error by itself."""
    src = _cli_source(name).read_text()
    guard = [n for n in ast.parse(src).body if isinstance(n, ast.If) and "__main__" in ast.unparse(n.test)]
    assert len(guard) == 1 and "run_cli(main)" in ast.unparse(guard[0]), name
    assert "argparse.ArgumentParser(" not in src, f"{name}: use tuning.common.errors.TuningParser"
    assert not re.search(r"one_line\(\)[^\n]*file=sys\.stderr|sys\.exit\(2\)", src), name


def test_a_real_sweep_process_with_a_bad_value(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tuning.sweep", "--phase", "P1.2", "--workers", "0"], cwd=tmp_path,
                         env=env_for(tmp_path), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == "E3A_TUN_050_USAGE: --workers 0 outside [1, 64]"


# ---------------------------------------------------------------------------------------- the sweep's config
def test_sweep_config_is_frozen_validated_and_what_the_cli_builds():
    from tuning.sweep.__main__ import Sweep
    from tuning.sweep.config import SweepConfig, parse_args

    cfg = parse_args(["--phase", "P1.2", "--workers", "3", "--no-progress", "--timeout", "5"])
    assert cfg == SweepConfig(phase="P1.2", workers=3, progress=False, timeout=5.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.workers = 4  # type: ignore[misc]
    for bad in ({"workers": 0}, {"timeout": 0.0}, {"study": "../x"}, {"max_failures": -1}):
        with pytest.raises(EngineError) as err:
            SweepConfig(phase="P1.2", **bad)
        assert err.value.code == "E3A_TUN_050_USAGE"
    # built from a config (a caller may pass the study and world it already loaded), never from argv
    assert list(__import__("inspect").signature(Sweep).parameters) == ["config", "spec", "world"]


def test_worker_specs_are_picklable_and_carry_the_whole_study():
    """Every worker process scores the same seeds, target and study as the coordinator (the spawned
    argv once passed ``--seed <first seed>``, so a multi-seed study's workers were refused)."""
    from tuning.sweep.config import SweepConfig
    from tuning.sweep.coordinator import worker_process
    from tuning.sweep.pool import WorkerSpec, worker_specs

    sweep = types.SimpleNamespace(config=SweepConfig(phase="P1.2", workers=3, storage="sqlite:///x.db"),
                                  target=12, study_name="s-P1.2", deadline=None)
    specs = worker_specs(sweep, "parent-run")
    assert [s.index for s in specs] == [0, 1, 2] and {s.parent_run_id for s in specs} == {"parent-run"}
    for spec in specs:
        assert pickle.loads(pickle.dumps(spec)) == spec
        assert spec.config.seed is None and spec.config.trials == 12 and spec.config.study == "s-P1.2"
        assert spec.config.storage == "sqlite:///x.db" and not spec.config.progress and spec.config.timeout is None
    assert isinstance(specs[0], WorkerSpec) and worker_process.__module__ == "tuning.sweep.coordinator"
    assert "subprocess" not in (REPO / "tuning" / "sweep" / "__main__.py").read_text()


# ---------------------------------------------------------------------------------------- Optuna's public API
def test_nothing_writes_through_optuna_private_attributes():
    pattern = re.compile(r"\._storage\b|\._trial_id\b|\bstudy\._|\btrial\._|\._anchor\s*=")
    hits = [f"{p.relative_to(REPO)}:{i}" for p in sorted((REPO / "tuning").rglob("*.py")) if p.name != "objective.py"
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == []


def test_stale_trial_recovery_and_original_number_use_public_calls():
    from tuning.storage.recovery import RETRY_ATTR, WORKER_ATTR, original_number, recover_stale_trials, trial_id

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name="rec", storage=storage)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    import socket
    trial.set_user_attr(WORKER_ATTR, {"host": socket.gethostname(), "pid": dead.pid, "start_ticks": None})
    assert recover_stale_trials(study, storage, 3600.0) == [0]
    failed = study.trials[0]
    assert failed.state == TrialState.FAIL and failed.system_attrs["failed_reason"] == "worker died (recovered)"
    retry = study.ask()
    assert retry.user_attrs[RETRY_ATTR] == 0 and original_number(retry) == 0
    other = study.ask()
    storage.set_trial_system_attr(trial_id(storage, "rec", other.number), "failed_trial", 7)
    assert original_number(other) == 7  # an RDB heartbeat retry names its first attempt in a system attr


# ---------------------------------------------------------------------------------------- one ranking
def _trial(number: int, j: float, veto: str):
    t = create_trial(value=j, params={"x": 0.5}, distributions={"x": FloatDistribution(0, 1)},
                     user_attrs={"result": {"veto": veto}})
    t.number = number
    return t


TRIALS = [(0, 0.5, "FAIL"), (1, 0.2, "PASS"), (2, 0.3, "PASS"), (3, 0.3, "PASS"), (4, 0.9, "FAIL")]
EXPECTED = [2, 3, 1, 4, 0]  # feasible first, J descending, lower number on ties


def test_trials_and_runs_rank_the_same_way():
    from tuning.study.ranking import best_trial, rank_rows, rank_trials

    trials = [_trial(*t) for t in TRIALS]
    assert [t.number for t in rank_trials(trials)] == EXPECTED
    from tuning.study.trial_row import TrialRow

    rows = [TrialRow(trial=n, J=j, feasible=v == "PASS", study="s") for n, j, v in TRIALS]
    assert [r.trial for r in rank_rows(rows)] == EXPECTED
    assert best_trial(trials).number == 2 and best_trial([]) is None
    assert rank_rows([TrialRow(trial=0, J=None, feasible=True), TrialRow(trial=1, J=-5.0, feasible=True)])[0].trial == 1


def test_dashboard_best_trial_is_the_ranking_first():
    from tuning.dashboard import feasible_best_numbers

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name="d", storage=storage, direction="maximize")
    for n, j, veto in TRIALS:
        study.add_trial(_trial(n, j, veto))
    sid = storage.get_study_id_from_name("d")
    assert storage.get_best_trial(sid).number == 4  # stock: the best J, a vetoed trial
    assert feasible_best_numbers(storage, sid) == [EXPECTED[0]]
    vetoed = optuna.create_study(study_name="v", storage=storage, direction="maximize")
    vetoed.add_trial(_trial(0, 0.9, "FAIL"))
    assert feasible_best_numbers(storage, storage.get_study_id_from_name("v")) == []  # no feasible trial: none


# where an order by J or a metric's value is not a ranking of trials (a line may also say "not a ranking")
NOT_RANKING = {"study/ranking.py": "the one ranking",
               "study/seed_robust.py": "a metric's worst seed",
               "campaign/rules.py": "a knob's range over the eligible trials",
               "bench/__main__.py": "the largest gap between two J series",
               "bench_distributed/__main__.py": "timing spreads"}


def test_no_best_trial_logic_outside_ranking():
    """Every module of the harness (packages included) orders trials only through tuning.study.ranking."""
    ordering = re.compile(r"(\.sort\(|\bsorted\(|\bmax\(|\bmin\(|\bnext\().*(\bJ\b|\bveto\b|\bvalues\b(?!\()|trial_j)")
    hits = [f"{p.relative_to(REPO)}:{i}" for p in sorted((REPO / "tuning").rglob("*.py"))
            if p.relative_to(REPO / "tuning").as_posix() not in NOT_RANKING
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if ordering.search(line) and "not a ranking" not in line]
    assert hits == []


# ---------------------------------------------------------------------------------------- one gate table
GATES = {"hard": {"g1": {"metric": "s2.x", "value": 0.5, "op": "<=", "threshold": 0.6, "status": "PASS"}},
         "stretch": {"g2": {"metric": "s4.y", "value": True, "op": "==", "threshold": True, "status": "FAIL"}},
         "fidelity": {"F1": {"metric": "f.z", "value": None, "op": ">=", "threshold": 1, "status": "UNMEASURED"}}}


def test_one_gate_table_in_both_forms():
    from tuning.report.files import gate_table_md

    assert gate_table_md(GATES, detailed=True) == (
        "| family | gate | metric | value | op | threshold | status |\n|---|---|---|---|---|---|---|\n"
        "| hard | g1 | s2.x | 0.5 | <= | 0.6 | PASS |\n| stretch | g2 | s4.y | True | == | True | FAIL |\n"
        "| fidelity | F1 | f.z | None | >= | 1 | UNMEASURED |\n")
    assert gate_table_md(None, detailed=True).count("\n") == 2  # a run that never scored: the header
    assert gate_table_md(GATES) == ("| gate | value | threshold | status |\n|---|---|---|---|\n"
                                    "| g1 | 0.500000 | <= 0.6 | PASS |\n| g2 | true | == true | FAIL |\n"
                                    "| F1 | — | >= 1 | UNMEASURED |")
    defs = [str(p.relative_to(REPO / "tuning")) for p in (REPO / "tuning").rglob("*.py")
            if "def gate_table_md" in p.read_text()]
    assert defs == ["report/files.py"]


# ---------------------------------------------------------------------------------------- certify --record
def test_certify_record_puts_every_cv_on_the_ladder_step(tmp_path, monkeypatch):
    import shutil

    import tuning.authority.ladder
    from engine.metrics.crossseed import CV_METRICS
    from engine.policies import PolicySet
    from tuning.authority.certification import record_certification

    pdir = tmp_path / "policies"
    shutil.copytree(REPO / "policies", pdir, ignore=shutil.ignore_patterns("lineage.yaml", "ladder.yaml", ".*"))
    seen = {}
    monkeypatch.setattr(tuning.authority.ladder, "record_step", lambda phase, decision, **kw: seen.update(kw, phase=phase))
    summary = {"verdict": "PASS_B", "seeds": [42, 7], "mlflow_run_id": "r1", "fidelity_verdict": "FAITHFUL",
               "certified": True, "cv": {m: 0.01 * i for i, m in enumerate(CV_METRICS)}}
    record_certification(pdir, PolicySet.from_dir(pdir), summary)
    assert seen["phase"] == "P5" and seen["evidence"]["seeds"] == "42,7"
    assert seen["metrics"] == {f"cv.{m}": 0.01 * i for i, m in enumerate(CV_METRICS)}



# ---------------------------------------------------------------------------------------- rooms (issue 20)
def _tuning_sources():
    return sorted((REPO / "tuning").rglob("*.py"))


def _import_statements(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import statement of a file, function bodies included (relative ones resolved
    against the file's package)."""
    rel = path.relative_to(REPO).with_suffix("").parts
    package = list(rel[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            out.append((node.lineno, base))
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names]
    return out


def test_only_the_trail_imports_mlflow():
    hits = [f"{p.relative_to(REPO)}:{line} {name}" for p in _tuning_sources()
            if p.relative_to(REPO / "tuning").parts[0] != "trail"
            for line, name in _import_statements(p) if name.split(".")[0] == "mlflow"]
    assert hits == []
    assert any(name.startswith("mlflow") for p in (REPO / "tuning" / "trail").rglob("*.py")
               for _, name in _import_statements(p))   # the rule has something to guard


# module-level calls that change the process for everyone who imports the module
GLOBAL_STATE = re.compile(r"^(os\.environ\.(setdefault|update|pop|clear)|os\.(putenv|unsetenv|umask|chdir)|"
                          r"logging\.(basicConfig|disable|captureWarnings)|logging\.getLogger\(.*\)\.(setLevel|"
                          r"addHandler|propagate)|warnings\.(filterwarnings|simplefilter|resetwarnings)|"
                          r"optuna\.logging\.(set_verbosity|disable_default_handler)|sys\.(path|modules)|"
                          r"signal\.signal|socket\.setdefaulttimeout|np\.seterr|numpy\.seterr|pd\.set_option)")


def _module_level(tree: ast.Module):
    """Statements run at import: the module body and its if/try/for/with blocks, not functions, classes or the
    ``if __name__ == "__main__"`` guard."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            continue
        yield node
        for field in ("body", "orelse", "finalbody", "handlers"):
            todo += [n for n in getattr(node, field, []) if isinstance(n, ast.AST)]


def _global_state_hits(path: Path, root: Path = REPO) -> list[str]:
    hits = []
    for node in _module_level(ast.parse(path.read_text())):
        if isinstance(node, (ast.Expr, ast.Assign, ast.AugAssign)):
            targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
            texts = [ast.unparse(node.value)] + [ast.unparse(t) for t in targets if t is not None]
            if any(GLOBAL_STATE.match(t) for t in texts) or any(
                    isinstance(t, ast.Subscript) and ast.unparse(t.value) in ("os.environ", "sys.modules")
                    for t in targets if t is not None):
                hits.append(f"{path.relative_to(root)}:{node.lineno}")
    return sorted(hits)


def test_no_module_changes_global_state_at_import():
    """Environment variables, logging, warnings filters, sys.path/modules, umask: set by a function a CLI
    (or the first client) calls, never as a side effect of an import."""
    sources = _tuning_sources() + sorted((REPO / "engine").rglob("*.py"))
    assert [h for p in sources for h in _global_state_hits(p)] == []


def test_the_global_state_rule_sees_a_change(tmp_path):
    bad = tmp_path / "probe.py"
    bad.write_text('import os\nimport warnings\nos.environ.setdefault("X", "1")\nif True:\n'
                   '    warnings.filterwarnings("ignore")\nos.environ["Z"] = "3"\n\n\ndef f():\n    os.environ["Y"] = "2"\n')
    assert _global_state_hits(bad, tmp_path) == ["probe.py:3", "probe.py:5", "probe.py:6"]


def _cli_modules() -> set[str]:
    """The modules ``python -m`` runs: tuning/X.py beside the packages, and every package's __main__.py."""
    top = {f"tuning.{p.stem}" for p in (REPO / "tuning").glob("*.py") if p.stem != "__init__"}
    mains = {".".join(p.relative_to(REPO).with_suffix("").parts) for p in (REPO / "tuning").rglob("__main__.py")}
    return top | mains


def test_no_module_imports_a_cli_module():
    """A CLI is argparse, printing and run_cli over library functions: nothing imports it (the campaign calls
    the library, never a CLI's main or argv)."""
    clis = _cli_modules()
    hits = [f"{p.relative_to(REPO)}:{line} {name}" for p in _tuning_sources() + sorted((REPO / "engine").rglob("*.py"))
            for line, name in _import_statements(p) if name in clis]
    assert hits == []


def test_the_campaign_calls_library_functions_not_clis():
    for path in (REPO / "tuning" / "campaign").rglob("*.py"):
        src = path.read_text()
        assert "sys.executable" not in src and '"-m"' not in src, path
        assert not re.search(r"\binvoke\(|\brun_cli\(|\bmain\(\[", src.replace("run_cli(main)", "")), path


def test_at_most_twelve_modules_beside_the_harness_packages_and_eight_beside_the_engines():
    assert len(list((REPO / "tuning").glob("*.py"))) <= 12
    assert len(list((REPO / "engine").glob("*.py"))) <= 8


def test_a_journal_trial_whose_asker_died_before_naming_itself_is_retried_at_once(tmp_path):
    """A sweep killed between ``ask`` and recording its ``worker`` attr (both inside the budget lock) leaves a
    RUNNING trial with no owner: the next ask under the lock fails and retries it at once. It used to wait out a
    30 s grace, so a resumed sweep counted it as running elsewhere and stopped one trial short of its budget."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from tuning.storage.budget import Coordinator
    from tuning.storage.recovery import RETRY_ATTR, WORKER_ATTR, recover_stale_trials

    storage = JournalStorage(JournalFileBackend(str(tmp_path / "s.journal")))
    study = optuna.create_study(study_name="s", storage=storage)
    orphan = study.ask()                     # asked; its process died before naming itself
    orphan.suggest_float("x", 0.0, 1.0)
    assert recover_stale_trials(study, storage, 3600.0) == []          # outside the lock it may be mid-ask
    coordinator = Coordinator(study, storage, None, tmp_path / "lock", stale_after_s=3600)
    trial = coordinator.next_trial(target=1)  # one trial in the budget: it stopped here (counted as running)
    assert trial is not None and study.trials[orphan.number].state == TrialState.FAIL
    assert trial.user_attrs[RETRY_ATTR] == orphan.number and WORKER_ATTR in trial.user_attrs
    assert trial.params == {} and study.trials[trial.number].system_attrs.get("fixed_params") == {
        "x": orphan.params["x"]}
