"""``python -m tuning.prune [--runs-root runs] [--policies policies] [--world DIR] [--dry-run] [--json]``

Retention of materialised run folders (``<runs-root>/<engine run_id>/``, build plan §4): keep the
baseline authority (the policy set before the first promotion), the current authority, the best
feasible trial of every phase (from MLflow) and the last good run (newest folder whose S6 and S7
passed); delete every other run folder. MLflow keeps what reproduces any trial: its candidate
policy files (artifacts) and its seed (tag) - ``python -m engine`` can rebuild a pruned folder.

Only the runs of the authority's world are judged (``--world``, else the world the folder is bound to, else the
default world): a run's ``world_digest`` is its world's digest of the catalogue it ran on (a world's own, or the
default world's, generated from the run's seed). A run folder of another world, of a subsample or of another
catalogue (``--merchants``, ``--outlets``) is left alone (``other_worlds``): its own authority decides what of it
to keep.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

from tuning.common import worlds
from tuning.common.errors import TuningParser, run_cli
from tuning.study.trial_row import TrialRow

# the engine, MLflow and Optuna's ranking load where they are used: a usage error answers at once


def run_folders(runs_root: Path) -> dict[str, dict]:
    """engine run_id -> its run report (folders without a readable one are not run folders and are left alone)."""
    out = {}
    for d in sorted(p for p in runs_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        report = d / "reports" / "run_report.json"
        try:
            doc = json.loads(report.read_text()) if report.is_file() else None
        except (OSError, ValueError):
            doc = None
        if isinstance(doc, dict):
            doc["_path"], doc["_mtime"] = str(d), report.stat().st_mtime
            out[d.name] = doc
    return out


def of_world(folders: dict[str, dict], world) -> tuple[dict[str, dict], list[str]]:
    """(the run folders of ``world``, the ids of the others). A folder is the world's when its report's
    ``world_digest`` is the world's digest of the catalogue its seed ran on; one whose report names no seed or
    digest is not known to be the world's and is left with the others."""
    from engine import outlets_for

    expected: dict[int, str] = {}

    def digest(seed: int) -> str:
        if seed not in expected:
            expected[seed] = world.digest(world.catalogue if world.catalogue is not None else outlets_for(world, seed))
        return expected[seed]

    mine, others = {}, []
    for rid, doc in folders.items():
        ident = doc.get("identity") if isinstance(doc.get("identity"), dict) else {}
        seed, sealed = ident.get("seed"), ident.get("world_digest")
        if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 and sealed == digest(seed):
            mine[rid] = doc
        else:
            others.append(rid)
    return mine, sorted(others)


def best_per_phase() -> dict[str, str]:
    """phase experiment -> engine run id of its best feasible trial (the first of :func:`tuning.study.ranking.rank_rows`)."""
    from tuning.study.ranking import rank_rows
    from tuning.trail.tracking import RUN_KIND_TRIAL, client, search_all

    mlc = client()
    best: dict[str, str] = {}
    for exp in mlc.search_experiments():
        if not exp.name.startswith("3A-P"):
            continue
        runs = search_all(mlc, [exp.experiment_id], f"tags.run_kind = '{RUN_KIND_TRIAL}' and tags.veto = 'PASS'")
        ranked = rank_rows([row for row in map(TrialRow.from_mlflow_run, runs) if row.engine_run_id])
        if ranked:
            best[exp.name] = ranked[0].engine_run_id
    return best


def other_folders_authorities(world) -> set[str]:
    """The parameter hashes the runs tagged ``authority=current`` on ``world`` install: the current authority of
    every authority folder of the world MLflow knows (another folder's campaign of the same world included)."""
    from tuning.trail.tracking import client, search_all

    mlc = client()
    ids = [e.experiment_id for e in mlc.search_experiments()]
    runs = search_all(mlc, ids, f"tags.authority = 'current' and tags.world = '{world.fingerprint}'") if ids else []
    return {r.data.tags["parameter_hash"] for r in runs if r.data.tags.get("parameter_hash")}


