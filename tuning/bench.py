"""``python -m tuning.bench [--json] [--sweep-trials 200] [--keep DIR]``

The harness benchmarks of issue #4, measured in a throw-away project (a copy of ``policies/`` and
``studies/``, its own MLflow store and Optuna journal):

- ``harness_overhead_fraction``: 1 - (engine chain seconds / trial wall seconds), over the trials of
  the sweep below (trial wall = first trial start to last trial end, so Optuna, knobs, scoring and
  MLflow logging all count as overhead; target <= 0.25); ``..._excl_candidate_build`` also counts
  the candidate build (serialising the policy and the engine's PolicySet parse/validation) as engine;
- ``sweep``: wall time of ``python -m tuning.sweep --phase P1.2 --trials N`` with full logging, process
  start-up included (target: N=200 in <= 180 s);
- ``certify``: engine seconds of ``python -m tuning.certify --authority`` on the 4 seeds (target <= 5 s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from tuning.errors import TuningParser, run_cli

TARGETS = {"harness_overhead_fraction": 0.25, "sweep_200_wall_s": 180.0, "certify_engine_s": 5.0}


def _cli(root: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1]) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    # stdout (the JSON) is read; stderr (the sweep's and certify's progress bars, errors) reaches the user
    out = subprocess.run([sys.executable, "-m", *args], cwd=root, env=env, stdout=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(out.returncode)
    return out, wall


def bench(root: Path, trials: int, study: str = "bench-P1.2") -> dict:
    (root / "mlruns").mkdir(parents=True, exist_ok=True)
    for d in ("policies", "studies"):
        shutil.copytree(d, root / d, ignore=shutil.ignore_patterns("lineage.yaml", ".*"))
    steps = tqdm(total=2, desc="bench: sweep", unit="step", file=sys.stderr)
    out, wall = _cli(root, "tuning.sweep", "--phase", "P1.2", "--trials", str(trials), "--study", study, "--json")
    steps.update(1)
    steps.set_description("bench: certify")
    summary = json.loads(out.stdout)

    import optuna
    from tuning.study_store import open_storage
    cwd = os.getcwd()
    os.chdir(root)
    try:
        trials_done = optuna.load_study(study_name=study, storage=open_storage(None, study)).trials
    finally:
        os.chdir(cwd)
    chain = sum(t.user_attrs["result"]["chain_seconds"] for t in trials_done)
    build = sum(t.user_attrs["result"].get("build_seconds", 0.0) for t in trials_done)
    span = (max(t.datetime_complete for t in trials_done) - min(t.datetime_start for t in trials_done)).total_seconds()
    cert, cert_wall = _cli(root, "tuning.certify", "--authority", "--json")
    steps.update(1)
    steps.close()
    cert_doc = json.loads(cert.stdout)
    result = {
        "harness_overhead_fraction": round(1.0 - chain / span, 4),
        "trial_wall_mean_s": round(span / len(trials_done), 4),
        "trial_chain_mean_s": round(chain / len(trials_done), 4),
        "trial_candidate_build_mean_s": round(build / len(trials_done), 4),
        "harness_overhead_fraction_excl_candidate_build": round(1.0 - (chain + build) / span, 4),
        "sweep": {"phase": "P1.2", "trials": summary["trials_complete"], "wall_s": round(wall, 2),
                  "trials_feasible": summary["trials_feasible"], "best_J": (summary.get("best") or {}).get("J"),
                  "startup_and_close_s": round(wall - span, 2),
                  "projected_200_s": round(wall - span + 200 * span / len(trials_done), 1)},
        "certify": {"seeds": cert_doc["seeds"], "engine_seconds": round(cert_doc["engine_seconds_total"], 3),
                    "wall_s": round(cert_wall, 2), "verdict": cert_doc["verdict"]},
        "targets": TARGETS,
        "cpu_count": os.cpu_count(),
    }
    result["meets"] = {
        "harness_overhead_fraction": result["harness_overhead_fraction"] <= TARGETS["harness_overhead_fraction"],
        "sweep_200_wall_s": result["sweep"]["projected_200_s"] <= TARGETS["sweep_200_wall_s"],
        "certify_engine_s": result["certify"]["engine_seconds"] <= TARGETS["certify_engine_s"],
    }
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = TuningParser(prog="python -m tuning.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--sweep-trials", type=int, default=200, help="trials of the benchmark sweep (default 200)")
    ap.add_argument("--keep", help="run in this directory and keep it (default: a temporary directory)")
    args = ap.parse_args(argv)
    if args.keep:
        root = Path(args.keep).resolve()
        root.mkdir(parents=True, exist_ok=False)
        result = bench(root, args.sweep_trials)
    else:
        with tempfile.TemporaryDirectory(prefix="tuning-bench-") as tmp:
            result = bench(Path(tmp), args.sweep_trials)
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    run_cli(main)
