"""``python -m tuning.promote MLFLOW_RUN_ID [--policies policies] [--decision UNLOCK_P2] [--runs-root runs]``

The command line of :mod:`tuning.authority.promotion`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from tuning.common.errors import TuningParser, text
from tuning.common.errors import run_cli


def build_parser() -> TuningParser:
    ap = TuningParser(prog="python -m tuning.promote", description=__doc__.splitlines()[0])
    ap.add_argument("run_id", metavar="MLFLOW_RUN_ID")
    ap.add_argument("--policies", default="policies", help="authority policy directory")
    ap.add_argument("--decision", type=text, help="phase decision recorded with the promotion (e.g. UNLOCK_P2)")
    ap.add_argument("--runs-root", default="runs", help="where the witness run is materialised ('' = not)")
    ap.add_argument("--ladder-phase", type=text,
                    help="phase label of the ladder step (default: the run's phase), e.g. P1.4")
    ap.add_argument("--reopen", metavar="REASON", type=text,
                    help="reopen a frozen authority (the reason is recorded)")
    ap.add_argument("--reason", type=text,
                    help="why this candidate (e.g. which Pareto point and why), recorded in the ladder")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar of the witness replay on stderr")
    from tuning.common.worlds import add_world_args

    add_world_args(ap)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    from tuning.common import worlds

    args = build_parser().parse_args(argv)
    from tuning.authority.promotion import promote   # MLflow and the engine: after the arguments are found sound

    out = promote(args.run_id, Path(args.policies), args.decision, Path(args.runs_root) if args.runs_root else None,
                  args.ladder_phase, args.reopen, args.reason, worlds.authority_world(args.policies, args),
                  progress=not args.no_progress)
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    elif out["status"] == "ALREADY_AUTHORITY":
        print(f"run {args.run_id} is already the authority (parameter_hash {out['parameter_hash'][:16]}); witness "
              f"{out['witness']['status']} ({out['witness']['fields_compared']} fields); "
              f"decision {out.get('decision', 'none recorded')}")
    else:
        w = out["witness"]
        print(f"promoted run {args.run_id} -> {args.policies}/ (parameter_hash {out['parameter_hash'][:16]}, "
              f"previous {out['previous_parameter_hash'][:16]}); witness {w['status']}: "
              f"{w['fields_compared']} deterministic fields replayed exactly (engine run {w['engine_run_id']}); "
              f"promotion run {out['promotion_run_id']}; decision {out['decision']}; model "
              f"{out['registered_model']['name']} v{out['registered_model']['version']} @authority")
    return 0


if __name__ == "__main__":
    run_cli(main)
