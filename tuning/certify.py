"""``python -m tuning.certify [--authority | --run MLFLOW_RUN_ID] [--seeds 42,7,101,202] [--require-certified] [--json]``

The command line of :mod:`tuning.authority.certification`. It reports what it measured and exits 0 whatever the
verdict; ``--require-certified`` (a pipeline's gate) makes an uncertified result exit 2 with one
``E3A_TUN_031_NOT_CERTIFIED`` line after the report (with ``--holdout N``, also a result that holds B or better and
FAITHFUL on fewer than the freeze's 98% of the held-out seeds). ``--record`` refuses an authority folder whose files
are not what its lineage installed (``E3A_TUN_028``), before any seed runs."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Sequence

from engine import EngineError
from tuning.common.limits import MAX_SEEDS, seedpack_missing
from tuning.common import worlds
from tuning.common.errors import E_CERTIFY, E_NOT_CERTIFIED, E_USAGE, TuningParser, decimal
from tuning.common.errors import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    ap = TuningParser(prog="python -m tuning.certify", description=__doc__.splitlines()[0])
    who = ap.add_mutually_exclusive_group()
    who.add_argument("--authority", action="store_true", help="certify policies/ (the default)")
    who.add_argument("--run", metavar="MLFLOW_RUN_ID", help="certify a trial's candidate policy files")
    ap.add_argument("--policies", default="policies")
    ap.add_argument("--seeds", help="comma-separated seeds (default: the plan's seedpack, engine.REQUIRED_SEEDS)")
    ap.add_argument("--runs-root", default="", help="materialise each seed's run here ('' = in memory)")
    ap.add_argument("--holdout", type=decimal, default=0, metavar="N",
                    help="also report the pass rate on N held-out seeds (tuning.authority.holdout: disjoint from every tuning seed)")
    ap.add_argument("--json", action="store_true", help="print the summary JSON")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    ap.add_argument("--require-certified", action="store_true",
                    help="exit 2 (E3A_TUN_031_NOT_CERTIFIED) when the result is not certified, after its report")
    ap.add_argument("--record", action="store_true",
                    help="record the P5 certification in the decision ladder (authority only)")
    worlds.add_world_args(ap)
    args = ap.parse_args(argv)
    seeds = parse_seeds(args.seeds) if args.seeds is not None else None
    if args.record and args.run:
        raise EngineError(E_USAGE, "--record records the authority's own certification in its ladder: a trial's "
                                   "candidate (--run) is certified without it")
    if not 0 <= args.holdout <= MAX_SEEDS:
        raise EngineError(E_CERTIFY, f"--holdout {args.holdout}: expected 0..{MAX_SEEDS} seeds")
    # the engine, MLflow and the authority: once the arguments are found sound (a usage error answers at once)
    from engine import REQUIRED_SEEDS, PolicySet
    from tuning.authority.certification import certify, record_certification
    from tuning.authority.guards import require_lineage_agrees
    from tuning.authority.promotion import fetch_candidate_files, read_lineage, store_holding
    from tuning.authority.txn import settle

    seeds = list(REQUIRED_SEEDS) if seeds is None else seeds
    _require_seedpack(seeds, REQUIRED_SEEDS, args.record)   # refused before its seeds are run, not at the freeze
    runs_root = Path(args.runs_root) if args.runs_root else None
    world = worlds.authority_world(args.policies, args)
    worlds.require_tunable(world, "a certification")
    if args.run:
        with tempfile.TemporaryDirectory() as tmp:
            policies = fetch_candidate_files(store_holding(args.run), args.run, Path(tmp), world=world)
        source = {"source": "run", "source_run_id": args.run}
    else:
        worlds.require(args.policies, world, "certification")
        settle(args.policies)   # an interrupted promotion is finished before its authority is certified
        policies = PolicySet.from_dir(args.policies)
        if args.record:   # refused before its seeds are run, not after
            require_lineage_agrees(Path(args.policies), policies, read_lineage(Path(args.policies)),
                                   "record its certification")
        source = {"source": "authority", "policies_dir": str(args.policies)}
    summary = certify(policies, seeds, source, runs_root, args.holdout, not args.no_progress, world)
    if args.record and not args.run:
        record_certification(Path(args.policies), policies, summary)
    if args.json:
        print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    else:
        _print_summary(summary, seeds)
    held_short = _held_out_short(summary)
    if args.require_certified and (not summary["certified"] or held_short):
        raise EngineError(E_NOT_CERTIFIED, f"not certified on seeds {','.join(map(str, seeds))}: "
                                           f"{_why_not(summary) if not summary['certified'] else held_short}")
    return 0


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: distinct decimal integers in [0, 2**64-1], comma-separated (E3A_TUN_030 otherwise)."""
    from engine import decimal_integer

    parts = [s.strip() for s in text.split(",")]
    if not text.strip() or "" in parts:
        raise EngineError(E_CERTIFY, f"--seeds {text!r}: expected comma-separated integers, at least one, none empty")
    try:
        seeds = [decimal_integer(s) for s in parts]
    except ValueError:
        raise EngineError(E_CERTIFY, f"--seeds {text!r}: expected comma-separated integers") from None
    if any(not 0 <= s <= 2 ** 64 - 1 for s in seeds):
        raise EngineError(E_CERTIFY, f"--seeds {text!r}: a seed must be in [0, 2**64-1]")
    if len(set(seeds)) != len(seeds):
        raise EngineError(E_CERTIFY, f"--seeds {text!r}: need distinct seeds")
    return seeds


