"""S1: rule ladder, smoothing band and theta lottery -> s1_escalation_queue (RNG-free hash law).

Our law (DESIGN §4/§8): the per-pair uniforms u_det and u_smooth are keyed on
(label, merchant_id, country) and a decision master derived from the zone universe, never
on the policy, so every candidate of a sweep sees the same uniforms (common random numbers).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.core.errors import EngineError
from engine.core.hashing import sha256, uer
from engine.core.rng import pair_uniforms

ESCALATED = ("forced_escalation", "default_escalation")
ELIGIBLE = ("forced_escalation", "default_escalation", "legacy_default")
REASONS = ("forced_monolithic", "below_min_sites", "legacy_default", "forced_escalation", "default_escalation")


def decision_master(universe_digest: str) -> bytes:
    return sha256(uer("3A.S1.decisions") + bytes.fromhex(universe_digest))


def pair_counts(outlets: pd.DataFrame) -> pd.DataFrame:
    """site_count(m, c) = outlet rows per pair; the domain D is exactly the pairs present."""
    if len(outlets) == 0:
        raise EngineError("E3A_S1_008_DOMAIN_MISMATCH_1A", "the outlet catalogue is empty")
    mids = outlets["merchant_id"].to_numpy(dtype=np.uint64)
    codes, names = pd.factorize(outlets["legal_country_iso"], sort=True)
    step_m, step_c = mids[1:] > mids[:-1], codes[1:] >= codes[:-1]
    if not (step_m | ((mids[1:] == mids[:-1]) & step_c)).all():   # the canonical catalogue is already in order
        order = np.lexsort((codes, mids))
        mids, codes = mids[order], codes[order]
    change = np.r_[True, (mids[1:] != mids[:-1]) | (codes[1:] != codes[:-1])]
    starts = np.flatnonzero(change)
    counts = np.diff(np.r_[starts, len(mids)])
    return pd.DataFrame({"merchant_id": mids[starts], "legal_country_iso": np.asarray(names, dtype=object)[codes[starts]],
                         "site_count": counts})


def smoothing_probability(sm: dict, z: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Exact s1_smoothing law (spec S0-S2 §3.5)."""
    if not sm.get("enabled"):
        return np.zeros(len(z))
    zmin, zmax = sm["zone_count_min"], sm["zone_count_max"]
    zc = np.minimum(z, zmax)
    pos = (zc - zmin) / max(zmax - zmin, 1)
    p_z = sm["zone_escalation_prob_min"] + pos * (sm["zone_escalation_prob_max"] - sm["zone_escalation_prob_min"])
    p_n = np.minimum(np.maximum(n - 1, 0) * sm["site_count_slope"], sm["site_count_cap"])
    p = np.clip(p_z + p_n, 0.0, 1.0)
    return np.where(z < zmin, 0.0, p)


def escalate(pairs: pd.DataFrame, zone_count: pd.Series, mixture: dict, master: bytes) -> tuple[pd.DataFrame, int]:
    """(core S1 table (no lineage columns) sorted by (merchant_id, legal_country_iso), pairs the smoothing band escalated)."""
    countries = pairs["legal_country_iso"].to_numpy(dtype=object)
    unknown = sorted(set(countries) - set(zone_count.index))
    if unknown:
        raise EngineError("E3A_S1_006_ZONE_STRUCTURE_INCONSISTENT",
                          f"country {unknown[0]} has no zones in the universe (unknown_country)")
    n = pairs["site_count"].to_numpy(dtype=np.int64)
    z = zone_count.reindex(countries).to_numpy(dtype=np.int64)
    reason = np.full(len(n), None, dtype=object)
    bucket = np.full(len(n), None, dtype=object)
    for rule in mixture["rules"]:
        t = rule["threshold"]
        metric = rule["metric"]
        hit = {"site_count_lt": n < t, "zone_count_country_le": z <= t,
               "site_count_ge": n >= t, "zone_count_country_ge": z >= t}[metric]
        take = hit & (reason == None)  # noqa: E711 - elementwise on an object array
        reason[take] = rule["decision_reason"]
        bucket[take] = rule.get("bucket")
    mids = pairs["merchant_id"].to_numpy(dtype=np.uint64)
    smooth = mixture.get("s1_smoothing") or {}
    smoothed = np.zeros(len(n), dtype=bool)
    below = reason == "below_min_sites"
    if smooth.get("enabled") and below.any():
        idx = np.flatnonzero(below)
        p = smoothing_probability(smooth, z[idx], n[idx])
        u = pair_uniforms(master, "smooth_band", mids[idx].tolist(), countries[idx].tolist())
        promote = idx[(p > 0) & (u < p)]
        reason[promote] = "default_escalation"
        bucket[promote] = "s1_smooth_band"
        smoothed[promote] = True
    open_ = reason == None  # noqa: E711
    if open_.any():
        idx = np.flatnonzero(open_)
        u = pair_uniforms(master, "theta_mix", mids[idx].tolist(), countries[idx].tolist())
        reason[idx] = np.where(u < mixture["theta_mix"], "default_escalation", "legacy_default")
    return pd.DataFrame({
        "merchant_id": mids,
        "legal_country_iso": countries,
        "site_count": n,
        "zone_count_country": z,
        "is_escalated": np.isin(reason, ESCALATED),
        "decision_reason": reason,
        "eligible_for_escalation": np.isin(reason, ELIGIBLE),
        "dominant_zone_share_bucket": bucket,
    }), int(smoothed.sum())
