"""End to end in a temp project: sweep -> resume -> forced veto -> rank -> promote -> certify."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from optuna.trial import TrialState

from engine.core.errors import EngineError
from engine.policies import PolicySet
from tests.tuning.conftest import REQUIRED_TRIAL_TAGS, load, make_project, run_here, run_module, seed_store, trial_runs


@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("e2e") / "proj")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
        seed_store(root)
        yield root


def sweep(capsys, *args: str) -> dict:
    from tuning.sweep.__main__ import main
    assert main(["--no-progress", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_six_trial_sweep_leaves_six_tagged_trial_runs(proj, capsys):
    summary = sweep(capsys, "--phase", "P1.2", "--trials", "6")
    study = load("t-P1.2")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 6
    runs = trial_runs("t-P1.2")
    assert len(runs) == 6
    assert sorted(int(r.data.tags["optuna_trial"]) for r in runs) == list(range(6))
    for r in runs:
        missing = [t for t in REQUIRED_TRIAL_TAGS if not r.data.tags.get(t)]
        assert not missing, missing
        assert r.data.tags["sweep_run_id"] == summary["parent_run_id"]
        assert r.data.tags["phase"] == "P1.2" and r.data.tags["seed"] == "42"
        assert {"J", "delta.d_top1", "delta.d_tail", "delta.d_multi_zone", "seconds.S2",
                "s2.top1_share_median_multi_tz", "s4.count_conservation_all_pairs"} <= set(r.data.metrics)
        assert set(r.data.params) == {"blend_lambda", "hub_cap", "tail_gamma"}
        art = Path(r.info.artifact_uri.replace("file://", ""))
        assert {"policies", "metric_pack.json", "gate_table.md"} <= {p.name for p in art.iterdir()}
        assert PolicySet.from_dir(art / "policies").digests["country_zone_alphas"] == \
            r.data.tags["digest.country_zone_alphas"]
    # a new study starts from the authority itself: knobs at their neutral values, every delta exactly 0
    first = study.trials[0]
    assert first.user_attrs.get("authority_candidate") is True
    from tuning.study.knobs import KNOBS
    assert first.params and first.params == {k: KNOBS[k].neutral for k in first.params} and first.value == 0.0
    # one trial of every optuna trial number, and the same J in both stores
    by_trial = {int(r.data.tags["optuna_trial"]): r for r in runs}
    for t in study.trials:
        assert by_trial[t.number].data.metrics["J"] == pytest.approx(t.value, abs=1e-12)
        assert t.user_attrs["result"]["mlflow_run_id"] == by_trial[t.number].info.run_id
    from tuning.trail.tracking import client
    parent_art = Path(client().get_run(summary["parent_run_id"]).info.artifact_uri.replace("file://", ""))
    assert {"optimization_history.html", "parallel_coordinate.html", "sweep_summary.json"} <= \
        {p.name for p in parent_art.iterdir()}


def test_second_invocation_resumes_to_twelve_without_duplicates(proj, capsys):
    summary = sweep(capsys, "--phase", "P1.2", "--trials", "12")
    study = load("t-P1.2")
    assert len(study.trials) == 12 and all(t.state == TrialState.COMPLETE for t in study.trials)
    runs = trial_runs("t-P1.2")
    numbers = [int(r.data.tags["optuna_trial"]) for r in runs]
    assert sorted(numbers) == list(range(12))
    assert len({r.data.tags["trial_key"] for r in runs}) == 12
    assert summary["trials_complete"] == 12 and summary["top"][0]["feasible"] is True
    again = sweep(capsys, "--phase", "P1.2", "--trials", "12")  # budget met: nothing new
    assert again["trials_complete"] == 12 and len(trial_runs("t-P1.2")) == 12
    # the store its trials were logged to is gone (deleted, replaced): one coded line before any trial, no run
    # written, and the study resumes once the store is back
    shutil.move(proj / "mlruns", proj / "mlruns.away")
    try:
        (proj / "mlruns").mkdir()
        out = run_module(proj, "tuning.sweep", "--phase", "P1.2", "--trials", "14", "--no-progress")
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr[-2000:]
        assert out.stderr.startswith("E3A_TUN_042_TRACKING_STORE: study t-P1.2: its 12 complete trial(s) were "
                                     "logged to MLflow runs the tracking store") and "does not hold" in out.stderr
        with sqlite3.connect(proj / "mlruns" / "mlflow.db") as db:   # this process's client holds the old file
            assert db.execute("select count(*) from runs").fetchone() == (0,)
        assert load("t-P1.2").trials[-1].number == 11
    finally:
        shutil.rmtree(proj / "mlruns")
        shutil.move(proj / "mlruns.away", proj / "mlruns")
    assert sweep(capsys, "--phase", "P1.2", "--trials", "13")["trials_complete"] == 13


def test_forced_veto_is_infeasible_and_never_best(proj, capsys):
    summary = sweep(capsys, "--phase", "studies/veto.yaml", "--trials", "3")
    study = load("t-veto")
    assert all(t.constraints.get("veto", 0) > 0 for t in study.trials)
    with pytest.raises(ValueError):
        study.best_trial  # no feasible trial exists
    assert summary["best"] == {} and summary["trials_feasible"] == 0 and summary["vetoes"]["FORCED_VETO"] == 3
    from tuning.sweep.__main__ import main   # the text a person reads says why nothing can be promoted
    assert main(["--no-progress", "--phase", "studies/veto.yaml", "--trials", "3"]) == 0
    assert "no feasible trial: every complete trial was vetoed, by FORCED_VETO (3)" in capsys.readouterr().out
    runs = trial_runs("t-veto")
    assert {r.data.tags["veto"] for r in runs} == {"FAIL"}
    assert all("FORCED_VETO" in r.data.tags["veto_reasons"] for r in runs)
    from tuning.authority.promotion import promote
    with pytest.raises(EngineError) as err:
        promote(runs[0].info.run_id, Path("policies"))
    assert err.value.code == "E3A_TUN_020_RUN_VETOED"


def test_rank_lists_feasible_first_by_j(proj):
    from tuning.rank import ranked_runs
    rows = ranked_runs("P1.2")
    vetoes = [r.veto for r in rows]
    assert vetoes == sorted(vetoes, key=lambda v: v != "PASS")
    feasible = [r.J for r in rows if r.feasible]
    assert feasible == sorted(feasible, reverse=True)
    program = run_module(proj, "tuning.rank", "--phase", "P1.2", "--top", "3", "--json", timeout=120)
    assert program.returncode == 0, program.stderr
    shown = json.loads(program.stdout)
    assert [r["mlflow_run_id"] for r in shown] == [r.mlflow_run_id for r in rows[:3]]
    assert all(r["engine_run_id"] and r["engine_run_id"] != r["mlflow_run_id"] for r in shown)   # two ids, named apart


def test_promote_best_rewrites_policies_and_witness_passes(proj):
    from tuning.authority.promotion import fetch_candidate_files, promote, read_lineage
    from tuning.rank import ranked_runs
    from tuning.trail.tracking import client
    from tuning.authority.ladder_steps import read_ladder
    best = ranked_runs("P1.2", "t-P1.2")[0]
    before = PolicySet.from_dir("policies")
    frozen = read_ladder(Path("policies"))
    assert frozen[-1]["decision"].startswith("FROZEN_CERTIFIED_")  # the copied authority is frozen
    cli = run_module(proj, "tuning.promote", best.mlflow_run_id, "--decision", "UNLOCK_P1_3")
    assert cli.returncode == 2 and cli.stderr.startswith("E3A_TUN_024_AUTHORITY_FROZEN:")
    missing = run_here(proj, "tuning.promote", best.mlflow_run_id, "--policies", "no_such_folder")
    assert missing.returncode == 2 and missing.stderr.startswith("E3A_POL_004_POLICY_MISSING: promotion: no_such_folder:")
    assert not (proj / "no_such_folder").exists()   # nothing created for a refused promote (not even its lock)
    assert "Traceback" not in cli.stderr
    with pytest.raises(EngineError) as err:
        promote(best.mlflow_run_id, Path("policies"), decision="UNLOCK_P1_3", runs_root=None)
    assert err.value.code == "E3A_TUN_024_AUTHORITY_FROZEN"
    # trial 0 is the authority with every knob neutral: only its version lines differ -> "no change"
    (trial0,) = [r for r in trial_runs("t-P1.2") if r.data.tags["optuna_trial"] == "0"]
    assert trial0.data.tags["parameter_hash"] != before.parameter_hash
    with pytest.raises(EngineError) as err:
        promote(trial0.info.run_id, Path("policies"), runs_root=None, reopen="try the neutral trial")
    assert err.value.code == "E3A_TUN_025_NO_CHANGE"
    assert read_ladder(Path("policies")) == frozen and PolicySet.from_dir("policies") == before  # nothing written
    # a run that is not a trial (the sweep's parent run) is no candidate: said so, not called "vetoed"
    parent = trial0.data.tags["sweep_run_id"]
    for call in (lambda: promote(parent, Path("policies"), runs_root=None, reopen="x"),
                 lambda: fetch_candidate_files(client(), parent, proj)):
        with pytest.raises(EngineError) as err:
            call()
        assert err.value.code == "E3A_TUN_022_RUN_NOT_FOUND" and "'sweep' run, not a trial run" in err.value.cause
    from tuning.certify import main as certify
    with pytest.raises(EngineError) as err:   # --record is the authority's own certification
        certify(["--run", best.mlflow_run_id, "--record", "--seeds", "42"])
    assert err.value.code == "E3A_TUN_050_USAGE" and "--record" in err.value.cause
    assert read_ladder(Path("policies")) == frozen and PolicySet.from_dir("policies") == before
    # refused for a witness mismatch (a J edited in its record), with --reopen: nothing written, REOPENED included
    pack_path = Path(client().get_run(best.mlflow_run_id).info.artifact_uri.replace("file://", "")) / "metric_pack.json"
    original = pack_path.read_text()
    pack_path.write_text(original.replace('"J": ', '"J": 99.0, "J_was": ', 1))
    try:
        with pytest.raises(EngineError) as err:
            promote(best.mlflow_run_id, Path("policies"), decision="UNLOCK_P1_3", runs_root=None, reopen="x")
    finally:
        pack_path.write_text(original)
    assert err.value.code == "E3A_TUN_021_WITNESS_MISMATCH" and "recorded 99.0" in err.value.cause
    assert read_ladder(Path("policies")) == frozen and PolicySet.from_dir("policies") == before
    promoted = run_module(proj, "tuning.promote", best.mlflow_run_id, "--decision", "UNLOCK_P1_3", "--runs-root", "runs",
                          "--reopen", "reopened by the e2e test", "--json", timeout=120)   # as a program
    assert promoted.returncode == 0, promoted.stderr
    assert "witness replay: 100%" in promoted.stderr and "2/2" in promoted.stderr   # the base and the candidate, seed 42
    out = json.loads(promoted.stdout)
    reopened = read_ladder(Path("policies"))[-2]
    assert (reopened["phase"], reopened["decision"], reopened["note"]) == ("P6", "REOPENED", "reopened by the e2e test")
    assert out["status"] == "PROMOTED" and out["witness"]["status"] == "PASS"
    assert out["witness"]["fields_compared"] > 50 and not out["witness"]["mismatches"]
    after = PolicySet.from_dir("policies")
    run = client().get_run(best.mlflow_run_id)
    assert after.parameter_hash != before.parameter_hash
    assert all(run.data.tags[f"digest.{p}"] == d for p, d in after.digests.items())
    assert run.data.tags["authority"] == "current" and run.data.tags["decision"] == "UNLOCK_P1_3"
    entry = read_lineage(Path("policies"))[-1]
    assert entry["mlflow_run_id"] == best.mlflow_run_id and entry["witness"]["status"] == "PASS"
    assert entry["previous_authority"]["parameter_hash"] == before.parameter_hash
    assert (Path("runs") / out["witness"]["engine_run_id"]).is_dir()
    promo = client().get_run(out["promotion_run_id"])
    assert promo.data.tags["source_run_id"] == best.mlflow_run_id
    # the Model Registry: a new version of seg3a-authority, alias 'authority' on it, lineage on its tags
    version = client().get_model_version_by_alias("seg3a-authority", "authority")
    assert int(version.version) == out["registered_model"]["version"] == 1
    assert version.tags["source_run_id"] == best.mlflow_run_id and version.tags["parameter_hash"] == after.parameter_hash
    assert version.tags["previous_parameter_hash"] == before.parameter_hash
    assert version.run_id == out["promotion_run_id"]
    model_dir = Path(version.source.replace("file://", ""))
    assert PolicySet.from_dir(model_dir / "policies") == after and (model_dir / "MLmodel").is_file()
    step = read_ladder(Path("policies"))[-1]
    assert (step["phase"], step["decision"], step["parameter_hash"]) == ("P1.2", "UNLOCK_P1_3", after.parameter_hash)
    ladder_run = client().get_run(step["mlflow_run_id"])
    assert ladder_run.data.tags["run_kind"] == "ladder" and ladder_run.data.tags["decision"] == "UNLOCK_P1_3"
    # promoting the authority again: no change, but the witness and a closing decision are recorded (P1.4)
    again = promote(best.mlflow_run_id, Path("policies"), decision="UNLOCK_P2", runs_root=None)
    assert again["status"] == "ALREADY_AUTHORITY" and again["witness"]["status"] == "PASS"
    assert read_ladder(Path("policies"))[-1]["decision"] == "UNLOCK_P2"
    steps = read_ladder(Path("policies"))   # the same promote again: replayed, but the decision is not recorded twice
    assert promote(best.mlflow_run_id, Path("policies"), decision="UNLOCK_P2", runs_root=None)["status"] == \
        "ALREADY_AUTHORITY" and read_ladder(Path("policies")) == steps
    from tuning.authority.ladder import record_step
    record_step("P2", "P2_REVIEWED", policies_dir=Path("policies"), note="another step on the same authority")
    steps = read_ladder(Path("policies"))   # ... nor after another step (a review, a certification) came between
    assert promote(best.mlflow_run_id, Path("policies"), decision="UNLOCK_P2", runs_root=None)["status"] == \
        "ALREADY_AUTHORITY" and read_ladder(Path("policies")) == steps
    assert PolicySet.from_dir("policies").parameter_hash == after.parameter_hash
    # the lineage, ladder and registry record the witness replay's J (equal to the untampered trial's)
    assert entry["J"] == client().get_run(best.mlflow_run_id).data.metrics["J"] == float(version.tags["J"])
    from tuning.verify_authority import check
    assert all(r["ok"] for r in check(Path("policies")))   # policies/, lineage, ladder, registry and tags agree


def test_certify_returns_a_verdict_with_a_gate_per_seed(proj):
    from tuning.authority.certification import certify
    seeds = [42, 7, 101, 202]
    summary = certify(PolicySet.from_dir("policies"), seeds, {"source": "authority"})
    assert summary["verdict"] in {"PASS_BPLUS", "PASS_B", "FAIL_REALISM"}
    for family in ("hard", "stretch"):
        for gate, per_seed in summary["detail"]["gate_matrix"][family].items():
            assert set(per_seed) == set(seeds) and all(v in ("PASS", "FAIL") for v in per_seed.values()), gate
    from tuning.trail.tracking import client, search_all
    mlc = client()
    exp = mlc.get_experiment_by_name("3A-certify")
    children = search_all(mlc, [exp.experiment_id], f"tags.mlflow.parentRunId = '{summary['mlflow_run_id']}'")
    assert sorted(int(c.data.tags["seed"]) for c in children) == sorted(seeds)


def test_freeze_needs_a_certification_then_maps_its_verdict(proj, capsys):
    from tuning.certify import main as certify_main
    from tuning.authority.freeze import freeze_status
    from tuning.authority.ladder_steps import read_ladder

    from engine.policies import PolicySet
    from tuning.authority.ladder_steps import write_ladder

    current = PolicySet.from_dir(Path("policies")).parameter_hash   # the copied ladder may certify it: forget that
    steps = [s for s in read_ladder(Path("policies")) if not (s["phase"] == "P5" and s["parameter_hash"] == current)]
    write_ladder(Path("policies"), steps)
    refused = run_module(proj, "tuning.freeze", timeout=120)   # as a program: no certification yet
    assert refused.returncode == 2 and refused.stderr.startswith("E3A_TUN_030_CERTIFY_INPUT:"), refused.stderr
    assert certify_main(["--authority", "--record"]) == 0   # no held-out seeds: nothing unseen to freeze on
    refused = run_here(proj, "tuning.freeze")
    assert refused.returncode == 2 and "measured no held-out seeds" in refused.stderr and \
        "--holdout 200" in refused.stderr, refused.stderr
    assert certify_main(["--authority", "--record", "--holdout", "3"]) == 0
    cert = read_ladder(Path("policies"))[-1]
    assert cert["phase"] == "P5" and cert["decision"] in {"PASS_BPLUS", "PASS_B", "FAIL_REALISM"}
    from engine.metrics.crossseed import CV_METRICS
    from tuning.trail.tracking import client

    recorded = client().get_run(cert["mlflow_run_id"]).data.metrics  # the ladder step carries the cross-seed CV
    assert {f"cv.{m}" for m in CV_METRICS} <= set(recorded), sorted(recorded)
    frozen = run_module(proj, "tuning.freeze", timeout=120)
    assert frozen.returncode == 0 and frozen.stdout.startswith("P6 "), frozen.stderr
    step = read_ladder(Path("policies"))[-1]
    # a certified freeze needs FAITHFUL on every seed: the certification records it and freeze maps it
    assert cert["evidence"]["fidelity"] in {"FAITHFUL", "DISTORTED"}
    assert step["phase"] == "P6" and step["decision"] == freeze_status(cert["decision"], cert["evidence"]["fidelity"],
                                                                       cert["evidence"])
    ladder = read_ladder(Path("policies"))   # freezing again what the last step froze records nothing
    from tuning.freeze import main as freeze_main
    capsys.readouterr()
    assert freeze_main([]) == 0 and capsys.readouterr().out.rstrip().endswith("already recorded: nothing new")
    assert read_ladder(Path("policies")) == ladder
    assert freeze_status("PASS_BPLUS") == "FROZEN_CERTIFIED_BPLUS" and freeze_status("FAIL_REALISM") == \
        "FROZEN_BEST_EFFORT_BELOW_B"


def test_results_section_is_generated_and_checked(proj, tmp_path, capsys):
    from tuning.results import END, START, main as results_main

    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\nintro\n")
    assert results_main(["--write", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\nintro\n") and START in text and END in text
    assert "| 3A-V01_s2_top1_median_multi_tz |" in text and "### Decision ladder" in text and "UNLOCK_P2" in text
    check = run_module(proj, "tuning.results", "--check", str(readme), timeout=120)   # as a program
    assert check.returncode == 0 and "is current" in check.stdout, check.stderr
    usage = run_module(proj, "tuning.results", "--write", str(readme), "--check", str(readme), timeout=120)
    assert usage.returncode == 2 and usage.stderr.startswith("E3A_TUN_050_USAGE:") and readme.read_text() == text
    readme.write_text(text.replace("| run verdict |", "| run verdict (edited) |"))
    assert results_main(["--check", str(readme)]) == 1
    # the remedy it prints is the command that writes what it checked: the same authority folder
    import shutil
    shutil.copytree("policies", tmp_path / "my authority")
    capsys.readouterr()
    assert results_main(["--policies", str(tmp_path / "my authority"), "--check", str(readme)]) == 1
    assert capsys.readouterr().err.strip().endswith(
        f"run python -m tuning.results --policies '{tmp_path / 'my authority'}' --write {readme}")


def test_prune_keeps_authority_runs_and_removes_the_rest(proj, capsys):
    from engine import default_world, outlets_for
    from tuning.prune import main as prune

    capsys.readouterr()
    assert prune(["--runs-root", "no_runs_here", "--no-mlflow"]) == 0   # said, not silent
    assert capsys.readouterr().out.startswith("nothing to prune: no run folder no_runs_here here")

    def run_folder(name: str, identity: dict) -> Path:
        folder = Path("runs") / name
        (folder / "reports").mkdir(parents=True)
        (folder / "reports" / "run_report.json").write_text(json.dumps(
            {"identity": {"parameter_hash": "f" * 64, **identity}, "s6_overall_status": "FAIL", "s7": {"status": "FAIL"}}))
        return folder

    w = default_world()   # a stale run of this world (seed 5's catalogue), and runs of other worlds or catalogues
    stale = run_folder("0" * 32, {"seed": 5, "world_digest": w.digest(outlets_for(w, 5))})
    other = [run_folder("2" * 32, {"seed": 5, "world_digest": "e" * 64}),   # another world: its authority decides
             run_folder("3" * 32, {"seed": 5, "world_digest": w.digest(outlets_for(w, 5, 40))})]   # --merchants 40
    kept_before = {p.name for p in Path("runs").iterdir()} - {stale.name} - {p.name for p in other}
    torn = Path("runs") / ("1" * 32)   # a torn run report: not a run folder prune knows, left alone
    (torn / "reports").mkdir(parents=True)
    (torn / "reports" / "run_report.json").write_text("{torn")
    refused = run_module(proj, "tuning.prune", "--policies", "nowhere", timeout=120)   # as programs
    assert refused.returncode == 2 and refused.stderr.startswith("E3A_POL_004_POLICY_MISSING:"), refused.stderr
    assert stale.exists()
    # another folder's current authority of this world (a second campaign's): its run folder is that folder's to prune
    from mlflow import MlflowClient

    theirs = run_folder("4" * 32, {"seed": 5, "world_digest": w.digest(outlets_for(w, 5)), "parameter_hash": "a" * 64})
    mlc = MlflowClient(f"sqlite:///{proj / 'mlruns' / 'mlflow.db'}")
    mlc.set_terminated(mlc.create_run(mlc.create_experiment("another-folder"), tags={
        "authority": "current", "world": w.fingerprint, "parameter_hash": "a" * 64}).info.run_id)
    done = run_module(proj, "tuning.prune", "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["kept"].pop(theirs.name) == ["another folder's current authority"] and theirs.exists()
    shutil.rmtree(theirs)
    assert out["removed"] == [stale.name] and not stale.exists() and torn.exists()
    assert out["other_worlds"] == [p.name for p in other] and all(p.exists() for p in other)
    for p in other:
        shutil.rmtree(p)
    torn.joinpath("reports", "run_report.json").unlink()
    torn.joinpath("reports").rmdir()
    torn.rmdir()
    assert set(out["kept"]) == kept_before
    assert any("current authority" in why for why in out["kept"].values())
