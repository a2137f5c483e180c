"""``python -m tuning.bench.peer --phase P1.2 --points POINTS.json --study NAME``: the peer of ``tuning.bench``.

What a user would write by hand over the same engine API: an Optuna loop with optuna-integration's
``MLflowCallback``; each trial runs ``run_chain`` (with the engine's chain cache) on every seed of the
study, takes the metric pack and scores the phase's J with the harness's own scoring function
(:func:`tuning.study.objective.phase_j`, mean over seeds; a two-objective study also returns the mean of its
second metric). Same sampler seed as the study; the points (a JSON list of knob dicts, in trial order)
are enqueued, so both sides evaluate the same candidates. No vetoes, artifacts, parent run or resume:
only what ``MLflowCallback`` logs (the objective values, the params, a few tags). Prints a JSON line:
the trial span, the chain seconds and the J of every trial (``tuning.bench`` checks them against the
harness's).
"""

from __future__ import annotations

import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Sequence

import optuna
from optuna_integration.mlflow import MLflowCallback

from engine import ChainCache, PolicySet, metric_pack, run_chain
from tuning.common.errors import TuningParser
from tuning.study.knobs import apply_knobs
from tuning.study.objective import phase_j
from tuning.study.spec import load_study, metric_value
from tuning.trail.tracking import tracking_uri


def _pack(res) -> dict:
    return res.pack if res.pack is not None else metric_pack(res.cores)


def make_objective(spec, base: PolicySet, seeds: list[int], chain_seconds: list[float]):
    cache = ChainCache(max_entries=64 * len(seeds))
    anchors = {s: _pack(run_chain(base, s, cache=cache)) for s in seeds}

    def objective(trial: optuna.Trial):
        knobs = {k.name: k.suggest(trial) for k in spec.knobs}
        candidate = apply_knobs(base, knobs)
        js, second = [], []
        for seed in seeds:
            t0 = time.perf_counter()
            pack = _pack(run_chain(candidate, seed, cache=cache))
            chain_seconds.append(time.perf_counter() - t0)
            js.append(phase_j(spec, pack, anchors[seed])[0])
            if spec.second:
                second.append(metric_value(pack, spec.second["metric"]))
        j = math.fsum(js) / len(js)
        return (j, math.fsum(second) / len(second)) if spec.second else j

    return objective


def run_peer(phase: str, points: list[dict], study_name: str) -> dict:
    spec = load_study(phase, "studies")
    base = PolicySet.from_dir(spec.base_policies)
    seeds = [int(s) for s in spec.seeds]
    chain: list[float] = []
    objective = make_objective(spec, base, seeds, chain)
    directions = ["maximize", "minimize" if spec.second["direction"] in ("down", "minimize") else "maximize"] \
        if spec.second else ["maximize"]
    sampler = optuna.samplers.TPESampler(seed=int(spec.sampler.get("seed", 0)),
                                         n_startup_trials=int(spec.sampler.get("n_startup_trials", 10)),
                                         multivariate=bool(spec.sampler.get("multivariate", False)))
    study = optuna.create_study(study_name=study_name, directions=directions, sampler=sampler)
    for p in points:
        study.enqueue_trial(p)
    names = ["J", spec.second["name"]] if spec.second else ["J"]
    with warnings.catch_warnings():  # deprecated since Optuna 4.9 (still what a user reaches for)
        warnings.simplefilter("ignore", FutureWarning)
        callback = MLflowCallback(tracking_uri=tracking_uri(), metric_name=names)
    study.optimize(objective, n_trials=len(points), callbacks=[callback])
    trials = study.trials
    span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    return {"trials": len(trials), "span_s": span, "chain_s": math.fsum(chain),
            "J": [t.values[0] if t.values else None for t in trials],
            "params": [t.params for t in trials]}


def main(argv: Sequence[str] | None = None) -> int:
    ap = TuningParser(prog="python -m tuning.bench.peer", description=__doc__.splitlines()[0])
    ap.add_argument("--phase", required=True)
    ap.add_argument("--points", required=True, help="JSON list of knob dicts, in trial order")
    ap.add_argument("--study", default="bench-peer")
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    points = json.loads(Path(args.points).read_text())
    print(json.dumps(run_peer(args.phase, points, args.study), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())  # a user's script ends the ordinary way (the harness's CLIs skip the heap teardown)
