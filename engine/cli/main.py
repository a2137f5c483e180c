"""python -m engine run | verify | author | bench."""

from __future__ import annotations

import argparse
import shlex
import json
import sys
from pathlib import Path

from engine.cli.wrap import CodedParser as _Parser, invoke
from engine.core.errors import EngineError
from engine.core.strict import UINT64_MAX, decimal_integer

DEFAULT_POLICIES = Path("policies")
AUTHORED_ROOT = Path("authored")
E_AUTHORITY_FOLDER = "E3A_CLI_003_AUTHORITY_FOLDER"
AUTHORITY_MARKERS = ("ladder.yaml", "lineage.yaml")


def _uint64(text: str) -> int:
    """--seed: an integer in [0, 2**64-1] (argparse turns the ArgumentTypeError into a coded usage error)."""
    value = _integer(text)
    if not 0 <= value <= UINT64_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer in [0, 2**64-1]")
    return value


def _integer(text: str) -> int:
    try:
        return decimal_integer(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def _run_root(text: str) -> str:
    """--run-root: a folder; an empty one would be taken as the current directory (argparse turns the
    ArgumentTypeError into a coded usage error)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is empty: name the folder the run folder is published under")
    return text


def _positive(text: str) -> int:
    value = _integer(text)
    if not 1 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer in [1, 10000]")
    return value


def _fraction(text: str) -> float:
    """--fraction: a number in (0, 1] (argparse turns the ArgumentTypeError into a coded usage error)."""
    from engine.chain.subsample import check_fraction

    try:
        return check_fraction(text)
    except EngineError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number in (0, 1]") from None


def _world(args):
    from engine.world.model import load_world

    return load_world(args.world, args.reference, args.outlets)


def _policies(args, world):
    from engine.policies import PolicySet
    from engine.policies.world_baseline import run_policies

    if args.policies is not None:
        _world_of_folder(args)
        return PolicySet.from_dir(args.policies)
    policies, authored = run_policies(world, DEFAULT_POLICIES)
    if authored:
        # a custom zone universe: the authority's alpha pack covers another Z(c), so the baseline policies
        # are authored for this universe, in memory, exactly as `author` would write them
        own = ", ".join(sorted(Path(f).name for f in world.policy_files))
        print(f"policies: authored for the custom universe (universe {world.universe_digest[:12]}, "
              f"parameter_hash {policies.parameter_hash[:16]})" + (f", the world's own {own} as given" if own else "")
              + "; pass --policies DIR to use others")
    elif world.name != "default":   # a world on the default universe runs the default authority: say so (helper 41)
        what = ("its own policies" if policies.source.endswith("(its own policies)") else
                f"the default world's authority ({policies.source}), tuned for the default world's people and outlets")
        print(f"policies: {what} (parameter_hash {policies.parameter_hash[:16]}; this world's zone universe is the "
              f"default one); pass --policies DIR to use others")
    return policies


def _world_of_folder(args) -> None:
    """An authority folder bound to a world (its ``world.yaml``, written by ``tuning.author --into``) given
    without any world: name that world rather than run its policies on the default one (where its alpha pack
    does not cover Z(c))."""
    from engine.core.errors import E_USAGE
    from engine.world.binding import WORLD_FILE, checked_record, recorded_dir

    if any(getattr(args, k, None) for k in ("world", "reference", "outlets")):
        return
    doc = checked_record(args.policies, E_USAGE)   # a malformed one: one line naming the file and its field
    if doc is None:
        return
    where = recorded_dir(args.policies, doc)
    name = doc["name"]
    raise EngineError(E_USAGE, f"--policies {args.policies}: that authority belongs to world {name} ({WORLD_FILE}); "
                               f"pass --world {shlex.quote(str(where)) if where else 'DIR'}")


def _fidelity_figures(pack: dict | None) -> str:
    """The F-gates' figures beside the verdict (the metric pack's ``fidelity`` section), where measured, and the
    gates a DISTORTED verdict fails."""
    from engine.metrics import evaluate_gates

    f = (pack or {}).get("fidelity") or {}
    if not f.get("applicable"):
        return ""
    failing = [g for g, v in evaluate_gates({"fidelity": f})["fidelity"].items() if v["status"] == "FAIL"]
    return (f" (prior JSD {f['prior_jsd_mean']:.4f}, largest {f['prior_jsd_max']:.4f}, over-served "
            f"{f['prior_overserved_max']:.4f}, realised JSD {f['realised_jsd_mean']:.4f}, unpopulated "
            f"{f['unpopulated_share']:.4f}, outside universe {f['outside_universe_share']:.4f}, aliases "
            f"{f['alias_count']})" + (f"; failing {', '.join(failing)}" if failing else ""))


def _realism_misses(realism: dict) -> str:
    """The plan's gates a verdict below B+ misses: the hard ones under FAIL_REALISM, the stretch ones under PASS_B."""
    verdict = realism.get("verdict")
    missed = realism.get("hard_failed") if verdict == "FAIL_REALISM" else \
        realism.get("stretch_failed") if verdict == "PASS_B" else None
    if not missed:
        return ""
    return f"; {'failing' if verdict == 'FAIL_REALISM' else 'below B+ on'} {', '.join(missed)}"


