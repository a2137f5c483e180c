"""``python -m tuning.local_services start|stop|status|purge [--dir .cluster]``: a PostgreSQL server

The command line of :mod:`tuning.local_services.services`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from tuning.common.errors import TuningParser
from tuning.common.errors import run_cli
from tuning.local_services.services import purge, running, start, stop


def main(argv: Sequence[str] | None = None) -> int:
    ap = TuningParser(prog="python -m tuning.local_services", description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("start", "stop", "status", "purge"),
                    help="stop keeps the cluster's database, artifacts and ports for its next start; purge deletes them")
    ap.add_argument("--dir", default=".cluster", help="where the database, artifacts and logs live")
    args = ap.parse_args(argv)
    root = Path(args.dir)
    if args.action in ("stop", "purge"):
        (stop if args.action == "stop" else purge)(root)
        return 0
    state = running(root)
    if args.action == "status" and state is None:
        print(f"not running (from {root})", file=sys.stderr)
        return 1
    if args.action == "start" and state is not None:
        print(f"a local cluster already runs from {root}: its exports", file=sys.stderr)
    elif args.action == "start":
        stop(root)  # what a cluster whose servers are gone left behind (nothing when none was started)
        state = start(root)
    print(f"export MLFLOW_TRACKING_URI={state['mlflow_tracking_uri']}")
    print(f"export SEG3A_STORAGE={state['optuna_storage']}")
    return 0


if __name__ == "__main__":
    run_cli(main)
