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


def test_a_run_under_another_folder_name_is_refused(run_dir, tmp_path, capsys):
    """``runs/<run_id>`` is where a run is found: another run's bundle copied under that name (or any name) is not it."""
    moved = tmp_path / ("0" * 32)
    shutil.copytree(run_dir, moved)
    code, err = _verify(moved, capsys)
    assert code != 0 and "E3A_VER_001" in err and run_dir.name in err
    link = tmp_path / "latest"   # a link to the run is the run: its target's name is checked
    link.symlink_to(run_dir, target_is_directory=True)
    assert _verify(link, capsys)[0] == 0


@pytest.mark.parametrize("bytes_after", [b"", b"\n\n", b"\r\n", b" \n"])
def test_the_flag_is_checked_byte_for_byte(run_dir, tmp_path, capsys, bytes_after):
    """S7 writes ``sha256_hex = <digest>`` and one newline: no other bytes are the flag."""
    run = _copy(run_dir, tmp_path)
    flag = _index(run).parent / "_passed.flag"
    text = flag.read_bytes()
    assert text.endswith(b"\n") and text.count(b"\n") == 1
    flag.write_bytes(text[:-1] + bytes_after)
    code, err = _verify(run, capsys)
    assert code != 0 and "E3A_VER_001" in err and "flag" in err


@pytest.mark.parametrize("edit", ["blank line at the end", "blank line inside", "no final newline"])
def test_a_json_lines_member_re_sealed_with_a_blank_line_is_refused(run_dir, tmp_path, capsys, edit):
    """A blank line added to the RNG events (and the index and flag re-sealed) is not how the engine writes them."""
    from engine.states.s7_bundle import bundle_digest, passed_flag
    from engine.core.hashing import sha256_hex

    run = _copy(run_dir, tmp_path)
    index_path = _index(run)
    index = json.loads(index_path.read_bytes())
    member = next(m for m in index["members"] if m["path"].endswith(".jsonl") and "events" in m["path"])
    path = run / member["path"]
    data = path.read_bytes()
    data = {"blank line at the end": data + b"\n", "blank line inside": data.replace(b"\n", b"\n\n", 1),
            "no final newline": data[:-1]}[edit]
    path.write_bytes(data)
    member["sha256_hex"], member["size_bytes"] = sha256_hex(data), len(data)
    index_path.write_bytes(json_bytes(index))
    (index_path.parent / "_passed.flag").write_text(passed_flag(index))
    assert bundle_digest(index)
    code, err = _verify(run, capsys)
    assert code != 0 and "E3A_VER_001" in err and "newline" in err


def test_a_published_run_is_readable_as_the_umask_says(run_dir):
    """The run folder is renamed into place from a staging folder mkdtemp made 0700: it is chmod-ed first, as every
    file of it is (the process's umask; 022 gives 0755 where it was 0700)."""
    from engine.publish.atomic import process_umask

    assert run_dir.stat().st_mode & 0o777 == 0o777 & ~process_umask()
    assert process_umask() & 0o077 == 0o077 or run_dir.stat().st_mode & 0o077