def cmd_run(args) -> int:
    from tqdm import tqdm

    from engine.chain.runner import run_chain
    from engine.chain.steps import STATE_TABLE
    from engine.publish.store import materialise

    world = _world(args)
    policies = _policies(args, world)
    # on a terminal (tqdm's own test), unless --no-progress: a big world's chain and publish take tens of seconds
    bar = tqdm(total=len(STATE_TABLE) + 1, desc="engine run", unit="step", file=sys.stderr, leave=False,
               disable=True if args.no_progress else None)

    def on_state(name: str) -> None:
        bar.set_postfix_str(name, refresh=False)
        bar.update(1)

    with bar:
        if args.cluster:  # merchant partitions as Dask tasks (engine.chain.cluster imports dask lazily)
            from engine.chain.cluster import dask_mapper

            with dask_mapper(args.cluster) as mapper:
                result = run_chain(policies, args.seed, world, realism_mode=args.realism_mode, on_state=on_state,
                                   partitions=args.partitions or 2 * mapper.threads, mapper=mapper,
                                   fraction=args.fraction)
        else:
            result = run_chain(policies, args.seed, world, realism_mode=args.realism_mode, partitions=args.partitions,
                               fraction=args.fraction, on_state=on_state)
        bar.set_postfix_str("publish (S5 egress, S6 report, S7 seal)")
        result.run_dir = materialise(result, args.run_root)  # the CLI publishes: S5-S7 bytes are built here
        bar.update(1)
    print(f"run_id {result.identity['run_id']}  seed {args.seed}  world {world.name} ({world.fingerprint[:12]})"
          + (f"  fraction {args.fraction} ({len(result.cores['s1'])} pairs)" if args.fraction < 1 else ""))
    print(f"run_dir {result.run_dir}")
    if world.left_out_zones:
        shown = ", ".join(f"{c} {t}" for c, t in world.left_out_zones[:5])
        print(f"Z(c): {len(world.left_out_zones)} zone(s) of the universe file left out, their clocks without people "
              f"in the population file: {shown}{', ...' if len(world.left_out_zones) > 5 else ''}")
    print("seconds " + "  ".join(f"{s}={v:.3f}" for s, v in result.seconds.items()))
    realism = result.s6_report.get("realism", {})
    print(f"S6 {result.s6_report['overall_status']}  S7 {result.s7['status']}  realism {realism.get('verdict')} "
          f"({realism.get('mode')}{_realism_misses(realism)})  fidelity {realism.get('fidelity_verdict')}"
          f"{_fidelity_figures(result.pack)}")
    return 0 if result.s6_report["overall_status"] == "PASS" and result.s7["status"] == "PASS" else 1


def cmd_verify(args) -> int:
    from engine.publish.store import verify

    out = verify(args.run_dir)
    print(f"PASS {out['members']} members  bundle {out['bundle_sha256_hex']}")
    return 0


def is_authority_folder(folder: Path) -> bool:
    """./policies (the authority) or any folder holding an authority's ladder or lineage."""
    folder = Path(folder)
    if folder.resolve() == DEFAULT_POLICIES.resolve():
        return True
    return folder.is_dir() and any((folder / m).exists() for m in AUTHORITY_MARKERS)


def cmd_author(args) -> int:
    from engine.publish.atomic import publish_folder
    from engine.policies.world_baseline import authored_baseline

    world = _world(args)
    out = Path(args.out) if args.out else AUTHORED_ROOT / authored_name(world)
    if is_authority_folder(out):
        raise EngineError(E_AUTHORITY_FOLDER, f"{out} is the authority folder; author elsewhere (default "
                                              f"{AUTHORED_ROOT}/{authored_name(world)}/) and install with "
                                              f"python -m tuning.author --into-authority --reason TEXT")
    policies = authored_baseline(world)
    publish_folder(out, {f"{pid}.yaml": data for pid, data in policies.raw.items()})   # all three or none
    print(f"wrote {', '.join(sorted(policies.raw))} to {out}  parameter_hash {policies.parameter_hash}")
    return 0


def authored_name(world) -> str:
    """The folder ``author`` writes without ``--out``: the universe digest's first 12 hex, and for a world with
    population evidence of its own ``-e`` and its evidence digest's first 8 (the authored alphas follow the people:
    two worlds of one Z(c) and other evidence author different policies, and wrote them to one folder)."""
    name = world.universe_digest[:12]
    evidence = world.static_parts.get("evidence")
    return f"{name}-e{evidence.hex()[:8]}" if evidence is not None else name


def _fractions(text: str) -> tuple[float, ...]:
    values = tuple(_fraction(t) for t in text.split(","))
    if list(values) != sorted(set(values)):
        raise argparse.ArgumentTypeError(f"{text!r}: the fractions must increase, each given once")
    return values


