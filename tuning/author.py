"""``python -m tuning.author --into-authority --reason TEXT [--world DIR | --reference FILE] [--policies policies]``

The one recorded way to write authored baseline policies into the authority folder (``python -m engine
author`` refuses it). Authors the baseline for the world, refuses a frozen authority unless ``--reopen
REASON``, installs the files (each atomically) with a lineage entry, and records the step in the decision
ladder (phase ``AUTHOR``, decision ``AUTHORED_INSTALL``, the reason as its note).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Sequence

from engine import EngineError
from engine import PolicySet
from tuning.errors import E_USAGE, TuningParser, run_cli, text

DECISION = "AUTHORED_INSTALL"


def authored_policies(world_dir: str | None = None, reference: str | None = None) -> PolicySet:
    from engine import author_policies
    from engine import load_world

    world = load_world(world_dir, reference)
    return PolicySet(author_policies(world.population), f"authored:{world.name}")


def install_authored(policies_dir: Path, reason: str, world_dir: str | None = None, reference: str | None = None,
                     reopen: str | None = None) -> dict:
    """Serialised with every other authority change (tuning.authority_txn.authority_lock)."""
    from tuning.authority_txn import authority_lock

    policies_dir.mkdir(parents=True, exist_ok=True)
    with authority_lock(policies_dir):
        return _install_authored(policies_dir, reason, world_dir, reference, reopen)


def _install_authored(policies_dir: Path, reason: str, world_dir: str | None, reference: str | None,
                      reopen: str | None) -> dict:
    from tuning.promote import install, read_lineage
    from tuning.promote_guards import E_FROZEN, frozen_step

    authored = authored_policies(world_dir, reference)
    current = PolicySet.from_dir(policies_dir) if policies_dir.is_dir() else None
    frozen = frozen_step(policies_dir) if current is not None else None
    if frozen is not None and not reopen:
        raise EngineError(E_FROZEN, f"the authority {current.parameter_hash[:12]} is {frozen['decision']}; "
                                    f"pass --reopen REASON to overwrite it with the authored baseline")
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    entry = {"promoted_utc": now, "decision": DECISION, "reason": reason, "source": authored.source,
             "parameter_hash": authored.parameter_hash, "digests": dict(authored.digests),
             "previous_authority": {"parameter_hash": current.parameter_hash if current else None,
                                    "digests": dict(current.digests) if current else {}}}
    # one transaction (tuning.promotion_txn): the files, no run left current, no registry alias, the ladder steps
    steps = [{"kind": "clear_authority"}]
    if frozen is not None:
        steps.append({"kind": "ladder", "phase": "P6", "decision": "REOPENED", "note": reopen,
                      "evidence": {"frozen_status": frozen["decision"], "for": DECISION}})
    steps.append({"kind": "ladder", "phase": "AUTHOR", "decision": DECISION, "note": reason,
                  "evidence": {"source": authored.source,
                               "previous_parameter_hash": current.parameter_hash if current else "none"}})
    return install(authored, policies_dir, read_lineage(policies_dir), entry, steps=steps)["ladder"][-1]


def main(argv: Sequence[str] | None = None) -> int:
    ap = TuningParser(prog="python -m tuning.author", description=__doc__.splitlines()[0])
    ap.add_argument("--into-authority", action="store_true", required=True,
                    help="required: this command overwrites the authority folder")
    ap.add_argument("--reason", required=True, type=text, help="why the authority is replaced (recorded in the ladder)")
    ap.add_argument("--policies", default="policies", help="the authority folder (default: policies)")
    ap.add_argument("--world", help="a world directory instead of the embedded default")
    ap.add_argument("--reference", help="a zone universe file (country_iso, tzid)")
    ap.add_argument("--reopen", metavar="REASON", type=text, help="reopen a frozen authority (recorded in the ladder)")
    args = ap.parse_args(argv)
    if not args.reason.strip():
        raise EngineError(E_USAGE, "--reason must not be empty")
    step = install_authored(Path(args.policies), args.reason, args.world, args.reference, args.reopen)
    print(f"installed the authored baseline into {args.policies}/ (parameter_hash {step['parameter_hash'][:16]}); "
          f"ladder step AUTHOR {DECISION} (MLflow run {step['mlflow_run_id']})")
    return 0


if __name__ == "__main__":
    run_cli(main)
