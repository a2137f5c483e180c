"""Segment 3A zone-allocation engine: states S0..S7 over an embedded world.

The engine knows nothing of Optuna or MLflow. Each state is a pure function of its inputs; files are
read and written only at the edge (:mod:`engine.publish.store`, :mod:`engine.publish.atomic`). This module is the
public front: ``tuning`` (and any other client) imports from here, never from the submodules.

    from engine import run_chain, ChainCache, PolicySet, default_world, materialise
    res = run_chain(PolicySet.from_dir("policies"), 42, default_world(), cache=ChainCache())
    res.pack, res.gates, res.s6_status          # scores: S0-S4, the metric pack, S6's in-memory checks
    run_dir = materialise(res, "runs")          # S5-S7 bytes are built here (or on first read of res.flag ...)

The front is lazy (PEP 562): ``from engine import EngineError`` loads :mod:`engine.core.errors` alone, and a
name's submodule is imported on its first use, so a process that needs only the error codes or the
hashing helpers (a CLI's usage error, the MLflow trail process) does not pay for pandas and scipy.
"""

from __future__ import annotations

import importlib

from engine.cli.wrap import guard_start

guard_start()   # python -m engine: Ctrl-C or SIGTERM while it starts is one coded line, not a traceback

# public name -> the submodule that defines it (the one place a name's home is written)
_HOMES: dict[str, tuple[str, ...]] = {
    "engine.core.version": ("ENGINE_VERSION",),
    "engine.chain.runner": ("STATES", "ChainCache", "run_chain"),
    "engine.chain.steps": ("STATE_TABLE", "map_in_process"),
    "engine.chain.result": ("ChainResult",),
    "engine.publish.store": ("materialise", "verify", "load_run"),
    "engine.policies": ("PolicySet", "POLICY_IDS"),
    "engine.policies.policy_set": ("S1_SMOOTHING_OFF", "S3_DISPERSION_OFF", "S4_SAFEGUARDS_OFF"),
    "engine.policies.authoring": ("author_policies", "dump_yaml", "evenly_populated", "realism_floors"),
    "engine.policies.world_baseline": ("authored_baseline", "run_policies"),
    "engine.world.model": ("World", "default_world", "load_world", "outlets_for"),
    "engine.world.universe": ("country_names",),
    "engine.world.evidence": ("FidelityEvidence", "fidelity_evidence"),
    "engine.world.binding": ("WORLD_FILE", "recorded_dir", "world_record"),
    "engine.core.errors": ("EngineError", "E_POLICY_MISSING", "E_PUBLISH"),
    "engine.cli.wrap": ("CodedParser", "guard_start", "invoke"),
    "engine.publish.atomic": ("atomic_write",),
    "engine.core.strict": ("decimal_integer", "load_yaml", "non_finite_path"),
    "engine.core.hashing": ("canonical_json", "le64", "sha256", "sha256_hex", "uer"),
    "engine.publish.members": ("TABLE_MEMBERS", "data_paths"),
    "engine.chain.cluster": ("dask_mapper", "parse_cluster"),
    "engine.cli.bench": ("default_world_bench",),
    "engine.world.outlets": ("MERCHANTS_DEFAULT",),
    "engine.metrics": ("BUDGETS", "DISTORTED", "FAITHFUL", "FIDELITY_GATES", "FIDELITY_WORST_LAST", "GATES",
        "NOT_APPLICABLE",
        "REQUIRED_SEEDS", "compare_packs", "cv", "evaluate_gates", "fidelity_holds", "fidelity_metrics",
        "fidelity_overall", "fidelity_verdict",
        "median", "metric_pack", "popt0_table", "popt1_closure", "quantile_nearest", "run_verdict",
        "seedpack_verdict", "share_table", "thresholds"),
    "engine.metrics.compare": ("DELTA_METRICS",),
    "engine.metrics.fidelity": ("OVERSERVED_RATIO", "REALISED_MIN_OUTLETS", "jsd"),
    "engine.metrics.grouping": ("key_codes",),
    "engine.metrics.pooled": ("POOLED_JSD_MAX", "Pool", "pool_outlets", "pooled_fidelity", "seed_outlets"),
    "engine.metrics.pack": ("count_surface_pairs", "escalated_pair_index", "lookup", "s2_country_table",
        "s3_cell_table", "s3_pair_arrays"),
}
_EXPORTS = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        try:   # a submodule (engine.chain.runner, ...) is an attribute once imported; import it on first use
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value   # later lookups are plain module attributes
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
