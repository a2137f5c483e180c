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
