"""P0 metric pack: run one policy set on one seed and publish its metric pack and gates.

The command line of :mod:`tuning.baseline.pack`."""

from __future__ import annotations

from typing import Sequence

from tuning.common.errors import TuningParser, decimal
from tuning.common.errors import run_cli


def build_parser() -> TuningParser:
    ap = TuningParser(prog="python -m tuning.baseline", description=__doc__.splitlines()[0])
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--authored", action="store_const", const="authored", dest="subject",
                      help="measure the authored baseline (the plan's P0), built in memory for the world")
    what.add_argument("--authority", action="store_const", const="authority", dest="subject",
                      help="measure the current authority in --policies (the default)")
    ap.set_defaults(subject="authority")
    ap.add_argument("--seed", type=decimal, default=42)
    ap.add_argument("--policies", default="policies", help="authority policy directory (default: policies)")
    ap.add_argument("--out", default="reports", help="reports folder (default: reports)")
    ap.add_argument("--runs-root", default="runs", help="where the run is materialised (default: runs)")
    ap.add_argument("--record", action="store_true", help="record the P0 step in the decision ladder (MLflow)")
    from tuning.common.worlds import add_world_args

    add_world_args(ap)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tuning.baseline.pack import p0   # the engine: once the arguments are sound (a usage error answers at once)
    from tuning.common import worlds

    world = worlds.authority_world(args.policies, args)   # measuring is not certifying: any world may be given
    if args.record:   # ... but a step of the folder's ladder is a measurement on the folder's own world
        worlds.require(args.policies, world, "recording a P0 step")
    with worlds.measuring(args.policies, world, f"P0 pack of {args.policies}"):
        p0(args.policies, args.subject, args.seed, args.out, args.runs_root, world, args.record)
    return 0


if __name__ == "__main__":
    run_cli(main)
