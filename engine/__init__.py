"""Segment 3A zone-allocation engine: states S0..S7 over an embedded world.

The engine knows nothing of Optuna or MLflow. Each state is a pure function of its inputs; files are
read and written only at the edge (:mod:`engine.store`, :mod:`engine.atomic`). This module is the
public front: ``tuning`` (and any other client) imports from here, never from the submodules.

    from engine import run_chain, ChainCache, PolicySet, default_world, materialise
    res = run_chain(PolicySet.from_dir("policies"), 42, default_world(), cache=ChainCache())
    res.pack, res.gates, res.s6_status          # scores: S0-S4, the metric pack, S6's in-memory checks
    run_dir = materialise(res, "runs")          # S5-S7 bytes are built here (or on first read of res.flag ...)
"""

from engine.version import ENGINE_VERSION

from engine.atomic import atomic_write
from engine.chain import STATES, ChainCache, run_chain
from engine.chain_steps import STATE_TABLE
from engine.cliwrap import CodedParser, invoke
from engine.errors import E_PUBLISH, EngineError
from engine.hashing import canonical_json, le64, sha256, sha256_hex, uer
from engine.members import TABLE_MEMBERS, data_paths
from engine.metrics import (BUDGETS, DISTORTED, FAITHFUL, FIDELITY_GATES, GATES, NOT_APPLICABLE, REQUIRED_SEEDS,
                            compare_packs, cv, evaluate_gates, fidelity_metrics, fidelity_verdict, median,
                            metric_pack, popt0_table, popt1_closure, quantile_nearest, run_verdict, seedpack_verdict,
                            share_table, thresholds)
from engine.policies import POLICY_IDS, PolicySet
from engine.policies.authoring import author_policies, dump_yaml, realism_floors
from engine.policies.policy_set import S1_SMOOTHING_OFF, S3_DISPERSION_OFF, S4_SAFEGUARDS_OFF
from engine.result import ChainResult
from engine.store import load_run, materialise, verify
from engine.strict import load_yaml, non_finite_path
from engine.world.evidence import FidelityEvidence, fidelity_evidence
from engine.world.model import World, default_world, load_world, outlets_for
from engine.world.universe import country_names

__all__ = [
    "ENGINE_VERSION", "STATES", "STATE_TABLE", "ChainCache", "ChainResult", "run_chain", "materialise", "verify",
    "load_run", "PolicySet", "POLICY_IDS", "S1_SMOOTHING_OFF", "S3_DISPERSION_OFF", "S4_SAFEGUARDS_OFF",
    "author_policies", "dump_yaml", "realism_floors", "World", "default_world", "load_world", "outlets_for",
    "country_names", "FidelityEvidence", "fidelity_evidence", "EngineError", "E_PUBLISH", "CodedParser", "invoke",
    "atomic_write", "load_yaml", "non_finite_path", "canonical_json", "le64", "sha256", "sha256_hex", "uer",
    "TABLE_MEMBERS", "data_paths", "BUDGETS", "DISTORTED", "FAITHFUL", "FIDELITY_GATES", "GATES", "NOT_APPLICABLE",
    "REQUIRED_SEEDS", "compare_packs", "cv", "evaluate_gates", "fidelity_metrics", "fidelity_verdict", "median",
    "metric_pack", "popt0_table", "popt1_closure", "quantile_nearest", "run_verdict", "seedpack_verdict",
    "share_table", "thresholds",
]
