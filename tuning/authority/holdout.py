"""Held-out seeds: does a policy set's grade generalise beyond the seeds it was tuned on?

Held-out seeds are drawn from the documented range [HOLDOUT_LOW, HOLDOUT_HIGH) = [1,000,000,
2,000,000): seed i is ``HOLDOUT_LOW + SHA-256(uer("3A.holdout") || LE64(i)) mod (HIGH - LOW)``,
for i = 0, 1, ..., skipping duplicates and any seed used for tuning or certification (every
``seeds:`` of ``studies/*.yaml`` and the seedpack {42, 7, 101, 202}; all of them lie below the
range, and the skip keeps it true if a study ever lists one inside it). The same N always gives
the same seeds, so a held-out rate is reproducible.
"""

from __future__ import annotations

import math

import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import yaml

from engine import run_chain
from engine import pool_outlets, pooled_fidelity, seed_outlets
from tuning.study.cache_budget import chain_cache
from tuning.study.objective import seeds_first_then_threads
from engine import sha256, uer
from engine import fidelity_holds
from engine import REQUIRED_SEEDS, fidelity_verdict, run_verdict

HOLDOUT_LOW, HOLDOUT_HIGH = 1_000_000, 2_000_000

# validation seeds (the campaign's selection among a phase's best candidates) never meet held-out seeds
VALIDATION_LOW, VALIDATION_HIGH = 2_000_000, 3_000_000


def tuning_seeds(studies_dir: str | Path = "studies") -> set[int]:
    """Every seed a study or the certification uses."""
    seeds = set(REQUIRED_SEEDS)
    for path in sorted(Path(studies_dir).glob("*.yaml")):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(doc, dict):
            seeds |= {int(s) for s in doc.get("seeds", []) if isinstance(s, int)}
    return seeds


def holdout_seeds(n: int, exclude: Iterable[int] = ()) -> list[int]:
    return _keyed_seeds("3A.holdout", HOLDOUT_LOW, HOLDOUT_HIGH, n, exclude)


def validation_seeds(n: int, exclude: Iterable[int] = ()) -> list[int]:
    """Seeds the campaign validates a phase's best candidates on before promoting one: the same keyed law
    under its own tag, in [VALIDATION_LOW, VALIDATION_HIGH), so they are neither tuning nor held-out seeds."""
    return _keyed_seeds("3A.validation", VALIDATION_LOW, VALIDATION_HIGH, n, exclude)


def _keyed_seeds(tag: str, low: int, high: int, n: int, exclude: Iterable[int]) -> list[int]:
    excluded, out, i = set(exclude), [], 0
    while len(out) < n:
        h = int.from_bytes(sha256(uer(tag) + struct.pack("<Q", i))[:8], "little")
        seed = low + h % (high - low)
        if seed not in excluded:
            out.append(seed)
            excluded.add(seed)   # a set: a long list stays linear
        i += 1
    return out


def wilson(k: int, n: int, z: float = 1.959963984540054) -> list[float]:
    """The 95% Wilson score interval of a rate of k in n ([0, 1] when n is 0): what n held-out seeds can tell. 197 of
    200 (98.5%) is 95.7-99.5%: a rate measured on 200 seeds cannot tell 98% from 96% or 99.5%."""
    if n <= 0:
        return [0.0, 1.0]
    p, z2 = k / n, z * z
    centre, half = (p + z2 / (2 * n)) / (1 + z2 / n), z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return [0.0 if k == 0 else max(0.0, centre - half), 1.0 if k == n else min(1.0, centre + half)]


def holdout_report(policies, seeds: Sequence[int], progress=None, world=None, threads: int | None = None) -> dict:
    """Per-seed plan verdict and fidelity verdict, and the pass rates (scored: no run bytes are built); ``pooled``:
    every seed's realised outlets summed per country and clock against ``world``'s people
    (:mod:`engine.metrics.pooled`, 3A-F09), None on a world without applicable evidence (or none given).

    By default the first seed runs alone (it computes what every seed shares: the world seal, S1, S2) and the
    others :func:`~tuning.study.objective.seed_threads` at a time; ``threads`` runs every seed that many at a
    time. One chain cache serves them; a seed's row never reads another's, so the report is the same whatever
    the number of threads."""
    cache = chain_cache()   # seeds share only S0.world, S1, S2
    seeds = [int(s) for s in seeds]
    t0 = time.perf_counter()
    evidence = getattr(world, "evidence", None)   # pooled fidelity needs the world's people (certify passes its world)
    evidence = evidence if evidence is not None and evidence.applicable else None

    def score(seed: int) -> tuple[dict, int, object]:
        res = run_chain(policies, seed, world, cache=cache)
        if progress is not None:
            progress.update(1)
        return ({"verdict": run_verdict(res.gates), "fidelity": fidelity_verdict(res.gates), "s6": res.s6_status,
                 "failing": sorted(g for fam in ("hard", "stretch", "fidelity")
                                   for g, v in res.gates.get(fam, {}).items() if v["status"] == "FAIL")},
                int(res.pack["s1"]["pairs_total"]),
                None if evidence is None else seed_outlets(res.cores["s4"], evidence))

    if threads is None:
        scored = seeds_first_then_threads(score, seeds, lambda first: first[1])
    else:
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            scored = list(pool.map(score, seeds))
    rows = {seed: row for seed, (row, _, _) in zip(seeds, scored)}
    # every seed's realised outlets summed (integers: the seeds' order does not matter), against the people
    pooled = None if evidence is None else pooled_fidelity(pool_outlets((o for _, _, o in scored), evidence), evidence)
    wall = time.perf_counter() - t0
    n = len(rows)
    bplus = sum(r["verdict"] == "PASS_BPLUS" for r in rows.values())
    b_or_better = sum(r["verdict"] in ("PASS_B", "PASS_BPLUS") for r in rows.values())
    faithful = sum(fidelity_holds(r["fidelity"]) for r in rows.values())   # NOT_APPLICABLE fails nothing
    both = sum(r["verdict"] == "PASS_BPLUS" and fidelity_holds(r["fidelity"]) for r in rows.values())
    b_both = sum(r["verdict"] in ("PASS_B", "PASS_BPLUS") and fidelity_holds(r["fidelity"]) for r in rows.values())
    failing: dict[str, int] = {}
    for r in rows.values():
        for gate in r["failing"]:
            failing[gate] = failing.get(gate, 0) + 1
    return {"range": [HOLDOUT_LOW, HOLDOUT_HIGH], "seeds": [int(s) for s in seeds], "n": n,
            "pass_rate_bplus": bplus / n if n else 0.0, "pass_rate_b": b_or_better / n if n else 0.0,
            "faithful_rate": faithful / n if n else 0.0, "pass_rate_bplus_faithful": both / n if n else 0.0,
            "pass_rate_b_faithful": b_both / n if n else 0.0,
            "intervals": {"pass_rate_bplus_faithful": wilson(both, n), "pass_rate_b_faithful": wilson(b_both, n)},
            "failing": dict(sorted(failing.items(), key=lambda kv: (-kv[1], kv[0]))), "per_seed": rows,
            "pooled": pooled, "wall_seconds": round(wall, 3)}
