"""``python -m tuning.freeze [--policies policies] [--target PASS_BPLUS]``: P6, freeze the certified authority.

The command line of :mod:`tuning.authority.freeze`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from engine import EngineError
from tuning.common.errors import E_USAGE, TuningParser
from tuning.common.errors import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    ap = TuningParser(prog="python -m tuning.freeze", description=__doc__.splitlines()[0])
    ap.add_argument("--policies", default="policies")
    ap.add_argument("--target", choices=("PASS_BPLUS", "PASS_B"),
                    help="the grade aimed at: below it the freeze is best effort (default: any certified grade)")
    args = ap.parse_args(argv)
    if not Path(args.policies).is_dir():
        raise EngineError(E_USAGE, f"{args.policies}: authority folder not found")
    from tuning.authority.freeze import freeze   # MLflow and the certification: once the arguments are sound
    from tuning.authority.txn import require_authority_folder

    require_authority_folder(args.policies)   # before its lock: nothing left in a folder that is no authority
    step = freeze(Path(args.policies), args.target)
    again = " already recorded: nothing new" if step.get("already_recorded") else ""
    print(f"P6 {step['decision']} for authority {step['parameter_hash'][:12]} (MLflow run {step['mlflow_run_id']}){again}")
    return 0


if __name__ == "__main__":
    run_cli(main)
