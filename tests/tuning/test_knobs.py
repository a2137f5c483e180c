"""Knobs: bounded, named transforms authority -> candidate, on a small stand-in policy set."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings, strategies as st

from engine.core.errors import EngineError
from engine.policies import PolicySet
from tuning.study.knobs import KNOBS, apply_knobs, reshape_shares

MIXTURE = {"policy_id": "zone_mixture_policy_3A", "version": "v1.0.0", "theta_mix": 0.35, "rules": [
    {"metric": "site_count_lt", "threshold": 3, "decision_reason": "below_min_sites"},
    {"metric": "zone_count_country_le", "threshold": 1, "decision_reason": "forced_monolithic"},
    {"metric": "zone_count_country_ge", "threshold": 4, "decision_reason": "forced_escalation"},
    {"metric": "site_count_ge", "threshold": 35, "decision_reason": "forced_escalation"}]}
ALPHAS = {"version": "v1.0.0", "countries": {
    "AA": {"tzid_alphas": [{"tzid": "X/One", "alpha": 97.0}, {"tzid": "X/Two", "alpha": 2.0},
                           {"tzid": "X/Three", "alpha": 1.0}]},
    "BB": {"tzid_alphas": [{"tzid": "Y/Only", "alpha": 20.0}]}}}
FLOORS = {"version": "v1.0.0", "floors": [{"tzid": "X/One", "floor_value": 0.5, "bump_threshold": 0.6},
                                          {"tzid": "X/Two", "floor_value": 0.1, "bump_threshold": 0.0}]}


@pytest.fixture
def base() -> PolicySet:
    dump = lambda d: yaml.safe_dump(d, sort_keys=False).encode()  # noqa: E731
    return PolicySet({"zone_mixture_policy": dump(MIXTURE), "country_zone_alphas": dump(ALPHAS),
                      "zone_floor_policy": dump(FLOORS)})


def alphas(ps: PolicySet, iso: str) -> np.ndarray:
    return np.array([e["alpha"] for e in ps.doc("country_zone_alphas")["countries"][iso]["tzid_alphas"]])


def test_the_geometry_never_pulls_outlets_into_a_zone_the_evidence_leaves_empty():
    """A zone at the minimum alpha (authored so where its country's evidence has nobody) stays there under every P1.2
    knob; the populated zones are reshaped among themselves, their alpha sum kept (golden: blend over K = 2)."""
    doc = {"version": "v1.0.0", "countries": {"AU": {"tzid_alphas": [
        {"tzid": "Australia/Lord_Howe", "alpha": 1e-6}, {"tzid": "Australia/Perth", "alpha": 10.0},
        {"tzid": "Australia/Sydney", "alpha": 30.0}]}}}
    dump = lambda d: yaml.safe_dump(d, sort_keys=False).encode()  # noqa: E731
    base = PolicySet({"zone_mixture_policy": dump(MIXTURE), "country_zone_alphas": dump(doc),
                      "zone_floor_policy": dump(FLOORS)})
    for knobs in ({"blend_lambda": 1.0}, {"hub_cap": 0.5, "tail_gamma": 0.0}, {"blend_lambda": 0.3, "hub_cap": 0.6}):
        a = alphas(apply_knobs(base, knobs), "AU")
        assert a[0] == 1e-6 and a[1:].sum() == pytest.approx(40.0, abs=1e-5), knobs
    assert alphas(apply_knobs(base, {"blend_lambda": 0.5}), "AU")[1:].tolist() == [15.0, 25.0]   # 40 * (s/2 + 1/4)


def test_blend_lambda_keeps_alpha_sum_and_pulls_toward_uniform(base):
    cand = apply_knobs(base, {"blend_lambda": 0.5})
    a = alphas(cand, "AA")
    assert a.sum() == pytest.approx(100.0, abs=1e-5)
    assert a[0] == pytest.approx(100 * (0.5 * 0.97 + 0.5 / 3), abs=1e-5)
    assert alphas(cand, "BB").tolist() == [20.0]  # single-zone countries untouched
    assert cand.digests["zone_floor_policy"] == base.digests["zone_floor_policy"]  # untouched bytes
    assert cand.digests["country_zone_alphas"] != base.digests["country_zone_alphas"]


def test_hub_cap_spreads_excess_over_tail_by_gamma(base):
    even = reshape_shares(np.array([0.97, 0.02, 0.01]), hub_cap=0.6, tail_gamma=0.0)
    prop = reshape_shares(np.array([0.97, 0.02, 0.01]), hub_cap=0.6, tail_gamma=1.0)
    assert even.max() == pytest.approx(0.6) and prop.max() == pytest.approx(0.6)
    assert even[1] - even[2] == pytest.approx(0.01)  # equal increments
    assert prop[1] == pytest.approx(2 * prop[2])      # proportional increments
    water = reshape_shares(np.array([0.5, 0.45, 0.05]), hub_cap=0.4, tail_gamma=1.0)
    assert water.max() <= 0.4 + 1e-12 and water.sum() == pytest.approx(1.0)
    assert reshape_shares(np.array([0.9, 0.1]), hub_cap=0.1).tolist() == pytest.approx([0.5, 0.5])  # cap >= 1/K
    cand = apply_knobs(base, {"hub_cap": 0.6, "tail_gamma": 1.0})
    assert (alphas(cand, "AA") > 0).all() and alphas(cand, "AA").max() == pytest.approx(60.0, abs=1e-5)


def test_floor_knobs(base):
    cand = apply_knobs(base, {"floor_scale": 2.0, "threshold_shift": 0.5})
    floors = cand.doc("zone_floor_policy")["floors"]
    assert [f["floor_value"] for f in floors] == [1.0, 0.2]
    assert [f["bump_threshold"] for f in floors] == [1.0, 0.5]  # clipped to [0, 1]
    lowered = apply_knobs(base, {"threshold_shift": -1.0}).doc("zone_floor_policy")["floors"]
    assert [f["bump_threshold"] for f in lowered] == [1e-6, 0.0]   # a gated floor keeps the empty mark


def test_no_threshold_shift_floors_a_zone_its_country_leaves_empty():
    """Authored on a world whose pack keeps CD's Africa/Maputo empty beside MZ's people there, the gate ALPHA_MIN
    keeps MZ's floor off CD's empty clock; P1.3's most negative shift used to clip it to 0 and put it back."""
    import pandas as pd

    from engine.policies.authoring import author_policies
    from engine.states.s2_priors import priors

    pop = pd.DataFrame({"country_iso": ["CD", "CD", "MZ", "MZ"],
                        "tzid": ["Africa/Kinshasa", "Africa/Maputo", "Africa/Maputo", "Africa/Johannesburg"],
                        "population": [20e6, 0.0, 30e6, 1e6]})
    base = PolicySet(author_policies(pop))
    for shift in (-1.0, -0.3, 0.0):
        cand = apply_knobs(base, {"threshold_shift": shift, "floor_scale": 10.0})
        s2 = priors(pop[["country_iso", "tzid"]], cand.doc("country_zone_alphas"),
                    cand.doc("zone_floor_policy")).set_index(["country_iso", "tzid"])
        assert s2.loc[("CD", "Africa/Maputo"), "alpha_effective"] == 1e-6
        assert s2.loc[("MZ", "Africa/Johannesburg"), "alpha_effective"] == 1.0   # the populated clock's floor


def test_block_knobs_enable_their_block_and_lift_dependents(base):
    cand = apply_knobs(base, {"merchant_jitter": 0.3, "merchant_jitter_clip": 0.1, "site_threshold": 12,
                              "stochastic_rounding": True, "theta_mix": 0.5, "site_count_ge": 60,
                              "zone_count_min": 6, "zone_count_max": 4})
    doc = cand.doc("zone_mixture_policy")
    assert doc["s3_dispersion"]["enabled"] and doc["s3_dispersion"]["merchant_jitter_clip"] == 0.3
    assert doc["s4_safeguards"] == {**doc["s4_safeguards"], "enabled": True, "site_threshold": 12,
                                    "stochastic_rounding": True}
    assert doc["s1_smoothing"]["enabled"] and doc["s1_smoothing"]["zone_count_max"] == 7
    assert doc["theta_mix"] == 0.5
    assert [r["threshold"] for r in doc["rules"] if r["metric"] == "site_count_ge"] == [60]
    assert doc["version"].startswith("v1.0.0+tuned.")


def test_candidate_bytes_are_deterministic(base):
    a = apply_knobs(base, {"blend_lambda": 0.25, "hub_cap": 0.7})
    b = apply_knobs(base, {"hub_cap": 0.7, "blend_lambda": 0.25})
    assert a.raw == b.raw and a.parameter_hash == b.parameter_hash
    assert apply_knobs(base, {}) is base


@pytest.mark.parametrize("values, code", [
    ({"blend_lambda": 1.5}, "E3A_TUN_001_KNOB_OUT_OF_RANGE"),
    ({"site_threshold": 2.5}, "E3A_TUN_001_KNOB_OUT_OF_RANGE"),
    ({"stochastic_rounding": "yes"}, "E3A_TUN_001_KNOB_OUT_OF_RANGE"),
    ({"alpha_floor": 0.0}, "E3A_TUN_001_KNOB_OUT_OF_RANGE"),
    ({"no_such_knob": 1}, "E3A_TUN_002_UNKNOWN_KNOB"),
])
def test_bad_knob_values_are_coded(base, values, code):
    with pytest.raises(EngineError) as err:
        apply_knobs(base, values)
    assert err.value.code == code


def test_missing_rule_target_is_coded(base):
    doc = dict(MIXTURE, rules=[r for r in MIXTURE["rules"] if r["metric"] != "zone_count_country_ge"])
    ps = base.replace(zone_mixture_policy=yaml.safe_dump(doc, sort_keys=False).encode())
    with pytest.raises(EngineError) as err:
        apply_knobs(ps, {"zone_count_country_ge": 5})
    assert err.value.code == "E3A_TUN_003_KNOB_TARGET_MISSING"


def test_every_knob_domain_is_inside_the_policy_schema(base):
    """Each knob at its bounds yields a policy the engine accepts (the sanity checks included): the
    candidate's bytes of the knob's policy parse (engine parser, no registration shortcut) to the candidate
    document, and no other policy changes."""
    from engine.policies.policy_set import parse_policy

    for name, k in KNOBS.items():
        for v in ([False, True] if k.kind == "bool" else [k.low, k.high]):
            cand = apply_knobs(base, {name: v})
            assert parse_policy(k.policy_id, cand.raw[k.policy_id], f"{name}={v}") == cand.doc(k.policy_id), name
            assert {p for p in cand.raw if cand.raw[p] != base.raw.get(p)} <= {k.policy_id}, (name, v)


@functools.lru_cache(maxsize=1)
def _authority() -> PolicySet:
    return PolicySet.from_dir(Path(__file__).resolve().parents[2] / "policies")


@settings(max_examples=25, deadline=None)
@given(st.floats(0.0, 0.9), st.floats(0.35, 1.0), st.floats(0.0, 2.0), st.floats(0.25, 1.5), st.floats(0.0, 0.5))
def test_candidate_bytes_load_back_to_the_registered_document(lam, cap, gamma, scale, jitter):
    """with_documents registers the edited document for its bytes: those bytes must parse to it."""
    from engine.policies.policy_set import parse_policy

    cand = apply_knobs(_authority(), {"blend_lambda": lam, "hub_cap": cap, "tail_gamma": gamma,
                                      "concentration_scale": scale, "merchant_jitter": jitter})
    for pid in ("country_zone_alphas", "zone_mixture_policy"):
        assert parse_policy(pid, cand.raw[pid], pid) == cand.doc(pid)


def test_temper_beta_is_a_geometric_pull_toward_uniform(base):
    # (.97, .02, .01) ** .5 = (.984886, .141421, .1), over their sum 1.226307: .803131 first
    got = reshape_shares(np.array([0.97, 0.02, 0.01]), temper_beta=0.5)
    root = np.sqrt([0.97, 0.02, 0.01])
    assert got.tolist() == pytest.approx((root / root.sum()).tolist(), rel=1e-12)
    assert got[0] == pytest.approx(0.803131, abs=1e-6)
    assert reshape_shares(np.array([0.97, 0.02, 0.01]), temper_beta=0.0).tolist() == pytest.approx([1 / 3] * 3)
    assert reshape_shares(np.array([0.97, 0.02, 0.01]), temper_beta=1.0).tolist() == [0.97, 0.02, 0.01]
    cand = apply_knobs(base, {"temper_beta": 0.5})
    assert alphas(cand, "AA").sum() == pytest.approx(100.0, abs=1e-5) and alphas(cand, "BB").tolist() == [20.0]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(1e-6, 1.0), min_size=2, max_size=12), st.floats(0.0, 1.0))
def test_temper_beta_keeps_order_and_bounds_a_small_zones_growth(raw, beta):
    """A zone's share grows by at most s^(beta - 1) (the sum of s^beta is >= 1), so a zone with few people gains
    little mass, unlike blend_lambda's lambda/K; the order of the zones is kept."""
    s = np.array(raw) / np.sum(raw)
    got = reshape_shares(s, temper_beta=beta)
    assert got.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(got <= s ** beta * (1 + 1e-9))
    order = np.argsort(s, kind="stable")
    assert np.all(np.diff(got[order]) >= -1e-12)
