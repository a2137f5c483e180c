"""``python -m tuning.campaign run|replay [--file studies/campaign.yaml] [--world DIR --policies OUT]``

The remediation campaign as code. One campaign file holds the phase order, each phase's budget and the
decision rules; it is written once and adapts to the world it runs on (:mod:`tuning.campaign.rules`).
``run`` takes a world from its authored baseline to the best grade it can certify: author the baseline into
the authority folder (bound to the world), P0 pack, POPT.0, each phase's sweep and rule-driven promotion or
hold, the computed reviews, P5 certification with held-out seeds, P6 freeze; the decision ladder and the
MLflow trail record every step. ``replay`` does the same and then checks that the authority it ends on is
byte-identical to the committed one: the git ``HEAD`` version of the authority folder when git tracks it,
else the folder as it was when replay started (it says which).

The campaign's own sweeps are named ``campaign-<study>`` (``-w<id>`` on a non-default world) in experiments
``campaign-3A-<phase>``; both commands start them afresh (their journals removed, their earlier MLflow runs
deleted) and touch nothing else, so a user's own ``tuning.sweep`` studies and runs survive a campaign.

Step kinds (``steps:`` in order):
  ``{author: true}``                   re-author the baseline into the authority folder (fresh lineage/ladder)
  ``{phase: P0, baseline: {seed}}``    P0 metric pack, recorded
  ``{phase: POPT.0, runtime: {seed, repeats}}``
  ``{phase, sweep: {study, trials}, select, promote_if, decision, else, reason}``
  ``{phase, review: {decision, reason}}``  a recorded review with its reason
  ``{phase, frontier: {study, trials}, reachable, unreachable}``  an exploration sweep (never promotes)
  ``{phase: P5, certify: {seeds, holdout}}``
  ``{phase: P6, freeze: true}``
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from engine import EngineError
from tuning.common import worlds
from tuning.common.errors import E_USAGE, TuningParser, run_cli

E_REPLAY = "E3A_TUN_061_REPLAY_MISMATCH"


def load_campaign(path: Path) -> dict:
    from engine import load_yaml
    from tuning.campaign.rules import E_CAMPAIGN
    from tuning.campaign.schema import campaign_problem

    if not path.is_file():
        raise EngineError(E_CAMPAIGN, f"{path}: campaign file not found (run from the project root, or pass --file "
                                      f"PATH and --studies-dir DIR)")
    doc = load_yaml(path, E_CAMPAIGN)   # strict: malformed YAML, a duplicate key or a tag is one coded line
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list) or not doc["steps"]:
        raise EngineError(E_CAMPAIGN, f"{path}: a campaign needs a non-empty 'steps' list")
    problem = campaign_problem(doc)
    if problem:
        raise EngineError(E_CAMPAIGN, f"{path}: {problem}")
    if "world" in doc:
        doc["world"] = str(path.parent / doc["world"])
    return doc


def committed_digests(policies: Path) -> tuple[dict[str, str] | None, str]:
    """The committed authority to compare a replay with, and where it came from: the git ``HEAD`` version of
    the folder's policy files when git tracks them, else the folder's files as they are now."""
    from engine import POLICY_IDS, PolicySet, sha256_hex

    try:
        top = subprocess.run(["git", "-C", str(policies), "rev-parse", "--show-toplevel"], capture_output=True,
                             text=True, timeout=30, check=True).stdout.strip()
        rel = Path(policies).resolve().relative_to(Path(top).resolve())
        digests = {}
        for pid in POLICY_IDS:
            blob = subprocess.run(["git", "-C", top, "show", f"HEAD:{(rel / f'{pid}.yaml').as_posix()}"],
                                  capture_output=True, timeout=30, check=True).stdout
            digests[pid] = sha256_hex(blob)
        return digests, "git HEAD"
    except (OSError, ValueError, subprocess.SubprocessError):
        pass
    if not policies.is_dir():
        return None, "none"
    return dict(PolicySet.from_dir(policies).digests), "the folder when replay started"


def refuse_re_authoring(policies: Path, doc: dict, reopen: str | None) -> None:
    """A campaign that re-authors its folder (an ``author`` step) wipes its lineage and ladder: on a frozen authority
    it needs ``--reopen REASON``, as promote and tuning.author do (``E3A_TUN_024``), and so it does on a folder
    holding promotions made outside a campaign (:func:`refuse_replacing_promotions`); ``replay`` rebuilds the
    committed authority and compares, so it needs none."""
    from tuning.authority.guards import E_FROZEN, frozen_step

    if reopen is not None and not reopen.strip():
        raise EngineError(E_USAGE, "--reopen needs a reason")
    if reopen or not any("author" in step for step in doc.get("steps", [])):
        return
    refuse_replacing_promotions(policies)
    frozen = frozen_step(policies, any_freeze=True) if (policies / "ladder.yaml").exists() else None
    if frozen is None:
        return
    raise EngineError(E_FROZEN, f"{policies} is {frozen['decision']} (ladder step "
                                f"{str(frozen.get('mlflow_run_id', '?'))[:12]}); this campaign re-authors it from the "
                                f"baseline, replacing its lineage and ladder: pass --reopen REASON (recorded with the "
                                f"authored baseline), or give the campaign a folder of its own (--policies NEW_DIR)")


def refuse_replacing_promotions(policies: Path) -> None:
    """Re-authoring replaces the folder's lineage: promotions made outside a campaign (a user's own sweep and
    ``tuning.promote``) would survive only as a hash. As ``tuning.author --into`` does for such a folder, that needs a
    stated reason (``--reopen REASON``); the promotions of an earlier (killed) run of a campaign are the ones its
    re-run makes again, so they need none."""
    from tuning.authority.lineage import read_lineage
    from tuning.campaign.steps import NAMESPACE

    own = [e for e in read_lineage(policies) if e.get("study") and not str(e["study"]).startswith(NAMESPACE)]
    if own:
        last = own[-1]
        raise EngineError(E_USAGE, f"{policies} holds {len(own)} promotion(s) made outside a campaign (the last: run "
                                   f"{str(last.get('mlflow_run_id'))[:12]} of study {last['study']}, "
                                   f"{last.get('decision')}); this campaign re-authors the folder from the baseline, "
                                   f"replacing them: pass --reopen REASON (recorded with the authored baseline), or "
                                   f"give the campaign a folder of its own (--policies NEW_DIR)")


def build_parser() -> TuningParser:
    ap = TuningParser(prog="python -m tuning.campaign", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("run", "replay"))
    ap.add_argument("--file", default="studies/campaign.yaml")
    ap.add_argument("--policies", default="policies", help="the authority folder (default: the default world's)")
    ap.add_argument("--studies-dir", default="studies")
    ap.add_argument("--runs-root", default="", help="materialise promotion witnesses and the P0/POPT.0 runs here "
                                                    "('' = witnesses in memory, those runs in runs/)")
    ap.add_argument("--reports", default="reports", help="the P0 and POPT.0 packs' folder (default: reports)")
    ap.add_argument("--reopen", metavar="REASON",
                    help="run: re-author a frozen authority folder, or one holding promotions made outside a campaign, "
                         "from the baseline (the reason is recorded with it)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--json", action="store_true",
                    help="print the outcome as one JSON line on stdout (the steps' own output goes to stderr)")
    worlds.add_world_args(ap)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the engine, Optuna and MLflow: once the arguments are sound (a usage error answers at once)
    from engine import PolicySet
    from tuning.authority.txn import settle
    from tuning.campaign.steps import Campaign, fresh_trail, sweep_steps

    doc = load_campaign(Path(args.file))
    policies, studies = Path(args.policies), Path(args.studies_dir)
    world, world_dir = worlds.authority_world_and_dir(policies, args, doc.get("world"))   # else the folder's own
    before, against = committed_digests(policies) if args.command == "replay" else (None, "")
    if args.command == "replay" and before is None:
        raise EngineError(E_USAGE, f"{policies}: replay needs the committed authority to compare against")
    if (policies / "zone_mixture_policy.yaml").exists():   # never re-author another world's authority
        worlds.require(policies, world, f"a campaign on world {world.name} (or give it a folder of its own, "
                                        f"--policies NEW_DIR)")
    if sweep_steps(doc):
        worlds.require_tunable(world, "a campaign")
    if args.command == "run":
        refuse_re_authoring(policies, doc, args.reopen)
    # a promotion a killed campaign left half done is finished first: its roll-forward tags the trial run that
    # fresh_trail is about to delete (the re-run then failed on a deleted run, and so did every command after it)
    settle(policies)
    fresh_trail(doc, studies, world, policies)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):  # --json: stdout is the JSON alone
        log = Campaign(doc, policies, studies, Path(args.runs_root) if args.runs_root else None, world,
                       world_dir, Path(args.reports), reopen=args.reopen).run(not args.no_progress)
    after = PolicySet.from_dir(policies)
    out = {"campaign": doc.get("campaign", "3A"), "steps": log, "wall_seconds": round(time.perf_counter() - t0, 1),
           "parameter_hash": after.parameter_hash, "digests": dict(after.digests), "world": worlds.record(world),
           "final": log[-1]["outcome"] if log else None}
    if before is not None:
        out["replay_identical"] = dict(after.digests) == dict(before)
        out["compared_with"] = against
    print(json.dumps(out, sort_keys=True) if args.json else
          "\n".join(f"{s['phase']:>7}  {s['outcome']}  ({s['seconds']} s)" for s in log)
          + f"\nworld {world.name} ({world.fingerprint[:12]}); authority {after.parameter_hash[:16]} in {policies}/; "
            f"wall {out['wall_seconds']} s"
          + (f"\nreplay compared with the committed authority ({against}): "
             f"{'identical' if out['replay_identical'] else 'DIFFERENT'}" if before is not None else ""))
    if before is not None and not out["replay_identical"]:
        changed = sorted(p for p in before if before[p] != after.digests.get(p))
        raise EngineError(E_REPLAY, f"replay ended on other policies ({', '.join(changed)} differ from the "
                                    f"committed authority, {against}); {policies} and its records now hold the "
                                    f"replay's end" + ("" if against != "git HEAD" else
                                                       ", the committed files are git HEAD's"))
    return 0


if __name__ == "__main__":
    run_cli(main)
