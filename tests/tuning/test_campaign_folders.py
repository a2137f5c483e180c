"""A campaign's authority folders (issue 8 item 6): two folders of one world keep their studies apart, re-authoring a
folder with promotions of its own or a best-effort freeze needs --reopen, and the reason is recorded."""

from __future__ import annotations

import pytest

from engine.core.errors import EngineError
from engine.policies import PolicySet
from tests.tuning.conftest import REPO


def test_two_folders_of_one_world_keep_their_campaign_studies_apart(project, tmp_path):
    """A campaign into a folder of its own names its studies after the folder: a second folder's campaign of the
    same world (run after it, or beside it) neither deletes the first one's trail nor shares its studies; a
    folder not bound yet has no trail to clear, and the default world's policies/ keeps its names."""
    from engine import default_world, load_world
    from tuning.author import main as author
    from tuning.campaign.__main__ import load_campaign
    from tuning.campaign.steps import folder_scope, fresh_trail, sweep_steps, trail_names
    from tuning.common.errors import invoke

    world_dir = tmp_path / "W"
    world_dir.mkdir()
    rows = ["merchant_id,legal_country_iso,site_count"] + [f"{i},{'US' if i % 2 else 'RU'},{3 + i % 7}"
                                                          for i in range(300)]
    (world_dir / "outlets.csv").write_text("\n".join(rows) + "\n")
    world = load_world(world_dir)
    doc = load_campaign(REPO / "studies" / "campaign.yaml")
    assert folder_scope(project / "X1", world) is None and fresh_trail(doc, REPO / "studies", world, project / "X1") == []
    for folder in ("X1", "X2"):
        assert invoke(author, ["--world", str(world_dir), "--into", str(project / folder)]) == 0
    one, two = folder_scope(project / "X1", world), folder_scope(project / "X2", world)
    assert one != two and one.startswith("a") and len(one) == 14
    names = {f: [trail_names(s, REPO / "studies", world, folder_scope(project / f, world))[0] for s in sweep_steps(doc)]
             for f in ("X1", "X2")}
    assert not set(names["X1"]) & set(names["X2"])
    optuna_dir = project / ".optuna"
    optuna_dir.mkdir(exist_ok=True)
    for study in names["X1"] + names["X2"]:
        (optuna_dir / f"{study}.journal").write_text("")
    assert fresh_trail(doc, REPO / "studies", world, project / "X2", optuna_dir) == names["X2"]
    assert all((optuna_dir / f"{s}.journal").exists() for s in names["X1"])       # the first folder's trail stays
    assert not any((optuna_dir / f"{s}.journal").exists() for s in names["X2"])
    assert folder_scope(REPO / "policies", default_world()) == ""                 # the shipped names: campaign-3A-P2
    # rank --campaign --policies DIR: one folder's campaign of the world's shared experiment
    from types import SimpleNamespace

    from tuning.rank import campaign_of
    from tuning.study.trial_row import TrialRow

    rows = [TrialRow(trial=i, J=0.0, feasible=True, study=f"campaign-{s}3A-P2-{world.label}")
            for i, s in enumerate((one, two, ""))]
    for folder, want in (("X1", [0]), ("X2", [1])):
        args = SimpleNamespace(campaign=True, policies=str(project / folder))
        assert [r.trial for r in campaign_of(rows, args, world)] == want
    with pytest.raises(EngineError) as err:
        campaign_of(rows, SimpleNamespace(campaign=False, policies=str(project / "X1")), world)
    assert err.value.code == "E3A_TUN_050_USAGE" and "use it with --campaign" in err.value.cause
    assert "ranks with --world DIR, without --policies" in err.value.cause   # and how to rank a sweep of one's own
    with pytest.raises(EngineError) as err:   # a folder that is no authority has no campaign of its own
        campaign_of(rows, SimpleNamespace(campaign=True, policies=str(world_dir)), default_world())
    assert err.value.code == "E3A_POL_004_POLICY_MISSING" and "not an authority folder" in err.value.cause
    with pytest.raises(EngineError) as err:   # the default world's policies/ is no folder of this world
        campaign_of(rows, SimpleNamespace(campaign=True, policies=str(project / "policies")), world)
    assert err.value.code == "E3A_TUN_050_USAGE" and "not an authority folder of world" in err.value.cause
    from tuning.rank import main as rank_main

    with pytest.raises(EngineError) as err:   # --policies alone: the folder's world's experiment, not the default's
        rank_main(["--phase", "P2", "--campaign", "--policies", str(project / "X1")])
    assert err.value.code == "E3A_TUN_022_RUN_NOT_FOUND" and world.label in err.value.cause, err.value.cause


