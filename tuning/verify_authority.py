"""``python -m tuning.verify_authority [--policies policies] [--json]``: do the authority's records agree?

An interrupted authority change is finished first (taking the authority lock rolls its intent forward:
:mod:`tuning.authority.promotion_txn`). Then every record must name the same authority:

- ``policies/`` is what the last lineage entry installed (same ``parameter_hash``);
- the one run tagged ``authority=current`` is that entry's run (none after an authored install, which has none);
- the registry version under the alias ``authority`` holds that ``parameter_hash`` and names that run (no alias
  after an authored install);
- a FINISHED promotion run of that run installed that ``parameter_hash``;
- the ladder holds the change's step (the promotion's: ``source_run_id`` = the run; an authored install's:
  ``AUTHOR``), with that ``parameter_hash``;
- no promotion or ladder run of the ``authority`` experiment is left RUNNING;
- the history is what was recorded (:mod:`tuning.authority.records_check`): each lineage entry replaced what the
  one before it installed, each promotion entry has its promotion run (J, decision, previous authority), and each
  ladder step its run (tags and ``step.json``: evidence and note), so a past entry edited by hand is a
  disagreement.

Prints one line per check (``agree`` / ``DIFFER`` / ``absent``); exit 0 when all agree, else the first disagreement
as one coded line ``E3A_TUN_028_AUTHORITY_DISAGREES`` (exit 2). A store that holds no record at all of the
lineage's last promotion (a fresh checkout's empty ``mlruns/``, or another store) cannot disagree with the folder:
its MLflow checks are ``absent``, and the exit is ``E3A_TUN_044_AUTHORITY_NOT_IN_STORE`` (exit 2), saying how
to rebuild the trail there. A check reads and never creates: where the named sqlite store does not exist yet, its
MLflow checks are answered without one (``absent`` after a promotion, agreeing after an authored install).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from engine import EngineError, PolicySet
from tuning.authority.records_check import lineage_breaks
from tuning.common.errors import E_DISAGREE, TuningParser, run_cli

E_NOT_IN_STORE = "E3A_TUN_044_AUTHORITY_NOT_IN_STORE"
STORE_CHECKS = ("authority tag", "registry alias", "promotion run", "lineage records", "ladder records")   # only
# the MLflow store records these


def _holds_nothing_of(mlc, run: str, tagged: list, version, runs: list) -> bool:
    """The store holds no record of the promotion of ``run``: no run tagged current, no alias, no promotion or
    ladder run, and not the run itself (a deleted run is still a record: that store disagrees)."""
    from tuning.trail.tracking import MlflowException

    if tagged or version is not None or any(r.data.tags.get("run_kind") in ("promotion", "ladder") for r in runs):
        return False
    try:
        mlc.get_run(run)
    except MlflowException:
        return True
    return False


def _records(policies_dir: Path) -> tuple[PolicySet, list[dict], list[dict], str | None]:
    """The authority folder's own records, read under the lock once any unfinished change is rolled forward, and
    what is left unfinished (None: nothing). An intent the lock's recovery would remove rather than roll forward is
    reported, and left where it is: a check changes nothing."""
    from tuning.authority.txn import authority_lock, pending
    from tuning.authority.ladder_steps import read_ladder
    from tuning.authority.promotion import read_lineage

    unreadable = _unreadable_intent(policies_dir)
    if unreadable or (not pending(policies_dir) and not os.access(policies_dir, os.W_OK)):
        # an intent to report, or a read-only authority (a mounted release) with nothing to finish: checked as it
        # is, no lock to take
        return PolicySet.from_dir(policies_dir), read_lineage(policies_dir), read_ladder(policies_dir), unreadable
    with authority_lock(policies_dir):
        return PolicySet.from_dir(policies_dir), read_lineage(policies_dir), read_ladder(policies_dir), \
            (f"{policies_dir}: an install intent is still there" if pending(policies_dir) else None)


def _unreadable_intent(policies_dir: Path) -> str | None:
    """Why the folder's install intent cannot be rolled forward (tuning.authority.txn.recover would remove it), or
    None (no intent, or one to finish)."""
    import base64

    from engine import sha256_hex
    from tuning.authority.txn import INTENT_FILE

    path = Path(policies_dir) / INTENT_FILE
    if not path.exists():
        return None
    try:
        intent = json.loads(path.read_bytes())
        files = {name: base64.b64decode(data) for name, data in intent["files"].items()}
        if not any(sha256_hex(data) != intent["sha256"].get(name) for name, data in files.items()):
            return None
        why = "does not match its digests"
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        why = "is unreadable"
    return f"{path} {why}: left as it is; the next command that takes the authority lock removes it (check lineage.yaml)"


def _alias_version(mlc, model_name: str):
    from tuning.trail.tracking import MlflowException

    from tuning.trail.registry import ALIAS

    try:
        return mlc.get_model_version_by_alias(model_name, ALIAS)
    except MlflowException:
        return None


def check(policies_dir: Path) -> list[dict]:
    """Every check as ``{"ok": bool, "check": name, "detail": text}``."""
    from tuning.trail.tracking import reader
    from tuning.common.worlds import authority_names

    from tuning.authority.txn import require_authority_folder

    require_authority_folder(policies_dir)   # before the authority lock, which would create the folder or its lock
    names = authority_names(policies_dir)

    current, lineage, ladder, unsettled = _records(policies_dir)
    h = current.parameter_hash
    last = lineage[-1] if lineage else {}
    run = last.get("mlflow_run_id")
    out = [{"ok": unsettled is None, "check": "intent", "detail": unsettled or "no unfinished authority change"}]
    out.append({"ok": not lineage or last.get("parameter_hash") == h, "check": "lineage",
                "detail": f"{policies_dir}/ {h[:16]}; last lineage entry {str(last.get('parameter_hash'))[:16]}"
                if lineage else f"{policies_dir}/ {h[:16]}; no lineage entry"})
    breaks = lineage_breaks(lineage)
    out.append({"ok": not breaks, "check": "lineage chain",
                "detail": breaks[0] + (f" (and {len(breaks) - 1} more)" if len(breaks) > 1 else "") if breaks else
                f"each of {len(lineage)} entries replaced what the one before it installed"})
    # a fresh checkout names a store that does not exist: nothing in MLflow to compare, and a check creates none
    mlc = reader()
    store = _store_checks(mlc, policies_dir, names, h, run, lineage, ladder) if mlc is not None else _no_store(run)
    steps = [s for s in ladder if s.get("parameter_hash") == h and
             (s.get("source_run_id") == run if run else s.get("phase") == "AUTHOR")]
    in_ladder = [{"ok": bool(steps), "check": "ladder step",
                  "detail": f"ladder steps recording this change: {len(steps)}"}] if lineage else []
    return out + store[:-1] + in_ladder + store[-1:]   # the store's last check: no run left RUNNING


def _no_store(run: str | None) -> list[dict]:
    """The store checks where the environment names a sqlite store that does not exist: ``absent`` for a lineage
    that names a promotion run (exit E3A_TUN_044), agreeing for an authored authority (no run, no alias, no tag)."""
    from tuning.trail.store_init import default_uri

    detail = f"no MLflow store here ({default_uri()}: not created yet)"
    checks = ["authority tag", "registry alias"] + (["promotion run"] if run else [])
    return [{"ok": None if run else True, "check": c, "detail": detail} for c in checks] + \
        [{"ok": True, "check": "no run left RUNNING", "detail": detail}]


def _store_checks(mlc, policies_dir: Path, names: dict, h: str, run: str | None, lineage: list[dict],
                  ladder: list[dict]) -> list[dict]:
    """The checks of what the MLflow store records of the authority's last change (``run``: its promoted run, or
    None after an authored install) and of its history; the last is that no promotion or ladder run is left
    RUNNING."""
    from tuning.trail.tracking import search_all
    from tuning.authority.promotion_txn import current_authority_runs

    out = []
    tagged = sorted(r.info.run_id for r in current_authority_runs(mlc, policies_dir))
    out.append({"ok": tagged == ([run] if run else []), "check": "authority tag",
                "detail": f"runs tagged authority=current {tagged or 'none'}; the lineage's run {run or 'none'}"})
    version = _alias_version(mlc, names["model"])
    vtags = dict(version.tags) if version is not None else {}
    out.append({"ok": (version is None) if not run else (vtags.get("parameter_hash") == h and
                                                        vtags.get("source_run_id") == run),
                "check": "registry alias",
                "detail": "no alias 'authority'" if version is None else
                f"alias 'authority' = version {version.version} ({str(vtags.get('parameter_hash'))[:16]}, "
                f"run {vtags.get('source_run_id')})"})
    exp = mlc.get_experiment_by_name(names["experiment"])
    runs = search_all(mlc, [exp.experiment_id], "") if exp is not None else []
    promoted = [r for r in runs if r.data.tags.get("run_kind") == "promotion" and r.info.status == "FINISHED"
                and r.data.tags.get("source_run_id") == run and r.data.tags.get("parameter_hash") == h]
    if run:
        out.append({"ok": bool(promoted), "check": "promotion run",
                    "detail": f"FINISHED promotion runs of {run} installing {h[:16]}: {len(promoted)}"})
    out += _history_checks(mlc, lineage, ladder, runs)
    running = sorted(r.info.run_id for r in runs if r.info.status == "RUNNING"
                     and r.data.tags.get("run_kind") in ("promotion", "ladder"))
    out.append({"ok": not running, "check": "no run left RUNNING",
                "detail": f"promotion/ladder runs RUNNING: {running or 'none'}"})
    if run and _holds_nothing_of(mlc, run, tagged, version, runs):
        for r in out:
            if r["check"] in STORE_CHECKS:
                r.update(ok=None, detail=f"this store ({mlc.tracking_uri}) holds no record of run {run}")
    return out


def _history_checks(mlc, lineage: list[dict], ladder: list[dict], runs: list) -> list[dict]:
    """Every promotion entry and ladder step against the run the store recorded for it."""
    from tuning.authority.records_check import ladder_against_store, lineage_against_store

    out = []
    for name, (diffs, earlier), count in (("lineage records", lineage_against_store(lineage, runs),
                                           sum(bool(e.get("mlflow_run_id")) for e in lineage)),
                                          ("ladder records", ladder_against_store(mlc, ladder, runs), len(ladder))):
        elsewhere = f"; the {earlier} before them were recorded in another store" if earlier else ""
        out.append({"ok": not diffs, "check": name,
                    "detail": diffs[0] + (f" (and {len(diffs) - 1} more)" if len(diffs) > 1 else "") if diffs else
                    f"{count - earlier} records as their runs recorded them{elsewhere}"})
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = TuningParser(prog="python -m tuning.verify_authority", description=__doc__.splitlines()[0])
    ap.add_argument("--policies", default="policies", help="the authority folder (default: policies)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    results = check(Path(args.policies))
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            print(f"{({True: 'agree ', False: 'DIFFER', None: 'absent'})[r['ok']]}  {r['check']}: {r['detail']}")
    bad = [r for r in results if r["ok"] is False]
    if bad:
        raise EngineError(E_DISAGREE, f"{args.policies}: {bad[0]['check']}: {bad[0]['detail']}"
                                      + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""))
    if any(r["ok"] is None for r in results):
        absent = next(r for r in results if r["ok"] is None)
        raise EngineError(E_NOT_IN_STORE, f"{args.policies}: the folder's own records agree, but {absent['detail']} "
                                          f"(a fresh checkout, or another store): rebuild its trail here with python "
                                          f"-m tuning.campaign replay, or point MLFLOW_TRACKING_URI at the store it "
                                          f"was promoted in")
    return 0


if __name__ == "__main__":
    run_cli(main)