def keep_set(folders: dict[str, dict], policies_dir: Path, use_mlflow: bool = True, world=None) -> dict[str, list[str]]:
    """engine run_id -> the reasons it is kept."""
    from engine import PolicySet
    from tuning.authority.promotion import read_lineage

    keep: dict[str, list[str]] = {}
    current = PolicySet.from_dir(policies_dir).parameter_hash
    lineage = read_lineage(policies_dir)
    baseline = ((lineage[0].get("previous_authority") or {}).get("parameter_hash") or current) if lineage else current
    # another folder's current authority of this world: its own prune decides
    others = other_folders_authorities(world) - {current} if use_mlflow and world is not None else set()
    for rid, doc in folders.items():
        ph = doc.get("identity", {}).get("parameter_hash")
        if ph == current:
            keep.setdefault(rid, []).append("current authority")
        if ph == baseline:
            keep.setdefault(rid, []).append("baseline authority")
        if ph in others:
            keep.setdefault(rid, []).append("another folder's current authority")
    for entry in lineage:
        w = (entry.get("witness") or {}).get("engine_run_id")
        if entry.get("parameter_hash") == current and w in folders:
            keep.setdefault(w, []).append("authority witness")
    if use_mlflow:
        for phase, rid in best_per_phase().items():
            if rid in folders:
                keep.setdefault(rid, []).append(f"best of {phase}")
    good = [rid for rid, d in folders.items()
            if d.get("s6_overall_status") == "PASS" and (d.get("s7") or {}).get("status") == "PASS"]
    if good:
        last = max(good, key=lambda rid: folders[rid]["_mtime"])
        keep.setdefault(last, []).append("last good")
    return keep


def prune(runs_root: Path, policies_dir: Path, dry_run: bool = False, use_mlflow: bool = True, world=None) -> dict:
    """``world``: the authority's (default: :func:`tuning.common.worlds.authority_world` of ``policies_dir``)."""
    if not runs_root.is_dir():
        return {"runs_root": str(runs_root), "kept": {}, "removed": [], "other_worlds": [], "dry_run": dry_run}
    world = world if world is not None else worlds.authority_world(policies_dir)
    folders, others = of_world(run_folders(runs_root), world)
    keep = keep_set(folders, policies_dir, use_mlflow, world)
    removed = sorted(rid for rid in folders if rid not in keep)
    if not dry_run:
        for rid in removed:
            shutil.rmtree(folders[rid]["_path"])
    return {"runs_root": str(runs_root), "kept": keep, "removed": removed, "other_worlds": others,
            "dry_run": dry_run}


def main(argv: Sequence[str] | None = None) -> int:
    ap = TuningParser(prog="python -m tuning.prune", description=__doc__.splitlines()[0])
    ap.add_argument("--runs-root", default="runs")
    ap.add_argument("--policies", default="policies")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--no-mlflow", action="store_true", help="do not ask MLflow for the best trial per phase")
    ap.add_argument("--json", action="store_true")
    worlds.add_world_args(ap)
    args = ap.parse_args(argv)
    world = worlds.authority_world(args.policies, args)
    worlds.require(args.policies, world, "prune")
    out = prune(Path(args.runs_root), Path(args.policies), args.dry_run, not args.no_mlflow, world)
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    if not Path(args.runs_root).is_dir():
        print(f"nothing to prune: no run folder {args.runs_root} here (--runs-root DIR)")
        return 0
    for rid, why in sorted(out["kept"].items()):
        print(f"keep   {rid}  ({', '.join(why)})")
    for rid in out["removed"]:
        print(f"{'would remove' if args.dry_run else 'removed'} {rid}")
    if out["other_worlds"]:
        print(f"left alone: {len(out['other_worlds'])} run folder(s) of another world, subsample or catalogue")
    return 0


if __name__ == "__main__":
    run_cli(main)