def test_re_authoring_a_folder_with_promotions_made_outside_a_campaign_needs_a_reason(tmp_path):
    """A campaign's author step replaces the lineage: a user's own promotion (a sweep of theirs and tuning.promote)
    would survive only as a hash, so, as tuning.author --into asks for --reason, the campaign asks for --reopen;
    the promotions of an earlier, killed run of the campaign are the ones its re-run makes again."""
    import shutil

    import yaml

    from tuning.campaign.__main__ import refuse_re_authoring

    folder = tmp_path / "auth"
    shutil.copytree(REPO / "policies", folder, ignore=shutil.ignore_patterns("lineage.yaml", "ladder.yaml", ".*"))
    doc = {"steps": [{"author": {}}, {"phase": "P1.2", "sweep": {}}]}

    def lineage(*studies: str) -> None:
        entries = [{"decision": "AUTHORED_INSTALL", "parameter_hash": "a"}]
        entries += [{"study": s, "mlflow_run_id": f"run{i}" * 4, "decision": "PROMOTE_TO_P1_3", "parameter_hash": "b"}
                    for i, s in enumerate(studies)]
        (folder / "lineage.yaml").write_text(yaml.safe_dump({"promotions": entries}))

    lineage("campaign-3A-P1.2", "campaign-3A-P2")   # a killed campaign's own: its re-run makes them again
    refuse_re_authoring(folder, doc, None)
    lineage("campaign-3A-P1.2", "3A-P1.2")          # the user's own promotion, after the campaign's
    with pytest.raises(EngineError) as err:
        refuse_re_authoring(folder, doc, None)
    assert err.value.code == "E3A_TUN_050_USAGE" and err.value.cause.startswith(
        f"{folder} holds 1 promotion(s) made outside a campaign (the last: run run1run1run1 of study 3A-P1.2, "
        f"PROMOTE_TO_P1_3)") and "--reopen REASON" in err.value.cause
    refuse_re_authoring(folder, doc, "replace my hand promotion")                  # a stated reason
    refuse_re_authoring(folder, {"steps": [{"phase": "P1.2", "sweep": {}}]}, None)  # no author step: nothing replaced


def test_a_best_effort_freeze_is_kept_from_re_authoring_and_left_open_to_promotion(tmp_path):
    """P6's best-effort freeze is a freeze too for what would replace its ladder: a campaign re-run on the folder
    re-authored it without --reopen (helper 52: a FROZEN_BEST_EFFORT_BELOW_B ladder of 12 steps became 9 of a
    killed re-run). Promotion stays open, as documented: tuning may go on towards the grade."""
    import shutil

    import yaml

    from tuning.authority.guards import frozen_step, guard_promotion
    from tuning.campaign.__main__ import refuse_re_authoring

    folder = tmp_path / "auth"
    shutil.copytree(REPO / "policies", folder, ignore=shutil.ignore_patterns("lineage.yaml", "ladder.yaml", ".*"))
    steps = [dict(s) for s in yaml.safe_load((REPO / "policies" / "ladder.yaml").read_text())["steps"]]
    steps[-1] = {**steps[-1], "decision": "FROZEN_BEST_EFFORT_BELOW_B"}
    (folder / "ladder.yaml").write_text(yaml.safe_dump({"steps": steps}))
    doc = {"steps": [{"author": {}}, {"phase": "P1.2", "sweep": {}}]}
    with pytest.raises(EngineError) as err:
        refuse_re_authoring(folder, doc, None)
    assert err.value.code == "E3A_TUN_024_AUTHORITY_FROZEN" and "FROZEN_BEST_EFFORT_BELOW_B" in err.value.cause
    refuse_re_authoring(folder, doc, "start this world over")
    assert frozen_step(folder) is None and frozen_step(folder, any_freeze=True)["decision"] == steps[-1]["decision"]
    current = PolicySet.from_dir(folder)
    candidate = current.with_documents(zone_mixture_policy={**current.doc("zone_mixture_policy"), "theta_mix": 0.3})
    assert guard_promotion(folder, current, candidate, "r" * 32) is None   # promotable, nothing reopened


def test_the_reopen_reason_is_recorded_with_what_it_reopened(project):
    """The author step records --reopen's reason in the authored baseline's ladder note, naming a frozen authority
    only where the folder was frozen (a folder of one's own promotions is not)."""
    import yaml

    from engine import default_world
    from tuning.authority.ladder_steps import read_ladder
    from tuning.campaign.steps import Campaign

    folder = project / "policies"
    (folder / "ladder.yaml").unlink(missing_ok=True)   # not frozen: its own promotions are what --reopen replaces
    (folder / "lineage.yaml").write_text(yaml.safe_dump({"promotions": [
        {"study": "3A-P1.2", "mlflow_run_id": "r" * 32, "decision": "PROMOTE_TO_P1_3", "parameter_hash": "b"}]}))
    campaign = Campaign({"steps": [{"author": {}}]}, folder, project / "studies", None, default_world(),
                        reopen="replace my hand promotion")
    assert campaign.author() == "authored"
    note = read_ladder(folder)[0]["note"]
    assert note.endswith("; reopened an authority folder: replace my hand promotion"), note
