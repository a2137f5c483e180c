"""The chain S0 -> S7 (Kedro-style): a declared state table, a runner, and the rerun matrix as a cache.

:data:`STATE_TABLE` lists each state with what it reads (run inputs, upstream outputs, policy
sections) and what it writes. The runner derives every cache key from the content digests of a
state's declared reads (:meth:`engine.chain.table.State.key`), so a candidate that changes only the
floor policy reuses the world seal, S1 and S3's plan (the seed's keyed uniforms) and recomputes S2, S3's
shares and onwards. The scoring half (S0-S4, the metric pack, S6's in-memory checks) runs here; S5 -> S7
bytes are built by :mod:`engine.publish.bundle` when a caller reads them or publishes the run.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pyarrow as pa

from engine.chain.cache import ChainCache
from engine.chain.steps import STATE_TABLE, run_inputs
from engine.core.errors import EngineError
from engine.core.memory import use_engine_pool
from engine.metrics.runtime import STATES
from engine.chain.result import ChainResult, PublishInputs
from engine.chain.table import Reads
from engine.chain.subsample import check_fraction
from engine.core.strict import check_uint64
from engine.world.model import World, default_world

TIMED = STATES + ("metrics",)
ARROW_POOL = use_engine_pool()   # jemalloc: see engine.core.memory


def _execute(policies, values: dict, digests: dict, cache: ChainCache, seconds: dict, reused: set,
             on_state=None) -> None:
    """Run the state table in order; outputs land in ``values``, their content digests in ``digests``;
    ``on_state(name)`` after each state (a progress bar's)."""
    for state in STATE_TABLE:
        t0 = time.perf_counter()
        # every state's outputs are named by the content key of its reads, cached or not: an uncached state
        # (S0: the seed's RNG master) must still pass its inputs' identity on to the states that read it
        key = state.key(digests, policies)
        out = cache.get(key) if state.cached else None
        if out is not None:
            reused.add(state.name)
        else:
            out = state.fn(Reads(state, values, policies))
            if state.cached:
                cache.put(key, out)
        for name, value in zip(state.outputs, out, strict=True):
            values[name] = value
            digests[name] = f"{key}:{name}"
        bucket = state.name.split(".")[0]
        seconds[bucket] = seconds.get(bucket, 0.0) + time.perf_counter() - t0
        if on_state is not None:
            on_state(state.name)


def run_chain(policies, seed: int, world: World | None = None, *, outlets: pd.DataFrame | None = None,
              cache: ChainCache | None = None, run_root: str | Path | None = None,
              realism_mode: str = "observe", merchants: int | None = None, partitions: int | None = None,
              mapper=None, fraction: float = 1.0, on_state=None) -> ChainResult:
    """Score (policies, seed, world): S0-S4, the metric pack and S6's in-memory checks.

    The published half (S5 egress, the S6 report, the S7 seal) is built lazily, when the result's
    ``tables``/``s6_report``/``members``/``flag`` are read or the run is published: ``run_root`` publishes
    it at once (:func:`engine.publish.store.materialise`). ``partitions`` > 1 runs S3/S4 merchant range by merchant
    range (byte-identical, keyed streams); ``mapper(fn, per_task_args, *shared)`` runs those tasks
    (:mod:`engine.chain.cluster` runs them on Dask). By default a world of 200,000 pairs or more is split into one
    range per core run on threads, and a smaller one runs as one range, in order. ``fraction`` < 1 scores the
    keyed stratified merchant subsample (:mod:`engine.chain.subsample`; sealed as its own world, so its digests and
    cache entries never mix with another fraction's); 1 is the whole world. ``on_state(name)`` is called after each
    state of the table (the CLI's progress bar).
    """
    if realism_mode not in ("observe", "block"):
        raise EngineError("E3A_CLI_001_USAGE", f"realism mode must be observe or block, not {realism_mode!r}")
    check_uint64(seed, "seed", "E3A_CLI_001_USAGE")  # le64 would wrap it silently
    fraction = check_fraction(fraction)
    world = world or default_world()
    values, digests = run_inputs(policies, int(seed), world, outlets, merchants, realism_mode, partitions, mapper,
                                 fraction)
    seconds, reused = {s: 0.0 for s in TIMED}, set()
    _execute(policies, values, digests, cache if cache is not None else ChainCache(), seconds, reused, on_state)
    result = ChainResult(
        identity=values["identity"], cores=values["cores"], events=values["events"], seconds=seconds,
        reused=reused, receipt=values["receipt"], sealed=values["sealed"],
        counters={"pairs_smooth_band_escalated": values["smoothed"], **values["s4_counters"]},
        pack=values["pack"], gates=values["gates"], structural_status=values["structural_status"],
        publish_inputs=PublishInputs(policies=policies, universe=world.universe,
                                     realism=values["realism"], realism_blocks=values["realism_blocks"],
                                     s6_core=values["s6_core"]))
    pa.default_memory_pool().release_unused()  # hand back the pool's cached pages of the states' temporaries
    if run_root is not None:
        from engine.publish.store import materialise
        result.run_dir = materialise(result, Path(run_root))
    return result
