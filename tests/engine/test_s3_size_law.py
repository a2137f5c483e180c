"""S3 merchant-size law (``s3_dispersion.site_elasticity`` / ``site_reference``).

concentration per pair = concentration_scale x (1 + jitter) x (site_count / site_reference) ** site_elasticity.
Off (0 or absent) it must leave every byte of S3 as it was; on, it must only move alphas, never a uniform.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
import yaml

from engine.core.detmath import c_pow
from engine.core.errors import EngineError
from engine.policies.authoring import dump_yaml
from engine.states import s3_plan
from engine.states.common import group_sum, zone_layout
from engine.states.s3_plan import draw_plan
from engine.states.s3_shares import _powered, dispersed_alphas, draw_shares, size_factor


def _pre_size_law_dispersed_alphas(layout, alpha, alpha_sum, disp, jitter_u):
    """The transform as committed before the size law (HEAD 8d1dc0c), kept verbatim as the reference but for its
    power: the C library's (engine.core.detmath.c_pow), as the engine's now, since numpy's is CPU-dispatched (on a
    machine whose numpy uses no SIMD power the two are the same)."""
    if not disp.get("enabled"):
        return alpha.copy()
    starts, sizes = layout.pair_start, layout.pair_k
    s = alpha / alpha_sum
    temp = float(disp["alpha_temperature"])
    if abs(temp - 1.0) > 1e-12:
        s = c_pow(np.maximum(s, 1e-15), temp)
        s = s / np.repeat(group_sum(s, starts), sizes)
    mj, clip = float(disp["merchant_jitter"]), float(disp["merchant_jitter_clip"])
    jitter = np.clip((2.0 * jitter_u - 1.0) * mj, -clip, clip)
    floor = float(disp["alpha_floor"])
    a_pair = alpha_sum[starts]
    scale = np.maximum(float(disp["concentration_scale"]) * (1.0 + jitter), floor * sizes / a_pair)
    target = np.repeat(a_pair * scale, sizes)
    r = s * target
    for _ in range(2):
        r = np.maximum(r, floor)
        r = r * (target / np.repeat(group_sum(r, starts), sizes))
    total = np.repeat(group_sum(r, starts), sizes)
    if np.abs(total - target).max(initial=0.0) > 1e-9:
        r = r * (target / total)
        if np.abs(np.repeat(group_sum(r, starts), sizes) - target).max(initial=0.0) > 1e-7:
            raise EngineError("E3A_S3_012_INFRASTRUCTURE_IO_ERROR", "dispersion transform did not converge")
    return r


SITES = [1, 10, 40, 3, 250]


def _tables():
    """Five escalated pairs: AA (3 zones, alpha sum 20) and BB (2 zones, alpha sum 8)."""
    s1 = pd.DataFrame({"merchant_id": np.array([1, 2, 3, 4, 5], dtype=np.uint64),
                       "legal_country_iso": ["AA", "AA", "AA", "BB", "BB"], "site_count": SITES,
                       "is_escalated": [True] * 5})
    s2 = pd.DataFrame({"country_iso": ["AA", "AA", "AA", "BB", "BB"], "tzid": ["A/1", "A/2", "A/3", "B/1", "B/2"],
                       "alpha_effective": [12.0, 6.0, 2.0, 5.0, 3.0], "alpha_sum_country": [20.0] * 3 + [8.0] * 2})
    return s1, s2


def _inputs():
    s1, s2 = _tables()
    layout = zone_layout(s1, s2)
    alpha = s2["alpha_effective"].to_numpy()[layout.row_prior]
    alpha_sum = s2["alpha_sum_country"].to_numpy()[layout.row_prior]
    return layout, alpha, alpha_sum


DISP = {"enabled": True, "concentration_scale": 0.5, "alpha_temperature": 0.8, "merchant_jitter": 0.1,
        "merchant_jitter_clip": 0.08, "alpha_floor": 1e-6}


@pytest.mark.parametrize("extra", [{}, {"site_elasticity": 0.0}, {"site_elasticity": 0, "site_reference": 37}])
def test_off_is_bitwise_the_pre_size_law_transform(extra):
    layout, alpha, alpha_sum = _inputs()
    jitter_u = np.array([0.1, 0.5, 0.93, 0.0, 0.999])
    got = dispersed_alphas(layout, alpha, alpha_sum, {**DISP, **extra}, jitter_u)
    want = _pre_size_law_dispersed_alphas(layout, alpha, alpha_sum, DISP, jitter_u)
    assert got.tobytes() == want.tobytes()
    assert size_factor(layout.pair_sites, {**DISP, **extra}).tolist() == [1.0] * 5


@pytest.mark.parametrize("extra", [{}, {"site_elasticity": 0.0, "site_reference": 10}])
def test_off_draw_is_byte_identical(extra):
    s1, s2 = _tables()
    layout = zone_layout(s1, s2)
    master = b"\x07" * 32
    base_shares, base_events = draw_shares(draw_plan(layout, master), s2, DISP)
    shares, events = draw_shares(draw_plan(layout, master), s2, {**DISP, **extra})
    pd.testing.assert_frame_equal(shares, base_shares, check_exact=True)
    pd.testing.assert_frame_equal(events, base_events, check_exact=True)
    assert shares["share_drawn"].to_numpy().tobytes() == base_shares["share_drawn"].to_numpy().tobytes()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 3_000_000), min_size=0, max_size=60), st.floats(0.05, 2.0), st.integers(1, 60))
def test_size_factor_is_the_c_librarys_pow_of_each_site_count(sites, beta, ref):
    """Once per distinct site count (small ones counted, large ones sorted), each pair's the C library's pow."""
    got = size_factor(np.array(sites, dtype=np.int64), {"site_elasticity": beta, "site_reference": ref})
    assert got.tolist() == [math.pow(n / ref, beta) for n in sites]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=80), st.floats(0.2, 3.0), st.booleans())
def test_the_temperature_power_is_each_rows_c_library_pow(row_prior, power, per_prior):
    """Once per S2 row when each row's value is its prior's (S3's alpha shares), per row otherwise: the same bits."""
    rp = np.array(row_prior, dtype=np.int64)
    rng = np.random.default_rng(len(row_prior))
    values = rng.uniform(1e-6, 1.0, 41)[rp] if per_prior else rng.uniform(1e-6, 1.0, len(rp))
    assert _powered(values, power, rp).tolist() == [math.pow(v, power) for v in values]


def test_size_factor_golden():
    disp = {"site_elasticity": 0.5, "site_reference": 10}
    got = size_factor(np.array(SITES), disp)
    want = [math.sqrt(0.1), 1.0, 2.0, math.sqrt(0.3), 5.0]
    assert got == pytest.approx(want, rel=1e-15)
    assert size_factor(np.array([20, 5]), {"site_elasticity": 1.0, "site_reference": 10}) == pytest.approx([2.0, 0.5])
    # site_reference absent: 10
    assert size_factor(np.array([40]), {"site_elasticity": 0.5}) == pytest.approx([2.0], rel=1e-15)


def test_per_pair_concentration_golden():
    """No jitter, temperature 1: each pair's alpha' sums to alpha_sum x cs x (n/ref)^beta, shares kept."""
    layout, alpha, alpha_sum = _inputs()
    disp = {"enabled": True, "concentration_scale": 0.5, "alpha_temperature": 1.0, "merchant_jitter": 0.0,
            "merchant_jitter_clip": 0.0, "alpha_floor": 1e-6, "site_elasticity": 0.5, "site_reference": 10}
    out = dispersed_alphas(layout, alpha, alpha_sum, disp, np.full(5, 0.5))
    sums = group_sum(out, layout.pair_start)
    # AA sum 20, BB sum 8; x 0.5; x sqrt(n / 10) for n = 1, 10, 40, 3, 250
    want = [20 * 0.5 * math.sqrt(0.1), 20 * 0.5 * 1.0, 20 * 0.5 * 2.0, 8 * 0.5 * math.sqrt(0.3), 8 * 0.5 * 5.0]
    assert sums == pytest.approx(want, rel=1e-12)
    # the prior's shares are kept within every pair (the law moves concentration only)
    assert out[:3] / sums[0] == pytest.approx([0.6, 0.3, 0.1], rel=1e-12)
    assert out[9:11] / sums[3] == pytest.approx([5 / 8, 3 / 8], rel=1e-12)
    # the same law with jitter: the factor multiplies (1 + jitter)
    jit = dict(disp, merchant_jitter=0.2, merchant_jitter_clip=0.2)
    u = np.array([1.0, 0.75, 0.5, 0.25, 0.0])            # jitter = (2u - 1) x 0.2 = .2, .1, 0, -.1, -.2
    sums = group_sum(dispersed_alphas(layout, alpha, alpha_sum, jit, u), layout.pair_start)
    want = [w * (1 + j) for w, j in zip(want, [0.2, 0.1, 0.0, -0.1, -0.2])]
    assert sums == pytest.approx(want, rel=1e-12)


def test_floor_bounds_a_tiny_concentration():
    layout, alpha, alpha_sum = _inputs()
    disp = {"enabled": True, "concentration_scale": 0.5, "alpha_temperature": 1.0, "merchant_jitter": 0.0,
            "merchant_jitter_clip": 0.0, "alpha_floor": 0.01, "site_elasticity": 1.5, "site_reference": 1000}
    out = dispersed_alphas(layout, alpha, alpha_sum, disp, np.full(5, 0.5))
    sums = group_sum(out, layout.pair_start)
    # pair 1 (n = 1): 0.5 x 0.001^1.5 = 1.6e-5 < floor x K / alpha_sum = 0.01 x 3 / 20 -> alpha' sums to floor x K
    assert sums[0] == pytest.approx(0.03, rel=1e-12)
    # pair 5 (n = 250, BB): 0.5 x 0.25^1.5 = 0.0625 > 0.01 x 2 / 8 -> the law: 8 x 0.0625 = 0.5
    assert sums[4] == pytest.approx(0.5, rel=1e-12)


def test_size_law_never_changes_the_uniforms(monkeypatch):
    """Common random numbers: the law moves alphas, never the uniforms nor the RNG evidence keys."""
    s1, s2 = _tables()
    layout = zone_layout(s1, s2)
    seen = []
    real = s3_plan.uniforms

    def spy(keys, counters):
        out = real(keys, counters)
        seen.append((np.asarray(keys).tobytes(), np.asarray(counters).tobytes(), out.tobytes()))
        return out

    monkeypatch.setattr(s3_plan, "uniforms", spy)   # two plans of one master: each draws its own
    master = b"\x2a" * 32
    off_shares, off_events = draw_shares(draw_plan(layout, master), s2, DISP)
    off = list(seen)
    seen.clear()
    on_shares, on_events = draw_shares(draw_plan(layout, master), s2,
                                       {**DISP, "site_elasticity": 0.9, "site_reference": 5})
    assert seen == off and len(off) == 2                    # jitter uniforms + Dirichlet uniforms, same bytes
    assert on_shares["rng_stream_id"].tolist() == off_shares["rng_stream_id"].tolist()
    cols = ["merchant_id", "country_iso", "rng_stream_id", "zone_count", "rng_counter_before", "rng_counter_after",
            "blocks", "draws"]
    pd.testing.assert_frame_equal(on_events[cols], off_events[cols])
    assert not np.array_equal(on_shares["share_drawn"].to_numpy(), off_shares["share_drawn"].to_numpy())
    assert not np.array_equal(on_events["alpha_sum_country"].to_numpy(), off_events["alpha_sum_country"].to_numpy())


def test_size_law_concentrates_small_merchants():
    """A small merchant (factor < 1) draws more concentrated shares than a large one on the same uniforms."""
    n = 400
    s1 = pd.DataFrame({"merchant_id": np.arange(1, 2 * n + 1, dtype=np.uint64), "legal_country_iso": ["AA"] * (2 * n),
                       "site_count": [2] * n + [200] * n, "is_escalated": [True] * (2 * n)})
    s2 = pd.DataFrame({"country_iso": ["AA"] * 3, "tzid": ["A/1", "A/2", "A/3"],
                       "alpha_effective": [12.0, 6.0, 2.0], "alpha_sum_country": [20.0] * 3})
    layout = zone_layout(s1, s2)
    disp = {**DISP, "merchant_jitter": 0.0, "merchant_jitter_clip": 0.0, "alpha_temperature": 1.0,
            "site_elasticity": 0.8, "site_reference": 20}
    shares, _ = draw_shares(draw_plan(layout, b"\x01" * 32), s2, disp)
    top1 = shares.groupby("merchant_id")["share_drawn"].max().to_numpy()
    assert top1[:n].mean() > top1[n:].mean() + 0.1


LINEAGE = {"manifest_fingerprint", "parameter_hash", "run_id", "routing_universe_hash"}


def _rows_only(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[[c for c in frame.columns if c not in LINEAGE]]


def test_chain_with_size_law_off_keeps_rows_and_on_keeps_rng_keys(policies, cache):
    """End to end on the authority: site_elasticity 0 leaves S3/S4/zone_alloc rows byte-identical;
    a positive elasticity moves shares but draws from the same streams (common random numbers)."""
    from engine.chain.runner import run_chain

    doc = yaml.safe_load(policies.raw["zone_mixture_policy"])
    disp = doc["s3_dispersion"]
    disp.pop("site_elasticity", None)
    disp.pop("site_reference", None)
    if not disp.get("enabled"):
        disp.update(enabled=True, concentration_scale=0.4, alpha_temperature=1.0, merchant_jitter=0.1,
                    merchant_jitter_clip=0.1)
    plain = run_chain(policies.replace(zone_mixture_policy=dump_yaml(doc)), 42, cache=cache)
    disp.update(site_elasticity=0.0, site_reference=10)
    off = run_chain(policies.replace(zone_mixture_policy=dump_yaml(doc)), 42, cache=cache)
    assert off.identity["parameter_hash"] != plain.identity["parameter_hash"]
    for name in ("s3", "s4", "zone_alloc"):
        pd.testing.assert_frame_equal(_rows_only(off.tables[name]), _rows_only(plain.tables[name]), check_exact=True)
    disp.update(site_elasticity=0.7, site_reference=10)
    on = run_chain(policies.replace(zone_mixture_policy=dump_yaml(doc)), 42, cache=cache)
    assert on.s6_report["overall_status"] == "PASS"
    assert on.events["rng_stream_id"].tolist() == plain.events["rng_stream_id"].tolist()
    assert on.tables["s3"]["rng_stream_id"].tolist() == plain.tables["s3"]["rng_stream_id"].tolist()
    assert not np.array_equal(on.tables["s3"]["share_drawn"].to_numpy(), plain.tables["s3"]["share_drawn"].to_numpy())


@settings(max_examples=60, deadline=None)
@given(sites=st.lists(st.integers(1, 50_000_000), min_size=1, max_size=8), seed=st.integers(0, 2**32 - 1),
       beta=st.sampled_from([0.5, 1.0, 1.5]), ref=st.sampled_from([1, 3, 10]), zones=st.integers(2, 14))
def test_the_transform_holds_its_targets_for_pairs_of_millions_of_sites(sites, seed, beta, ref, zones):
    """A pair of millions of outlets under a steep size law has an alpha total of 1e9 or more, whose rounding alone
    passes an absolute bound: a 3 M-outlet pair failed one seed in ten with E3A_POL_005 (helper 61). Each pair's
    alphas sum to its target within 1e-7 of it, and nothing is refused, up to the README's 50 M outlets."""
    rng = np.random.default_rng(seed)
    s1 = pd.DataFrame({"merchant_id": np.arange(1, len(sites) + 1, dtype=np.uint64),
                       "legal_country_iso": ["AA"] * len(sites), "site_count": sites, "is_escalated": True})
    s2 = pd.DataFrame({"country_iso": ["AA"] * zones, "tzid": [f"A/{z:02d}" for z in range(zones)],
                       "alpha_effective": np.where(rng.uniform(size=zones) < 0.3, 1e-6, rng.uniform(0.01, 60, zones)),
                       "alpha_sum_country": 0.0})
    s2["alpha_sum_country"] = s2["alpha_effective"].sum()
    layout = zone_layout(s1, s2)
    alpha = s2["alpha_effective"].to_numpy()[layout.row_prior]
    alpha_sum = s2["alpha_sum_country"].to_numpy()[layout.row_prior]
    disp = {"enabled": True, "concentration_scale": 0.4771, "alpha_temperature": 1.0, "merchant_jitter": 0.459,
            "merchant_jitter_clip": 0.5, "alpha_floor": 1e-6, "site_elasticity": beta, "site_reference": ref}
    jitter_u = rng.uniform(size=len(sites))
    r = dispersed_alphas(layout, alpha, alpha_sum, disp, jitter_u)
    jitter = np.clip((2.0 * jitter_u - 1.0) * 0.459, -0.5, 0.5)
    a_pair = alpha_sum[layout.pair_start]
    target = a_pair * np.maximum(0.4771 * (1.0 + jitter) * size_factor(np.array(sites), disp), 1e-6 * zones / a_pair)
    assert np.all(r > 0) and np.allclose(group_sum(r, layout.pair_start), target, rtol=1e-7, atol=0)
