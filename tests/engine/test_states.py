"""Each state's law against expectations computed by hand."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from engine.core.errors import EngineError
from engine.core.rng import pair_uniforms
from engine.policies.authoring import author_mixture
from engine.states import s1_escalation, s2_priors, s4_counts
from engine.states.common import zone_layout
from engine.states.s3_plan import draw_plan
from engine.states.s1_escalation import smoothing_probability

SMOOTH = {"enabled": True, "zone_count_min": 5, "zone_count_max": 16, "zone_escalation_prob_min": 0.08,
          "zone_escalation_prob_max": 0.5, "site_count_slope": 0.2, "site_count_cap": 0.22}


@pytest.mark.parametrize("z,n,p", [(5, 1, 0.08), (5, 2, 0.28), (10, 1, 0.08 + 5 / 11 * 0.42), (16, 2, 0.70),
                                   (30, 2, 0.70), (4, 2, 0.0)])
def test_smoothing_law_examples(z, n, p):
    # spec §3.5: (z=10, n=1) -> 0.08 + (10-5)/(16-5) * (0.5-0.08) = 0.2709
    assert smoothing_probability(SMOOTH, np.array([z]), np.array([n]))[0] == pytest.approx(p, abs=1e-12)


def test_rule_ladder_first_match_wins():
    mixture = author_mixture()
    pairs = pd.DataFrame({"merchant_id": np.array([1, 2, 3, 4, 5], dtype=np.uint64),
                          "legal_country_iso": ["AA", "BB", "CC", "BB", "DD"],
                          "site_count": [2, 10, 10, 40, 5]})
    zones = pd.Series({"AA": 5, "BB": 1, "CC": 6, "DD": 2})
    out, smoothed = s1_escalation.escalate(pairs, zones, mixture, b"k" * 32)
    # 1: n=2 < 3 -> below_min_sites (before the z>=4 rule); 2: z=1 -> forced_monolithic;
    # 3: z=6 >= 4 -> forced_escalation; 4: z=1 wins over n>=35; 5: no rule -> theta lottery
    assert out["decision_reason"].tolist()[:4] == ["below_min_sites", "forced_monolithic", "forced_escalation",
                                                   "forced_monolithic"]
    assert out["decision_reason"].iloc[4] in ("default_escalation", "legacy_default")
    assert out["is_escalated"].tolist()[:4] == [False, False, True, False]
    assert out["eligible_for_escalation"].tolist()[:4] == [False, False, True, False]
    assert smoothed == 0


def test_theta_lottery_rate_and_independence_from_policy():
    mixture = author_mixture()
    n = 4000
    pairs = pd.DataFrame({"merchant_id": np.arange(n, dtype=np.uint64), "legal_country_iso": ["BB"] * n,
                          "site_count": [10] * n})
    zones = pd.Series({"BB": 2})
    a, _ = s1_escalation.escalate(pairs, zones, mixture, b"k" * 32)
    assert a["is_escalated"].mean() == pytest.approx(0.35, abs=0.03)
    mixture2 = dict(mixture, theta_mix=0.5)
    b, _ = s1_escalation.escalate(pairs, zones, mixture2, b"k" * 32)
    # common random numbers: raising theta only adds escalations, never removes one
    assert (b["is_escalated"] | ~a["is_escalated"]).all()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 60), st.sampled_from(["AA", "BB", "CC"]), st.integers(1, 50)),
                min_size=1, max_size=40, unique_by=lambda t: t[:2]), st.data())
def test_a_pairs_decision_does_not_depend_on_the_other_pairs(rows, data):
    # the domain's uniforms are keyed per pair: deciding a sub-domain gives each kept pair the decision it has in
    # the whole domain, smoothing band and theta lottery included
    rows = sorted(rows)
    pairs = pd.DataFrame({"merchant_id": np.array([r[0] for r in rows], dtype=np.uint64),
                          "legal_country_iso": [r[1] for r in rows], "site_count": [r[2] for r in rows]})
    mixture = dict(author_mixture(), s1_smoothing=dict(SMOOTH, zone_count_min=2))
    zones = pd.Series({"AA": 1, "BB": 3, "CC": 6})
    keep = sorted(data.draw(st.sets(st.integers(0, len(rows) - 1), min_size=1)))
    whole, _ = s1_escalation.escalate(pairs, zones, mixture, s1_escalation.DecisionDraws(pairs, b"m" * 32))
    part, _ = s1_escalation.escalate(pairs.iloc[keep].reset_index(drop=True), zones, mixture, b"m" * 32)
    plain = lambda f: f.astype(object).where(f.notna(), None)   # noqa: E731 - an all-None bucket stays object
    pd.testing.assert_frame_equal(plain(whole.iloc[keep].reset_index(drop=True)), plain(part))


def test_decision_draws_kept_from_earlier_requests_are_the_pairs_own_uniforms():
    # the chain keeps one DecisionDraws per domain across candidates: whichever rows earlier candidates drew
    # (overlapping, repeated, out of order), each row's uniform is its keyed draw (the hash law, computed apart)
    rng = np.random.default_rng(3)
    pairs = pd.DataFrame({"merchant_id": rng.choice(10 ** 6, 300, replace=False).astype(np.uint64),
                          "legal_country_iso": rng.choice(["AA", "BB", "CC"], 300), "site_count": 1})
    draws = s1_escalation.DecisionDraws(pairs, b"m" * 32)
    for rows in (rng.choice(300, 40, replace=False), np.arange(0, 300, 7), rng.permutation(300)[:150]):
        want = pair_uniforms(b"m" * 32, "theta_mix", pairs["merchant_id"].iloc[rows].tolist(),
                             pairs["legal_country_iso"].iloc[rows].tolist())
        assert np.array_equal(draws.uniforms("theta_mix", rows), want)
    every = np.arange(300)
    assert not np.array_equal(draws.uniforms("smooth_band", every), draws.uniforms("theta_mix", every))


def test_floor_bump_law():
    universe = pd.DataFrame({"country_iso": ["AA", "AA", "AA"], "tzid": ["Z/a", "Z/b", "Z/c"]})
    alphas = {"countries": {"AA": {"tzid_alphas": [{"tzid": "Z/a", "alpha": 8.0}, {"tzid": "Z/b", "alpha": 1.0},
                                                   {"tzid": "Z/c", "alpha": 1.0}]}}}
    floors = {"floors": [{"tzid": "Z/a", "floor_value": 20.0, "bump_threshold": 0.9},   # share 0.8 < 0.9: no
                         {"tzid": "Z/b", "floor_value": 3.0, "bump_threshold": 0.0}]}  # unconditional: 1 -> 3
    out = s2_priors.priors(universe, alphas, floors)
    assert out["alpha_effective"].tolist() == [8.0, 3.0, 1.0]
    assert out["floor_applied"].tolist() == [False, True, False]
    assert out["alpha_sum_country"].tolist() == [12.0] * 3
    assert out["share_effective"].tolist() == pytest.approx([8 / 12, 3 / 12, 1 / 12])


def test_alpha_pack_must_match_universe():
    universe = pd.DataFrame({"country_iso": ["AA", "AA"], "tzid": ["Z/a", "Z/b"]})
    missing = {"countries": {"AA": {"tzid_alphas": [{"tzid": "Z/a", "alpha": 1.0}]}}}
    extra = {"countries": {"AA": {"tzid_alphas": [{"tzid": "Z/a", "alpha": 1.0}, {"tzid": "Z/b", "alpha": 1.0},
                                                  {"tzid": "Z/x", "alpha": 1.0}]}}}
    with pytest.raises(EngineError) as e1:
        s2_priors.priors(universe, missing, {"floors": []})
    assert e1.value.code == "E3A_S2_007_DOMAIN_MISMATCH_UNIVERSE"
    with pytest.raises(EngineError) as e2:
        s2_priors.priors(universe, extra, {"floors": []})
    assert e2.value.code == "E3A_S2_005_ZONE_UNIVERSE_MISMATCH"


def _layout(sites, k=3):
    s1 = pd.DataFrame({"merchant_id": np.arange(len(sites), dtype=np.uint64), "legal_country_iso": ["AA"] * len(sites),
                       "site_count": sites, "is_escalated": [True] * len(sites)})
    s2 = pd.DataFrame({"country_iso": ["AA"] * k, "tzid": [f"Z/{chr(97 + i)}" for i in range(k)]})
    return zone_layout(s1, s2)


def test_largest_remainder_with_tzid_tie_break():
    lay = _layout([10, 7])
    # pair 0: T = (5.5, 2.5, 2.0) -> floors (5, 2, 2), R = 1, tie 0.5/0.5 -> Z/a first -> (6, 2, 2)
    # pair 1: T = (0.7, 2.1, 4.2) -> floors (0, 2, 4), R = 1, largest residual 0.7 -> (1, 2, 4)
    shares = np.array([0.55, 0.25, 0.20, 0.1, 0.3, 0.6])
    out, _ = s4_counts.integerise(draw_plan(lay, b"m" * 32), shares, {"enabled": False})
    assert out["zone_site_count"].tolist() == [6, 2, 2, 1, 2, 4]
    assert out["residual_rank"].tolist()[:3] == [1, 2, 3]


def test_safeguard_moves_sites_to_second_zone():
    lay = _layout([20])
    shares = np.array([0.97, 0.02, 0.01])  # T = (19.4, 0.4, 0.2): b = (19, 0, 0), R = 1 -> largest LR (19, 1, 0)
    guards = {"enabled": True, "site_threshold": 10, "min_second_zone_share": 0.1, "max_forced_zones": 1,
              "stochastic_rounding": False}
    out, counters = s4_counts.integerise(draw_plan(lay, b"m" * 32), shares, guards)
    # ceil(0.1 * 20) = 2 sites for the 2nd zone by share: one more, taken from the top zone
    assert out["zone_site_count"].tolist() == [18, 2, 0]
    assert counters == {"pairs_safeguard_adjusted": 1, "sites_moved": 1, "stochastic_rounding": False}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 500), min_size=1, max_size=20), st.integers(2, 7), st.booleans(), st.integers(0, 10**6))
def test_integerisation_conserves_counts(sites, k, stochastic, salt):
    lay = _layout(sites, k)
    rng = np.random.default_rng(salt)
    raw = rng.gamma(0.3, size=(len(sites), k)) + 1e-12
    shares = (raw / raw.sum(axis=1, keepdims=True)).ravel()
    guards = {"enabled": True, "site_threshold": 5, "min_second_zone_share": 0.2, "max_forced_zones": 2,
              "stochastic_rounding": stochastic}
    out, _ = s4_counts.integerise(draw_plan(lay, salt.to_bytes(32, "little")), shares, guards)
    counts = out["zone_site_count"].to_numpy().reshape(len(sites), k)
    assert (counts >= 0).all()
    assert counts.sum(axis=1).tolist() == sites
    plain, _ = s4_counts.integerise(draw_plan(lay, b"s" * 32), shares, dict(guards, min_second_zone_share=0.0))
    extra = plain["zone_site_count"].to_numpy() - np.floor(plain["fractional_target"].to_numpy())
    assert set(np.unique(extra)) <= {0.0, 1.0}  # without forcing, every zone gets floor(T) or floor(T) + 1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=40), st.integers(0, 2**32 - 1), st.integers(1, 4))
def test_rank_within_pairs_is_the_lexsort_rank(ks, seed, levels):
    # an independent reference: the three-key lexsort S4 used before (ties by zone position), on values with
    # few distinct levels so that ties are common
    from engine.states.common import ZoneLayout, rank_within_pairs

    k = np.asarray(ks, dtype=np.int64)
    start = np.cumsum(k) - k
    row_pair = np.repeat(np.arange(len(k)), k)
    pos = np.arange(int(k.sum())) - np.repeat(start, k)
    values = np.random.default_rng(seed).integers(0, levels, len(row_pair)) / levels
    layout = ZoneLayout(pair_merchant=np.zeros(len(k), np.uint64), pair_country=np.zeros(len(k), object),
                        pair_sites=k, pair_k=k, pair_start=start, row_pair=row_pair, row_zone_pos=pos,
                        row_prior=pos, row_tzid=pos.astype(object), tzids=pos.astype(object),
                        zone_countries=pos.astype(object))
    order = np.lexsort((pos, -values, row_pair))
    want = np.empty(len(order), dtype=np.int64)
    want[order] = np.arange(len(order)) - start[row_pair[order]]
    assert np.array_equal(rank_within_pairs(values, layout), want)
