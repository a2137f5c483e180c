"""The P0 candidate-vs-baseline comparator (METRICS.md §11), a pure function of two bundles.

A bundle is ``{"pack": metric_pack, "gates": evaluate_gates(...), "verdict": run_verdict(...)}``;
``gates`` and ``verdict`` are derived from ``pack`` when absent. Gate entries need only ``status``
(a baseline read back from its JSON report carries ``{value, threshold, status}``).
"""

from __future__ import annotations

from typing import Mapping

from engine.metrics.gates import FAIL, FAIL_REALISM, PASS, evaluate_gates, run_verdict
from engine.metrics.pack import lookup

# comparator key -> (pack path, the direction that is an uplift)
DELTA_METRICS = {
    "s2_top1_share_median_multi_tz": ("s2.top1_share_median_multi_tz", "down"),
    "s2_share_top1_ge_099_multi_tz": ("s2.share_top1_ge_099_multi_tz", "down"),
    "s3_merchant_share_std_median": ("s3.merchant_share_std_median", "up"),
    "s4_escalated_multi_zone_rate": ("s4.escalated_multi_zone_rate", "up"),
    "s4_top1_share_median": ("s4.top1_share_median", "down"),
    "s4_top1_share_p75": ("s4.top1_share_p75", "down"),
    "zone_alloc_top1_share_median": ("zone_alloc.top1_share_median", "down"),
}
UNCHANGED, REGRESSED, IMPROVED = "UNCHANGED", "REGRESSED", "IMPROVED"
HOLD_REMEDIATE, CANDIDATE_MEETS_GATE = "HOLD_REMEDIATE", "CANDIDATE_MEETS_GATE"


def complete_bundle(bundle: Mapping) -> dict:
    """Fill in ``gates`` and ``verdict`` from ``pack`` where they are absent."""
    pack = bundle["pack"]
    gates = bundle.get("gates") or evaluate_gates(pack)
    verdict = bundle.get("verdict") or run_verdict(gates)
    return {"pack": pack, "gates": gates, "verdict": verdict}


def metric_deltas(base_pack: Mapping, cand_pack: Mapping) -> dict:
    """candidate - baseline per comparator metric (None when either side lacks the metric)."""
    out = {}
    for key, (path, _) in DELTA_METRICS.items():
        b, c = lookup(base_pack, path), lookup(cand_pack, path)
        out[key] = None if b is None or c is None else float(c) - float(b)
    return out


def uplift_directional(deltas: Mapping[str, float | None]) -> dict:
    """``<metric>_down`` = delta < 0 for concentration metrics; ``<metric>_up`` = delta > 0 (strict)."""
    out = {}
    for key, (_, direction) in DELTA_METRICS.items():
        d = deltas.get(key)
        out[f"{key}_{direction}"] = d is not None and (d < 0 if direction == "down" else d > 0)
    return out


def gate_drift(base_gates: Mapping, cand_gates: Mapping) -> dict:
    """Over the baseline's gate ids: UNCHANGED, REGRESSED (pass->fail), IMPROVED (fail->pass)."""
    out: dict[str, dict] = {}
    for family, block in base_gates.items():
        out[family] = {}
        cand_block = cand_gates.get(family) or {}
        for gate_id, entry in block.items():
            was = entry.get("status") == PASS
            now = (cand_block.get(gate_id) or {}).get("status", FAIL) == PASS
            out[family][gate_id] = UNCHANGED if was == now else (REGRESSED if was else IMPROVED)
    return out


def progression_decision(candidate_verdict: str) -> str:
    return HOLD_REMEDIATE if candidate_verdict == FAIL_REALISM else CANDIDATE_MEETS_GATE


def compare_packs(baseline: Mapping, candidate: Mapping) -> dict:
    """``{delta_candidate_minus_baseline, uplift_directional, gate_drift, progression_decision}``."""
    base, cand = complete_bundle(baseline), complete_bundle(candidate)
    deltas = metric_deltas(base["pack"], cand["pack"])
    return {
        "delta_candidate_minus_baseline": deltas,
        "uplift_directional": uplift_directional(deltas),
        "gate_drift": gate_drift(base["gates"], cand["gates"]),
        "progression_decision": progression_decision(cand["verdict"]),
    }
