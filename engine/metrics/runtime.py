"""Runtime scoring: POPT.0 baseline table + hotspot map (METRICS.md §13), POPT.1 closure (§14).

Pure functions over per-state seconds (the engine times each state itself with a monotonic
clock) and run-report evidence. No clock is read here.
"""

from __future__ import annotations

import math
import numbers
from typing import Mapping

STATES = ("S0", "S1", "S2", "S3", "S4", "S5", "S6", "S7")
BUDGETS = {  # seconds: target / stretch (the plan's POPT.0 pinned budgets)
    "S0": {"target_s": 1.5, "stretch_s": 2.5},
    "S1": {"target_s": 3.0, "stretch_s": 4.5},
    "S2": {"target_s": 4.0, "stretch_s": 6.0},
    "S3": {"target_s": 5.0, "stretch_s": 7.5},
    "S4": {"target_s": 6.0, "stretch_s": 9.0},
    "S5": {"target_s": 8.0, "stretch_s": 12.0},
    "S6": {"target_s": 10.0, "stretch_s": 14.0},
    "S7": {"target_s": 8.0, "stretch_s": 12.0},
}
GREEN, AMBER, RED, MISSING = "GREEN", "AMBER", "RED", "MISSING"
GO, HOLD = "GO", "HOLD"
HOTSPOT_ROLES = ("primary", "secondary", "closure")
STATE_TITLES = {
    "S0": "S0 gate: seal world inputs and policies",
    "S1": "S1 escalation queue (mixture policy ladder)",
    "S2": "S2 country-zone priors (alphas, floors, bumps)",
    "S3": "S3 Dirichlet zone shares (keyed RNG)",
    "S4": "S4 integer zone counts (largest remainder)",
    "S5": "S5 zone_alloc egress + routing universe hash",
    "S6": "S6 structural validation (checks, issues, receipt)",
    "S7": "S7 validation bundle, index and _passed.flag",
}
CODE_REFS = {   # each a file of this repository (tests/metrics/test_compare_runtime.py checks that it exists)
    "S0": ["engine/states/s0_gate.py", "engine/core/hashing.py"],
    "S1": ["engine/states/s1_escalation.py"],
    "S2": ["engine/states/s2_priors.py"],
    "S3": ["engine/states/s3_shares.py", "engine/states/s3_plan.py", "engine/core/rng.py", "engine/core/gamma.py"],
    "S4": ["engine/states/s4_counts.py"],
    "S5": ["engine/states/s5_egress.py", "engine/core/hashing.py"],
    "S6": ["engine/states/s6_validation.py"],
    "S7": ["engine/states/s7_bundle.py", "engine/publish/store.py"],
}
CANDIDATE_ACTIONS = {
    "S0": ["cache sealed-input digests per world", "avoid re-reading policy bytes"],
    "S1": ["vectorise the rule ladder over all pairs", "reuse S1 from the digest-keyed cache"],
    "S2": ["vectorise per-country alpha/floor arithmetic", "reuse S2 when only S3+ knobs move"],
    "S3": ["batch Philox draws for all pairs at once", "vectorise the inverse-CDF gamma"],
    "S4": ["vectorise largest-remainder with one lexsort", "avoid per-pair Python loops"],
    "S5": ["digest canonical rows once and reuse for the universe hash", "drop redundant re-reads"],
    "S6": ["load each input once and share frames across checks", "set-based domain checks (merge, not loops)"],
    "S7": ["hash members from in-memory bytes", "write index and flag in one pass"],
}
# POPT.1 runtime gates: state -> (candidate ceiling seconds, minimum improvement fraction)
POPT1_RUNTIME_RULES = {"s6": ("S6", 14.0, 0.15), "s7": ("S7", 12.0, 0.10), "s5": ("S5", 12.0, 0.08)}
UNLOCK_P0, HOLD_POPT1_REOPEN = "UNLOCK_P0", "HOLD_POPT1_REOPEN"


def _elapsed(value) -> float | None:
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) and x >= 0 else None


