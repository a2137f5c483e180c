"""``engine verify`` refuses every tampering S6-S7 §8/§9/§11 names: stray files, a second
manifest_fingerprint= folder, and edits of index.json identity fields the flag does not cover."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli.main import main
from engine.publish.serialize import json_bytes

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("verify")
    assert main(["run", "--seed", "42", "--run-root", str(root), "--policies", str(REPO / "policies")]) == 0
    (run,) = [p for p in root.iterdir() if not p.name.startswith(".")]
    return run


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    return copy


def _index(run: Path) -> Path:
    (path,) = run.glob("data/validation/manifest_fingerprint=*/index.json")
    return path


def _verify(run: Path, capsys) -> tuple[int, str]:
    code = main(["verify", str(run)])
    return code, capsys.readouterr().err


def test_untouched_run_verifies(run_dir, capsys):
    assert _verify(run_dir, capsys)[0] == 0


def test_a_stray_part_file_in_a_dataset_fails(run_dir, tmp_path, capsys):
    run = _copy(run_dir, tmp_path)
    part = next(run.glob("data/s3_zone_shares/**/part-00000.parquet"))
    shutil.copy(part, part.with_name("part-00001.parquet"))
    code, err = _verify(run, capsys)
    assert code == 2 and err.startswith("E3A_VER_001") and "part-00001.parquet" in err


def test_a_second_manifest_fingerprint_folder_fails(run_dir, tmp_path, capsys):
    run = _copy(run_dir, tmp_path)
    folder = next(run.glob("data/zone_alloc/seed=42/manifest_fingerprint=*"))
    shutil.copytree(folder, folder.with_name("manifest_fingerprint=" + "0" * 64))
    code, err = _verify(run, capsys)
    assert code == 2 and err.startswith("E3A_VER_001")


def test_a_second_validation_folder_fails(run_dir, tmp_path, capsys):
    run = _copy(run_dir, tmp_path)
    folder = _index(run).parent
    shutil.copytree(folder, folder.with_name("manifest_fingerprint=" + "1" * 64))
    code, err = _verify(run, capsys)
    assert code == 2 and err.startswith("E3A_VER_")


@pytest.mark.parametrize("edit", ["parameter_hash", "manifest_fingerprint", "size_bytes", "role", "schema_ref",
                                  "path", "drop_member", "extra_key"])
def test_editing_an_index_identity_field_fails(run_dir, tmp_path, capsys, edit):
    run = _copy(run_dir, tmp_path)
    path = _index(run)
    index = json.loads(path.read_bytes())
    member = index["members"][3]
    if edit in ("parameter_hash", "manifest_fingerprint"):
        index[edit] = "f" * 64
    elif edit == "size_bytes":
        member["size_bytes"] += 1
    elif edit == "role":
        member["role"] = "egress"
    elif edit == "schema_ref":
        member["schema_ref"] = "elsewhere#X"
    elif edit == "path":
        member["path"] = member["path"].replace("data/", "data//")
    elif edit == "drop_member":
        index["members"] = index["members"][:-1]
    else:
        index["extra"] = 1
    path.write_bytes(json_bytes(index))   # canonical again: only the field check can catch it
    code, err = _verify(run, capsys)
    assert code == 2 and err.startswith("E3A_VER_"), err


# ------------------------------------------------------------------ only regular files of the run are opened
def _program(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


def test_an_untouched_run_verifies_as_a_program(run_dir):
    proc = _program("verify", str(run_dir))
    assert proc.returncode == 0 and proc.stdout.startswith("PASS "), proc.stderr


def test_a_member_replaced_by_a_named_pipe_is_refused_as_a_program(run_dir, tmp_path):
    run = _copy(run_dir, tmp_path)
    member = next(run.glob("data/s3_zone_shares/**/part-00000.parquet"))
    member.unlink()
    os.mkfifo(member)   # nobody ever writes it: opening it for reading would block forever
    pipe_index = _copy(run_dir, tmp_path / "index-pipe")
    index = _index(pipe_index)
    index.unlink()
    os.mkfifo(index)
    for folder in (run, pipe_index):
        proc = _program("verify", str(folder))
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("E3A_VER_001"), proc.stderr
        assert "not a regular file" in lines[0]


@pytest.mark.parametrize("where", ["/dev/zero", "../../../../../../../../dev/zero", "link"])
def test_a_member_path_out_of_the_run_is_refused_before_it_is_opened(run_dir, tmp_path, capsys, where):
    run = _copy(run_dir, tmp_path)
    path = _index(run)
    index = json.loads(path.read_bytes())
    member = index["members"][2]
    if where == "link":   # the member itself becomes a symbolic link to a file outside the run
        outside = tmp_path / "outside.bin"
        target = run / member["path"]
        outside.write_bytes(target.read_bytes())
        target.unlink()
        target.symlink_to(outside)
    else:
        member["path"] = where
        path.write_bytes(json_bytes(index))
    code, err = _verify(run, capsys)
    assert code == 2 and err.startswith("E3A_VER_001"), err
    assert ("symbolic link" in err) if where == "link" else ("not a path inside the run" in err)
