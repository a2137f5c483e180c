"""`engine author` never writes the authority folder; the README's bring-your-own line runs as written."""

import hashlib
import subprocess
import sys
from pathlib import Path

import pandas as pd

from engine.policies import PolicySet
from tests.engine.conftest import ROOT


def _cli(cwd, *args):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=240)
    return proc.returncode, proc.stdout, proc.stderr


def _tree(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_author_either_form_leaves_policies_untouched(tmp_path):
    (tmp_path / "policies").mkdir()
    for f in (ROOT / "policies").iterdir():
        (tmp_path / "policies" / f.name).write_bytes(f.read_bytes())
    before = _tree(tmp_path / "policies")
    rc, out, err = _cli(tmp_path, "author")
    assert rc == 0, err
    (authored,) = (tmp_path / "authored").iterdir()
    assert f"to authored/{authored.name}" in out and len(authored.name) == 12
    assert PolicySet.from_dir(authored).parameter_hash != PolicySet.from_dir(tmp_path / "policies").parameter_hash
    rc, out, err = _cli(tmp_path, "author", "--out", "policies")
    assert rc == 2 and err.startswith("E3A_CLI_003_AUTHORITY_FOLDER") and "Traceback" not in err
    other = tmp_path / "elsewhere"  # any folder holding a ladder or lineage is an authority folder too
    other.mkdir()
    (other / "ladder.yaml").write_text("steps: []\n")
    rc, _, err = _cli(tmp_path, "author", "--out", str(other))
    assert rc == 2 and err.startswith("E3A_CLI_003_AUTHORITY_FOLDER")
    assert _tree(tmp_path / "policies") == before and sorted(p.name for p in other.iterdir()) == ["ladder.yaml"]


def test_readme_bring_your_own_line_runs_as_written(tmp_path):
    pd.DataFrame({"country_iso": ["US", "US", "US", "FR", "DE"],
                  "tzid": ["America/New_York", "America/Chicago", "America/Los_Angeles", "Europe/Paris",
                           "Europe/Berlin"]}).to_csv(tmp_path / "my_zones.csv", index=False)
    pd.DataFrame({"merchant_id": [1, 1, 2, 3], "legal_country_iso": ["US", "FR", "US", "DE"],
                  "site_count": [40, 3, 12, 5]}).to_parquet(tmp_path / "my_outlets.parquet")
    line = next(li for li in (ROOT / "README.md").read_text().splitlines() if "--reference my_zones.csv" in li)
    args = line.split("#")[0].split()
    assert args[:3] == ["python", "-m", "engine"]
    rc, out, err = _cli(tmp_path, *args[3:])
    assert rc == 0, err
    assert "policies: authored for the custom universe" in out and "S6 PASS  S7 PASS" in out
    # the authored set is what `engine author --reference` writes for that universe
    rc, out2, _ = _cli(tmp_path, "author", "--reference", "my_zones.csv")
    (folder,) = (tmp_path / "authored").iterdir()
    assert rc == 0 and PolicySet.from_dir(folder).parameter_hash[:16] in out


def test_author_writes_all_three_files_or_none(tmp_path, monkeypatch, capsys):
    """A full disk at the third file leaves no folder and no temp file; an earlier authored folder stays whole."""
    import errno
    import os

    from engine.cli.main import main

    out = tmp_path / "authored-here"
    real_fsync, calls = os.fsync, []

    def full_disk(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_disk)
    assert main(["author", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("E3A_IO_001_PUBLISH_FAILED:") and "No space left" in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert main(["author", "--out", str(out)]) == 0
    first = _tree(out)
    assert len(first) == 3
    calls.clear()
    monkeypatch.setattr(os, "fsync", full_disk)
    assert main(["author", "--out", str(out)]) == 2          # again, over the earlier folder: it stays as it was
    assert _tree(out) == first and sorted(p.name for p in tmp_path.iterdir()) == ["authored-here"]
    monkeypatch.setattr(os, "fsync", real_fsync)
    (out / "mine.txt").write_text("a user's file")
    assert main(["author", "--out", str(out)]) == 2          # a folder holding other files is not replaced
    assert "mine.txt" in capsys.readouterr().err and (out / "mine.txt").exists()


def test_two_worlds_of_one_universe_and_other_evidence_author_into_two_folders(tmp_path):
    """The authored alphas follow the people: worlds of one Z(c) whose evidence differs get folders of their own
    (both wrote authored/<universe digest>/, the second silently replacing the first)."""
    import pandas as pd

    from engine.cli.main import authored_name
    from engine.world.model import load_world

    names = {}
    for label, people in (("a", [5e6, 3e6, 1e6]), ("b", [1e6, 3e6, 5e6])):
        d = tmp_path / label
        d.mkdir()
        pd.DataFrame({"country_iso": ["AU"] * 3, "tzid": ["Australia/Sydney", "Australia/Perth", "Australia/Darwin"],
                      "population": people}).to_csv(d / "population.csv", index=False)
        pd.DataFrame({"merchant_id": [1, 2], "legal_country_iso": ["AU", "AU"], "site_count": [9, 4]}).to_csv(
            d / "outlets.csv", index=False)
        world = load_world(d)
        names[label] = (authored_name(world), world.universe_digest[:12])
    assert names["a"][1] == names["b"][1] and names["a"][0] != names["b"][0]
    assert names["a"][0].startswith(names["a"][1] + "-e") and len(names["a"][0]) == 12 + 2 + 8
