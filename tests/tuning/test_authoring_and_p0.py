"""The recorded install of authored policies into the authority, and P0 commands that name what they measure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.policies import PolicySet


def test_authored_install_is_refused_on_a_frozen_authority_then_recorded(project, capsys):
    from tuning.author import main as author
    from tuning.authority.authoring import authored_policies
    from tuning.common.errors import run_cli

    before = PolicySet.from_dir("policies")
    with pytest.raises(SystemExit) as done:  # the CLI wrapper: one coded line, exit 2
        run_cli(author, ["--into-authority", "--reason", "restart from P0"])
    assert done.value.code == 2 and capsys.readouterr().err.startswith("E3A_TUN_024_AUTHORITY_FROZEN:")
    assert PolicySet.from_dir("policies") == before

    assert author(["--into-authority", "--reason", "restart from P0",
                   "--reopen", "the newcomer wants the P0 baseline back"]) == 0
    from tuning.authority.ladder_steps import read_ladder
    from tuning.authority.promotion import read_lineage

    after = PolicySet.from_dir("policies")
    assert after == authored_policies() and after != before
    reopened, step = read_ladder(Path("policies"))[-2:]
    assert (reopened["decision"], reopened["note"]) == ("REOPENED", "the newcomer wants the P0 baseline back")
    assert (step["phase"], step["decision"], step["note"]) == ("AUTHOR", "AUTHORED_INSTALL", "restart from P0")
    assert step["parameter_hash"] == after.parameter_hash
    entry = read_lineage(Path("policies"))[-1]
    assert entry["decision"] == "AUTHORED_INSTALL" and entry["previous_authority"]["parameter_hash"] == \
        before.parameter_hash


def test_an_install_that_fails_leaves_no_folder_it_created(project, monkeypatch):
    """--into a new folder whose install fails (here the transaction itself) leaves nothing behind, where a folder
    holding only the authority lock was left; a folder that was there before is kept."""
    import tuning.authority.promotion as promotion
    from engine import EngineError
    from tuning.authority.authoring import install_authored

    def broken(*_a, **_k):
        raise EngineError("E3A_TUN_020_PROMOTE", "the install failed")

    monkeypatch.setattr(promotion, "install", broken)
    with pytest.raises(EngineError, match="the install failed"):
        install_authored(Path("fresh"), "a new world's baseline")
    assert not Path("fresh").exists()
    Path("kept").mkdir()
    with pytest.raises(EngineError):
        install_authored(Path("kept"), "a new world's baseline")
    assert Path("kept").is_dir()


def test_p0_names_what_it_measures(project, capsys):
    from tuning.authority.authoring import authored_policies
    from tuning.baseline.__main__ import main as baseline

    for flag in ("--authored", "--authority"):
        assert baseline([flag, "--out", f"rep{flag}", "--runs-root", ""]) == 0
        out = capsys.readouterr()
        (doc_path,) = Path(f"rep{flag}").glob("*.json")
        doc = json.loads(doc_path.read_text())
        subject = flag.lstrip("-")
        assert doc["measures"]["subject"] == subject and f"- measures: **{subject}**" in out.out
        expected = PolicySet.from_dir("policies") if subject == "authority" else authored_policies()
        assert doc["measures"]["parameter_hash"] == expected.parameter_hash == \
            doc["baseline_authority"]["parameter_hash"]
        heading = "the authored baseline" if subject == "authored" else "the current authority"
        assert out.out.startswith(f"# Segment 3A — P0 metrics of {heading}")


def test_steps_after_a_freeze_leave_the_authority_frozen_until_reopened(tmp_path):
    """A sweep whose precheck finds nothing to do records a step after the freeze (P3_NOOP_LOCK): the authority
    stays frozen for promote and author; only a REOPENED step thaws it, and a later freeze freezes it again."""
    import shutil

    from tuning.authority.guards import frozen_step
    from tuning.authority.ladder_steps import read_ladder, write_ladder

    folder = tmp_path / "authority"
    shutil.copytree("policies", folder)
    steps = read_ladder(folder)
    freeze = steps[-1]
    assert freeze["decision"].startswith("FROZEN_CERTIFIED_") and frozen_step(folder) == freeze
    ids = {"parameter_hash": freeze["parameter_hash"], "mlflow_run_id": "0" * 32}   # what every recorded step has
    after = [{"phase": "P3", "decision": "P3_NOOP_LOCK", **ids}, {"phase": "P5", "decision": "CERTIFIED_BPLUS", **ids}]
    write_ladder(folder, steps + after)
    assert frozen_step(folder) == freeze
    reopened = {"phase": "P6", "decision": "REOPENED", "note": "a new phase", **ids}
    write_ladder(folder, steps + after + [reopened] + after)
    assert frozen_step(folder) is None
    write_ladder(folder, steps + [reopened, freeze, *after])
    assert frozen_step(folder) == freeze
