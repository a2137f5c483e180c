"""Vectorised generator of plausible S1/S2/S3/S4/zone_alloc tables (columns per docs/ARCHITECTURE.md).

Used for the speed budget of the metric pack and for the report tests; it is not the engine.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REASONS_ESC = np.array(["default_escalation", "forced_escalation"])
REASONS_MONO = np.array(["below_min_sites", "forced_monolithic", "legacy_default"])


def make_synthetic_tables(n_pairs: int = 2600, seed: int = 0, n_countries: int = 120) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    countries = np.array([f"{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(n_countries)])
    zone_count = np.where(rng.random(n_countries) < 0.25, 1, rng.integers(2, 12, n_countries))
    # S2: one row per country x zone
    c_rep = np.repeat(np.arange(n_countries), zone_count)
    z_idx = np.concatenate([np.arange(k) for k in zone_count])
    raw = rng.gamma(0.4, 1.0, c_rep.size) + 1e-9
    csum = np.bincount(c_rep, weights=raw)
    share = raw / csum[c_rep]
    s2 = pd.DataFrame({
        "country_iso": countries[c_rep], "tzid": [f"Zone/{countries[c]}{z:02d}" for c, z in zip(c_rep, z_idx)],
        "alpha_raw": raw, "alpha_effective": raw, "alpha_sum_country": csum[c_rep],
        "floor_applied": rng.random(c_rep.size) < 0.2, "bump_applied": rng.random(c_rep.size) < 0.05,
        "share_effective": share,
    })
    zone_start = np.concatenate([[0], np.cumsum(zone_count)[:-1]])
    # S1: pairs; merchant ids unique per pair so pairs never collide
    pc = rng.integers(0, n_countries, n_pairs)
    merchant = (np.arange(n_pairs, dtype=np.uint64) * np.uint64(7919) + np.uint64(10_000)).astype(np.uint64)
    sites = np.minimum(np.floor(rng.pareto(1.3, n_pairs) * 4).astype(np.int64) + 1, 2000)
    zc = zone_count[pc]
    esc = (zc > 1) & (rng.random(n_pairs) < 0.70 + 0.02 * np.minimum(zc, 10)) & (sites >= 2)
    reason = np.where(esc, REASONS_ESC[rng.integers(0, 2, n_pairs)], REASONS_MONO[rng.integers(0, 3, n_pairs)])
    s1 = pd.DataFrame({
        "merchant_id": merchant, "legal_country_iso": countries[pc], "site_count": sites,
        "zone_count_country": zc, "is_escalated": esc, "decision_reason": reason,
        "eligible_for_escalation": zc > 1, "dominant_zone_share_bucket": "none",
    }).sort_values(["merchant_id", "legal_country_iso"], ignore_index=True)
    # S3/S4: escalated pairs x Z(c)
    e = s1[s1["is_escalated"]]
    ec = pd.Series(np.arange(n_countries), index=countries)[e["legal_country_iso"]].to_numpy()
    k = zone_count[ec]
    p_rep = np.repeat(np.arange(len(e)), k)
    zi = np.concatenate([np.arange(x) for x in k]) if len(k) else np.zeros(0, dtype=np.int64)
    s2_row = zone_start[ec][p_rep] + zi
    g = rng.gamma(np.maximum(share[s2_row] * 8.0, 1e-3), 1.0) + 1e-12
    drawn = g / np.bincount(p_rep, weights=g)[p_rep]
    n_sites = e["site_count"].to_numpy()[p_rep]
    target = drawn * n_sites
    base = np.floor(target).astype(np.int64)
    rem = target - base
    short = e["site_count"].to_numpy() - np.bincount(p_rep, weights=base, minlength=len(e)).astype(np.int64)
    order = np.lexsort((zi, -rem, p_rep))
    rank = np.empty_like(order)
    starts = np.concatenate([[0], np.cumsum(k)[:-1]]) if len(k) else np.zeros(0, dtype=np.int64)
    rank[order] = np.arange(order.size) - starts[p_rep[order]]
    counts = base + (rank < short[p_rep])
    keys = {"merchant_id": e["merchant_id"].to_numpy()[p_rep],
            "legal_country_iso": e["legal_country_iso"].to_numpy()[p_rep], "tzid": s2["tzid"].to_numpy()[s2_row]}
    zone = {"drawn": drawn, "counts": counts, "n_sites": n_sites, "target": target, "rank": rank,
            "alpha_sum": csum[ec][p_rep]}
    return {"s1": s1, "s2": s2.sort_values(["country_iso", "tzid"], ignore_index=True), **_zone_tables(keys, zone)}


def _zone_tables(keys: dict, z: dict) -> dict[str, pd.DataFrame]:
    s3 = pd.DataFrame({**keys, "share_drawn": z["drawn"], "share_sum_country": 1.0,
                       "alpha_sum_country": z["alpha_sum"], "rng_stream_id": "x"})
    s4 = pd.DataFrame({**keys, "zone_site_count": z["counts"], "zone_site_count_sum": z["n_sites"],
                       "share_sum_country": 1.0, "fractional_target": z["target"], "residual_rank": z["rank"] + 1,
                       "alpha_sum_country": z["alpha_sum"]})
    zone_alloc = pd.DataFrame({**keys, "zone_site_count": z["counts"], "zone_site_count_sum": z["n_sites"],
                               "site_count": z["n_sites"], "routing_universe_hash": "0" * 64})
    sort = ["merchant_id", "legal_country_iso", "tzid"]
    return {"s3": s3.sort_values(sort, ignore_index=True), "s4": s4.sort_values(sort, ignore_index=True),
            "zone_alloc": zone_alloc.sort_values(sort, ignore_index=True)}
