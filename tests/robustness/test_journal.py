"""The sweep journal: a torn tail is truncated on resume; a write that fails for lack of space
leaves the journal intact (a real short write, forced with a file-size limit)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tuning.storage.stores import open_storage

REPO = Path(__file__).resolve().parents[2]


def _study(path: Path) -> optuna.Study:
    return optuna.create_study(study_name="j", storage=open_storage(f"journal:{path}", "j"),
                               direction="maximize", load_if_exists=True)


def _fill(path: Path, n: int) -> None:
    study = _study(path)
    for i in range(n):
        t = study.ask()
        study.tell(t, t.suggest_float("x", 0, 1))


@pytest.mark.parametrize("tail", [b'{"op_code": 5, "worker_id": "ab', b"\n{not json", b'{"op_code"'])
def test_a_torn_tail_is_truncated_and_the_study_resumes(tmp_path, tail):
    path = tmp_path / "j.journal"
    _fill(path, 3)
    good = path.read_bytes()
    with open(path, "ab") as fh:
        fh.write(tail)
    study = _study(path)                       # resume: used to fail once anything was appended
    data = path.read_bytes()
    assert data.startswith(good) and data.endswith(b"\n")
    assert all(json.loads(line) for line in data.splitlines())   # the torn record is gone
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    t = study.ask()
    study.tell(t, t.suggest_float("x", 0, 1))
    assert len(_study(path).get_trials(states=(TrialState.COMPLETE,))) == 4


_SHORT_WRITE = """
import resource, signal, sys
import optuna
from tuning.storage.stores import open_storage
from engine.core.errors import EngineError
path = sys.argv[1]
study = optuna.create_study(study_name="j", storage=open_storage("journal:" + path, "j"),
                            direction="maximize", load_if_exists=True)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
import os
before = os.path.getsize(path)
limit = before + 40                          # room for part of the next record only: a short write
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
try:
    t = study.ask()
    study.set_user_attr("big", "x" * 500)
except EngineError as exc:
    print(exc.code, before)
    sys.exit(3)
"""


def test_a_write_that_runs_out_of_space_leaves_the_journal_intact(tmp_path):
    path = tmp_path / "j.journal"
    _fill(path, 2)
    good = path.read_bytes()
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _SHORT_WRITE, str(path)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    code, before = proc.stdout.split()
    assert code == "E3A_TUN_040_STORAGE"
    data = path.read_bytes()
    assert data.startswith(good) and len(data) == int(before)   # the half-written record was rolled back
    assert "Traceback" not in proc.stderr
    study = _study(path)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2
    t = study.ask()
    study.tell(t, 0.5)
    assert len(_study(path).get_trials(states=(TrialState.COMPLETE,))) == 3


def test_group_commit_op_codes_are_optunas_own():
    """The deferred/durable split names Optuna's journal op codes; pinned against optuna's enum."""
    from optuna.storages.journal._storage import JournalOperation  # the test may read the private enum

    from tuning.storage.journal import DEFERRED_OPS, DURABLE_OPS

    ours = {**DURABLE_OPS, **DEFERRED_OPS}
    assert ours == {op.name: int(op) for op in JournalOperation}
    assert not set(DURABLE_OPS) & set(DEFERRED_OPS)


def test_group_commit_fsyncs_only_what_opens_or_ends_a_trial(tmp_path, monkeypatch):
    """A trial's params, reports and attributes are written (readable by another process at once) without
    an fsync each; its creation and its end are fsynced, and an unknown op code is fsynced too."""
    from tuning.storage import journal as journal_safe

    path = tmp_path / "g.journal"
    study = _study(path)
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(journal_safe.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    before = len(synced)
    t = study.ask()
    x = t.suggest_float("x", 0, 1)
    for step in range(4):
        t.report(x, step)
    t.set_user_attr("a", 1)
    t.set_user_attr("b", 2)
    study.tell(t, x)
    ops = [json.loads(line)["op_code"] for line in path.read_bytes().splitlines()]
    assert ops.count(7) == 4 and ops.count(8) == 2 and ops.count(5) == 1   # all written
    assert len(synced) - before == 2                                         # create + tell
    other = optuna.load_study(study_name="j", storage=open_storage(f"journal:{path}", "j"))
    assert other.trials[-1].intermediate_values == {s: x for s in range(4)}
    assert journal_safe.needs_fsync([{"op_code": 99}]) and journal_safe.needs_fsync([{}])
    assert not journal_safe.needs_fsync([{"op_code": 5}, {"op_code": 9}])
