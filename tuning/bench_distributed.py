"""``python -m tuning.bench_distributed [--trials N] [--workers K] [--json]``: the cost of going distributed.

Runs the same P1.2 budget twice from this project root: once as one local process (journal file +
sqlite MLflow store), once as K independent ``python -m tuning.sweep`` processes sharing a real
PostgreSQL server and a real MLflow tracking server (started on loopback by
:mod:`tuning.local_services`, their start-up not counted). Reports both wall times (launch to last
exit) and ``overhead_ratio`` = distributed / local. On a 2-core machine no speed-up is expected; the
target is a ratio below 1.6.
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

from engine.errors import EngineError
from tuning import local_services as ls
from tuning.errors import E_TRIALS_FAILING, E_USAGE, TuningParser, run_cli

TARGET_RATIO = 1.6


def _sweep(n: int, storage: str, study: str, args) -> list[str]:
    return [sys.executable, "-m", "tuning.sweep", "--phase", args.phase, "--trials", str(n), "--storage", storage,
            "--study", study, "--no-progress", "--json", "--reports", "0", "--top", "1"]


def _timed(argvs: list[list[str]], env: dict) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(a, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for a in argvs]
    outs = [p.communicate() for p in procs]
    wall = time.perf_counter() - t0
    bad = [(p.returncode, err) for p, (_, err) in zip(procs, outs) if p.returncode != 0]
    if bad:
        raise EngineError(E_TRIALS_FAILING, f"a sweep process failed (exit {bad[0][0]}): "
                                            f"{(bad[0][1].strip().splitlines() or [''])[-1][:300]}")
    return wall, [json.loads(out) for out, _ in outs]


def bench(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="seg3a-bench-dist-"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")]),
               SEG3A_HEARTBEAT_INTERVAL="5", SEG3A_GRACE_PERIOD="30")
    tag = f"{int(time.time())}"
    try:
        local_env = dict(env, MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}")
        (tmp / "mlruns").mkdir()
        local_wall, local_out = _timed([_sweep(args.trials, f"journal:{tmp / 'local.journal'}", f"bench-local-{tag}",
                                               args)], local_env)
        t0 = time.perf_counter()
        state = ls.start(tmp / "cluster")
        services_s = time.perf_counter() - t0
        try:
            dist_env = dict(env, MLFLOW_TRACKING_URI=state["mlflow_tracking_uri"])
            argv = _sweep(args.trials, state["optuna_storage"], f"bench-dist-{tag}", args)
            dist_wall, dist_out = _timed([argv] * args.workers, dist_env)
        finally:
            ls.stop(tmp / "cluster")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = dist_wall / local_wall
    return {"phase": args.phase, "trials": args.trials, "workers": args.workers, "cpu_count": os.cpu_count(),
            "local": {"wall_seconds": local_wall, "trials_complete": local_out[0]["trials_complete"],
                      "storage": "journal file", "tracking": "sqlite"},
            "distributed": {"wall_seconds": dist_wall, "trials_complete": dist_out[0]["trials_complete"],
                            "storage": "postgresql (loopback)", "tracking": "mlflow server (loopback, postgresql)",
                            "services_start_seconds": services_s},
            "overhead_ratio": ratio, "target_ratio": TARGET_RATIO, "within_target": ratio < TARGET_RATIO,
            "note": "wall = launch of the sweep process(es) to the last exit (imports, anchor, trials, summary); "
                    "--reports 0 in both; service start-up not counted"}


def main(argv: Sequence[str] | None = None) -> int:
    ap = TuningParser(prog="python -m tuning.bench_distributed", description=__doc__.splitlines()[0])
    ap.add_argument("--phase", default="P1.2")
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.trials < 1 or args.workers < 1:
        raise EngineError(E_USAGE, "--trials and --workers must be >= 1")
    out = bench(args)
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print(f"local {out['local']['wall_seconds']:.1f}s  distributed({args.workers}) "
              f"{out['distributed']['wall_seconds']:.1f}s  overhead {out['overhead_ratio']:.2f}x "
              f"(target < {TARGET_RATIO}x)")
    return 0


if __name__ == "__main__":
    run_cli(main)
