"""``engine verify`` refuses every tampering S6-S7 §8/§9/§11 names: stray files, a second
manifest_fingerprint= folder, and edits of index.json identity fields the flag does not cover."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.cli import main
from engine.serialize import json_bytes

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
