"""Publishing one run from several publishers at once: the ones whose final rename finds the folder already in
place compare it with what they staged, as a sequential re-publish does - the same bytes are a no-op (their
staging folder removed), other bytes the coded immutability refusal. An empty --run-root is a usage error."""

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.core.errors import EngineError
from engine.publish import store
from tests.engine.conftest import ROOT

PUBLISHERS = 3


def _files(run_dir):
    """Every file of a run folder outside reports/ (its timings), by relative path."""
    return {p.relative_to(run_dir).as_posix(): p.read_bytes() for p in run_dir.rglob("*")
            if p.is_file() and p.relative_to(run_dir).parts[0] != "reports"}


def _renames_together(monkeypatch):
    """From now on every staged run folder is renamed only once all PUBLISHERS have staged theirs (each has passed the
    'already published?' check): the race of concurrent publishes, every time."""
    barrier, rename = threading.Barrier(PUBLISHERS, timeout=60), os.rename

    def held(src, dst, *args, **kwargs):
        if os.path.basename(str(src)).startswith(".tmp-"):
            barrier.wait()
        return rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", held)


def test_concurrent_publishes_of_one_run_all_succeed_byte_identical(baseline, tmp_path, monkeypatch):
    single = store.materialise(baseline, tmp_path / "single")
    _renames_together(monkeypatch)
    root = tmp_path / "shared"
    with ThreadPoolExecutor(PUBLISHERS) as pool:
        finals = list(pool.map(lambda _: store.materialise(baseline, root), range(PUBLISHERS)))
    assert finals == [root / baseline.identity["run_id"]] * PUBLISHERS
    assert [p.name for p in root.iterdir()] == [single.name]   # no staging folder left behind
    assert _files(finals[0]) == _files(single)
    assert store.verify(finals[0])["status"] == "PASS"


def test_a_concurrent_publish_that_differs_is_refused(baseline, tmp_path, monkeypatch):
    """A publisher losing the race to a folder with other bytes gets the sequential re-publish's refusal."""
    root, real = tmp_path / "shared", store._expected_files
    calls = threading.local()

    def edited(result):   # one publisher's idea of the run differs in one member
        files = dict(real(result))
        if getattr(calls, "edit", False):
            key = sorted(k for k in files if k.endswith("s6_receipt.json"))[0]
            files[key] = files[key] + b" "
        return files

    monkeypatch.setattr(store, "_expected_files", edited)
    _renames_together(monkeypatch)

    def publish(i):
        calls.edit = i > 0
        try:
            return store.materialise(baseline, root)
        except EngineError as exc:
            return exc.code

    with ThreadPoolExecutor(PUBLISHERS) as pool:
        outcomes = list(pool.map(publish, range(PUBLISHERS)))
    # every publisher stages the run's own bytes (members are written, not _expected_files) and one rename wins:
    # publisher 0 expects those bytes (a no-op whether it wins or not); a loser expecting other bytes is refused
    assert outcomes[0] == root / baseline.identity["run_id"]
    refused = [o for o in outcomes[1:] if o == "E3A_IO_002_IMMUTABILITY_VIOLATION"]
    assert len(refused) >= PUBLISHERS - 2 and len(refused) + outcomes[1:].count(outcomes[0]) == PUBLISHERS - 1, outcomes
    assert [p.name for p in root.iterdir()] == [baseline.identity["run_id"]]


def test_three_concurrent_engine_runs_all_succeed_as_a_program(tmp_path):
    """The same as three programs (whether they race depends on timing; each must succeed either way)."""
    root = tmp_path / "R"
    cmd = [sys.executable, "-m", "engine", "run", "--seed", "42", "--run-root", str(root)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(PUBLISHERS)]
    results = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0] * PUBLISHERS, [err for _, err in results]
    (only,) = list(root.iterdir())
    single = tmp_path / "single"
    rc = subprocess.run([*cmd[:-1], str(single)], cwd=ROOT, capture_output=True, timeout=240).returncode
    assert rc == 0 and _files(only) == _files(single / only.name)


@pytest.mark.parametrize("value", ["", " "])
def test_an_empty_run_root_is_a_usage_error_as_a_program(tmp_path, value):
    proc = subprocess.run([sys.executable, "-m", "engine", "run", "--seed", "42", "--run-root", value,
                           "--policies", str(ROOT / "policies")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("E3A_CLI_001_USAGE: argument --run-root:"), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert list(tmp_path.iterdir()) == []   # nothing published into the current directory
