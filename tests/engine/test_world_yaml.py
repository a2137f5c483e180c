"""An authority folder's ``world.yaml`` given to ``python -m engine run --policies`` without a world: a malformed
one is one coded line naming the file and its field (it was a TypeError traceback for a ``dir`` that is not text,
and "belongs to world ?" for one without a name); a well-formed one names its world. One case as a program."""

from __future__ import annotations

import shutil

import pytest

from tests.engine.conftest import ROOT, engine_here

FINGERPRINT = "ab" * 32


def _run(tmp_path, record: str, program: bool = False):
    folder = tmp_path / "auth"
    shutil.copytree(ROOT / "policies", folder, ignore=shutil.ignore_patterns(".*"))
    (folder / "world.yaml").write_text(record)
    return engine_here(tmp_path, "run", "--seed", "42", "--run-root", str(tmp_path / "R"), "--policies", str(folder),
                       program=program)


@pytest.mark.parametrize("record, what", [
    ("dir: 5\n", "'fingerprint' must be the world's 64-hex fingerprint"),
    ("dir: [a]\n", "'fingerprint' must be the world's 64-hex fingerprint"),
    ("fingerprint: abc\n", "'fingerprint' must be the world's 64-hex fingerprint, not 'abc'"),
    ("", "expected a mapping"),
    ("[1]\n", "expected a mapping"),
    (f"fingerprint: {FINGERPRINT}\n", "'name' must be text"),
    (f"fingerprint: {FINGERPRINT}\nname: w\ndir: 5\n", "'dir' must be text (the world's directory), not 5"),
    (f"fingerprint: {FINGERPRINT}\nname: w\ndir: [a]\n", "'dir' must be text (the world's directory), not ['a']")])
def test_a_malformed_world_yaml_is_one_coded_line(tmp_path, record, what):
    proc = _run(tmp_path, record, program=record == "dir: 5\n")
    err = proc.stderr.strip()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(err.splitlines()) == 1 and err.startswith(f"E3A_CLI_001_USAGE: {tmp_path / 'auth' / 'world.yaml'}: ")
    assert what in err, err
    assert not (tmp_path / "R").exists()


def test_a_well_formed_world_yaml_names_its_world(tmp_path):
    proc = _run(tmp_path, f"fingerprint: {FINGERPRINT}\nname: my_world\ndir: ../w\n")
    err = proc.stderr.strip()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert err.startswith("E3A_CLI_001_USAGE: --policies ") and "belongs to world my_world (world.yaml)" in err, err
    assert f"pass --world {tmp_path / 'w'}" in err, err
