"""Read-only mounts (issue 10): a run root, an MLflow store and the authority folder on a real read-only
bind mount each give one coded line and exit 2, write nothing and leave nothing half-done.

Root ignores permission bits, so these tests use a real ``mount --bind`` remounted ``ro`` (the kernel
refuses every write, root included); they skip only where mounting is not allowed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine.core.errors import EngineError
from engine.policies import PolicySet
from tests.tuning.conftest import env_for, make_project, run_module

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def read_only(tmp_path):
    """``make(src) -> mountpoint``: ``src`` bind-mounted read-only; unmounted at the end."""
    mounted: list[Path] = []

    def make(src: Path) -> Path:
        dst = src.parent / (src.name + ".ro")
        dst.mkdir()
        first = subprocess.run(["mount", "--bind", str(src), str(dst)], capture_output=True)
        if first.returncode != 0:
            pytest.skip(f"cannot bind-mount here: {first.stderr.decode().strip()}")
        mounted.append(dst)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(dst)], check=True, capture_output=True)
        probe = subprocess.run(["touch", str(dst / ".probe")], capture_output=True)
        assert probe.returncode != 0, "the mount is not read-only"
        return dst

    yield make
    for dst in reversed(mounted):   # a file this process still holds open (an in-process store) keeps it busy:
        if subprocess.run(["umount", str(dst)], capture_output=True).returncode != 0:   # detached lazily, never left
            subprocess.run(["umount", "-l", str(dst)], check=True, capture_output=True)


def _one_coded_line(proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err[-500:])
    assert err.startswith("E3A_") and len(err.splitlines()) == 1 and "Traceback" not in err, err[-500:]
    return err


def test_run_root_on_a_read_only_mount(tmp_path, read_only):
    src = tmp_path / "runs"
    src.mkdir()
    root = read_only(src)
    _one_coded_line(run_module(tmp_path, "engine", "run", "--seed", "42", "--run-root", str(root)))
    assert list(src.iterdir()) == []


def test_mlflow_store_on_a_read_only_mount(tmp_path, read_only):
    project = make_project(tmp_path / "proj")
    store = tmp_path / "store"
    store.mkdir()
    ro = read_only(store)
    env_uri = f"sqlite:///{ro / 'mlflow.db'}"
    proc = subprocess.run(
        [sys.executable, "-m", "tuning.sweep", "--phase", "P1.2", "--trials", "1", "--no-progress"], cwd=project,
        env=env_for(project) | {"MLFLOW_TRACKING_URI": env_uri}, capture_output=True, text=True, timeout=240)
    _one_coded_line(proc)
    assert list(store.iterdir()) == []


def test_a_store_on_a_read_only_mount_is_read_by_the_commands_that_only_read(tmp_path, read_only, monkeypatch,
                                                                               capsys):
    """A released store mounted read-only: ``rank`` ranks it and ``verify_authority`` checks against it (neither takes
    the store's lock or migrates it); ``rank --open``, which saves the experiment's view, is refused as not writable
    (not as a store that "cannot be created"). In process: their programs' runs are tests/robustness/test_cli_programs."""
    from mlflow import MlflowClient
    from tests.tuning.conftest import seed_store
    from tuning.common.errors import invoke
    from tuning.rank import main as rank
    from tuning.verify_authority import main as verify

    project = make_project(tmp_path / "proj")
    store = seed_store(project)
    MlflowClient(f"sqlite:///{store}").create_experiment("3A-P1.2")
    before = store.read_bytes()
    ro = read_only(store.parent)
    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ro / 'mlflow.db'}")
    capsys.readouterr()
    assert invoke(rank, ["--phase", "P1.2"]) == 0
    out = capsys.readouterr()
    # the experiment holds no trial yet: said, and nothing else (no store error)
    said = out.err.strip().splitlines()
    assert out.out.startswith("rank ") and len(said) == 1, out.err
    assert said[0].startswith("note: no trial in the MLflow experiment 3A-P1.2:"), out.err
    assert invoke(verify, []) == 0 and "DIFFER" not in capsys.readouterr().out
    assert invoke(rank, ["--phase", "P1.2", "--open"]) == 2
    assert capsys.readouterr().err.strip().endswith("mlflow.db: not writable (Read-only file system)")
    assert store.read_bytes() == before and sorted(p.name for p in store.parent.iterdir()) == ["mlflow.db"]


