"""``python -m tuning.bench [--json] [--sweep-trials 200] [--sweep-workers K] [--peer-trials 60] [--rounds 3]``
``[--keep DIR]``

The harness benchmarks of issues #4 and #9, each run in a throw-away project (a copy of ``policies/``
and ``studies/``, its own MLflow store, created before the clock starts, and Optuna journal):

- ``peer``: the harness side by side with what a user would write by hand (``tuning.bench.peer``: an
  Optuna loop with optuna-integration's ``MLflowCallback`` over the same engine API and scoring, the
  same sampler seed and the same points: the harness's own trials, enqueued), ``--rounds`` paired rounds
  (the order alternates), both as fresh processes; ``ratio`` = harness wall / peer wall (target <= 1.0),
  with each side's fixed cost (process wall - trial span: start-up + close) and chain seconds per trial;
  the harness's fixed cost (target <= 2 s) and overhead (1 - chain / trial span, target <= 0.15);
- ``sweep``: wall time of ``python -m tuning.sweep --phase P1.2 --trials N [--workers K]`` with full
  logging, process start-up included (target: N=200 in <= 30 s on 2 cores), its fixed cost, trial wall,
  chain seconds and overhead;
- ``certify``: engine seconds of ``python -m tuning.certify --authority`` on the 4 seeds (target <= 5 s).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from engine import EngineError
from tuning.common.errors import E_USAGE, TuningParser, decimal, run_cli

TARGETS = {"peer_ratio": 1.0, "fixed_start_close_s": 2.0, "harness_overhead_fraction": 0.15,
           "sweep_200_wall_s": 30.0, "certify_engine_s": 5.0}
PHASE = "P1.2"


def _env(root: Path) -> dict:
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _start(root: Path, *args: str) -> tuple[subprocess.Popen, float]:
    """``python -m ARGS`` in ``root``, started: stdout (the JSON) is read at the end; stderr (progress bars,
    errors) reaches the user."""
    return subprocess.Popen([sys.executable, "-m", *args], cwd=root, env=_env(root), stdout=subprocess.PIPE,
                            text=True), time.perf_counter()


def _finish(started: tuple[subprocess.Popen, float]) -> tuple[subprocess.CompletedProcess, float]:
    proc, t0 = started
    stdout, _ = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.returncode)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, None), wall


def _cli(root: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    return _finish(_start(root, *args))


def project(root: Path) -> Path:
    """A throw-away project: policies/ and studies/ copied, the MLflow store created (not timed). The store
    is created and migrated once per bench (``<bench dir>/store-template``) and copied: an empty, migrated
    sqlite store is one file."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mlruns").mkdir(exist_ok=True)
    for d in ("policies", "studies"):
        shutil.copytree(d, root / d, ignore=shutil.ignore_patterns("lineage.yaml", ".*"))
    template = root.parent / "store-template"
    if not (template / "mlruns" / "mlflow.db").exists():
        (template / "mlruns").mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-c", "from tuning.trail.tracking import client; client()"], cwd=template,
                       env=_env(template), check=True)
    shutil.copy2(template / "mlruns" / "mlflow.db", root / "mlruns" / "mlflow.db")
    return root


def _study_trials(root: Path, study: str) -> list:
    import optuna

    from tuning.storage.stores import open_storage
    cwd = os.getcwd()
    os.chdir(root)
    try:
        return optuna.load_study(study_name=study, storage=open_storage(None, study)).trials
    finally:
        os.chdir(cwd)


def _fixed_parts(root: Path, parent_run_id: str, t0: float, t1: float, first: float, last: float) -> dict:
    """Where the fixed cost goes (epoch seconds): process start -> first trial (imports, world, study,
    anchor), last trial -> parent run closed (reports, plots, summary), -> process gone; and process start
    -> parent run created, i.e. the MLflow trail process's start-up, which overlaps the first ones."""
    from tuning.trail.tracking import client

    info = client(_env(root)["MLFLOW_TRACKING_URI"]).get_run(parent_run_id).info
    start, end = info.start_time / 1000.0, info.end_time / 1000.0
    return {"start_to_first_trial_s": round(first - t0, 2), "last_trial_to_close_s": round(end - last, 2),
            "close_to_exit_s": round(t1 - end, 2), "start_to_parent_run_s_overlapped": round(start - t0, 2)}


def run_harness(root: Path, trials: int, study: str, extra: Sequence[str] = ()) -> dict:
    t0 = time.time()
    out, wall = _cli(root, "tuning.sweep", "--phase", PHASE, "--trials", str(trials), "--study", study, "--json",
                     "--no-progress", *extra)
    t1 = time.time()
    summary = json.loads(out.stdout)
    done = sorted(_study_trials(root, study), key=lambda t: t.number)
    chain = sum(t.user_attrs["result"]["chain_seconds"] for t in done)
    build = sum(t.user_attrs["result"].get("build_seconds", 0.0) for t in done)
    first, last = min(t.datetime_start for t in done), max(t.datetime_complete for t in done)
    span = (last - first).total_seconds()
    return {"wall_s": wall, "span_s": span, "fixed_s": wall - span, "trials": len(done), "chain_s": chain,
            "build_s": build, "overhead_fraction": 1.0 - chain / span, "summary": summary,
            "fixed_parts": _fixed_parts(root, summary["parent_run_id"], t0, t1, first.timestamp(), last.timestamp()),
            "params": [t.params for t in done], "J": [t.values[0] if t.values else None for t in done]}


