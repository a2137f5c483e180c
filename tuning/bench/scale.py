"""``python -m tuning.bench --scale --world DIR``: the harness at the user's scale, each figure beside its target.

- **big-world sweep**: a 24-trial, four-seed P3 sweep on ``--world`` (e.g. a 381k-pair catalogue) with its own
  authored authority, in a fresh process with the whole MLflow trail, ``--runs`` times: wall seconds (target
  <= 240 s), the trials pruned at the search stage, and whether the best trial's full-scale verdicts equal its
  search-stage estimate (target: the same);
- **search-stage cost**: per trial, the chain seconds of its search stage against the same candidate's
  full-scale stage (target <= 1/10), and against a cold full-scale chain of the base policies on the same seeds;
- **workers**: on a 100x world (the default world's catalogue with 100 times the merchants; ``--worker-world DIR``
  measures another, beside no target), trials per second of trial span with ``--workers 2`` against one
  process (target >= 1.6), with the cores one process already keeps busy (CPU seconds over wall), the ceiling
  that puts on any number of processes (cores / busy cores), and the machine's own reference: two independent
  one-process sweeps at once, sharing nothing (``pair_ratio``: their trials per second over one process's;
  ``workers_over_pair``: what ``--workers 2`` gets of that); and, sampled from ``/proc`` while the trials run
  (:mod:`tuning.bench.tree_cpu`), the cores one process keeps busy in its trial span (``span_cores_busy``, and the
  ceiling that puts on two processes, ``span_ratio_ceiling``) and the CPU seconds a trial costs in one process and in
  ``--workers 2`` (``cpu_s_per_trial``; ``trial_cpu_w2_over_w1``: what a trial costs more when two share the cores);
- **default world**: the scoring chain (target <= 0.05 s) and the 200-trial P1.2 sweep (target <= 30 s), as
  ``python -m tuning.bench`` measures them.
Every figure carries the 1-minute load average before and after it; the machine is shared.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import time
from pathlib import Path

from tuning.bench.tree_cpu import TreeCPU

TARGETS = {"big_sweep_wall_s": 240.0, "search_over_full_chain": 0.1, "workers2_over_workers1_throughput": 1.6,
           "default_chain_s": 0.05, "default_sweep_200_wall_s": 30.0}
PHASE, TRIALS = "P3", 24


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def spread(values: list) -> dict:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "runs": 0}
    return {"median": round(statistics.median(vals), 4), "min": round(min(vals), 4), "max": round(max(vals), 4),
            "runs": len(vals)}


H: dict = {}   # tuning.bench's helpers (cli, trials, project, sweep_and_certify), given by scale_bench's caller


def _authority(root: Path, world: Path) -> Path:
    out = root / "authority"
    if not out.exists():
        H["cli"](root, "tuning.author", "--world", str(world), "--into", str(out))
    return out


def _children_cpu_s() -> float:
    """CPU seconds of every finished child process (and the children they waited for)."""
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def _sweep_args(world: Path, policies: Path, study: str, trials: int, workers: int) -> tuple[str, ...]:
    return ("tuning.sweep", "--phase", PHASE, "--trials", str(trials), "--world", str(world), "--policies",
            str(policies), "--study", study, "--force", "--json", "--no-progress", "--workers", str(workers))


def _swept(root: Path, finished: tuple) -> dict:
    out, wall = finished
    summary = json.loads(out.stdout)
    trials_ = H["trials"](root, summary["study"])
    done = [t for t in trials_ if t.state.name in ("COMPLETE", "PRUNED")]
    return {"wall_s": round(wall, 2), "trials": trials_, "summary": summary, "done": len(done),
            "first": min(t.datetime_start for t in done), "last": max(t.datetime_complete for t in done)}


def _sampled(roots: tuple[Path, ...], args: tuple) -> tuple[list[dict], list]:
    """Sweeps started at once in ``roots`` (each ``python -m`` + its ``args``), each process tree's CPU sampled
    (:class:`tuning.bench.tree_cpu.TreeCPU`) until it ends: (their records, their samplers)."""
    started = [H["start"](root, *args) for root in roots]
    samplers = [TreeCPU(proc.pid) for proc, _ in started]
    try:
        return [_swept(root, H["finish"](s)) for root, s in zip(roots, started)], samplers
    finally:   # one sweep failed (its exit ends the bench): the other does not outlive it
        for sampler in samplers:
            sampler.stop()
        for proc, _ in started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _span_cpu(samplers: list, first, last) -> float | None:
    """CPU seconds the sweeps' process trees spent from the first trial's start to the last trial's end."""
    parts = [s.between(first.timestamp(), last.timestamp()) for s in samplers]
    return None if None in parts else round(sum(parts), 3)


