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
from engine.core.rng import Keyring, uniforms

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


class DecisionDraws:
    """S1's hash-law uniforms over the pair domain D, one stream at a time (counter 0 of each pair's keyed
    substream): a :class:`~engine.core.rng.Keyring` over D hashes a pair's substream key the first time a rule
    sends it to that lottery and keeps it. They read the pairs and the universe-derived decision master only,
    never the policy, so the chain keeps them with the domain: a pair's uniform is the one it would draw alone
    (keyed streams), whichever candidate or rule asks for it, and a cold chain hashes only the pairs its
    lotteries read (about 1.5 k of 2.6 k on the default world)."""

    def __init__(self, pairs: pd.DataFrame, master: bytes) -> None:
        self._ring = Keyring(master, pairs["merchant_id"].to_numpy(dtype=np.uint64),
                             pairs["legal_country_iso"].to_numpy(dtype=object))

    def __len__(self) -> int:
        return len(self._ring)

    def uniforms(self, stream: str, rows: np.ndarray) -> np.ndarray:
        """The stream's uniforms of the domain's ``rows`` (positions), in that order."""
        keys = self._ring.keys(stream, rows)
        return uniforms(keys, np.zeros(len(keys), dtype=np.uint64))


def _codes(values: list, names: list) -> np.ndarray:
    """Positions of ``values`` in ``names`` (appending the names not there yet)."""
    for v in values:
        if v not in names:
            names.append(v)
    return np.array([names.index(v) for v in values], dtype=np.int64)


def escalate(pairs: pd.DataFrame, zone_count: pd.Series, mixture: dict,
             draws: DecisionDraws | bytes) -> tuple[pd.DataFrame, int]:
    """(core S1 table (no lineage columns) sorted by (merchant_id, legal_country_iso), pairs the smoothing band
    escalated). ``draws`` are the domain's decision uniforms (or the decision master to draw them from)."""
    if not isinstance(draws, DecisionDraws):
        draws = DecisionDraws(pairs, draws)
    countries = pairs["legal_country_iso"].to_numpy(dtype=object)
    unknown = sorted(set(countries) - set(zone_count.index))
    if unknown:
        raise EngineError("E3A_S1_006_ZONE_STRUCTURE_INCONSISTENT",
                          f"country {unknown[0]} has no zones in the universe (unknown_country)")
    n = pairs["site_count"].to_numpy(dtype=np.int64)
    z = zone_count.reindex(countries).to_numpy(dtype=np.int64)
    # reasons and buckets as codes into small name lists (-1: none yet), turned into strings once at the end
    reasons, buckets = list(REASONS), [None, "s1_smooth_band"]
    reason = np.full(len(n), -1, dtype=np.int64)
    bucket = np.zeros(len(n), dtype=np.int64)
    for rule, code, bcode in zip(mixture["rules"], _codes([r["decision_reason"] for r in mixture["rules"]], reasons),
                                 _codes([r.get("bucket") for r in mixture["rules"]], buckets)):
        t = rule["threshold"]
        hit = {"site_count_lt": lambda: n < t, "zone_count_country_le": lambda: z <= t,
               "site_count_ge": lambda: n >= t, "zone_count_country_ge": lambda: z >= t}[rule["metric"]]()
        take = hit & (reason < 0)
        reason[take] = code
        bucket[take] = bcode
    smooth = mixture.get("s1_smoothing") or {}
    smoothed = np.zeros(len(n), dtype=bool)
    below = reason == reasons.index("below_min_sites")
    if smooth.get("enabled") and below.any():
        idx = np.flatnonzero(below)
        p = smoothing_probability(smooth, z[idx], n[idx])
        u = draws.uniforms("smooth_band", idx)
        promote = idx[(p > 0) & (u < p)]
        reason[promote] = reasons.index("default_escalation")
        bucket[promote] = buckets.index("s1_smooth_band")
        smoothed[promote] = True
    open_ = reason < 0
    if open_.any():
        idx = np.flatnonzero(open_)
        u = draws.uniforms("theta_mix", idx)
        reason[idx] = np.where(u < mixture["theta_mix"], reasons.index("default_escalation"),
                               reasons.index("legacy_default"))
    names = np.array(reasons, dtype=object)
    return pd.DataFrame({
        "merchant_id": pairs["merchant_id"].to_numpy(dtype=np.uint64),
        "legal_country_iso": countries,
        "site_count": n,
        "zone_count_country": z,
        "is_escalated": np.isin(reason, [reasons.index(r) for r in ESCALATED]),
        "decision_reason": names[reason],
        "eligible_for_escalation": np.isin(reason, [reasons.index(r) for r in ELIGIBLE]),
        "dominant_zone_share_bucket": np.array(buckets, dtype=object)[bucket],
    }), int(smoothed.sum())