def run_peer(root: Path, points: list[dict], study: str) -> dict:
    (root / "points.json").write_text(json.dumps(points))
    out, wall = _cli(root, "tuning.bench.peer", "--phase", PHASE, "--points", "points.json", "--study", study)
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "span_s": doc["span_s"], "fixed_s": wall - doc["span_s"], "trials": doc["trials"],
            "chain_s": doc["chain_s"], "J": doc["J"], "params": doc["params"]}


def _side(r: dict) -> dict:
    n = r["trials"]
    return {"wall_s": round(r["wall_s"], 2), "fixed_s": round(r["fixed_s"], 2),
            "trial_wall_mean_s": round(r["span_s"] / n, 4), "trial_chain_mean_s": round(r["chain_s"] / n, 4),
            "overhead_fraction": round(1.0 - r["chain_s"] / r["span_s"], 4),
            **({"fixed_parts": r["fixed_parts"]} if "fixed_parts" in r else {})}


def compare_with_peer(base: Path, trials: int, rounds: int) -> dict:
    """Paired rounds: harness and peer on the same points, fresh processes and stores; the order alternates."""
    rows, points, j_gap = [], None, 0.0
    for i in range(rounds):
        sides = {}
        order = ("harness", "peer") if i % 2 == 0 or points is None else ("peer", "harness")
        for side in order:
            root = project(base / f"round{i}-{side}")
            if side == "harness":
                sides[side] = run_harness(root, trials, f"bench-h{i}")
                points = points or sides[side]["params"]
            else:
                sides[side] = run_peer(root, points, f"bench-p{i}")
        h, p = sides["harness"], sides["peer"]
        if h["params"] != p["params"]:
            raise SystemExit("tuning.bench: the peer did not evaluate the harness's points")
        j_gap = max([j_gap] + [abs(a - b) for a, b in zip(h["J"], p["J"]) if a is not None and b is not None])
        rows.append({"order": list(order), "ratio": round(h["wall_s"] / p["wall_s"], 4),
                     "harness": _side(h), "peer": _side(p)})
    med = lambda key, side: round(statistics.median(r[side][key] for r in rows), 4)  # noqa: E731
    return {"trials": trials, "rounds": rows, "ratio_median": round(statistics.median(r["ratio"] for r in rows), 4),
            "harness_fixed_s_median": med("fixed_s", "harness"), "peer_fixed_s_median": med("fixed_s", "peer"),
            "harness_overhead_fraction_median": med("overhead_fraction", "harness"),
            "harness_chain_per_trial_s_median": med("trial_chain_mean_s", "harness"),
            "peer_chain_per_trial_s_median": med("trial_chain_mean_s", "peer"),
            "max_abs_J_difference": j_gap}


def sweep_and_certify(base: Path, trials: int, workers: int = 1) -> dict:
    root = project(base / "sweep")
    h = run_harness(root, trials, "bench-P1.2", ("--workers", str(workers)) if workers > 1 else ())
    cert, cert_wall = _cli(root, "tuning.certify", "--authority", "--json")
    cert_doc = json.loads(cert.stdout)
    s, n = h["summary"], h["trials"]
    return {
        "sweep": {"phase": PHASE, "trials": s["trials_complete"], "workers": workers, "wall_s": round(h["wall_s"], 2),
                  "trials_feasible": s["trials_feasible"], "best_J": (s.get("best") or {}).get("J"),
                  "startup_and_close_s": round(h["fixed_s"], 2), "fixed_parts": h["fixed_parts"],
                  "trial_wall_mean_s": round(h["span_s"] / n, 4), "trial_chain_mean_s": round(h["chain_s"] / n, 4),
                  "trial_candidate_build_mean_s": round(h["build_s"] / n, 4),
                  "harness_overhead_fraction": round(h["overhead_fraction"], 4),
                  "harness_overhead_fraction_excl_candidate_build":
                      round(1.0 - (h["chain_s"] + h["build_s"]) / h["span_s"], 4),
                  "projected_200_s": round(h["fixed_s"] + 200 * h["span_s"] / n, 1)},
        "certify": {"seeds": cert_doc["seeds"], "engine_seconds": round(cert_doc["engine_seconds_total"], 3),
                    "wall_s": round(cert_wall, 2), "verdict": cert_doc["verdict"]},
    }


