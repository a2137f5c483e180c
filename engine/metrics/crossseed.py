"""Cross-seed certification (METRICS.md §9 seedpack verdict, §10 CV).

``seedpack_verdict(per_seed)`` takes, per seed, ``{"pack", "gates", "s6_overall_status",
"s7_status"}`` (``None`` or a missing key = a missing artefact) and returns the verdict with its
per-seed gate matrix, the CV of the four primary metrics and the stability gates X01-X03.
Order of the verdict: INVALID_FOR_GRADING (checked first) -> FAIL_REALISM -> PASS_BPLUS -> PASS_B.
"""

from __future__ import annotations

import math
import statistics
from typing import Iterable, Mapping

from engine.metrics.gates import (FAIL, FAIL_REALISM, GATES, HARD, INVALID_FOR_GRADING, PASS, PASS_B, PASS_BPLUS,
                                  STRETCH, evaluate_gates, failing_gates, family_passes, run_verdict)
from engine.metrics.pack import lookup

REQUIRED_SEEDS = (42, 7, 101, 202)
CV_METRICS = ("s2.top1_share_median_multi_tz", "s3.merchant_share_std_median",
              "s4.top1_share_median", "s4.escalated_multi_zone_rate")
CV_INFORMATIONAL = ("s1.zone_count_curve_major_dip_max_abs", "zone_alloc.top1_share_median")
CV_LIMIT_B = 0.25
CV_LIMIT_BPLUS = 0.15
ESCALATION_CORRIDOR = (0.55, 0.70)
ZERO_TOL = 1e-12
REQUIRED_FIELDS = ("pack", "s6_overall_status", "s7_status")


def cv(values: Iterable[float]) -> float:
    """pstdev/mean (population std, ddof=0); <2 values -> 0; |mean| <= 1e-12 -> 0 if all ~0 else +inf."""
    xs = [float(v) for v in values]
    if len(xs) < 2:
        return 0.0
    mean = math.fsum(xs) / len(xs)
    if abs(mean) <= ZERO_TOL:
        return 0.0 if all(abs(x) <= ZERO_TOL for x in xs) else math.inf
    return statistics.pstdev(xs) / mean


def _missing_fields(entry) -> list[str]:
    if entry is None:
        return ["run"]
    if not isinstance(entry, Mapping):
        return ["run"]
    return [f for f in REQUIRED_FIELDS if entry.get(f) is None]


def _seed_row(entry: Mapping) -> dict:
    gates = entry.get("gates") or evaluate_gates(entry["pack"])
    esc = lookup(entry["pack"], "s1.escalation_rate")
    return {
        "status": "SCORED",
        "hard": {gid: g.get("status", FAIL) for gid, g in gates.get(HARD, {}).items()},
        "stretch": {gid: g.get("status", FAIL) for gid, g in gates.get(STRETCH, {}).items()},
        "hard_pass": family_passes(gates, HARD),
        "stretch_pass": family_passes(gates, STRETCH),
        "failing_hard": failing_gates(gates, HARD),
        "failing_stretch": failing_gates(gates, STRETCH),
        "run_verdict": run_verdict(gates),
        "s6_overall_status": entry.get("s6_overall_status"),
        "s7_status": entry.get("s7_status"),
        "structural_pass": entry.get("s6_overall_status") == PASS and entry.get("s7_status") == PASS,
        "escalation_rate": esc,
    }


def _gate_matrix(seeds: Mapping[int, dict], order: tuple[int, ...]) -> dict:
    matrix: dict[str, dict] = {HARD: {}, STRETCH: {}}
    for gate in GATES:
        matrix[gate.family][gate.gate_id] = {
            s: seeds[s][gate.family].get(gate.gate_id, FAIL) if seeds.get(s, {}).get("status") == "SCORED" else None
            for s in order}
    return matrix


def _cv_block(entries: Mapping[int, Mapping], order: tuple[int, ...], metrics: tuple[str, ...]) -> dict:
    out = {}
    for metric in metrics:
        values = [lookup(entries[s]["pack"], metric) for s in order]
        if any(v is None for v in values):
            out[metric] = {"values": {s: v for s, v in zip(order, values)}, "cv": math.inf}
            continue
        out[metric] = {"values": {s: float(v) for s, v in zip(order, values)}, "cv": cv(values)}
    return out


