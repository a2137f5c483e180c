"""The policies a world starts from: the authoring rules applied to its own population, with every policy
file the world ships in their place (``engine.world.directory``).

``authored_baseline(world)`` is what ``engine author --world W`` writes and what a new authority of W
(``tuning.author --world W --into DIR``) is installed from. ``run_policies(world, default_dir)`` is what
``engine run`` uses without ``--policies``: the default world's authority for a world on the default
universe, else the world's authored baseline.
"""

from __future__ import annotations

from pathlib import Path

from engine.core.errors import E_POLICY_MISSING, EngineError
from engine.policies.authoring import author_policies
from engine.policies.policy_set import POLICY_IDS, PolicySet, parsed_policy
from engine.core.strict import read_bytes


def shipped(world) -> dict[str, bytes]:
    """policy id -> the bytes of each policy file the world ships, each parsed and validated here so that an error
    names the user's file (parsed once: the policy set reuses the document)."""
    own = {}
    for path in world.policy_files:
        own[Path(path).stem] = raw = read_bytes(path, E_POLICY_MISSING)
        parsed_policy(Path(path).stem, raw, str(path))
    return own


def authored_baseline(world) -> PolicySet:
    raw = author_policies(world.population)
    raw.update(shipped(world))
    return PolicySet(raw, f"authored:{world.name}")


def on_default_universe(world) -> bool:
    from engine.world.model import default_world

    return world.universe_digest == default_world().universe_digest


def run_policies(world, default_dir: Path) -> tuple[PolicySet, bool]:
    """(policies, authored?) for a run of ``world`` given no ``--policies``: the default authority's files on
    the default universe, the authored baseline elsewhere; files the world ships replace either, and a world
    that ships all three needs neither (whatever the working directory)."""
    own = shipped(world)
    if set(POLICY_IDS) <= set(own):
        return PolicySet(own, f"{world.name} (its own policies)"), False
    if not on_default_universe(world):
        return authored_baseline(world), True
    if not Path(default_dir).is_dir():
        raise EngineError(E_POLICY_MISSING, f"{default_dir}: the default world's authority folder is not here (run "
                                            f"from the project root, or pass --policies DIR)")
    base = PolicySet.from_dir(default_dir)
    return (base.replace(**own) if own else base), False
