"""Runtime lanes: POPT.0 baseline + hotspot map (METRICS §13) and POPT.1 closure (§14).

The command line of :mod:`tuning.runtime.lanes`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tuning.common.errors import TuningParser, decimal
from tuning.common.errors import run_cli


def build_parser() -> TuningParser:
    ap = TuningParser(prog="python -m tuning.runtime", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("baseline", help="POPT.0 state timing baseline + hotspot map")
    b.add_argument("--seed", type=decimal, default=42)
    b.add_argument("--repeats", type=decimal, default=5)
    b.add_argument("--policies", default="policies")
    b.add_argument("--out", default="reports")
    b.add_argument("--runs-root", default="runs")
    b.add_argument("--record", action="store_true", help="record POPT.0 in the decision ladder (MLflow)")
    from tuning.common.worlds import add_world_args

    add_world_args(b)
    c = sub.add_parser("closure", help="POPT.1 closure: candidate POPT.0 JSON vs baseline POPT.0 JSON")
    c.add_argument("baseline_json")
    c.add_argument("candidate_json")
    c.add_argument("--require-s5-gate", action="store_true")
    c.add_argument("--out", default="reports")
    c.add_argument("--policies", default="policies")
    c.add_argument("--record", action="store_true", help="record POPT.1 in the decision ladder (MLflow)")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the engine and the lanes: once the arguments are sound (a usage error answers at once)
    from tuning.report.files import read_json
    from tuning.runtime.lanes import POPT1_JSON, POPT1_MD, _publish, closure_document, closure_markdown, popt0

    out = Path(args.out)
    if args.command == "baseline":
        from tuning.common import worlds

        world = worlds.authority_world(args.policies, args)
        with worlds.measuring(args.policies, world, f"POPT.0 of {args.policies}"):
            popt0(args.policies, world, args.seed, args.repeats, out, args.runs_root, args.record)
        return 0
    base_path, cand_path = Path(args.baseline_json), Path(args.candidate_json)
    doc = closure_document(base_path, read_json(base_path, "POPT.0 report"), cand_path,
                           read_json(cand_path, "POPT.0 report"), args.require_s5_gate)
    _publish(out, POPT1_JSON, POPT1_MD, doc["candidate"]["run_id"], doc, closure_markdown(doc),
             ("POPT.1", doc["decision"]["progression_decision"], args.policies) if args.record else None)
    return 0


if __name__ == "__main__":
    run_cli(main)
