"""The world a harness command runs on, and the one world an authority belongs to.

A world is one input (``engine.world.directory``): ``--world DIR`` on every command that runs the chain,
``world: DIR`` in a study or campaign file (relative to that file), ``--outlets``/``--reference`` as
shorthands. Its identity is ``World.fingerprint`` (seed-independent, content-addressed); every trial tag,
metric pack, lineage entry and ladder step carries it.

An authority folder belongs to exactly one world. ``policies/`` is the default world's; any other world's
authority is a folder of its own, created by ``python -m tuning.author --world W --into DIR``, which
writes ``DIR/world.yaml`` (the world's fingerprint, name and directory). Promotion, certification, a sweep
based on the folder and the campaign refuse another world with ``E3A_TUN_070_WORLD_MISMATCH``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import uuid
from pathlib import Path
from typing import Iterator

import yaml

from engine import WORLD_FILE, EngineError, atomic_write, recorded_dir, world_record

E_WORLD_MISMATCH = "E3A_TUN_070_WORLD_MISMATCH"
E_NOTHING_TO_TUNE = "E3A_TUN_071_NOTHING_TO_TUNE"
E_WORLD_RECORD = "E3A_TUN_072_WORLD_RECORD"
DEFAULT_NAME = "default"


def add_world_args(parser, outlets: bool = True) -> None:
    parser.add_argument("--world", metavar="DIR", help="a world directory (outlets, universe, population and "
                                                       "policy files; missing parts are the default world's)")
    if outlets:
        parser.add_argument("--outlets", metavar="FILE", help="shorthand: an outlet catalogue (.parquet/.csv)")
        parser.add_argument("--reference", metavar="FILE", help="shorthand: a zone universe (country_iso, tzid)")


def load(world_dir=None, reference=None, outlets=None):
    """The engine's world for these inputs (the default world when none is given)."""
    from engine import default_world, load_world

    if world_dir is None and reference is None and outlets is None:
        return default_world()
    return load_world(world_dir, reference, outlets)


def from_args(args, fallback: str | Path | None = None):
    """The world of a parsed command line; ``fallback`` (a study's or campaign's ``world:``) when no world
    option is given."""
    world_dir = getattr(args, "world", None) or fallback
    return load(world_dir, getattr(args, "reference", None), getattr(args, "outlets", None))


def given(args):
    """The world a command line names (None when it names none: the caller decides, e.g. by the run's seal)."""
    if any(getattr(args, k, None) for k in ("world", "reference", "outlets")):
        return from_args(args)
    return None


def is_default(world) -> bool:
    return world.label == ""


def suffixed(name: str, world) -> str:
    """A study or experiment name of this world: the default world's names are unchanged; any other world's
    carry its label, so its sweeps never mix with the default world's. A name that already carries it is kept
    (a ``--workers`` process is handed the coordinator's study name, already suffixed)."""
    if is_default(world) or name.endswith(f"-{world.label}"):
        return name
    return f"{name}-{world.label}"


def tags(world) -> dict[str, str]:
    return {"world": world.fingerprint, "world_name": world.name}


def record(world, world_dir: str | Path | None = None) -> dict:
    """What an authority, a lineage entry or a ladder step records of its world."""
    out = {"fingerprint": world.fingerprint, "name": world.name}
    if world_dir is not None:
        out["dir"] = str(Path(world_dir).resolve())
    return out


# ---------------------------------------------------------------- an authority's world

def bound_world(policies_dir: str | Path) -> dict:
    """The world an authority folder belongs to: its ``world.yaml``, or (none) the default world."""
    doc = world_record(policies_dir, E_WORLD_RECORD)
    if doc is None:
        from engine import default_world

        return {"fingerprint": default_world().fingerprint, "name": DEFAULT_NAME}
    if not isinstance(doc, dict) or not isinstance(doc.get("fingerprint"), str) or len(doc["fingerprint"]) != 64:
        raise EngineError(E_WORLD_RECORD, f"{Path(policies_dir) / WORLD_FILE}: expected a mapping with the world's "
                                          f"64-hex 'fingerprint'")
    return doc