def bench(base: Path, sweep_trials: int, peer_trials: int, rounds: int, sweep_workers: int = 1) -> dict:
    result = {"peer": compare_with_peer(base, peer_trials, rounds) if rounds > 0 else None}
    result.update(sweep_and_certify(base, sweep_trials, sweep_workers))
    peer, sweep = result["peer"] or {}, result["sweep"]
    result["targets"] = TARGETS
    result["cpu_count"] = os.cpu_count()
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    measured = {"peer_ratio": peer.get("ratio_median"),
                "fixed_start_close_s": peer.get("harness_fixed_s_median", sweep["startup_and_close_s"]),
                "harness_overhead_fraction": sweep["harness_overhead_fraction"],
                "sweep_200_wall_s": sweep["wall_s"] if sweep["trials"] == 200 else sweep["projected_200_s"],
                "certify_engine_s": result["certify"]["engine_seconds"]}
    result["measured"] = measured
    result["meets"] = {k: (None if v is None else v <= TARGETS[k]) for k, v in measured.items()}   # None: not run
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = TuningParser(prog="python -m tuning.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--sweep-trials", type=decimal, default=200, help="trials of the benchmark sweep (default 200)")
    ap.add_argument("--peer-trials", type=decimal, default=60, help="trials of each peer-comparison round (default 60)")
    ap.add_argument("--rounds", type=decimal, default=3, help="paired harness/peer rounds (default 3; 0 skips)")
    ap.add_argument("--sweep-workers", type=decimal, default=1, help="--workers of the benchmark sweep (default 1)")
    ap.add_argument("--keep", help="run in this directory and keep it (default: a temporary directory)")
    ap.add_argument("--scale", action="store_true", help="the harness at scale (tuning/bench/scale.py): a 24-trial "
                    "P3 sweep on --world, the search stage's cost, 2 workers on a 100x world, the default world")
    ap.add_argument("--world", help="with --scale: the large world directory (e.g. a 381k-pair catalogue)")
    ap.add_argument("--runs", type=decimal, default=3, help="with --scale: runs of each figure (default 3)")
    ap.add_argument("--worker-trials", type=decimal, default=40, help="with --scale: trials of each workers run")
    ap.add_argument("--big-trials", type=decimal, default=24, help="with --scale: trials of the big-world sweep (the "
                    "target's 24; another count is measured beside no target, a quicker check)")
    ap.add_argument("--worker-world", help="with --scale: the workers figure's world (default: the default world's "
                    "catalogue with 100 times the merchants, the target's)")
    ap.add_argument("--parts", default="big,workers,default", help="with --scale: which figures (comma-separated)")
    ap.add_argument("--out", help="with --scale: also write the JSON here (atomically)")
    args = ap.parse_args(argv)
    if args.scale:
        return scale_main(args)
    if min(args.sweep_trials, args.peer_trials) < 1 or args.rounds < 0 or not 1 <= args.sweep_workers <= 64:
        raise EngineError(E_USAGE, "--sweep-trials and --peer-trials must be >= 1, --rounds >= 0, "
                                   "--sweep-workers in [1, 64]")
    if args.keep:
        root = Path(args.keep).resolve()
        root.mkdir(parents=True, exist_ok=False)
        result = bench(root, args.sweep_trials, args.peer_trials, args.rounds, args.sweep_workers)
    else:
        with tempfile.TemporaryDirectory(prefix="tuning-bench-") as tmp:
            result = bench(Path(tmp), args.sweep_trials, args.peer_trials, args.rounds, args.sweep_workers)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


def scale_main(args) -> int:
    from engine import atomic_write
    from tuning.bench.scale import scale_bench, used_projects

    parts = set(args.parts.split(","))
    if not parts <= {"big", "workers", "default"} or args.runs < 1 or args.worker_trials < 2 or args.big_trials < 2:
        raise EngineError(E_USAGE, "--parts is a comma-separated subset of big,workers,default; --runs >= 1; "
                                   "--worker-trials >= 2; --big-trials >= 2")
    if "big" in parts and args.world is None:
        raise EngineError(E_USAGE, "--scale needs --world DIR for the big-world sweep (or --parts without big)")
    if args.world is not None and not Path(args.world).is_dir():
        raise EngineError(E_USAGE, f"--world {args.world}: not a directory")
    if args.worker_world is not None and not Path(args.worker_world).is_dir():
        raise EngineError(E_USAGE, f"--worker-world {args.worker_world}: not a directory")
    if args.keep and (taken := used_projects(Path(args.keep), parts)):
        raise EngineError(E_USAGE, f"--keep {args.keep}: already holds a bench's {', '.join(taken)} project(s); "
                                   f"give a new directory")
    world = Path(args.world).resolve() if args.world else None
    worker_world = Path(args.worker_world).resolve() if args.worker_world else None
    with tempfile.TemporaryDirectory(prefix="tuning-bench-scale-") as tmp:
        base = Path(args.keep).resolve() if args.keep else Path(tmp)
        helpers = {"cli": _cli, "start": _start, "finish": _finish, "trials": _study_trials, "project": project,
                   "sweep_and_certify": sweep_and_certify}
        result = scale_bench(base, world, args.runs, args.worker_trials, parts, helpers, worker_world,
                             args.big_trials)
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.out:
        atomic_write(args.out, (text + "\n").encode())
    print(text if args.json else "\n".join(f"{k}: {v}" for k, v in result["measured"].items()))
    return 0


if __name__ == "__main__":
    run_cli(main)
