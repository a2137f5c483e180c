"""S3: dispersion transform + keyed Dirichlet draw -> s3_zone_shares and RNG evidence.

RNG law (DESIGN §4/§8): the substream of a pair is keyed by (rng master, "zone_dirichlet",
merchant_id, country); the zone's position in Z_ord(c) is the counter; one uniform per
component feeds an inverse-CDF gamma. The merchant jitter uses its own stream
("s3_jitter", counter 0). No draw depends on the policy or on which other pairs exist, so the
uniforms come ready-drawn in a :class:`engine.states.s3_plan.DrawPlan` (the chain's ``S3.plan``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.core.errors import E_POLICY_VALUES, EngineError
from engine.core.detmath import c_pow
from engine.core.gamma import dirichlet_from_uniforms
from engine.metrics.keys import small_int_codes
from engine.states.common import ZoneLayout, group_sum
from engine.states.s3_plan import DrawPlan, check_prior_surface

JITTER_STREAM = "s3_jitter"
SUM_TOL = 1e-12


def size_factor(sites: np.ndarray, disp: dict) -> np.ndarray:
    """Merchant-size law of the dispersion block: (site_count / site_reference) ** site_elasticity.

    A merchant with few outlets is local (its outlets concentrate in few clocks); a national chain
    follows the country's population. 1.0 everywhere when ``site_elasticity`` is 0 or absent.
    """
    beta = float(disp.get("site_elasticity", 0.0))
    if beta == 0.0:
        return np.ones(len(sites))
    ref = float(disp.get("site_reference", 10))
    sites = np.asarray(sites)
    if sites.dtype.kind in "iu":   # the C library's pow (numpy's is CPU-dispatched) once per distinct site count
        distinct, inverse = small_int_codes(np.asarray(sites, dtype=np.int64))
        return c_pow(distinct.astype(np.float64) / ref, beta)[inverse]
    return c_pow(sites.astype(np.float64) / ref, beta)


def _powered(values: np.ndarray, power: float, row_prior: np.ndarray) -> np.ndarray:
    """``c_pow(values, power)`` computed once per S2 row when every row's value is its prior row's (as S3's alpha
    shares are), else per row: the same bits either way (the C library's pow reads the value alone)."""
    distinct, inverse = small_int_codes(np.asarray(row_prior, dtype=np.int64))
    per_prior = np.empty(distinct.size, dtype=np.float64)
    per_prior[inverse] = values
    if np.array_equal(per_prior[inverse], values):
        return c_pow(per_prior, power)[inverse]
    return c_pow(values, power)


def dispersed_alphas(layout: ZoneLayout, alpha: np.ndarray, alpha_sum: np.ndarray, disp: dict,
                     jitter_u: np.ndarray) -> np.ndarray:
    """Per-row alpha' after the s3_dispersion transform (identity when disabled)."""
    if not disp.get("enabled"):
        return alpha.copy()
    starts, sizes = layout.pair_start, layout.pair_k
    s = alpha / alpha_sum
    temp = float(disp["alpha_temperature"])
    if abs(temp - 1.0) > 1e-12:
        s = _powered(np.maximum(s, 1e-15), temp, layout.row_prior)
        s = s / np.repeat(group_sum(s, starts), sizes)
    mj, clip = float(disp["merchant_jitter"]), float(disp["merchant_jitter_clip"])
    jitter = np.clip((2.0 * jitter_u - 1.0) * mj, -clip, clip)
    floor = float(disp["alpha_floor"])
    a_pair = alpha_sum[starts]
    size = size_factor(layout.pair_sites, disp)
    scale = np.maximum(float(disp["concentration_scale"]) * (1.0 + jitter) * size, floor * sizes / a_pair)
    target = np.repeat(a_pair * scale, sizes)
    r = s * target
    for _ in range(2):
        r = np.maximum(r, floor)
        r = r * (target / np.repeat(group_sum(r, starts), sizes))
    total = np.repeat(group_sum(r, starts), sizes)
    if np.abs(total - target).max(initial=0.0) > 1e-9:
        r = r * (target / total)
        # relative to the target: a pair of millions of sites has alpha totals of 1e9 and more, whose rounding alone
        # passes any absolute bound (helper 61: a 3 M-outlet pair failed on one seed in ten)
        drift = np.abs(np.repeat(group_sum(r, starts), sizes) - target)
        if (drift > 1e-7 * np.maximum(np.abs(target), 1.0)).any():
            raise EngineError(E_POLICY_VALUES, "S3 dispersion transform did not converge (spec E3A_S3_012): the "
                                               "policy's alpha and dispersion values are out of the range it holds")
    return r


def draw_shares(plan: DrawPlan, s2: pd.DataFrame, disp: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Core S3 share rows and one RNG event per escalated pair, from the plan's keyed uniforms."""
    check_prior_surface(plan, s2)
    layout = plan.layout
    alpha = s2["alpha_effective"].to_numpy(dtype=np.float64)[layout.row_prior]
    alpha_sum = s2["alpha_sum_country"].to_numpy(dtype=np.float64)[layout.row_prior]
    if not (np.isfinite(alpha).all() and (alpha > 0).all()):
        raise EngineError("E3A_S3_006_DIRICHLET_ALPHA_MISMATCH", "alpha_values_mismatch: non-positive alpha")
    if disp.get("enabled") and float(disp.get("merchant_jitter", 0.0)) > 0:
        jitter_u = plan.pair_uniforms(JITTER_STREAM)
    else:
        jitter_u = np.full(len(layout.pair_k), 0.5)
    alpha_prime = dispersed_alphas(layout, alpha, alpha_sum, disp, jitter_u)
    share = dirichlet_from_uniforms(plan.u, alpha_prime, layout.pair_start)
    share_sum = group_sum(share, layout.pair_start)
    if not np.isfinite(share).all() or np.abs(share_sum - 1.0).max(initial=0.0) > SUM_TOL:
        raise EngineError("E3A_S3_010_OUTPUT_INCONSISTENT", "share_sum_mismatch")
    a_sum_pair = group_sum(alpha_prime, layout.pair_start)
    shares = pd.DataFrame({
        **plan.key_columns,
        "share_drawn": share,
        "share_sum_country": share_sum[layout.row_pair],
        "alpha_sum_country": a_sum_pair[layout.row_pair],
        "rng_stream_id": plan.row_stream_id,
    })
    k = layout.pair_k
    events = pd.DataFrame({
        "merchant_id": layout.pair_merchant, "country_iso": layout.pair_country, "rng_stream_id": plan.stream_ids,
        "zone_count": k, "rng_counter_before": np.zeros(len(k), dtype=np.int64), "rng_counter_after": k,
        "blocks": k, "draws": k,
        "alpha_sum_country": a_sum_pair,
        "alpha_min": np.minimum.reduceat(alpha_prime, layout.pair_start) if len(k) else np.zeros(0),
        "alpha_max": np.maximum.reduceat(alpha_prime, layout.pair_start) if len(k) else np.zeros(0),
    })
    return shares, events
