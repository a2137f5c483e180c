"""Per-run gates (METRICS.md §8) and the single-run verdict (§9, our Resolution).

ONE table, ``GATES``, holds every hard (B) and stretch (B+) gate: its id, the dotted pack path
it reads, the comparison and the threshold. Ceilings use ``<=``, floors ``>=`` (both inclusive),
rails ``== True``. Values are compared unrounded; a missing or non-finite value FAILs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

from engine.metrics.pack import lookup

HARD = "hard"
STRETCH = "stretch"
FIDELITY = "fidelity"
FAITHFUL, DISTORTED, NOT_APPLICABLE, UNMEASURED = "FAITHFUL", "DISTORTED", "NOT_APPLICABLE", "UNMEASURED"
PASS, FAIL, NA = "PASS", "FAIL", "N/A"
PASS_BPLUS, PASS_B, FAIL_REALISM = "PASS_BPLUS", "PASS_B", "FAIL_REALISM"
INVALID_FOR_GRADING = "INVALID_FOR_GRADING"
THRESHOLD_SET_NAMES = {HARD: "hard_B", STRETCH: "stretch_BPLUS"}


@dataclass(frozen=True)
class Gate:
    gate_id: str
    family: str            # "hard" (B) | "stretch" (B+)
    metric: str            # dotted path into the metric pack
    op: str                # "<=" | ">=" | "=="
    threshold_key: str     # key in thresholds.hard_B / thresholds.stretch_BPLUS
    threshold: float | bool


GATES: tuple[Gate, ...] = (
    Gate("3A-V01_s2_top1_median_multi_tz", HARD, "s2.top1_share_median_multi_tz", "<=",
         "s2_top1_median_multi_tz_max", 0.85),
    Gate("3A-V02_s2_share_top1_ge_099_multi_tz", HARD, "s2.share_top1_ge_099_multi_tz", "<=",
         "s2_share_top1_ge_099_multi_tz_max", 0.20),
    Gate("3A-V03_s4_escalated_multi_zone_rate", HARD, "s4.escalated_multi_zone_rate", ">=",
         "s4_escalated_multi_zone_rate_min", 0.35),
    Gate("3A-V04_s3_merchant_share_std_median", HARD, "s3.merchant_share_std_median", ">=",
         "s3_merchant_share_std_median_min", 0.02),
    Gate("3A-V05_s4_top1_share_median", HARD, "s4.top1_share_median", "<=",
         "s4_top1_share_median_max", 0.90),
    Gate("3A-V06_s4_top1_share_p75", HARD, "s4.top1_share_p75", "<=",
         "s4_top1_share_p75_max", 0.97),
    Gate("3A-V07_zone_alloc_top1_share_median", HARD, "zone_alloc.top1_share_median", "<=",
         "zone_alloc_top1_share_median_max", 0.90),
    Gate("3A-V08_s4_share_pairs_zones_ge_005_ge_2", HARD, "s4.share_pairs_zones_ge_005_ge_2", ">=",
         "s4_share_pairs_zones_ge_005_ge_2_min", 0.20),
    Gate("3A-VXX_s4_count_conservation", HARD, "s4.count_conservation_all_pairs", "==",
         "s4_count_conservation", True),
    Gate("3A-VXY_zone_alloc_count_conservation", HARD, "zone_alloc.count_conservation_all_pairs", "==",
         "zone_alloc_count_conservation", True),
    Gate("3A-S01_s2_top1_median_multi_tz", STRETCH, "s2.top1_share_median_multi_tz", "<=",
         "s2_top1_median_multi_tz_max", 0.75),
    Gate("3A-S02_s2_share_top1_ge_099_multi_tz", STRETCH, "s2.share_top1_ge_099_multi_tz", "<=",
         "s2_share_top1_ge_099_multi_tz_max", 0.10),
    Gate("3A-S03_s4_escalated_multi_zone_rate", STRETCH, "s4.escalated_multi_zone_rate", ">=",
         "s4_escalated_multi_zone_rate_min", 0.55),
    Gate("3A-S04_s3_merchant_share_std_median", STRETCH, "s3.merchant_share_std_median", ">=",
         "s3_merchant_share_std_median_min", 0.04),
    Gate("3A-S05_s4_top1_share_median", STRETCH, "s4.top1_share_median", "<=",
         "s4_top1_share_median_max", 0.85),
    Gate("3A-S06_zone_alloc_top1_share_median", STRETCH, "zone_alloc.top1_share_median", "<=",
         "zone_alloc_top1_share_median_max", 0.85),
    Gate("3A-S07_s1_escalation_curve_no_major_dips", STRETCH, "s1.zone_count_curve_major_dip_max_abs", "<=",
         "s1_escalation_curve_major_dip_max_abs", 0.10),
)
# This project's own fidelity gates (not the plan's): the data stays faithful to the population
# evidence it is built from (engine.metrics.fidelity). They never relax to let a candidate pass.
FIDELITY_GATES: tuple[Gate, ...] = (
    Gate("3A-F01_alias_count", FIDELITY, "fidelity.alias_count", "<=", "alias_count_max", 0),
    Gate("3A-F02_unpopulated_share", FIDELITY, "fidelity.unpopulated_share", "<=", "unpopulated_share_max", 0.005),
    Gate("3A-F03_prior_jsd_mean", FIDELITY, "fidelity.prior_jsd_mean", "<=", "prior_jsd_mean_max", 0.02),
    Gate("3A-F04_realised_jsd_mean", FIDELITY, "fidelity.realised_jsd_mean", "<=", "realised_jsd_mean_max", 0.03),
    Gate("3A-F05_outside_universe_share", FIDELITY, "fidelity.outside_universe_share", "<=",
         "outside_universe_share_max", 0.01),
    # one country's priors: F03's mean over ~20 countries let a 15% prior on a clock of 0.05% of CN's people pass
    # (CN at 0.080). Authored baselines stay under 0.003; the certified authority's largest was 0.011 (CN) and is
    # 0.004 since F07. F04's line for one country, as F09 reads each country's realised outlets: at 0.075 (the line
    # until the campaign no longer leaned on a country at 0.05-0.075) helper 48 moved four countries of about one
    # merchant a seed to priors 0.061-0.064 from their people (outlets at 3-8 times a clock's people), which F09's
    # scatter band could not tell apart over 200 seeds, and certified B+; every campaign authority since reads <= 0.017
    Gate("3A-F06_prior_jsd_max", FIDELITY, "fidelity.prior_jsd_max", "<=", "prior_jsd_max_max", 0.03),
    # mass moved onto a clock where almost nobody lives: JSD saturates there (a world's Easter Island, 800 people
    # against 19.5 M on the mainland, given 2.6% of CL's prior, 650 times its people, read 0.013 on F06 and bought
    # the S2 B+ gate the population itself fails). F02's line (half a percent) for a country's prior beyond both 10
    # times each clock's people and the share the authoring law gives it (its smoothing and floors: the authored
    # baseline reads 0 by construction, however many small clocks a country has). S2's top-1 >= 0.99 gate needs 1%
    # on the small clocks: a clock with under 0.05% of the people and an authored share under 0.5% cannot be made to
    # carry it, whatever its country's size (a P1.3 floor scale of 3 had bought it for 60 people on Chatham, NZ)
    Gate("3A-F07_prior_overserved_max", FIDELITY, "fidelity.prior_overserved_max", "<=", "prior_overserved_max_max",
         0.005),
    # one country's outlets: F04's mean over the countries let S4's second-zone safeguard move every merchant's
    # forced share onto the one other clock a country has (Madeira, the Canaries, Punta Arenas: 16-20% of the
    # country's outlets for 1-5% of its people, realised JSD 0.05-0.09) or onto clocks of a few people (a quarter of
    # the US's outlets), and certify B+. Countries of 30 merchants or more (fidelity.REALISED_MIN_MERCHANTS): the
    # shipped authority's largest over 400 held-out seeds is 0.045 (China), authored baselines' under 0.01; hand-made
    # priors at 9.5-9.9 times a clock's people, inside F06 and F07, read 0.048-0.083
    Gate("3A-F08_realised_jsd_max", FIDELITY, "fidelity.realised_jsd_max", "<=", "realised_jsd_max_max", 0.05),
    # S2's collapse line bought by several small clocks (3A-F09 is certification's pooled read): F07's allowance is
    # per clock, so three clocks of 0.1% of Mexico's people, floored by P1.3 to 0.51% of its prior each (F07 read
    # 0.0048), took MX's top-1 under 0.99 and bought the S2 B+ gate its population fails. A country counts when its
    # top clock holds >= 0.99 of the prior left after capping each clock at the larger of its people's share and its
    # authored share (the authored baseline never counts; the default world's authority's nearest is CL at 0.986)
    Gate("3A-F10_prior_top1_unsupported", FIDELITY, "fidelity.prior_top1_unsupported", "<=",
         "prior_top1_unsupported_max", 0),
)
GATE_BY_ID = {g.gate_id: g for g in GATES + FIDELITY_GATES}


def thresholds() -> dict:
    """``{"hard_B": {threshold_key: value}, "stretch_BPLUS": {...}}`` (the §15 ``thresholds`` block)."""
    out: dict[str, dict] = {name: {} for name in THRESHOLD_SET_NAMES.values()}
    for gate in GATES:
        out[THRESHOLD_SET_NAMES[gate.family]][gate.threshold_key] = gate.threshold
    return out


def gate_passes(op: str, value, threshold) -> bool:
    """One comparison; fails closed on a missing, non-numeric or non-finite value."""
    if op == "==":
        return isinstance(value, bool) and value is bool(threshold)
    if value is None or isinstance(value, bool):
        return False
    try:
        x = float(value)
    except (TypeError, ValueError):
        return False
    if not math.isfinite(x):
        return False
    if op == "<=":
        return x <= float(threshold)
    if op == ">=":
        return x >= float(threshold)
    raise ValueError(f"unknown gate operator {op!r}")


def _native(value):
    """numpy scalars -> Python scalars so the gate table is JSON-native."""
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        return value.item()
    return value


def evaluate_gates(pack: Mapping) -> dict:
    """``{"hard": {gate_id: {metric, value, threshold, op, status}}, "stretch": {...}}``."""
    out: dict[str, dict] = {HARD: {}, STRETCH: {}}
    if isinstance(pack.get(FIDELITY), Mapping):
        out[FIDELITY] = {}
    for gate in GATES + (FIDELITY_GATES if FIDELITY in out else ()):
        value = _native(lookup(pack, gate.metric))
        out[gate.family][gate.gate_id] = {
            "metric": gate.metric,
            "value": value,
            "threshold": gate.threshold,
            "op": gate.op,
            "status": PASS if gate_passes(gate.op, value, gate.threshold) else FAIL,
        }
        if gate.family == FIDELITY and not pack[FIDELITY].get("applicable", False):
            out[FIDELITY][gate.gate_id]["status"] = NA
    return out


def family_passes(gates: Mapping, family: str) -> bool:
    """Every gate of the family PASSes (an empty or absent family does not pass)."""
    block = gates.get(family) or {}
    return bool(block) and all(g.get("status") == PASS for g in block.values())


def failing_gates(gates: Mapping, family: str) -> list[str]:
    return sorted(gid for gid, g in (gates.get(family) or {}).items() if g.get("status") != PASS)


def run_verdict(gates: Mapping) -> str:
    """Resolution: PASS_BPLUS needs all hard AND all stretch; PASS_B all hard; else FAIL_REALISM."""
    hard_ok = family_passes(gates, HARD)
    if hard_ok and family_passes(gates, STRETCH):
        return PASS_BPLUS
    return PASS_B if hard_ok else FAIL_REALISM


FIDELITY_WORST_LAST = (FAITHFUL, NOT_APPLICABLE, UNMEASURED, DISTORTED)


def fidelity_holds(verdict: str) -> bool:
    """A fidelity verdict that fails nothing: FAITHFUL, or NOT_APPLICABLE (a world that brings no population
    evidence has nothing to be faithful to; its fidelity is shown, never graded, and every report says so)."""
    return verdict in (FAITHFUL, NOT_APPLICABLE)


def fidelity_overall(verdicts) -> str:
    """The verdict of several seeds: the worst of theirs (FAITHFUL < NOT_APPLICABLE < UNMEASURED < DISTORTED)."""
    rank = {v: i for i, v in enumerate(FIDELITY_WORST_LAST)}
    return max(verdicts, key=lambda v: rank.get(v, len(rank)), default=UNMEASURED)


def fidelity_verdict(gates: Mapping) -> str:
    """FAITHFUL (every fidelity gate passes), DISTORTED, NOT_APPLICABLE (the world brings its own
    universe, not built from the population evidence: gates reported as N/A, never as failures)
    or UNMEASURED (no evidence was given)."""
    block = gates.get(FIDELITY)
    if not block:
        return UNMEASURED
    if any(g.get("status") == NA for g in block.values()):
        return NOT_APPLICABLE
    return FAITHFUL if all(g.get("status") == PASS for g in block.values()) else DISTORTED