def _sweep(root: Path, world: Path, policies: Path, study: str, trials: int, workers: int = 1) -> dict:
    load0, cpu0 = _load(), _children_cpu_s()
    (r,), samplers = _sampled((root,), _sweep_args(world, policies, study, trials, workers))
    return {**r, "load_before": load0, "load_after": _load(), "cpu_s": round(_children_cpu_s() - cpu0, 2),
            "span_s": (r["last"] - r["first"]).total_seconds(), "span_cpu_s": _span_cpu(samplers, r["first"], r["last"])}


def _independent_pair(roots: tuple[Path, Path], world: Path, policies: Path, study: str, trials: int) -> dict:
    """Two one-process sweeps of the same study at once, each in its own project (study, journal, MLflow store,
    trail process): nothing shared but the machine. Their trials over the span of both are what any two
    processes can get from these cores, the reference for ``--workers 2``."""
    load0, cpu0 = _load(), _children_cpu_s()
    runs, samplers = _sampled(roots, _sweep_args(world, policies, study, trials, 1))
    first, last = min(r["first"] for r in runs), max(r["last"] for r in runs)
    return {"wall_s": max(r["wall_s"] for r in runs), "load_before": load0, "cpu_s": round(_children_cpu_s() - cpu0, 2),
            "done": sum(r["done"] for r in runs), "span_s": (last - first).total_seconds(),
            "span_cpu_s": _span_cpu(samplers, first, last)}


def _stage_costs(trials) -> dict:
    """Per COMPLETE trial: its search stage's chain seconds over its full-scale chain seconds."""
    ratios, search, full = [], [], []
    for t in trials:
        fid = t.user_attrs.get("fidelity") or {}
        stages = fid.get("search") or []
        if stages:
            search.append(stages[0]["chain_seconds"])
        if t.state.name == "COMPLETE" and stages:
            f = t.user_attrs["result"]["chain_seconds"]
            full.append(f)
            ratios.append(stages[0]["chain_seconds"] / f)
    return {"search_chain_s": spread(search), "full_stage_chain_s": spread(full), "ratio": spread(ratios)}


def _best_agrees(trials) -> dict:
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.user_attrs["result"]["veto"] == "PASS"]
    if not complete:
        return {"best_trial": None, "same_verdict": None}
    best = max(complete, key=lambda t: (t.value, -t.number))
    r, stages = best.user_attrs["result"], (best.user_attrs.get("fidelity") or {}).get("search") or []
    est = stages[-1] if stages else None
    return {"best_trial": best.number, "full": {"J": best.value, "verdict": r["verdict"], "fidelity": r["fidelity"]},
            "search": est, "same_verdict": None if est is None else
            (est["verdict"] == r["verdict"] and est["fidelity"] == r["fidelity"])}


def cold_chain(world_dir: Path, policies: Path, seeds) -> float:
    """A cold full-scale scoring chain of the base policies per seed (fresh caches; the catalogue read apart)."""
    from engine import ChainCache, PolicySet, load_world, run_chain

    world, base = load_world(world_dir), PolicySet.from_dir(policies)
    world.catalogue   # the catalogue is read once per process, before the clock
    t0 = time.perf_counter()
    for s in seeds:
        run_chain(base, s, world, cache=ChainCache())
    return (time.perf_counter() - t0) / len(seeds)