def test_a_p3_sweep_whose_precheck_closes_on_a_read_only_authority_records_no_decision(tmp_path, read_only,
                                                                                        monkeypatch, capsys):
    """The P3 precheck finds nothing to do and closes the phase with a ladder step; on a read-only authority that
    step cannot be written: one coded line, exit 2, and the sweep's MLflow run is FAILED without a decision tag
    (it was FINISHED with decision=P3_NOOP_LOCK while the ladder had no such step)."""
    from mlflow import MlflowClient

    project = make_project(tmp_path / "proj")
    shutil.copy(REPO / "studies" / "P3.yaml", project / "studies" / "P3.yaml")
    src = tmp_path / "authority"
    shutil.copytree(REPO / "policies", src, ignore=shutil.ignore_patterns(".*"))
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    ro = read_only(src)
    from tuning.common.errors import invoke
    from tuning.sweep.__main__ import main as sweep

    monkeypatch.chdir(project)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env_for(project)["MLFLOW_TRACKING_URI"])
    capsys.readouterr()   # in process (the sweep's refusals as a program: tests/robustness/test_sweep_refusals.py)
    assert invoke(sweep, ["--phase", "P3", "--policies", str(ro), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("E3A_") and len(err.splitlines()) == 1 and "cannot lock the authority" in err, err
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before
    mlc = MlflowClient(env_for(project)["MLFLOW_TRACKING_URI"])
    (run,) = mlc.search_runs([mlc.get_experiment_by_name("3A-P3").experiment_id], "tags.run_kind = 'sweep'")
    assert run.info.status == "FAILED" and "decision" not in run.data.tags, (run.info.status, run.data.tags)


def test_promote_into_a_read_only_authority_folder(tmp_path, read_only):
    from tuning.authority.txn import authority_lock
    from tuning.authority.promotion import install, read_lineage

    src = tmp_path / "policies"
    shutil.copytree(REPO / "policies", src, ignore=shutil.ignore_patterns("lineage.yaml", "ladder.yaml", ".*"))
    base = PolicySet.from_dir(src)
    (src / "lineage.yaml").write_text(yaml.safe_dump({"promotions": [{"parameter_hash": base.parameter_hash}]}))
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    ro = read_only(src)
    cand = PolicySet({p: b + b"# candidate\n" for p, b in base.raw.items()})
    with pytest.raises(EngineError) as err:
        with authority_lock(ro):
            install(cand, ro, read_lineage(ro), {"parameter_hash": cand.parameter_hash})
    assert err.value.code.startswith("E3A_")
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before   # nothing written, nothing half-done



def test_a_materialising_sweep_on_a_read_only_run_root_stops_with_that_cause(tmp_path, read_only):
    """Every trial's chain fails to publish: the sweep stops after its first failed trials with the publish error
    as its one line (before, it never stopped), and no trial is left RUNNING."""
    import optuna

    project = make_project(tmp_path / "proj")
    src = tmp_path / "runs"
    src.mkdir()
    ro = read_only(src)
    proc = subprocess.run(
        [sys.executable, "-m", "tuning.sweep", "--phase", "P1.2", "--trials", "40", "--no-progress", "--materialise",
         "--runs-root", str(ro)], cwd=project, env=env_for(project), capture_output=True, text=True, timeout=120)
    line = _one_coded_line(proc)
    assert line.startswith("E3A_IO_001_PUBLISH_FAILED:") and "the first 3 trials all failed" in line
    journal = project / ".optuna" / "t-P1.2.journal"
    study = optuna.load_study(study_name="t-P1.2", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))))
    assert 3 <= len(study.trials) <= 6 and all(t.state.is_finished() for t in study.trials)
    assert list(src.iterdir()) == []
