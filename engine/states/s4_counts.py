"""S4: integer zone counts by largest remainder (deterministic tie-break), plus the P3 safeguards.

Base law (spec S3-S5 §2.4): T = N*share, b = floor(T), r = T - b, R = N - sum(b); zones ranked by
(-r, tzid) get b+1 for the first R. Safeguards (``s4_safeguards``, disabled in the baseline):
- ``stochastic_rounding``: the R extra sites go by systematic sampling of the residuals with one
  keyed uniform per pair (stream "s4_rounding"): zone j gets +1 iff floor(C_j + u) > floor(C_{j-1} + u)
  with C the running sum of residuals in Z_ord order; exactly R extras, E[extra_j] = r_j.
- ``min_second_zone_share`` for pairs with N >= ``site_threshold``: the zones ranked 2..1+``max_forced_zones``
  by drawn share each hold at least ceil(min_second_zone_share * N) sites, moved from the top zone
  while the top zone keeps at least that many; a zone only where its clock holds at least a tenth of that forced share
  ceil(min_second_zone_share * N) / N of its country's people, so never a zone the world's evidence leaves empty (our
  law: outlets go where people live; such a zone is ranked but not filled: ``engine.world.evidence.
  zone_people_shares``). Counts are conserved exactly in every case.

Everything before the safeguards reads S3's shares only (no policy): :func:`rounding` computes it (targets,
floors, remainders, the residual rank and, on first use, the rank by share) once per S3 output, and the chain keeps
it as the state ``S4.rounding``, so the candidates of an S4-only sweep (P3) share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import pandas as pd

from engine.core.errors import EngineError
from engine.states.common import ZoneLayout, group_sum, rank_within_pairs
from engine.states.s3_plan import DrawPlan
from engine.world.evidence import FORCE_PEOPLE_RATIO

ROUNDING_STREAM = "s4_rounding"


@dataclass(frozen=True)
class Rounding:
    """S4's reading of one plan's shares before any policy: T = N * share, b = floor(T), R per pair, the rank by
    (-r, zone order), and the rank by share (computed on first use: only the second-zone safeguard reads it; the
    chain cache sizes an entry when it is put, so that one int64 a row is not in its byte count)."""

    target: np.ndarray       # (R,) fractional targets
    base: np.ndarray         # (R,) int64 floors
    remainder: np.ndarray    # (P,) sites left after the floors
    rank: np.ndarray         # (R,) 0-based residual rank within the pair
    _by_share: dict = field(default_factory=dict, compare=False, repr=False)

    def share_rank(self, shares: np.ndarray, layout: ZoneLayout) -> np.ndarray:
        if "rank" not in self._by_share:
            self._by_share["rank"] = rank_within_pairs(shares, layout)
        return self._by_share["rank"]


def rounding(plan: DrawPlan, shares: np.ndarray) -> Rounding:
    """The policy-free half of S4 for ``plan``'s rows of S3's ``shares``."""
    layout = plan.layout
    target = layout.pair_sites[layout.row_pair].astype(np.float64) * shares
    base = np.floor(target)
    resid = target - base
    if (resid < 0).any() or (resid >= 1).any():
        raise EngineError("E3A_S4_007_OUTPUT_INCONSISTENT", "integerisation_mismatch")
    remainder = layout.pair_sites - group_sum(base, layout.pair_start).astype(np.int64)
    if (remainder < 0).any() or (remainder > layout.pair_k).any():
        raise EngineError("E3A_S4_005_COUNT_CONSERVATION_BROKEN", "remainder outside [0, K]")
    # residual rank: (-r, tzid); rows of a pair are already tzid-ascending, so a stable sort suffices
    return Rounding(target=target, base=base.astype(np.int64), remainder=remainder,
                    rank=rank_within_pairs(resid, layout))


def integerise(plan: DrawPlan, shares: np.ndarray, safeguards: dict,
               rounded: Rounding | None = None, people: Mapping | None = None) -> tuple[pd.DataFrame, dict]:
    """S4 for ``plan``'s rows (``rounded``: :func:`rounding` of the same shares, when already computed; ``people``:
    (country, tzid) -> its clock's share of the country's people, which bounds what the second-zone safeguard may
    force onto it; None: no evidence, no bound)."""
    layout = plan.layout
    rd = rounded if rounded is not None else rounding(plan, shares)
    base, rank, remainder = rd.base, rd.rank, rd.remainder
    enabled = bool(safeguards.get("enabled"))
    counters = {"pairs_safeguard_adjusted": 0, "sites_moved": 0, "stochastic_rounding": False}
    if enabled and safeguards.get("stochastic_rounding"):
        resid = rd.target - base
        u = plan.pair_uniforms(ROUNDING_STREAM)[layout.row_pair]
        cum = np.cumsum(resid)
        offset = np.repeat(cum[layout.pair_start] - resid[layout.pair_start], layout.pair_k)
        c_hi = cum - offset
        c_lo = c_hi - resid
        extra = (np.floor(c_hi + u + 1e-9) - np.floor(c_lo + u + 1e-9)).astype(np.int64)
        counts = base + extra
        counters["stochastic_rounding"] = True
        gap = layout.pair_sites - group_sum(counts, layout.pair_start)
        if gap.any():  # float edge of the running sum: those pairs fall back to largest remainder
            bad = (gap != 0)[layout.row_pair]
            counts[bad] = base[bad] + (rank[bad] < remainder[layout.row_pair][bad])
    else:
        counts = base + (rank < remainder[layout.row_pair]).astype(np.int64)
    if enabled and safeguards.get("min_second_zone_share", 0) > 0 and safeguards.get("max_forced_zones", 0) > 0:
        moved = _force_second_zones(layout, rd.share_rank(shares, layout), counts, safeguards,
                                    _people_rows(plan, people))
        counters.update(moved)
    if (counts < 0).any() or (group_sum(counts, layout.pair_start) != layout.pair_sites).any():
        raise EngineError("E3A_S4_005_COUNT_CONSERVATION_BROKEN", "zone counts do not sum to site_count")
    frame = pd.DataFrame({
        **plan.key_columns,
        "zone_site_count": counts,
        "zone_site_count_sum": layout.pair_sites[layout.row_pair],
        "fractional_target": rd.target,
        "residual_rank": rank + 1,
    })
    return frame, counters


def _people_rows(plan: DrawPlan, people: Mapping | None) -> np.ndarray | None:
    """(R,) each row's zone's share of its country's people (NaN where the evidence says nothing of the country), or
    None without evidence (looked up once per plan: :meth:`DrawPlan.zone_values`)."""
    return plan.zone_values(people) if people else None


def _force_second_zones(layout: ZoneLayout, share_rank: np.ndarray, counts: np.ndarray, sg: dict,
                        people_rows: np.ndarray | None = None) -> dict:
    eligible_pair = (layout.pair_sites >= int(sg["site_threshold"])) & (layout.pair_k >= 2)
    need = np.ceil(float(sg["min_second_zone_share"]) * layout.pair_sites).astype(np.int64)
    top_row = np.full(len(layout.pair_k), -1, dtype=np.int64)
    top_row[layout.row_pair[share_rank == 0]] = np.flatnonzero(share_rank == 0)
    adjusted = np.zeros(len(layout.pair_k), dtype=bool)
    moved_total = 0
    for k in range(1, int(sg["max_forced_zones"]) + 1):
        wanted = (share_rank == k) & eligible_pair[layout.row_pair]
        if people_rows is not None:   # outlets go where people live: the pair's forced share, need / N, at most
            row_pair = layout.row_pair    # FORCE_PEOPLE_RATIO times the share of the country's people of the zone
            wanted &= np.isnan(people_rows) | (
                people_rows * FORCE_PEOPLE_RATIO * layout.pair_sites[row_pair] >= need[row_pair])
        rows = np.flatnonzero(wanted)
        if not len(rows):
            break
        pairs = layout.row_pair[rows]
        tops = top_row[pairs]
        deficit = np.maximum(need[pairs] - counts[rows], 0)
        available = np.maximum(counts[tops] - need[pairs], 0)
        move = np.minimum(deficit, available)
        counts[rows] += move
        counts[tops] -= move
        adjusted[pairs[move > 0]] = True
        moved_total += int(move.sum())
    return {"pairs_safeguard_adjusted": int(adjusted.sum()), "sites_moved": moved_total}