def big_world(base: Path, world: Path, runs: int, trials: int = TRIALS) -> dict:
    root = _project(base / "big")
    policies = _authority(root, world)
    rows = []
    for i in range(runs):
        r = _sweep(root, world, policies, f"bench-big-{i}", trials)
        states = [t.state.name for t in r["trials"]]
        rows.append({"wall_s": r["wall_s"], "load_before": r["load_before"], "load_after": r["load_after"],
                     "complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"),
                     "costs": _stage_costs(r["trials"]), "best": _best_agrees(r["trials"])})
    seeds = r["summary"]["seeds"]
    cold = cold_chain(world, policies, seeds)
    search = [row["costs"]["search_chain_s"]["median"] for row in rows]
    return {"world": str(world), "phase": PHASE, "trials": trials, "seeds": seeds, "runs": rows,
            "wall_s": spread([row["wall_s"] for row in rows]),
            "search_over_full_stage": spread([row["costs"]["ratio"]["median"] for row in rows]),
            "cold_full_chain_per_seed_s": round(cold, 3),
            "search_over_cold_full_chain": spread([s / (cold * len(seeds)) for s in search if s is not None]),
            "best_same_verdict": all(row["best"]["same_verdict"] for row in rows)}


def _project(root: Path) -> Path:
    return H["project"](root)


def hundred_x_world(base: Path) -> Path:
    """The default world's catalogue with 100 times the merchants, as a world directory."""
    from engine import MERCHANTS_DEFAULT, atomic_write, default_world, outlets_for

    out = base / "world100x"
    if not (out / "outlets.parquet").exists():
        import io

        buf = io.BytesIO()
        outlets_for(default_world(), 42, MERCHANTS_DEFAULT * 100)[["merchant_id", "legal_country_iso"]].to_parquet(buf)
        atomic_write(out / "outlets.parquet", buf.getvalue())
    return out


def workers(base: Path, runs: int, trials: int, world: Path | None = None) -> dict:
    label = "default x100" if world is None else str(world)
    world = hundred_x_world(base) if world is None else world
    root = _project(base / "workers")
    policies = _authority(root, world)
    twin = _project(base / "workers-twin")   # the independent pair's second project, the same authority
    rows = []
    for i in range(runs):
        one = _sweep(root, world, policies, f"bench-w1-{i}", trials, 1)
        two = _sweep(root, world, policies, f"bench-w2-{i}", trials, 2)
        pair = _independent_pair((root, twin), world, policies, f"bench-pair-{i}", trials)
        tp1, tp2, tpp = (r["done"] / r["span_s"] for r in (one, two, pair))
        busy = one["cpu_s"] / one["wall_s"]   # cores one process keeps busy, on average over its whole run
        per_trial = {k: _per_trial(r) for k, r in (("w1", one), ("w2", two), ("pair", pair))}
        span_busy = _ratio(one["span_cpu_s"], one["span_s"])
        rows.append({"w1": {"wall_s": one["wall_s"], "trials_per_s": round(tp1, 3), "load": one["load_before"],
                            "cpu_s": one["cpu_s"], "cores_busy": round(busy, 2)},
                     "w2": {"wall_s": two["wall_s"], "trials_per_s": round(tp2, 3), "load": two["load_before"],
                            "cpu_s": two["cpu_s"]},
                     "pair": {"wall_s": pair["wall_s"], "trials_per_s": round(tpp, 3), "load": pair["load_before"],
                              "cpu_s": pair["cpu_s"]},
                     "ratio": round(tp2 / tp1, 3), "wall_ratio": round(one["wall_s"] / two["wall_s"], 3),
                     # two sweeps sharing nothing: what these cores give two processes over one
                     "pair_ratio": round(tpp / tp1, 3), "workers_over_pair": round(tp2 / tpp, 3),
                     # K processes cannot keep more than cpu_count cores busy: throughput gains at most this
                     "ratio_ceiling": round((os.cpu_count() or 1) / busy, 2),
                     # while the trials run (the trial span): the cores one process keeps busy, the CPU seconds a
                     # trial costs there and in --workers 2 (workers, trail and coordinator), and their ratio
                     "span_cores_busy": span_busy, "span_ratio_ceiling": _ratio(os.cpu_count() or 1, span_busy),
                     "cpu_s_per_trial": per_trial,
                     "trial_cpu_w2_over_w1": _ratio(per_trial["w2"], per_trial["w1"])})
    return {"world": label, "trials": trials, "runs": rows,
            **{key: spread([r[key] for r in rows])
               for key in ("ratio", "wall_ratio", "pair_ratio", "workers_over_pair", "ratio_ceiling", "span_cores_busy",
                           "span_ratio_ceiling", "trial_cpu_w2_over_w1")},
            "one_process_cores_busy": spread([r["w1"]["cores_busy"] for r in rows])}