def bind(policies_dir: str | Path, world, world_dir: str | Path | None) -> dict:
    """Record (atomically) that this authority folder belongs to ``world``, with the folder's own identity in MLflow
    (``authority``: kept when the folder has one, else new); the default world needs no record."""
    path = Path(policies_dir) / WORLD_FILE
    if is_default(world):
        path.unlink(missing_ok=True)
        return record(world)
    scope = authority_scope(policies_dir) if path.exists() else None
    doc = {**record(world, world_dir), "authority": scope or uuid.uuid4().hex}
    if world_dir is not None:   # relative to the authority folder when it can be, so the pair moves together
        doc["dir"] = os.path.relpath(Path(world_dir).resolve(), Path(policies_dir).resolve())
    atomic_write(path, yaml.safe_dump(doc, sort_keys=True).encode("utf-8"))
    return doc


def require(policies_dir: str | Path, world, what: str) -> None:
    """Refuse ``what`` (a promotion, a certification, a sweep) of this authority on another world, or of a folder
    that is not there (nothing is created for it)."""
    if not Path(policies_dir).is_dir():
        from engine import E_POLICY_MISSING

        raise EngineError(E_POLICY_MISSING, f"{what}: {policies_dir}: no authority folder here (python -m tuning.author "
                                            f"--world W --into DIR makes one)")
    bound = bound_world(policies_dir)
    if bound["fingerprint"] != world.fingerprint:
        hint = _bound_world_hint(policies_dir, bound, world)
        raise EngineError(E_WORLD_MISMATCH, f"{what}: the authority {policies_dir} belongs to world "
                                            f"{bound.get('name')} ({bound['fingerprint'][:12]}), not to world "
                                            f"{world.name} ({world.fingerprint[:12]}){hint}")


def _bound_world_hint(policies_dir: str | Path, bound: dict, world) -> str:
    """Where the authority's own world is: its recorded folder, unless that folder is gone (find it: --world) or
    holds the very world just refused (its files changed since the authority was bound to it: bind a new one)."""
    world_dir = bound_dir(policies_dir, bound)   # recorded relative to the folder: named from here
    if world_dir is None:   # the default world's authority, or a folder bound without one: this world's is asked for
        return (f" (pass --policies DIR, the folder of the authority of world {world.name}; python -m tuning.author "
                f"--world W --into DIR makes one)")
    if not world_dir.is_dir():
        return f" (its recorded folder {world_dir} is gone: pass --world DIR, where that world is now)"
    try:   # the refusal path only: the recorded folder's world as it is now
        now = load(world_dir).fingerprint
    except EngineError:
        now = None
    if now != world.fingerprint:
        return f" (pass --world {shlex.quote(str(world_dir))})"
    return (f" (its folder {world_dir} holds another world now: its files, or how they are read, changed since the "
            f"authority was bound; python -m tuning.author --world {shlex.quote(str(world_dir))} --into DIR binds a new "
            f"one)")


@contextlib.contextmanager
def measuring(policies_dir: str | Path, world, what: str) -> Iterator[None]:
    """Measure an authority on ``world`` (any world may be given): where its policies do not fit that world's zone
    universe and the folder belongs to another world, say so (``E3A_TUN_070``), not only the engine's S2 error."""
    try:
        yield
    except EngineError as exc:
        if not exc.code.startswith("E3A_S2_005") or not Path(policies_dir).is_dir():
            raise
        bound = bound_world(policies_dir)
        if bound["fingerprint"] == world.fingerprint:
            raise
        raise EngineError(E_WORLD_MISMATCH, f"{what}: the authority {policies_dir} belongs to world "
                                            f"{bound.get('name')} ({bound['fingerprint'][:12]}) and its policies do "
                                            f"not fit world {world.name} ({exc.cause}); pass --policies DIR, the "
                                            f"folder of this world's authority (python -m tuning.author --world W "
                                            f"--into DIR makes one)") from None


