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


def test_the_deferred_methods_are_public_storage_methods():
    """The group commit is decided by which public ``BaseStorage`` method writes, never by op code: each
    deferred method is one of BaseStorage's documented abstract methods, and none opens or ends anything."""
    from optuna.storages import BaseStorage

    from tuning.storage import journal

    assert set(journal.DEFERRED_METHODS) <= BaseStorage.__abstractmethods__
    assert not {"create_new_study", "delete_study", "create_new_trial", "set_trial_state_values"} \
        & set(journal.DEFERRED_METHODS)
    source = Path(journal.__file__).read_text()
    assert "op_code" not in source.split('"""', 2)[2] and "JournalOperation" not in source.split('"""', 2)[2]


_OPTUNA_SHORT_WRITE = """
import os, resource, signal, sys
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
path = sys.argv[1]
backend = JournalFileBackend(path, lock_obj=JournalFileOpenLock(path))
backend.append_logs([{"k": "v"}])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize(path) + 40, resource.RLIM_INFINITY))
try:
    backend.append_logs([{"k": "x" * 500}])
except OSError:
    sys.exit(3)
"""


def test_gap_optunas_own_backend_leaves_a_torn_tail_on_a_failed_write(tmp_path):
    """Pins what SafeJournalFileBackend adds: Optuna's public JournalFileBackend, on a short write, leaves a
    partial last line (which breaks every later read). If this fails, Optuna rolls back itself and the
    rollback in tuning.storage.journal can go."""
    path = tmp_path / "o.journal"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _OPTUNA_SHORT_WRITE, str(path)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    data = path.read_bytes()
    assert data.startswith(b'{"k":"v"}\n') and not data.endswith(b"\n")   # the torn tail Optuna leaves


def test_gap_optunas_own_backend_fsyncs_every_append(tmp_path, monkeypatch):
    """Pins the other thing the subclasses add: Optuna's public JournalFileBackend fsyncs every append (no
    group commit). If this fails, Optuna groups commits itself and GroupCommitJournalStorage can go."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = str(tmp_path / "o.journal")
    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(path, JournalFileOpenLock(path))))
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    t = study.ask()
    t.suggest_float("x", 0, 1)
    t.set_user_attr("a", 1)
    study.tell(t, 0.5)
    assert len(synced) == len(Path(path).read_bytes().splitlines()) - 1   # every line but the study's creation


def test_group_commit_fsyncs_only_what_opens_or_ends_a_trial(tmp_path, monkeypatch):
    """A trial's params, reports and attributes are written (readable by another process at once) without
    an fsync each; its creation and its end are fsynced, and so is a write from any other method."""
    from optuna.storages.journal._storage import JournalOperation as Op  # the test may read the private enum

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
    assert ops.count(Op.SET_TRIAL_INTERMEDIATE_VALUE) == 4 and ops.count(Op.SET_TRIAL_USER_ATTR) == 2 \
        and ops.count(Op.SET_TRIAL_PARAM) == 1                                 # all written
    assert len(synced) - before == 2                                         # create + tell
    other = optuna.load_study(study_name="j", storage=open_storage(f"journal:{path}", "j"))
    assert other.trials[-1].intermediate_values == {s: x for s in range(4)}
    storage = open_storage(f"journal:{path}", "j")
    assert storage.journal_backend.needs_fsync()
    with storage.journal_backend.deferred():
        assert not storage.journal_backend.needs_fsync()
        with storage.journal_backend.deferred():
            pass
        assert not storage.journal_backend.needs_fsync()                     # re-entrant
    assert storage.journal_backend.needs_fsync()
