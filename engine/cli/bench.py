"""``python -m engine bench``: what a scoring chain, a publish and a scaled-up world cost.

- ``chain_seconds_median``: one scoring run (S0-S4, the metric pack, S6's in-memory checks) with a
  fresh cache, over ``--repeats`` runs: what a tuning trial pays (target <= 0.05 s on the default world);
- ``publish_seconds_median``: building the bundle's bytes (S5 egress, the S6 report, the S7 seal) for
  that run, which only a published, promoted or certified run pays;
- ``scale<N>_*``: the world with N times the merchants, run once in a fresh process, scored and
  published to a temporary run store (targets: 100x <= 5 s; 1000x <= 50 s with peak RSS <= 4 GiB).
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import sys
import tempfile
import time

TARGETS = {"chain_seconds_median": 0.05, "scale100_total_seconds": 5.0, "scale1000_total_seconds": 50.0,
           "scale1000_peak_rss_gib": 4.0}


def _timed_runs(policies, seed: int, world, catalogue, repeats: int) -> list[dict]:
    from engine.chain.runner import run_chain

    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = run_chain(policies, seed, world, outlets=catalogue)  # a fresh cache: every state runs
        t1 = time.perf_counter()
        res.bundle                                                 # the bytes (S5-S7), timed apart
        runs.append({"chain": t1 - t0, "publish": time.perf_counter() - t1, "states": dict(res.seconds),
                     "pairs": len(res.cores["s1"]), "zone_rows": len(res.cores["s3"])})
    return runs


def default_world_bench(policies, seed: int, world, repeats: int) -> dict:
    from engine.chain.runner import TIMED
    from engine.world.model import outlets_for

    # the upstream catalogue (segment 1A's output) is an input: made once per seed, sealed by S0 in every repeat
    catalogue = outlets_for(world, seed)
    _timed_runs(policies, seed, world, catalogue, 1)  # warm imports and world tables
    runs = _timed_runs(policies, seed, world, catalogue, repeats)
    return {
        "seed": seed, "world": world.name, "repeats": repeats,
        "chain_seconds_median": statistics.median(r["chain"] for r in runs),
        "chain_seconds_min": min(r["chain"] for r in runs),
        "publish_seconds_median": statistics.median(r["publish"] for r in runs),
        "states": {s: statistics.median(r["states"][s] for r in runs) for s in TIMED},
        "pairs": runs[0]["pairs"], "zone_rows": runs[0]["zone_rows"], "outlet_rows": len(catalogue),
        "note": "fresh ChainCache per repeat (no state reused); the outlet catalogue is the upstream input; "
                "chain = scoring (S0-S4, metrics, S6 in memory), publish = S5-S7 bytes",
    }


def _scale_child(policies, world_spec: tuple, seed: int, scale: int, conn) -> None:
    try:
        conn.send(_scale_run(policies, world_spec, seed, scale))
    except BaseException as exc:  # the parent reports it as a coded error
        conn.send({"error": f"{getattr(exc, 'code', type(exc).__name__)}: {exc}"})
    finally:
        conn.close()


def _scale_run(policies, world_spec: tuple, seed: int, scale: int) -> dict:
    from engine.chain.runner import run_chain
    from engine.publish.store import materialise
    from engine.world.model import load_world, outlets_for
    from engine.world.outlets import MERCHANTS_DEFAULT

    world = load_world(*world_spec)
    t0 = time.perf_counter()
    catalogue = outlets_for(world, seed, MERCHANTS_DEFAULT * scale)
    t1 = time.perf_counter()
    res = run_chain(policies, seed, world, outlets=catalogue)
    del catalogue
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seg3a-bench-") as root:
        materialise(res, root)
    t3 = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"catalogue_seconds": t1 - t0, "chain_seconds": t2 - t1, "publish_seconds": t3 - t2,
            "total_seconds": t3 - t1, "states": res.seconds, "pairs": len(res.cores["s1"]),
            "zone_rows": len(res.cores["s3"]), "peak_rss_gib": peak / 2 ** 30}


def scale_bench(policies, world_spec: tuple, seed: int, scale: int) -> dict:
    """The N-times world in a fresh process (its peak RSS is its own), scored and published."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_scale_child, args=(policies, world_spec, seed, scale, child))
    proc.start()
    child.close()
    try:
        out = parent.recv()
    except EOFError:
        out = {"error": f"the benchmark process died (exit code {proc.exitcode})"}
    proc.join()
    if "error" in out:
        from engine.core.errors import EngineError
        raise EngineError("E3A_CLI_006_BENCH", f"scale {scale} world: {out['error']}")
    return {f"scale{scale}_{k}": v for k, v in out.items()}


def with_targets(out: dict) -> dict:
    out["targets"] = {k: v for k, v in TARGETS.items() if k in out}
    out["within_targets"] = {k: (out[k] <= v) for k, v in out["targets"].items()}
    return out