def policies_arg(policies_dir: str | Path) -> str:
    """`` --policies DIR`` for a printed command, unless DIR is the default ``policies``: a command followed as
    printed acts on this folder, not on ``policies/``."""
    return "" if Path(policies_dir) == Path("policies") else f" --policies {shlex.quote(str(policies_dir))}"


def require_tunable(world, what: str) -> None:
    """Refuse ``what`` (a sweep, a campaign, a certification) on a world with nothing to allocate: no country of two
    clocks or more holds outlets, or every merchant there holds one outlet (a pair of one outlet sits whole on one
    clock whatever the policy). Every trial would score the same empty allocation (a P1.2 sweep vetoed each one as
    over-flattening), and a grade of it would be the gates' verdict on empty sets."""
    if world.splittable_countries:
        return
    why = ("has no country of two clocks or more holding outlets: every outlet sits on its country's one clock"
           if not world.multi_clock_countries else
           f"holds one outlet per merchant in each country of two clocks or more ({', '.join(world.multi_clock_countries[:5])}"
           f"{', ...' if len(world.multi_clock_countries) > 5 else ''}): every pair sits whole on one clock")
    raise EngineError(E_NOTHING_TO_TUNE, f"{what}: world {world.name} ({world.fingerprint[:12]}) {why}, so there is "
                                         f"nothing to allocate or tune (python -m engine run --world DIR publishes "
                                         f"it as it is)")


def authority_scope(policies_dir: str | Path) -> str | None:
    """The folder's own identity in MLflow (``world.yaml``'s ``authority``, 32 hex, made when the folder is bound
    to its world and moved with it): two folders of one world keep their current run, registered model and
    experiment apart. None for a folder without one (the default world's, a folder bound before it existed):
    such a folder is its world's authority in MLflow."""
    doc = world_record(policies_dir, E_WORLD_RECORD)
    scope = doc.get("authority") if isinstance(doc, dict) else None
    return scope if isinstance(scope, str) and re.fullmatch(r"[0-9a-f]{32}", scope) else None


def authority_names(policies_dir: str | Path) -> dict[str, str]:
    """The MLflow names of an authority's own trail: the ``authority`` experiment (promotions, ladder steps) and
    the registered model, suffixed with the folder's identity (:func:`authority_scope`), else with the world's
    label unless it is the default world's."""
    from engine import default_world

    scope = authority_scope(policies_dir)
    fingerprint = bound_world(policies_dir)["fingerprint"]
    suffix = (f"-a{scope[:12]}" if scope else "" if fingerprint == default_world().fingerprint
              else f"-w{fingerprint[:12]}")
    return {"experiment": f"authority{suffix}", "model": f"seg3a-authority{suffix}"}


def bound_dir(policies_dir: str | Path, bound: dict | None = None) -> Path | None:
    """The directory of the world an authority folder records (``world.yaml``'s ``dir``, relative to the folder),
    as a path from the working directory; None when it records none."""
    return recorded_dir(policies_dir, bound if bound is not None else bound_world(policies_dir))


def authority_world_and_dir(policies_dir: str | Path, args=None, fallback: str | Path | None = None):
    """(world, its directory or None) to run an authority on: the one given (checked against the folder's by
    :func:`require`), else the folder's own (its recorded directory), else the default world."""
    given = args is not None and any(getattr(args, k, None) for k in ("world", "reference", "outlets"))
    if given or fallback is not None:
        world = from_args(args, fallback) if args is not None else load(fallback)
        return world, (getattr(args, "world", None) if args is not None else None) or fallback
    world_dir = bound_dir(policies_dir)
    if world_dir is not None and not world_dir.is_dir():
        raise EngineError(E_WORLD_RECORD, f"{Path(policies_dir) / WORLD_FILE} binds this authority to the world in "
                                          f"{world_dir}, no directory now (moved or removed): pass --world DIR, its "
                                          f"new place (its fingerprint is checked against the record), or restore it")
    return load(world_dir), world_dir


def authority_world(policies_dir: str | Path, args=None, fallback: str | Path | None = None):
    """The world to run an authority on (:func:`authority_world_and_dir`)."""
    return authority_world_and_dir(policies_dir, args, fallback)[0]
