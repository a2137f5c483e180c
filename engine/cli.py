"""python -m engine run | verify | author | bench."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from engine.errors import E_USAGE, EngineError

DEFAULT_POLICIES = Path("policies")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors are coded too
        raise EngineError(E_USAGE, message)


def _world(args):
    from engine.world.model import load_world

    return load_world(args.world, args.reference, args.outlets)


def _policies(args, world):
    from engine.policies import PolicySet

    if args.policies is not None:
        return PolicySet.from_dir(args.policies)
    if world.policy_dir is not None:
        return PolicySet.from_dir(world.policy_dir)
    return PolicySet.from_dir(DEFAULT_POLICIES)


def cmd_run(args) -> int:
    from engine.chain import run_chain

    world = _world(args)
    policies = _policies(args, world)
    if args.cluster:  # merchant partitions as Dask tasks (engine.cluster imports dask lazily)
        from engine.cluster import dask_mapper

        with dask_mapper(args.cluster) as mapper:
            result = run_chain(policies, args.seed, world, run_root=args.run_root, realism_mode=args.realism_mode,
                               partitions=args.partitions or 2 * mapper.threads, mapper=mapper)
    else:
        result = run_chain(policies, args.seed, world, run_root=args.run_root, realism_mode=args.realism_mode,
                           partitions=args.partitions or 1)
    print(f"run_id {result.identity['run_id']}  seed {args.seed}  world {world.name}")
    print(f"run_dir {result.run_dir}")
    print("seconds " + "  ".join(f"{s}={v:.3f}" for s, v in result.seconds.items()))
    realism = result.s6_report.get("realism", {})
    print(f"S6 {result.s6_report['overall_status']}  S7 {result.s7['status']}  realism {realism.get('verdict')} "
          f"({realism.get('mode')})")
    return 0 if result.s6_report["overall_status"] == "PASS" and result.s7["status"] == "PASS" else 1


def cmd_verify(args) -> int:
    from engine.store import verify

    out = verify(args.run_dir)
    print(f"PASS {out['members']} members  bundle {out['bundle_sha256_hex']}")
    return 0


def cmd_author(args) -> int:
    from engine.policies import PolicySet
    from engine.policies.authoring import author_policies

    world = _world(args)
    policies = PolicySet(author_policies(world.population), str(args.out))
    policies.write(args.out)
    print(f"wrote {', '.join(sorted(policies.raw))} to {args.out}  parameter_hash {policies.parameter_hash}")
    return 0


def cmd_bench(args) -> int:
    from engine.chain import STATES, run_chain

    from engine.world.model import outlets_for

    world = _world(args)
    policies = _policies(args, world)
    # the upstream catalogue (segment 1A's output) is an input: made once per seed, sealed by S0 in every repeat
    catalogue = outlets_for(world, args.seed)
    run_chain(policies, args.seed, world, outlets=catalogue)  # warm imports and world tables
    runs = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = run_chain(policies, args.seed, world, outlets=catalogue)  # a fresh cache: every state runs
        runs.append((time.perf_counter() - t0, res.seconds))
    out = {
        "seed": args.seed, "world": world.name, "repeats": args.repeats,
        "chain_seconds_median": statistics.median(r[0] for r in runs),
        "chain_seconds_min": min(r[0] for r in runs),
        "states": {s: statistics.median(r[1][s] for r in runs) for s in STATES},
        "pairs": len(res.tables["s1"]), "zone_rows": len(res.tables["s3"]), "outlet_rows": len(catalogue),
        "note": "fresh ChainCache per repeat (no state reused); the outlet catalogue is the upstream input",
    }
    if args.cluster:  # the scale world in-process vs on a Dask cluster (engine.cluster imports dask lazily)
        from engine.cluster import bench_cluster

        out["cluster_bench"] = bench_cluster(policies, args.seed, world, args.scale, args.cluster)
    elif args.scale > 1:
        from engine.world.outlets import MERCHANTS_DEFAULT

        big_catalogue = outlets_for(world, args.seed, MERCHANTS_DEFAULT * args.scale)
        t0 = time.perf_counter()
        big = run_chain(policies, args.seed, world, outlets=big_catalogue)
        out[f"scale{args.scale}_chain_seconds"] = time.perf_counter() - t0
        out[f"scale{args.scale}_states"] = big.seconds
        out[f"scale{args.scale}_pairs"] = len(big.tables["s1"])
        out[f"scale{args.scale}_zone_rows"] = len(big.tables["s3"])
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m engine", description="Segment 3A zone-allocation engine")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def world_args(sp):
        sp.add_argument("--world", help="a world directory (e.g. one holding country_zone_alphas.yaml)")
        sp.add_argument("--reference", help="a zone universe file (country_iso, tzid)")
        sp.add_argument("--outlets", help="an outlet catalogue (.parquet/.csv)")

    r = sub.add_parser("run", help="run S0..S7 and publish the run folder")
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--run-root", required=True)
    r.add_argument("--policies", help="policy directory (default: the world's own, else ./policies)")
    r.add_argument("--realism-mode", choices=["observe", "block"], default="observe")
    r.add_argument("--cluster", help="run S3/S4 merchant partitions on Dask: tcp://scheduler:8786 or local:K")
    r.add_argument("--partitions", type=int, help="merchant partitions (default 1; with --cluster 2 per worker)")
    world_args(r)
    r.set_defaults(fn=cmd_run)
    v = sub.add_parser("verify", help="re-check a run's bundle and _passed.flag")
    v.add_argument("run_dir")
    v.set_defaults(fn=cmd_verify)
    a = sub.add_parser("author", help="write the baseline policies from the world")
    a.add_argument("--out", default=str(DEFAULT_POLICIES))
    world_args(a)
    a.set_defaults(fn=cmd_author)
    b = sub.add_parser("bench", help="benchmark the in-process chain")
    b.add_argument("--json", action="store_true")
    b.add_argument("--seed", type=int, default=42)
    b.add_argument("--repeats", type=int, default=10)
    b.add_argument("--scale", type=int, default=100, help="also run a world with this many times the merchants")
    b.add_argument("--policies")
    b.add_argument("--cluster", help="also run the --scale world on Dask (local:K or tcp://…) and compare")
    world_args(b)
    b.set_defaults(fn=cmd_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.fn(args)
    except EngineError as exc:
        print(exc.one_line(), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("E3A_CLI_002_INTERRUPTED: interrupted", file=sys.stderr)
        return 130