def _stability(seeds: Mapping[int, dict], order: tuple[int, ...], cvs: Mapping[str, float]) -> tuple[dict, dict]:
    """(the X01-X03 block, its pass flags: x01_b, x01_bplus, x03)."""
    x01_b = all(v <= CV_LIMIT_B for v in cvs.values())
    x01_bplus = all(v <= CV_LIMIT_BPLUS for v in cvs.values())
    lo, hi = ESCALATION_CORRIDOR
    rates = {s: seeds[s]["escalation_rate"] for s in order}
    x02 = all(r is not None and lo <= float(r) <= hi for r in rates.values())
    x03 = all(seeds[s]["hard_pass"] for s in order)
    block = {
        "3A-X01_cv_primary_medians": {
            "B": {"limit": CV_LIMIT_B, "status": PASS if x01_b else FAIL},
            "BPLUS": {"limit": CV_LIMIT_BPLUS, "status": PASS if x01_bplus else FAIL},
            "verdict_bearing": True},
        "3A-X02_escalation_rate_corridor": {
            "corridor": list(ESCALATION_CORRIDOR), "values": rates, "status": PASS if x02 else FAIL,
            "verdict_bearing": False},
        "3A-X03_no_hard_failure_any_seed": {"status": PASS if x03 else FAIL, "verdict_bearing": True},
    }
    return block, {"x01_b": x01_b, "x01_bplus": x01_bplus, "x03": x03}


def _seed_reasons(seeds: Mapping[int, dict], order: tuple[int, ...]) -> list[str]:
    reasons = []
    for s in order:
        row = seeds[s]
        if row["failing_hard"]:
            reasons.append(f"seed {s}: hard gate(s) fail: {', '.join(row['failing_hard'])}")
        if row["s6_overall_status"] != PASS:
            reasons.append(f"seed {s}: S6 overall_status {row['s6_overall_status']}")
        if row["s7_status"] != PASS:
            reasons.append(f"seed {s}: S7 status {row['s7_status']}")
    return reasons


def _cv_above(cvs: Mapping[str, float], limit: float) -> str:
    return ", ".join(f"{m}={v:.6g}" for m, v in cvs.items() if v > limit)


def _verdict(seeds: Mapping[int, dict], order: tuple[int, ...], cvs: Mapping[str, float],
             flags: Mapping[str, bool]) -> tuple[str, list[str]]:
    """FAIL_REALISM (a hard failure, a structural failure or X01 above B) -> PASS_BPLUS -> PASS_B."""
    reasons = _seed_reasons(seeds, order)
    if not flags["x01_b"]:
        reasons.append("3A-X01: CV above the B limit " + _cv_above(cvs, CV_LIMIT_B))
    structural = all(seeds[s]["structural_pass"] for s in order)
    stretch = all(seeds[s]["stretch_pass"] for s in order)
    if not (flags["x03"] and structural and flags["x01_b"]):
        return FAIL_REALISM, reasons
    if stretch and flags["x01_bplus"]:
        return PASS_BPLUS, reasons
    if not stretch:
        reasons.append("stretch gate(s) fail on: " + ", ".join(str(s) for s in order if not seeds[s]["stretch_pass"]))
    if not flags["x01_bplus"]:
        reasons.append("3A-X01: CV above the B+ limit " + _cv_above(cvs, CV_LIMIT_BPLUS))
    return PASS_B, reasons


def seedpack_verdict(per_seed: Mapping[int, Mapping | None],
                     required_seeds: Iterable[int] = REQUIRED_SEEDS) -> dict:
    """Certification verdict over the seedpack (see module docstring for the order of checks)."""
    order = tuple(int(s) for s in required_seeds)
    per_seed = {int(s): entry for s, entry in per_seed.items()}
    missing = {s: _missing_fields(per_seed.get(s)) for s in order}
    missing = {s: f for s, f in missing.items() if f}
    seeds = {s: ({"status": "MISSING", "missing": missing[s]} if s in missing else _seed_row(per_seed[s]))
             for s in order}
    result = {
        "required_seeds": list(order),
        "ignored_seeds": sorted(int(s) for s in per_seed if int(s) not in order),
        "seeds": seeds,
        "gate_matrix": _gate_matrix(seeds, order),
        "cv": {},
        "cv_informational": {},
        "stability": {},
        "reasons": [],
    }
    if missing or not order:
        result["verdict"] = INVALID_FOR_GRADING
        result["reasons"] = [f"seed {s}: missing {', '.join(f)}" for s, f in missing.items()] or ["no required seeds"]
        return result
    cv_detail = _cv_block(per_seed, order, CV_METRICS)
    cvs = {m: d["cv"] for m, d in cv_detail.items()}
    result["cv"] = cvs
    result["cv_values"] = {m: d["values"] for m, d in cv_detail.items()}
    result["cv_informational"] = {m: d["cv"] for m, d in _cv_block(per_seed, order, CV_INFORMATIONAL).items()}
    result["stability"], flags = _stability(seeds, order, cvs)
    result["verdict"], result["reasons"] = _verdict(seeds, order, cvs, flags)
    return result
