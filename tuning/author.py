"""``python -m tuning.author (--into-authority | --into DIR) [--reason TEXT] [--world DIR | --reference FILE]``

The command line of :mod:`tuning.authority.authoring`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from engine import EngineError
from tuning.common import worlds
from tuning.common.errors import E_USAGE, TuningParser, text
from tuning.common.errors import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    ap = TuningParser(prog="python -m tuning.author", description=__doc__.splitlines()[0])
    where = ap.add_mutually_exclusive_group(required=True)
    where.add_argument("--into-authority", action="store_true",
                       help="overwrite the authority folder --policies (default: policies)")
    where.add_argument("--into", metavar="DIR", help="the authority folder of the world (created when absent)")
    ap.add_argument("--reason", type=text, help="why the authority is (re)authored (recorded in the ladder; required "
                                                "with --into-authority)")
    ap.add_argument("--policies", default="policies", help="the authority folder of --into-authority")
    ap.add_argument("--reopen", metavar="REASON", type=text, help="reopen a frozen authority (recorded in the ladder)")
    worlds.add_world_args(ap)
    args = ap.parse_args(argv)
    if args.into_authority and not (args.reason or "").strip():
        raise EngineError(E_USAGE, "--reason must not be empty")
    target = Path(args.into) if args.into else Path(args.policies)
    if args.world and target.resolve() == Path(args.world).resolve():   # its policy files would become the world's own
        raise EngineError(E_USAGE, f"--into {target}: that is the world's own folder; give the authority a folder of "
                                   f"its own")
    from tuning.authority.authoring import DECISION, install_authored   # the engine and MLflow: arguments sound

    world = worlds.from_args(args)
    if not (args.reason or "").strip() and _holds_authority_of(target, world):
        raise EngineError(E_USAGE, f"--into {target}: it already holds this world's authority (its promotions would be "
                                   f"replaced by the authored baseline); pass --reason TEXT to re-author it")
    reason = (args.reason or "").strip() or f"authored baseline of world {world.name} ({world.fingerprint[:12]})"
    step = install_authored(target, reason, world, args.world, args.reopen)
    print(f"installed the authored baseline of world {world.name} ({world.fingerprint[:12]}) into {target}/ "
          f"(parameter_hash {step['parameter_hash'][:16]}); ladder step AUTHOR {DECISION} "
          f"(MLflow run {step['mlflow_run_id']})")
    return 0


def _holds_authority_of(folder: Path, world) -> bool:
    """Does ``folder`` hold an authority of ``world`` already (another world's is refused by the install itself)?"""
    return (folder / "zone_mixture_policy.yaml").exists() and worlds.bound_world(folder)["fingerprint"] == \
        world.fingerprint


if __name__ == "__main__":
    run_cli(main)
