"""A grade cannot be bought by editing the authority's files (helper 32's review):

- a hand-edited policy file is refused by every command that records on the authority (promote, certify
  --record, freeze) with ``E3A_TUN_028``, and nothing is written, so no promotion launders it into the lineage;
- a past lineage entry or ladder step edited by hand (a J, a previous authority, a held-out rate, a run id) is a
  disagreement ``tuning.verify_authority`` names, and ``tuning.freeze`` refuses a certification its run did not
  record;
- a candidate scored on part of the seedpack is scored on the rest before it is promoted, and refused where it is
  not FAITHFUL there (a study of one seed promoted a candidate DISTORTED on the other three).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.core.errors import EngineError
from engine.policies import PolicySet
from tests.tuning.conftest import make_project, seed_store
from tuning.authority.promotion import promote, read_lineage

ALPHAS = Path("policies") / "country_zone_alphas.yaml"


@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    """A project whose store holds a P1.2 sweep, and an authority promoted once in it (so its history is there)."""
    root = make_project(tmp_path_factory.mktemp("history") / "proj")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
        seed_store(root)
        from tuning.sweep.__main__ import main
        from tuning.rank import ranked_runs

        assert main(["--no-progress", "--json", "--phase", "P1.2", "--trials", "3"]) == 0
        base = PolicySet.from_dir("policies").parameter_hash
        runs = [r for r in ranked_runs("P1.2", "t-P1.2") if r.feasible and r.fidelity == "FAITHFUL"
                and _hash_of(r.mlflow_run_id) != base]
        promote(runs[0].mlflow_run_id, Path("policies"), decision="PROMOTE_TO_P1_3", runs_root=None, reopen="test")
        yield {"root": root, "candidates": [r.mlflow_run_id for r in runs[1:]]}


def _hash_of(run_id: str) -> str:
    from tuning.trail.tracking import client

    return client().get_run(run_id).data.tags["parameter_hash"]


def _failing(results: list[dict]) -> dict[str, str]:
    return {r["check"]: r["detail"] for r in results if r["ok"] is False}


@pytest.fixture
def edited(proj):
    """The authority with one alpha edited by hand; restored afterwards."""
    original = ALPHAS.read_bytes()
    ALPHAS.write_bytes(original.replace(b"alpha: ", b"alpha: 1", 1))
    assert PolicySet.from_dir("policies").parameter_hash != read_lineage(Path("policies"))[-1]["parameter_hash"]
    yield
    ALPHAS.write_bytes(original)


def _files() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in Path("policies").iterdir() if p.is_file() and p.name != ".authority.lock"}


def test_the_history_agrees_as_recorded(proj):
    from tuning.verify_authority import check

    results = {r["check"]: r for r in check(Path("policies"))}
    assert all(r["ok"] for r in results.values()), results
    assert "recorded in another store" in results["ladder records"]["detail"]   # the clone's committed steps


def test_promote_refuses_a_hand_edited_authority_and_writes_nothing(proj, edited):
    before = _files()
    with pytest.raises(EngineError) as err:
        promote(proj["candidates"][0], Path("policies"), decision="LAUNDER", runs_root=None, reopen="routine")
    assert err.value.code == "E3A_TUN_028_AUTHORITY_DISAGREES"
    assert "changed outside a promotion" in str(err.value) and "refusing to promote" in str(err.value)
    assert _files() == before


def test_freeze_and_certify_record_refuse_a_hand_edited_authority(proj, edited):
    from tuning.authority.freeze import freeze
    from tuning.certify import main as certify_main
    from tuning.common.errors import invoke

    before = _files()
    with pytest.raises(EngineError) as err:
        freeze(Path("policies"))
    assert err.value.code == "E3A_TUN_028_AUTHORITY_DISAGREES"
    assert invoke(certify_main, ["--authority", "--record", "--no-progress", "--holdout", "5"]) == 2
    assert _files() == before


@pytest.mark.parametrize("edit", ["past_J", "previous_authority", "seeds_evidence", "ladder_run_id", "rate"])
def test_an_edited_past_record_is_a_disagreement(proj, edit):
    from tuning.verify_authority import check

    lineage_path, ladder_path = Path("policies") / "lineage.yaml", Path("policies") / "ladder.yaml"
    saved = {p: p.read_bytes() for p in (lineage_path, ladder_path)}
    lineage, ladder = yaml.safe_load(saved[lineage_path]), yaml.safe_load(saved[ladder_path])
    mine = max(i for i, s in enumerate(ladder["steps"]) if s["decision"] == "PROMOTE_TO_P1_3")   # this store's
    if edit == "past_J":
        lineage["promotions"][-1]["J"] = 9.99
    elif edit == "previous_authority":
        lineage["promotions"][-1]["previous_authority"]["parameter_hash"] = "0" * 64
    elif edit == "seeds_evidence":
        ladder["steps"][mine]["evidence"]["seeds"] = "42,7,101,202"
    elif edit == "ladder_run_id":   # a step after ones this store holds, hidden behind a run it never held
        ladder["steps"][mine]["mlflow_run_id"] = "f" * 32
    else:
        ladder["steps"].append(dict(ladder["steps"][mine], evidence={"holdout_pass_rate_bplus_faithful": 1.0}))
    lineage_path.write_text(yaml.safe_dump(lineage, sort_keys=False))
    ladder_path.write_text(yaml.safe_dump(ladder, sort_keys=False))
    try:
        failing = _failing(check(Path("policies")))
    finally:
        for path, data in saved.items():
            path.write_bytes(data)
    expected = {"past_J": {"lineage records"}, "previous_authority": {"lineage chain", "lineage records"},
                "seeds_evidence": {"ladder records"}, "ladder_run_id": {"ladder records"}, "rate": {"ladder records"}}
    assert expected[edit] & set(failing), failing


def test_a_lineage_entry_must_replace_what_the_one_before_it_installed():
    from tuning.authority.records_check import lineage_breaks

    a = {"parameter_hash": "a" * 64, "mlflow_run_id": "r1", "decision": "PROMOTED"}
    b = {"parameter_hash": "b" * 64, "mlflow_run_id": "r2", "decision": "PROMOTED",
         "previous_authority": {"parameter_hash": "a" * 64, "mlflow_run_id": "r1"}}
    assert lineage_breaks([a, b]) == []
    laundered = dict(b, previous_authority={"parameter_hash": "e" * 64, "mlflow_run_id": "r1"})
    assert "replaced eeeeeeeeeeee, but entry 0 installed aaaaaaaaaaaa" in lineage_breaks([a, laundered])[0]
    assert "names r0 as the run it replaced" in lineage_breaks([a, dict(b, previous_authority={
        "parameter_hash": "a" * 64, "mlflow_run_id": "r0"})])[0]
    authored = {"parameter_hash": "c" * 64, "decision": "AUTHORED_INSTALL",
                "previous_authority": {"parameter_hash": "e" * 64}}   # an authored install starts the chain again
    assert lineage_breaks([a, b, authored]) == []


def test_freeze_refuses_a_certification_its_run_did_not_record(proj):
    from tuning.authority.freeze import freeze
    from tuning.authority.ladder import record_step

    ladder_path = Path("policies") / "ladder.yaml"
    saved = ladder_path.read_bytes()
    try:
        record_step("P5", "PASS_BPLUS", policies_dir=Path("policies"), source_run_id="c" * 32,
                    evidence={"fidelity": "FAITHFUL", "failing_gates": "none", "holdout_seeds": 50,
                              "holdout_pass_rate_bplus_faithful": 0.9, "holdout_pass_rate_b_faithful": 0.9})
        ladder = yaml.safe_load(ladder_path.read_text())
        ladder["steps"][-1]["evidence"]["holdout_pass_rate_bplus_faithful"] = 1.0   # forged in the file
        ladder_path.write_text(yaml.safe_dump(ladder, sort_keys=False))
        with pytest.raises(EngineError) as err:
            freeze(Path("policies"))
        assert err.value.code == "E3A_TUN_028_AUTHORITY_DISAGREES"
        assert "holdout_pass_rate_bplus_faithful" in str(err.value)
        assert yaml.safe_load(ladder_path.read_text())["steps"][-1]["phase"] == "P5"   # nothing frozen
    finally:
        ladder_path.write_bytes(saved)


def test_a_candidate_scored_on_part_of_the_seedpack_is_scored_on_the_rest(proj):
    from tuning.authority.promotion import _require_seedpack_faithful
    from tuning.study.knobs import apply_knobs

    authority = PolicySet.from_dir("policies")
    assert _require_seedpack_faithful("r", authority, {"seeds": [202]}, None) == \
        {42: "FAITHFUL", 7: "FAITHFUL", 101: "FAITHFUL"}
    # S3 draws at a temperature of 0.6: outlets spread from where people live (F04 and F08 read it on every seed;
    # the forced-share knobs it used can no longer move outlets onto clocks whose people cannot carry them)
    distorting = apply_knobs(authority, {"alpha_temperature": 0.6})
    assert _require_seedpack_faithful("r", distorting, {"seeds": [42, 7, 101, 202]}, None) == {}   # scored already
    with pytest.raises(EngineError) as err:
        _require_seedpack_faithful("r", distorting, {"seeds": [202]}, None)
    assert err.value.code == "E3A_TUN_026_CANDIDATE_NOT_FAITHFUL"
    # the seedpack's other seeds are scored: the refusal names those that read DISTORTED
    assert all(f"{seed} DISTORTED" in str(err.value) for seed in (42, 7, 101))
    assert "scored on seeds 202, and on the seedpack's other seeds" in str(err.value)
