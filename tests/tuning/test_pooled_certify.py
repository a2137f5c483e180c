"""3A-F09 in certification: each held-out seed's realised outlets pooled per country against its people. A policy that
steered one small country's prior onto its least-peopled clocks (fewer than F08's 30 merchants a seed) passed every
per-seed gate and was caught pooled only; since F06 reads each country's prior at 0.03 it is caught on every seed too,
and the pooled read agrees. The pooled-only reason (a realised bias no prior shows) is tested on the grading."""

from __future__ import annotations

import json
import shutil

import yaml

from engine import default_world
from engine import POOLED_JSD_MAX
from tests.tuning.conftest import run_module
from tuning.authority.certification import _grade


def _steer(src, dst, country: str, k: float = 9.5, under: float = 0.03) -> None:
    """A copy of ``src`` whose ``country``'s clocks under ``under`` of its people get ``k`` times their people's share of
    its prior (its other clocks scaled down), its alpha sum kept: a red team's recipe."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("lineage.yaml", "ladder.yaml"))
    ev = default_world().evidence
    pop = ev.clock_population[ev.clock_population["country_iso"] == country].set_index("clock")["population"]
    people = pop / pop.sum()
    clock = ev.zone_clocks[ev.zone_clocks["country_iso"] == country].set_index("tzid")["clock"]
    path = dst / "country_zone_alphas.yaml"
    doc = yaml.safe_load(path.read_text())
    entries = doc["countries"][country]["tzid_alphas"]
    total = sum(e["alpha"] for e in entries)
    share = {e["tzid"]: float(people.get(clock.get(e["tzid"]), 0.0)) for e in entries}
    small = {t for t, v in share.items() if v < under}
    rest, big = 1 - k * sum(share[t] for t in small), sum(v for t, v in share.items() if t not in small)
    for e in entries:
        t = e["tzid"]
        e["alpha"] = round(max((k * share[t] if t in small else share[t] / big * rest) * total, 0.1), 6)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_a_steered_small_country_is_distorted_on_every_seed_and_pooled(project):
    _steer(project / "policies", project / "steered", "AU")
    out = run_module(project, "tuning.certify", "--policies", "steered", "--holdout", "30", "--json", "--no-progress",
                     "--require-certified", timeout=600)
    assert out.returncode == 2, out.stderr[-2000:]
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("E3A_TUN_031_NOT_CERTIFIED: ") and "seed 42: 3A-F06_prior_jsd_max" in line, line
    summary = json.loads(out.stdout)
    assert set(summary["fidelity"].values()) == {"DISTORTED"}, "each seedpack seed reads the steered prior"
    assert all(gates == ["3A-F06_prior_jsd_max"] for gates in summary["fidelity_failing"].values())
    pooled = summary["holdout"]["pooled"]
    assert pooled["country"] == "AU" and pooled["jsd_low_max"] > POOLED_JSD_MAX and not pooled["faithful"]
    assert pooled["jsd_max"] >= pooled["jsd"] > pooled["jsd_low_max"]
    assert summary["fidelity_verdict"] == "DISTORTED" and summary["certified"] is False
    assert summary["certified_grade"] is None
    # the authority it was steered from, on the same held-out seeds (in this process: certify's success path as a
    # program is tests/robustness/test_cli_programs.py's)
    from engine import PolicySet
    from tuning.authority.certification import pooled_line
    from tuning.authority.holdout import holdout_report, holdout_seeds, tuning_seeds

    seeds = holdout_seeds(30, tuning_seeds(project / "studies"))
    assert seeds == summary["holdout"]["seeds"]
    shown = holdout_report(PolicySet.from_dir(project / "policies"), seeds, world=default_world())["pooled"]
    assert shown["faithful"] and shown["jsd_low_max"] <= shown["jsd_max"] < POOLED_JSD_MAX and shown["countries"] >= 10
    assert pooled_line(shown).startswith("pooled fidelity (3A-F09): largest country JSD beyond the seeds' scatter")


def _summary(fidelity: str, pooled: dict | None) -> dict:
    return {"verdict": "PASS_BPLUS", "fidelity_verdict": fidelity, "certified": fidelity == "FAITHFUL",
            "reasons": [], "holdout": {"n": 200, "pass_rate_b_faithful": 1.0, "pass_rate_bplus_faithful": 1.0,
                                       "pass_rate_bplus": 1.0, "pass_rate_b": 1.0, "faithful_rate": 1.0,
                                       "pooled": pooled}}


POOLED_FAIL = {"faithful": False, "seeds": 200, "country": "AU", "jsd": 0.0677, "jsd_max": 0.0677, "jsd_low_max": 0.052,
               "line": POOLED_JSD_MAX}


def test_grading_reads_the_pooled_record_only_where_the_seeds_read_faithful():
    failed = _summary("FAITHFUL", POOLED_FAIL)
    _grade(failed)
    assert failed["fidelity_verdict"] == "DISTORTED" and not failed["certified"] and not failed["seedpack_certified"]
    assert failed["certified_grade"] is None and failed["reasons"][-1].startswith("3A-F09 pooled fidelity: over 200")
    assert "AU's realised outlets sit 0.0677 (JSD) from its people, at least 0.0520 beyond" in failed["reasons"][-1]
    held = _summary("FAITHFUL", {**POOLED_FAIL, "faithful": True, "jsd": 0.004, "jsd_max": 0.004,
                                        "jsd_low_max": 0.002})
    _grade(held)
    assert held["fidelity_verdict"] == "FAITHFUL" and held["certified"] and held["certified_grade"] == "BPLUS"
    distorted = _summary("DISTORTED", POOLED_FAIL)   # already distorted on a seed: its seeds' gates say why
    _grade(distorted)
    assert distorted["reasons"] == [] and not distorted["certified"]
    unmeasured = _summary("NOT_APPLICABLE", None)   # a world without evidence: nothing pooled
    _grade(unmeasured)
    assert unmeasured["fidelity_verdict"] == "NOT_APPLICABLE" and unmeasured["reasons"] == []


def test_a_seedpack_that_reads_faithful_is_refused_for_its_pooled_read_alone():
    """The one line of a refusal names 3A-F09 where every seedpack seed is FAITHFUL and only the pool is not (a
    realised bias in a small country that no per-seed gate reads)."""
    from tuning.certify import _why_not

    summary = {**_summary("FAITHFUL", POOLED_FAIL), "fidelity_failing": {42: [], 7: []}}
    _grade(summary)
    assert _why_not(summary) == summary["reasons"][-1]
    assert _why_not(summary).startswith("3A-F09 pooled fidelity: over 200 held-out seeds, AU's realised outlets sit "
                                        "0.0677 (JSD) from its people, at least 0.0520 beyond the seeds' scatter")


def test_a_campaign_never_chooses_a_candidate_its_validation_seeds_read_distorted_pooled():
    """The campaign's validation pools its seeds as a certification pools its held-out seeds: a candidate whose
    seeds each read FAITHFUL but whose pooled outlets do not is scored below every other (never chosen)."""
    from types import SimpleNamespace

    from engine import seed_outlets
    from engine.metrics.pooled import POOLED_MIN_SEEDS
    from tests.metrics.test_pooled import EVIDENCE, _s4
    from tuning.campaign.validation import DISTORTED_POOLED, validation_score

    def seed(on_a: int, on_b: int, outlets: bool = True):
        return SimpleNamespace(vetoes=[], targets={"t": True}, verdict="PASS_BPLUS", fidelity="FAITHFUL", pack=None,
                               outlets=seed_outlets(_s4(200, on_a, on_b), EVIDENCE) if outlets else None)

    n = POOLED_MIN_SEEDS   # the seeds a country needs for their spread to read as its scatter
    steered = SimpleNamespace(per_seed=[seed(0, 400)] * n)      # K/B: 10% of the people, most outlets
    faithful = SimpleNamespace(per_seed=[seed(701, 100)] * n)  # 900 : 100, as the people
    assert validation_score(steered, EVIDENCE) == DISTORTED_POOLED
    assert validation_score(faithful, EVIDENCE)[:2] == (1.0, 1.0)
    assert validation_score(steered)[:2] == (1.0, 1.0), "no evidence given: nothing pooled"
    assert validation_score(SimpleNamespace(per_seed=[seed(0, 400)] * (n - 1)), EVIDENCE)[:2] == (1.0, 1.0), \
        "too few seeds to read the country"
    unpooled = SimpleNamespace(per_seed=[seed(0, 400)] * n + [seed(0, 400, outlets=False)])
    assert validation_score(unpooled, EVIDENCE)[:2] == (1.0, 1.0), "a seed scored without its outlets: not pooled"


def test_a_memo_row_scored_without_its_outlets_is_scored_again_where_validation_wants_them():
    """A campaign's precheck scores the authority on the validation seeds without outlets; its validation, which
    pools them, scores that row again (the memo then holds the row with them), never pools a seed short."""
    from engine import PolicySet, default_world
    from tests.tuning.conftest import REPO
    from tuning.study.objective import PhaseObjective
    from tuning.study.score_memo import shared_scores
    from tuning.study.spec import load_study

    spec, world = load_study(REPO / "studies" / "P1.2.yaml", str(REPO / "studies")), default_world()
    base = PolicySet.from_dir(REPO / "policies")
    with shared_scores() as memo:
        plain = PhaseObjective(spec, 5, base, world=world)
        assert plain.anchor.outlets is None and memo.misses == 1
        pooling = PhaseObjective(spec, 5, base, world=world)
        pooling.keep_outlets = True
        assert pooling.anchor.outlets is not None and memo.misses == 2 and memo.hits == 0   # scored again: a miss
        again = PhaseObjective(spec, 5, base, world=world)
        again.keep_outlets = True
        assert again.anchor.outlets is not None and memo.hits == 1, "the row now holds its outlets"


def test_a_policy_set_outside_the_authoring_realism_floors_is_not_certified(tmp_path):
    """Tuning vetoes every candidate outside the authoring realism floors (alpha sums in [15, 160], enough
    non-uniform priors); a policy folder edited by hand past them (helper 46: alpha sums of 1e-4, one-hot draws) is
    read by the certification the same way, and not certified."""
    from types import SimpleNamespace

    from engine import PolicySet
    from tests.tuning.conftest import REPO
    from tuning.authority.certification import _run_seeds

    shutil.copytree(REPO / "policies", tmp_path / "low", ignore=shutil.ignore_patterns("lineage.yaml", "ladder.yaml"))
    path = tmp_path / "low" / "country_zone_alphas.yaml"
    doc = yaml.safe_load(path.read_text())
    for e in doc["countries"]["GE"]["tzid_alphas"]:
        e["alpha"] = round(e["alpha"] * 1e-3, 9)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    bar = SimpleNamespace(update=lambda n: None)
    floors = {name: _run_seeds(PolicySet.from_dir(d), [42], None, bar, default_world())[3]
              for name, d in (("authority", REPO / "policies"), ("low", tmp_path / "low"))}
    assert floors["authority"]["passed"] and floors["authority"]["reasons"] == []
    assert not floors["low"]["passed"] and floors["low"]["reasons"][0] == "alpha sum below 15.0 in 1 countries (e.g. GE)"
    summary = {**_summary("FAITHFUL", None), "realism_floors": floors["low"]}
    _grade(summary)
    assert not summary["certified"] and not summary["seedpack_certified"] and summary["certified_grade"] is None
    assert summary["reasons"][-1] == f"realism floor: {floors['low']['reasons'][0]}"
    held = {**_summary("FAITHFUL", None), "realism_floors": floors["authority"]}
    _grade(held)
    assert held["certified"] and held["certified_grade"] == "BPLUS"