def _ratio(a, b) -> float | None:
    return None if a is None or not b else round(a / b, 3)


def _per_trial(record: dict) -> float | None:
    """CPU seconds a trial cost in the trial span (None where the span's CPU was not sampled)."""
    return _ratio(record["span_cpu_s"], record["done"])


def default_world(base: Path, sweep: bool) -> dict:
    from engine import PolicySet, default_world_bench
    from engine import default_world as dw

    load0 = _load()
    chain = default_world_bench(PolicySet.from_dir("policies"), 42, dw(), 9)["chain_seconds_median"]
    out = {"chain_s": round(chain, 4), "load_before": load0}
    if sweep:
        load1 = _load()
        out["sweep_200"] = {"wall_s": H["sweep_and_certify"](base / "default", 200)["sweep"]["wall_s"],
                            "load_before": load1,
                            "load_after": _load()}
    return out


PROJECTS = {"big": ("big",), "workers": ("workers", "workers-twin"), "default": ("default",)}


def used_projects(base: Path, parts: set) -> list[str]:
    """The project directories these parts would create that ``base`` (a ``--keep`` directory) already holds."""
    return sorted(name for part in parts for name in PROJECTS[part] if (base / name).exists())


def scale_bench(base: Path, world: Path | None, runs: int, worker_trials: int, parts: set, helpers: dict,
                worker_world: Path | None = None, big_trials: int = TRIALS) -> dict:
    H.update(helpers)
    result: dict = {"cpu_count": os.cpu_count(), "load_start": _load(), "targets": TARGETS}
    if "big" in parts and world is not None:
        result["big_world"] = big_world(base, world, runs, big_trials)
    if "workers" in parts:
        result["workers"] = workers(base, runs, worker_trials, worker_world)
    if "default" in parts:
        result["default_world"] = default_world(base, True)
    measured = {
        "big_sweep_wall_s": (result.get("big_world") or {}).get("wall_s", {}).get("median"),
        "search_over_full_chain": (result.get("big_world") or {}).get("search_over_full_stage", {}).get("median"),
        "workers2_over_workers1_throughput": (result.get("workers") or {}).get("ratio", {}).get("median"),
        "default_chain_s": (result.get("default_world") or {}).get("chain_s"),
        "default_sweep_200_wall_s": ((result.get("default_world") or {}).get("sweep_200") or {}).get("wall_s")}
    result["measured"] = measured
    higher = {"workers2_over_workers1_throughput"}
    result["meets"] = {k: (None if v is None else (v >= TARGETS[k] if k in higher else v <= TARGETS[k]))
                       for k, v in measured.items()}
    if worker_world is not None:   # the target is the 100x world's
        result["meets"]["workers2_over_workers1_throughput"] = None
    if big_trials != TRIALS:   # the target is a 24-trial sweep's wall
        result["meets"]["big_sweep_wall_s"] = None
    if "big_world" in result:
        result["meets"]["best_same_verdict"] = result["big_world"]["best_same_verdict"]
    result["load_end"] = _load()
    return result