def hms(seconds: float | None) -> str | None:
    """HH:MM:SS of the rounded seconds (Python ``round``: 12.5 -> 12, as the reference)."""
    if seconds is None:
        return None
    total = int(round(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def budget_status(state: str, elapsed: float | None) -> str:
    if elapsed is None:
        return MISSING
    budget = BUDGETS[state]
    if elapsed <= budget["target_s"]:
        return GREEN
    return AMBER if elapsed <= budget["stretch_s"] else RED


def _budget_block(state: str, elapsed: float | None) -> dict:
    b = BUDGETS[state]
    return {"target_s": b["target_s"], "target_hms": hms(b["target_s"]), "stretch_s": b["stretch_s"],
            "stretch_hms": hms(b["stretch_s"]), "status": budget_status(state, elapsed)}


def popt0_table(seconds: Mapping[str, float | None], evidence: Mapping[str, Mapping] | None = None,
                window_elapsed_s: float | None = None) -> dict:
    """POPT.0: ``{timing{...state_table...}, budgets, hotspots, progression_gate}`` (§13).

    ``seconds``: {"S0": .., "S7": ..} (absent, None or negative -> null, status MISSING).
    ``evidence``: optional per-state run-report counters, copied into the hotspot entries.
    ``window_elapsed_s``: optional wall window of the whole chain (``log_window``).
    """
    evidence = evidence or {}
    elapsed = {s: _elapsed(seconds.get(s)) for s in STATES}
    total = math.fsum(v for v in elapsed.values() if v is not None)
    share = {s: (elapsed[s] / total if elapsed[s] is not None and total > 0 else 0.0) for s in STATES}
    table = [{"state": s, "elapsed_s": elapsed[s], "elapsed_hms": hms(elapsed[s]), "segment_share": share[s],
              "budget_target_s": BUDGETS[s]["target_s"], "budget_stretch_s": BUDGETS[s]["stretch_s"],
              "status": budget_status(s, elapsed[s])} for s in STATES]
    timed = [s for s in STATES if elapsed[s] is not None]
    ranked = sorted(timed, key=lambda s: (-elapsed[s], STATES.index(s)))[:len(HOTSPOT_ROLES)]
    hotspots = [{
        "rank": i + 1, "role": HOTSPOT_ROLES[i], "state": s, "title": STATE_TITLES[s],
        "elapsed_s": elapsed[s], "segment_share": share[s], "budget": _budget_block(s, elapsed[s]),
        "evidence": dict(evidence.get(s, {})), "code_refs": list(CODE_REFS[s]),
        "candidate_actions": list(CANDIDATE_ACTIONS[s]),
    } for i, s in enumerate(ranked)]
    primary = hotspots[0] if hotspots else None
    primary_status = primary["budget"]["status"] if primary else MISSING
    return {
        "timing": {
            "segment_elapsed_s": total,
            "segment_elapsed_hms": hms(total),
            "state_table": table,
            "log_window": {"segment_window_elapsed_s": _elapsed(window_elapsed_s)},
        },
        "budgets": {s: dict(BUDGETS[s]) for s in STATES},
        "hotspots": hotspots,
        "progression_gate": {
            "decision": GO if primary_status in (RED, AMBER) else HOLD,
            "primary_status": primary_status,
            "next_state_for_popt1": primary["state"] if primary else None,
        },
    }


def improvement_fraction(baseline_s: float | None, candidate_s: float | None) -> float:
    """(baseline - candidate) / baseline; 0 when baseline <= 0 or either side is missing."""
    b, c = _elapsed(baseline_s), _elapsed(candidate_s)
    if b is None or c is None or b <= 0:
        return 0.0
    return (b - c) / b


def _is_zero(value) -> bool:
    """Fail closed: a missing or non-integer counter is not zero."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and value == 0


def _identity_match(ev: Mapping) -> bool:
    """S5/S6/S7 reports' manifest_fingerprint and parameter_hash equal the run receipt's."""
    if "identity_match" in ev and ev["identity_match"] is not None:
        return ev["identity_match"] is True
    receipt = ev.get("identity") or {}
    reports = ev.get("report_identities") or {}
    keys = ("manifest_fingerprint", "parameter_hash")
    if any(not receipt.get(k) for k in keys) or any(s not in reports for s in ("S5", "S6", "S7")):
        return False
    return all((reports[s] or {}).get(k) == receipt[k] for s in ("S5", "S6", "S7") for k in keys)


def popt1_vetoes(ev: Mapping) -> dict:
    """§14 vetoes, fail-closed (a missing counter or status is a veto).

    Evidence keys: ``s6_status``, ``s6_overall_status``, ``s6_issues_error``, ``s7_status``,
    ``s7_passed_flag_present``, ``s5_pairs_count_conservation_violations`` and either
    ``identity_match`` or ``identity`` + ``report_identities{S5,S6,S7}``.
    """
    return {
        "s6_status_pass": ev.get("s6_status") == "PASS" and ev.get("s6_overall_status") == "PASS",
        "s6_issues_error_zero": _is_zero(ev.get("s6_issues_error")),
        "s7_status_pass": ev.get("s7_status") == "PASS",
        "s7_passed_flag_present": ev.get("s7_passed_flag_present") is True,
        "s5_conservation_zero": _is_zero(ev.get("s5_pairs_count_conservation_violations")),
        "identity_match": _identity_match(ev),
    }


def popt1_closure(baseline_seconds: Mapping[str, float | None], candidate_seconds: Mapping[str, float | None],
                  candidate_evidence: Mapping, *, require_s5_gate: bool = False) -> dict:
    """POPT.1 closure: ``{runtime, gates, veto, decision}`` (§14)."""
    runtime, gates = {}, {}
    s5_required = bool(require_s5_gate) or (_elapsed(baseline_seconds.get("S5")) or 0.0) > POPT1_RUNTIME_RULES["s5"][1]
    for key, (state, ceiling, min_impr) in POPT1_RUNTIME_RULES.items():
        b, c = _elapsed(baseline_seconds.get(state)), _elapsed(candidate_seconds.get(state))
        impr = improvement_fraction(b, c)
        runtime[key] = {"baseline_s": b, "candidate_s": c, "improvement_fraction": impr}
        passed = c is not None and (c <= ceiling or impr >= min_impr)
        gates[key] = {"rule": f"candidate_s <= {ceiling} or improvement_fraction >= {min_impr}",
                      "required": key != "s5" or s5_required, "status": "PASS" if passed else "FAIL"}
    gates["s5_gate_required"] = s5_required
    veto = popt1_vetoes(candidate_evidence)
    all_veto = all(veto.values())
    failing_gates = [k for k in POPT1_RUNTIME_RULES if gates[k]["required"] and gates[k]["status"] != "PASS"]
    all_gates = not failing_gates
    unlock = all_veto and all_gates
    if unlock:
        reason = "all vetoes clear and all required runtime gates pass"
    else:
        parts = [f"veto {k} failed" for k, v in veto.items() if not v]
        parts += [f"runtime gate {k} failed" for k in failing_gates]
        reason = "; ".join(parts)
    return {
        "runtime": runtime,
        "gates": gates,
        "veto": veto,
        "decision": {"all_veto_clear": all_veto, "all_runtime_gates_clear": all_gates,
                     "progression_decision": UNLOCK_P0 if unlock else HOLD_POPT1_REOPEN, "reason": reason},
    }
