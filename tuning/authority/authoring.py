"""``python -m tuning.author (--into-authority | --into DIR) [--reason TEXT] [--world DIR | --reference FILE]``

The one recorded way to write authored baseline policies into an authority folder (``python -m engine
author`` refuses it). Authors the baseline for the world (``engine.policies.world_baseline``: the authoring
rules on the world's population, with the policy files the world ships in their place), refuses a frozen
authority unless ``--reopen REASON``, installs the files (each atomically) with a lineage entry, binds the
folder to its world (``world.yaml``, :mod:`tuning.common.worlds`) and records the step in the decision ladder
(phase ``AUTHOR``, decision ``AUTHORED_INSTALL``, the reason as its note).

``--into-authority`` writes into ``--policies`` (default ``policies/``, the default world's authority);
``--into DIR`` creates (or re-authors) the authority folder of another world, e.g.
``python -m tuning.author --world my_world --into my_authority``.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

from engine import EngineError
from engine import PolicySet
from tuning.common import worlds

DECISION = "AUTHORED_INSTALL"


def authored_policies(world=None) -> PolicySet:
    """The authored baseline of a world (the default world when None)."""
    from engine import authored_baseline

    return authored_baseline(world if world is not None else worlds.load())


def install_authored(policies_dir: Path, reason: str, world=None, world_dir: str | Path | None = None,
                     reopen: str | None = None) -> dict:
    """Serialised with every other authority change (tuning.authority.txn.authority_lock)."""
    from tuning.authority.txn import authority_lock

    world = world if world is not None else worlds.load(world_dir)
    authored = authored_policies(world)   # before the folder exists: a world that cannot be authored leaves nothing
    created = not policies_dir.exists()
    policies_dir.mkdir(parents=True, exist_ok=True)
    try:
        with authority_lock(policies_dir):
            return _install_authored(policies_dir, reason, world, world_dir, reopen, authored)
    except BaseException:
        if created:   # the install is one transaction: a folder this call created holds nothing else
            shutil.rmtree(policies_dir, ignore_errors=True)
        raise


def _install_authored(policies_dir: Path, reason: str, world, world_dir, reopen: str | None, authored) -> dict:
    from tuning.authority.promotion import install, read_lineage
    from tuning.authority.guards import E_FROZEN, frozen_step

    current = PolicySet.from_dir(policies_dir) if (policies_dir / "zone_mixture_policy.yaml").exists() else None
    if current is not None and worlds.bound_world(policies_dir)["fingerprint"] != world.fingerprint:
        # --reopen reopens a folder's own world's authority; it never re-binds a folder to another world (whose own
        # folder would then share its records: one authority per world); said first, so a frozen folder of another
        # world is not answered with --reopen, which would then be refused for the world
        worlds.require(policies_dir, world, "authoring over another world's authority (give this world a folder of "
                                            "its own: --into NEW_DIR)")
    frozen = frozen_step(policies_dir, any_freeze=True) if current is not None else None
    if frozen is not None and not reopen:
        raise EngineError(E_FROZEN, f"the authority {current.parameter_hash[:12]} is {frozen['decision']}; "
                                    f"pass --reopen REASON to overwrite it with the authored baseline")
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    entry = {"promoted_utc": now, "decision": DECISION, "reason": reason, "source": authored.source,
             "parameter_hash": authored.parameter_hash, "digests": dict(authored.digests),
             "previous_authority": {"parameter_hash": current.parameter_hash if current else None,
                                    "digests": dict(current.digests) if current else {}},
             "world": worlds.record(world)}
    worlds.bind(policies_dir, world, world_dir)
    # one transaction (tuning.authority.promotion_txn): the files, no run left current, no registry alias, the ladder steps
    steps = [{"kind": "clear_authority"}]
    if frozen is not None:
        steps.append({"kind": "ladder", "phase": "P6", "decision": "REOPENED", "note": reopen,
                      "evidence": {"frozen_status": frozen["decision"], "for": DECISION}})
    steps.append({"kind": "ladder", "phase": "AUTHOR", "decision": DECISION, "note": reason,
                  "evidence": {"source": authored.source,
                               "previous_parameter_hash": current.parameter_hash if current else "none"}})
    return install(authored, policies_dir, read_lineage(policies_dir), entry, steps=steps)["ladder"][-1]
