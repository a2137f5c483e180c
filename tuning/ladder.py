"""The decision ladder: every phase closure (P0, POPT.0, P1.2 ... P6) as one step of the trail.

The command line of :mod:`tuning.authority.ladder`."""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from pathlib import Path
from typing import Sequence

from engine import EngineError
from tuning.authority.ladder import PHASES, ladder_table, record_step
from tuning.authority.txn import pending, require_authority_folder
from tuning.authority.ladder_steps import read_ladder
from tuning.common.errors import E_USAGE, TuningParser, text
from tuning.common.errors import run_cli


def phase(value: str) -> str:
    """An argument type: one of the plan's phases (tuning.authority.ladder.PHASES)."""
    if value not in PHASES:
        raise argparse.ArgumentTypeError(f"{value!r} is not a phase of the plan ({', '.join(PHASES)})")
    return value


def one_line(value: str) -> str:
    """An argument type: text on one line (a decision, a note: one row of ``ladder show``'s table)."""
    bad = next((c for c in value if unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp")),
               None)
    if bad is not None:
        raise argparse.ArgumentTypeError(f"must be one line of text (it holds {bad!r})")
    return text(value)


def build_parser() -> TuningParser:
    ap = TuningParser(prog="python -m tuning.ladder", description="the phase decision ladder")
    sub = ap.add_subparsers(dest="cmd", required=True)
    show = sub.add_parser("show")
    show.add_argument("--policies", default="policies")
    show.add_argument("--json", action="store_true")
    rec = sub.add_parser("record")
    rec.add_argument("--policies", default="policies")
    rec.add_argument("--phase", required=True, type=phase, help=f"one of {', '.join(PHASES)}")
    rec.add_argument("--decision", required=True, type=one_line)
    rec.add_argument("--note", type=one_line)
    rec.add_argument("--file", action="append", default=[], help="an evidence file logged as an artifact")
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "show":
        if not Path(args.policies).is_dir():
            raise EngineError(E_USAGE, f"{args.policies}: no authority folder here (pass --policies DIR)")
        require_authority_folder(args.policies)   # a world folder's empty ladder is not an authority's
        steps = read_ladder(Path(args.policies))
        if pending(args.policies):   # shown, not finished: show only reads (it may read a read-only copy)
            print(f"{args.policies}: an interrupted promotion's install is pending; the ladder below may not show it "
                  f"yet (a sweep, certify or promote on this folder finishes it first)", file=sys.stderr)
        print(json.dumps(steps, indent=2) if args.json else ladder_table(steps), end="" if not args.json else "\n")
        return 0
    require_authority_folder(args.policies)   # before its lock: a step is recorded into an authority, never a new folder
    files = {}
    for f in args.file:
        p = Path(f)
        if not p.is_file():
            raise EngineError(E_USAGE, f"{p}: evidence file not found")
        files[p.name] = p.read_bytes()
    step = record_step(args.phase, args.decision, policies_dir=Path(args.policies), artifacts=files, note=args.note)
    print(f"recorded {step['phase']} {step['decision']} as MLflow run {step['mlflow_run_id']}")
    return 0


if __name__ == "__main__":
    run_cli(main)
