"""Realism metrics, gates, verdicts, cross-seed CV, the P0 comparator and runtime scoring.

Pure functions over pandas DataFrames and plain dicts (no IO, no Optuna/MLflow). Definitions:
``shared/spec/METRICS.md``.

    pack = metric_pack(tables)        # {"s1","s2","s3","s4","zone_alloc"} sections
    gates = evaluate_gates(pack)      # {"hard": {...}, "stretch": {...}}
    run_verdict(gates)                # PASS_BPLUS | PASS_B | FAIL_REALISM
    metric_pack(tables, world.evidence)  # + "fidelity" section; gates gain the "fidelity" family
    fidelity_verdict(gates)           # FAITHFUL | DISTORTED | NOT_APPLICABLE | UNMEASURED
    seedpack_verdict(per_seed)        # certification verdict + gate matrix + CV
    compare_packs(baseline, candidate)
    popt0_table(seconds) / popt1_closure(base_seconds, cand_seconds, cand_evidence)
"""

from engine.metrics.compare import compare_packs
from engine.metrics.crossseed import REQUIRED_SEEDS, cv, seedpack_verdict
from engine.metrics.fidelity import fidelity_metrics, share_table
from engine.metrics.gates import (DISTORTED, FAITHFUL, FIDELITY_GATES, FIDELITY_WORST_LAST, GATES, NOT_APPLICABLE,
                                  evaluate_gates, fidelity_holds, fidelity_overall, fidelity_verdict, run_verdict,
                                  thresholds)
from engine.metrics.pack import metric_pack
from engine.metrics.quantiles import median, quantile_nearest
from engine.metrics.runtime import BUDGETS, popt0_table, popt1_closure

__all__ = [
    "BUDGETS", "DISTORTED", "FAITHFUL", "FIDELITY_GATES", "FIDELITY_WORST_LAST", "GATES", "NOT_APPLICABLE",
    "fidelity_metrics",
    "fidelity_holds", "fidelity_overall", "fidelity_verdict", "share_table", "REQUIRED_SEEDS", "compare_packs", "cv",
    "evaluate_gates", "median", "metric_pack",
    "popt0_table", "popt1_closure", "quantile_nearest", "run_verdict", "seedpack_verdict", "thresholds",
]