def _seeds(text: str) -> tuple[int, ...]:
    values = tuple(_uint64(t) for t in text.split(","))
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"{text!r}: a seed is given twice")
    return values


def cmd_bench_subsample(args, world, policies) -> int:
    from engine.publish.atomic import atomic_write
    from engine.cli.bench_subsample import error_table_md, subsample_bench

    out = {"world": subsample_bench(policies, world, args.seeds, args.fractions)}
    if args.scale > 1 and args.world is None and args.outlets is None:
        out[f"scale{args.scale}"] = subsample_bench(policies, world, args.seeds, args.fractions, args.scale)
    text = json.dumps(out, indent=2, sort_keys=True)
    if args.out:
        atomic_write(args.out, (text + "\n").encode())
    if args.json:
        print(text)
    else:
        for name, res in out.items():
            print(f"{name}: {res['world']} x{res['scale']}, {res['pairs_full']} pairs, seeds "
                  f"{','.join(map(str, res['seeds']))} (largest |error| over the seeds)")
            print(error_table_md(res))
    return 0


def cmd_bench(args) -> int:
    from engine.cli.bench import default_world_bench, scale_bench, with_targets

    world = _world(args)
    policies = _policies(args, world)
    if args.subsample:
        return cmd_bench_subsample(args, world, policies)
    out = default_world_bench(policies, args.seed, world, args.repeats)
    if args.cluster:  # the scale world in-process vs on a Dask cluster (engine.chain.cluster imports dask lazily)
        from engine.chain.cluster import bench_cluster

        out["cluster_bench"] = bench_cluster(policies, args.seed, world, args.scale, args.cluster)
    elif args.scale > 1:
        out.update(scale_bench(policies, (args.world, args.reference, args.outlets), args.seed, args.scale))
    out = with_targets(out)
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
        sp.add_argument("--world", help="a world directory: any of outlets.parquet|csv, universe.csv, population.csv "
                                        "and policy files (missing parts: the default world's)")
        sp.add_argument("--reference", help="a zone universe file (country_iso, tzid)")
        sp.add_argument("--outlets", help="an outlet catalogue (.parquet/.csv)")

    r = sub.add_parser("run", help="run S0..S7 and publish the run folder")
    r.add_argument("--seed", type=_uint64, required=True)
    r.add_argument("--run-root", type=_run_root, required=True)
    r.add_argument("--policies", help="policy directory (default: the world's own; with --reference, authored for "
                                      "that universe; else ./policies)")
    r.add_argument("--realism-mode", choices=["observe", "block"], default="observe")
    r.add_argument("--fraction", type=_fraction, default=1.0,
                   help="score the keyed stratified merchant subsample of this fraction, in (0, 1] (default 1)")
    r.add_argument("--cluster", help="run S3/S4 merchant partitions on Dask: tcp://scheduler:8786 or local:K")
    r.add_argument("--no-progress", action="store_true", help="no progress bar (shown on a terminal only)")
    r.add_argument("--partitions", type=_positive, help="merchant partitions, >= 1 (default: 1 below 200,000 pairs, "
                                                        "else one per core on threads; with --cluster 2 per worker)")
    world_args(r)
    r.set_defaults(fn=cmd_run)
    v = sub.add_parser("verify", help="re-check a run's bundle and _passed.flag")
    v.add_argument("run_dir")
    v.set_defaults(fn=cmd_verify)
    a = sub.add_parser("author", help="write the baseline policies from the world")
    a.add_argument("--out", help="output folder (default: authored/<universe digest prefix>/; never the authority)")
    world_args(a)
    a.set_defaults(fn=cmd_author)
    b = sub.add_parser("bench", help="benchmark the in-process chain")
    b.add_argument("--json", action="store_true")
    b.add_argument("--seed", type=_uint64, default=42)
    b.add_argument("--repeats", type=_positive, default=10)
    b.add_argument("--scale", type=_positive, default=100, help="also run a world with this many times the merchants")
    b.add_argument("--policies")
    b.add_argument("--cluster", help="also run the --scale world on Dask (local:K or tcp://…) and compare")
    b.add_argument("--subsample", action="store_true", help="the subsample estimator's error against full scale for "
                   "every gated metric, on the world and (default world, --scale > 1) the scale world")
    b.add_argument("--fractions", type=_fractions, default=(0.05, 0.1, 0.2, 0.5),
                   help="with --subsample: increasing fractions in (0, 1], comma-separated")
    b.add_argument("--seeds", type=_seeds, default=(42, 7, 101, 202), help="with --subsample: seeds, comma-separated")
    b.add_argument("--out", help="with --subsample: also write the JSON to this file (atomically)")
    world_args(b)
    b.set_defaults(fn=cmd_bench)
    return p


def _main(argv: list[str] | None) -> int:
    args = build_parser().parse_args(argv)
    return args.fn(args)


def main(argv: list[str] | None = None) -> int:
    """Exit status of the command; every failure a user can cause is one coded line (engine.cli.wrap)."""
    return invoke(_main, argv)
