"""Promotion as a transaction: SIGKILL at every rename, and concurrent promotes.

After any kill, the next command (here: entering the authority lock) rolls the install forward or
back; ``policies/`` then always equals the last lineage entry, and no temp or intent file is left.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine.policies import PolicySet
from tuning.authority.txn import INTENT_FILE, authority_lock
from tuning.authority.promotion import read_lineage

REPO = Path(__file__).resolve().parents[2]

# kill the process just before the k-th file operation (a rename, or the intent's removal)
_KILLER = """
import os, sys
k = int(sys.argv[1]); calls = [0]
inside = os.path.abspath(os.environ["KILL_INSIDE"]) + os.sep  # only operations on files of policies/ count
def deadly(real):
    def op(*a, **kw):
        if os.path.abspath(os.fspath(a[0])).startswith(inside):
            calls[0] += 1
            if calls[0] == k:
                os._exit(9)
        return real(*a, **kw)
    return op
os.replace, os.rename, os.unlink = deadly(os.replace), deadly(os.rename), deadly(os.unlink)
"""

_INSTALL = _KILLER + """
from pathlib import Path
import yaml
from engine.policies import PolicySet
from tuning.authority.txn import authority_lock, install
d = Path(sys.argv[2])
cand = PolicySet({p: data + b"\\n# candidate\\n" for p, data in PolicySet.from_dir(d).raw.items()})
lineage = yaml.safe_load((d / "lineage.yaml").read_text())["promotions"] + [{"parameter_hash": cand.parameter_hash}]
files = {f"{p}.yaml": data for p, data in cand.raw.items()}
files["lineage.yaml"] = yaml.safe_dump({"promotions": lineage}).encode()
with authority_lock(d):   # tuning.authority.txn only: no MLflow in this process
    install(d, files, "lineage.yaml")
"""


def _env(kill_inside: Path) -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                KILL_INSIDE=str(kill_inside))


def _policies(tmp_path: Path) -> Path:
    d = tmp_path / "policies"
    shutil.copytree(REPO / "policies", d, ignore=shutil.ignore_patterns("lineage.yaml", "ladder.yaml", ".*"))
    base = PolicySet.from_dir(d)
    (d / "lineage.yaml").write_text(yaml.safe_dump({"promotions": [{"parameter_hash": base.parameter_hash}]}))
    return d


def _assert_consistent(d: Path) -> str:
    with authority_lock(d):  # the next command: recovers first
        pass
    current = PolicySet.from_dir(d).parameter_hash
    assert read_lineage(d)[-1]["parameter_hash"] == current
    assert not (d / INTENT_FILE).exists()
    assert not list(d.glob(".*.tmp")), "temp files left in policies/"
    return current


def test_install_survives_a_kill_at_every_rename(tmp_path):
    outcomes = []
    for k in range(1, 30):
        d = _policies(tmp_path / f"k{k}")
        before = PolicySet.from_dir(d).parameter_hash
        proc = subprocess.run([sys.executable, "-c", _INSTALL, str(k), str(d)], env=_env(d), cwd=tmp_path,
                              capture_output=True, text=True, timeout=120)
        killed = proc.returncode == 9
        assert killed or proc.returncode == 0, proc.stderr
        after = _assert_consistent(d)
        outcomes.append((killed, after != before))
        if not killed:
            break
    kills = [o for o in outcomes if o[0]]
    # intent write + three policy files + lineage + intent removal: every one of them was a kill point
    assert len(kills) >= 6
    assert kills[0] == (True, False)            # killed before the intent existed: rolled back
    assert all(changed for _, changed in kills[1:])  # intent written: always rolled forward
    assert outcomes[-1] == (False, True)


def test_recovery_removes_temp_files_and_refuses_a_corrupt_intent(tmp_path):
    from engine.core.errors import EngineError

    d = _policies(tmp_path)
    (d / ".zone_floor_policy.yaml.abc.tmp").write_bytes(b"half")
    (d / INTENT_FILE).write_text(json.dumps({"files": {"x.yaml": "AAAA"}, "sha256": {"x.yaml": "0" * 64},
                                             "last": "x.yaml"}))
    with pytest.raises(EngineError) as err:
        with authority_lock(d):
            pass
    assert err.value.code == "E3A_IO_001_PUBLISH_FAILED"
    assert not (d / INTENT_FILE).exists() and not (d / "x.yaml").exists()
    assert not list(d.glob(".*.tmp"))
    _assert_consistent(d)


def test_installing_into_a_read_only_policies_dir_is_coded(tmp_path):
    from engine.core.errors import EngineError

    if os.geteuid() == 0:
        pytest.skip("root ignores directory permissions")
    d = _policies(tmp_path)
    (d / ".authority.lock").touch()
    d.chmod(0o555)
    try:
        with pytest.raises(EngineError) as err:
            with authority_lock(d):
                from tuning.authority.promotion import install
                cand = PolicySet({p: b + b"\n# c\n" for p, b in PolicySet.from_dir(d).raw.items()})
                install(cand, d, read_lineage(d), {"parameter_hash": cand.parameter_hash})
        assert err.value.code.startswith("E3A_")
    finally:
        d.chmod(0o755)
    _assert_consistent(d)