def _print_summary(summary: dict, seeds: Sequence[int]) -> None:
    from tuning.authority.certification import pooled_line

    unevidenced = summary["fidelity_verdict"] == "NOT_APPLICABLE"
    if summary.get("holdout"):
        h = summary["holdout"]
        print(f"held-out: {h['n']} seeds, PASS_BPLUS {h['pass_rate_bplus']:.1%}, PASS_B or better {h['pass_rate_b']:.1%}"
              + ("" if unevidenced else f", FAITHFUL {h['faithful_rate']:.1%}"))
        if not unevidenced and "intervals" in h:
            lo, hi = h["intervals"]["pass_rate_bplus_faithful"]
            print(f"held-out: PASS_BPLUS and FAITHFUL {h['pass_rate_bplus_faithful']:.1%} (95% interval {lo:.1%}-{hi:.1%}"
                  f" on {h['n']} seeds); certified grade {summary.get('certified_grade') or 'none'}")
        if h.get("pooled"):
            print(f"held-out: {pooled_line(h['pooled'])}")
    print(f"fidelity {summary['fidelity_verdict']}"
          + (" (the world brings no population evidence, and GeoNames cannot grade its zone universe: fidelity is "
             "shown, not graded)" if unevidenced else "")
          + f"; certified {str(summary['certified']).lower()}")
    print(f"verdict {summary['verdict']} on seeds {','.join(map(str, seeds))} "
          f"(engine {summary['engine_seconds_total']:.2f} s; MLflow run {summary['mlflow_run_id']})")
    for r in summary["reasons"]:
        print(f"  - {r}")


def _held_out_short(summary: dict) -> str | None:
    """With held-out seeds measured, a certification holds only where B or better and FAITHFUL hold on at least
    the freeze's share of them (a grade that holds only on the seeds it was tuned on is not certified)."""
    from tuning.authority.freeze import HOLDOUT_MIN

    held = summary.get("holdout")
    if not held or held["pass_rate_b_faithful"] >= HOLDOUT_MIN:
        return None
    return (f"B or better and FAITHFUL on {held['pass_rate_b_faithful']:.1%} of {held['n']} held-out seeds, "
            f"below {HOLDOUT_MIN:.0%}")


def _require_seedpack(seeds: Sequence[int], required: Sequence[int], record: bool) -> None:
    """``--record`` records the P5 certification of the plan's whole seedpack: the freeze grades its cross-seed
    spread (3A-X01), which fewer seeds do not measure (one seed: 0)."""
    missing = seedpack_missing(seeds) if record else []
    if missing:
        raise EngineError(E_USAGE, f"--record records the P5 certification of the plan's seedpack "
                                   f"({','.join(map(str, required))}): --seeds {','.join(map(str, seeds))} misses "
                                   f"{','.join(map(str, missing))} (its cross-seed spread would not be the seedpack's)")


def _why_not(summary: dict) -> str:
    """Why a certification is not certified: its fidelity (the failing F gates of each seed), else its verdict."""
    from engine import fidelity_holds
    from tuning.authority.certification import pooled_reason

    if not fidelity_holds(summary["fidelity_verdict"]):
        pooled = (summary.get("holdout") or {}).get("pooled")
        if pooled is not None and not pooled["faithful"] and not any(summary["fidelity_failing"].values()):
            return pooled_reason(pooled)   # every seedpack seed is FAITHFUL: the held-out seeds pooled are not
        failing = [f"seed {s}: {', '.join(g)}" for s, g in summary["fidelity_failing"].items() if g]
        return f"fidelity {summary['fidelity_verdict']} ({'; '.join(failing) or 'see the report'})"
    floors = summary.get("realism_floors")
    if floors is not None and not floors["passed"]:
        return f"realism floors: {'; '.join(floors['reasons'])}"
    return f"verdict {summary['verdict']}" + (f" ({summary['reasons'][0]})" if summary["reasons"] else "")


if __name__ == "__main__":
    run_cli(main)
