"""``python -m tuning.campaign run|replay [--file studies/campaign.yaml]``: the remediation campaign as code.

One campaign file holds the phase order, each phase's budget, the decision rules and the recorded
reviews. ``run`` executes it from P0 to P6 with the harness (author the P0 baseline into the
authority folder, P0 pack, POPT.0, each phase's sweep + rule-driven promotion or hold, the reviews,
P5 certification with held-out seeds, P6 freeze); the decision ladder and the MLflow trail record
every step. ``replay`` does the same on a fresh trail (the campaign's Optuna journals are removed
first) and then checks that the authority it ends on is byte-identical to the one it started from
(the committed policies): sweeps are seeded and single-process, the engine deterministic, so the
whole campaign is a pure function of the repository.

Step kinds (``steps:`` in order):
  ``{author: true}``                   re-author the baseline into the authority folder (fresh lineage/ladder)
  ``{phase: P0, baseline: {seed}}``    P0 metric pack, recorded
  ``{phase: POPT.0, runtime: {seed, repeats}}``
  ``{phase, sweep: {study, trials}, select, promote_if, decision, else, reason}``
  ``{phase, review: {decision, reason}}``  a recorded review (e.g. a reopen) with its reason
  ``{phase, frontier: {study, trials}, reachable, unreachable}``  an exploration sweep whose study's
      targets state a joint goal (e.g. the B+ S3 gate with the S4 p75 gate, fidelity vetoed): records
      ``reachable`` when a feasible trial meets every target on every seed, else ``unreachable``, with
      the front in the evidence (its plot is the sweep's ``pareto.html``); never promotes
  ``{phase: P5, certify: {seeds, holdout}}``
  ``{phase: P6, freeze: true}``
Selection rules: ``best_feasible`` (highest mean J among feasible trials) or ``pareto_min_second``
(on the feasible Pareto front, the point with the best second objective among those whose J is at
least ``min_J``; the reason names the point). ``promote_if: {min_J, targets}``: promote only when the
chosen trial's J exceeds ``min_J`` (no J floor when absent: the phase is judged by its definition of
done, which a study states as guardrails and targets) and, with ``targets: true``, when its targets hold
on every seed; else record the ``else`` decision.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Sequence

import yaml

from engine import EngineError
from engine import PolicySet
from tuning.errors import E_USAGE, TuningParser, run_cli

E_CAMPAIGN = "E3A_TUN_060_CAMPAIGN"
E_REPLAY = "E3A_TUN_061_REPLAY_MISMATCH"


def load_campaign(path: Path) -> dict:
    if not path.is_file():
        raise EngineError(E_CAMPAIGN, f"{path}: campaign file not found")
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise EngineError(E_CAMPAIGN, f"{path}: malformed YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list) or not doc["steps"]:
        raise EngineError(E_CAMPAIGN, f"{path}: a campaign needs a non-empty 'steps' list")
    kinds = ("author", "baseline", "runtime", "sweep", "frontier", "review", "certify", "freeze")
    for i, step in enumerate(doc["steps"]):
        found = [k for k in kinds if isinstance(step, dict) and k in step]
        if len(found) != 1:
            raise EngineError(E_CAMPAIGN, f"{path}: steps[{i}] needs exactly one of {', '.join(kinds)}")
        if found[0] != "author" and not step.get("phase"):
            raise EngineError(E_CAMPAIGN, f"{path}: steps[{i}] needs a phase")
    return doc


def choose(rows: list[dict], rule: str, min_j: float | None, require_targets: bool = False,
           on_front: set[int] | None = None) -> tuple[dict | None, str]:
    """The selected trial row and why. ``rows``: every complete trial (``trial``, ``J``, ``veto``,
    ``target_pass``, ``second``). Eligible: feasible, J above ``min_J`` when one is set, and with
    ``require_targets`` the study's targets holding on every seed.

    ``best_feasible``: the eligible trial with the highest mean J. ``pareto_min_second``: the eligible
    trial with the best (lowest) second objective - the most faithful point of the eligible set's own
    Pareto front (it is always on it); ties go to the higher J. ``on_front`` (the sweep's whole feasible
    front) is only reported in the reason."""
    floor = "" if min_j is None else f" with J > {min_j:g}"
    what = f"feasible trial{' meeting its targets' if require_targets else ''}{floor}"
    eligible = [r for r in rows if r.get("veto") == "PASS" and r.get("J") is not None
                and (min_j is None or r["J"] > min_j) and (r.get("target_pass") or not require_targets)]
    if rule == "best_feasible":
        if not eligible:
            return None, f"no {what}"
        best = max(eligible, key=lambda r: (r["J"], -r["trial"]))
        return best, f"best mean J {best['J']:.6g} (trial {best['trial']}); eligible: {len(eligible)} ({what})"
    if rule == "pareto_min_second":
        usable = [r for r in eligible if r.get("second") is not None]
        if not usable:
            return None, f"no {what}"
        pick = min(usable, key=lambda r: (r["second"], -r["J"], r["trial"]))
        where = "" if on_front is None else (" (on the sweep's feasible front)" if pick["trial"] in on_front
                                             else " (dominated on the sweep's whole front by trials that miss the targets)")
        return pick, (f"trial {pick['trial']} (J {pick['J']:.6g}, second objective {pick['second']:.6g}): the most "
                      f"faithful eligible trial; eligible: {len(usable)} ({what}){where}")
    raise EngineError(E_CAMPAIGN, f"unknown selection rule {rule!r}")


class Campaign:
    def __init__(self, doc: dict, policies: Path, studies: Path, runs_root: Path | None) -> None:
        self.doc, self.policies, self.studies, self.runs_root = doc, policies, studies, runs_root
        self.log: list[dict] = []

    def run(self, progress: bool = True) -> list[dict]:
        from tqdm import tqdm

        bar = tqdm(self.doc["steps"], desc="campaign", unit="step", disable=not progress, file=sys.stderr)
        for step in bar:
            bar.set_postfix_str(str(step.get("phase", "author")))
            t0 = time.perf_counter()
            outcome = self.step(step)
            self.log.append({"phase": step.get("phase", "author"), "outcome": outcome,
                             "seconds": round(time.perf_counter() - t0, 2)})
        return self.log

    def step(self, step: dict) -> str:
        if "author" in step:
            return self.author()
        phase = step["phase"]
        pol = ["--policies", str(self.policies)]
        if "baseline" in step:
            from tuning.baseline import main as baseline

            baseline(["--seed", str(step["baseline"].get("seed", 42)), "--record", *pol])
            return "recorded"
        if "runtime" in step:
            from tuning.runtime import main as runtime

            cfg = step["runtime"]
            runtime(["baseline", "--seed", str(cfg.get("seed", 42)), "--repeats", str(cfg.get("repeats", 3)),
                     "--record", *pol])
            return "recorded"
        if "review" in step:
            from tuning.ladder import record_step

            record_step(phase, step["review"]["decision"], policies_dir=self.policies, note=step["review"]["reason"])
            return step["review"]["decision"]
        if "sweep" in step:
            return self.sweep(step)
        if "frontier" in step:
            return self.frontier(step)
        if "certify" in step:
            from tuning.certify import main as certify

            cfg = step["certify"]
            certify(["--authority", "--record", "--no-progress", "--holdout", str(cfg.get("holdout", 0)),
                     "--seeds", ",".join(map(str, cfg.get("seeds", [42, 7, 101, 202]))), *pol])
            return "recorded"
        from tuning.freeze import freeze

        return freeze(self.policies)["decision"]

    def author(self) -> str:
        """A fresh trail: lineage and ladder restart, the authored baseline is installed (recorded)."""
        from tuning.author import install_authored

        for name in ("lineage.yaml", "ladder.yaml"):
            (self.policies / name).unlink(missing_ok=True)
        install_authored(self.policies, reason=f"campaign {self.doc.get('campaign', '3A')}: P0 starts from the "
                                               f"authored baseline")
        return "authored"

    def _run_sweep(self, cfg: dict, phase: str):
        from tuning.sweep import Sweep, SweepConfig

        trials = int(cfg["trials"]) if cfg.get("trials") else None
        sweep = Sweep(SweepConfig(phase=cfg["study"], studies_dir=str(self.studies), policies=str(self.policies),
                                  progress=False, study=cfg.get("name", f"3A-{phase}"), trials=trials))
        return sweep, sweep.run()

    def frontier(self, step: dict) -> str:
        from tuning.ladder import record_step
        from tuning.ranking import trial_j, trial_result

        sweep, summary = self._run_sweep(step["frontier"], step["phase"])
        rows = [{"trial": t.number, "J": trial_j(t), **trial_result(t)} for t in sweep.ranked()]
        meets = [r for r in rows if r["veto"] == "PASS" and r.get("target_pass")]
        front = summary.get("pareto") or []
        decision = step["reachable"] if meets else step["unreachable"]
        labels = ", ".join(c.label() for c in sweep.spec.targets)
        note = (f"{len(meets)} of {len(rows)} trials feasible (fidelity vetoed) and meeting [{labels}] on every seed"
                if meets else f"no feasible trial of {len(rows)} meets [{labels}] on every seed")
        record_step(step["phase"], decision, policies_dir=self.policies, source_run_id=summary["parent_run_id"],
                    note=f"{step.get('reason', '')} {note}".strip(),
                    evidence={"study": summary["study"], "trials": len(rows),
                              "front": [{"trial": r["trial"], "J": r["J"], "second": r.get("second")} for r in front]})
        return decision

    def sweep(self, step: dict) -> str:
        from tuning.promote import promote
        from tuning.ladder import record_step

        from tuning.ranking import trial_j, trial_result

        sweep, summary = self._run_sweep(step["sweep"], step["phase"])
        if summary.get("decision") and not summary.get("trials_complete"):
            return summary["decision"]  # a precheck closed the phase (recorded by the sweep)
        rule = step.get("promote_if", {})
        min_j = float(rule["min_J"]) if "min_J" in rule else None
        rows = [{"trial": t.number, "J": trial_j(t), **trial_result(t)} for t in sweep.ranked()]
        front = {r["trial"] for r in summary["pareto"]} if "pareto" in summary else None
        pick, why = choose(rows, step.get("select", "best_feasible"), min_j, bool(rule.get("targets", False)), front)
        if pick is None or pick["J"] is None or (min_j is not None and pick["J"] <= min_j):
            floor = "" if min_j is None else f" with J > {min_j:g}"
            record_step(step["phase"], step["else"], policies_dir=self.policies, source_run_id=summary["parent_run_id"],
                        note=f"{step.get('reason', '')} {why}; no candidate to promote{floor}".strip())
            return step["else"]
        reason = f"{step.get('reason', '')} {why}".strip()
        promote(pick["run_id"], self.policies, step["decision"], self.runs_root, step.get("ladder_phase"), reason=reason)
        return step["decision"]


def replay_cleanup(doc: dict, optuna_dir: Path | None = None) -> None:
    """A replay starts the campaign's studies afresh: their journals are generated state."""
    from tuning.study_store import OPTUNA_DIR

    optuna_dir = optuna_dir or OPTUNA_DIR
    for step in doc["steps"]:
        if "sweep" in step:
            name = step["sweep"].get("name", f"3A-{step['phase']}")
            (optuna_dir / f"{name}.journal").unlink(missing_ok=True)
    shutil.rmtree(optuna_dir / "locks", ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = TuningParser(prog="python -m tuning.campaign", description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("run", "replay"))
    ap.add_argument("--file", default="studies/campaign.yaml")
    ap.add_argument("--policies", default="policies")
    ap.add_argument("--studies-dir", default="studies")
    ap.add_argument("--runs-root", default="", help="materialise promotion witnesses here ('' = in memory)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--json", action="store_true",
                    help="print the outcome as one JSON line on stdout (the steps' own output goes to stderr)")
    args = ap.parse_args(argv)
    doc = load_campaign(Path(args.file))
    policies = Path(args.policies)
    before = PolicySet.from_dir(policies).digests if args.command == "replay" and policies.is_dir() else None
    if args.command == "replay":
        if before is None:
            raise EngineError(E_USAGE, f"{policies}: replay needs the committed authority to compare against")
        replay_cleanup(doc)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):  # --json: stdout is the JSON alone
        log = Campaign(doc, policies, Path(args.studies_dir), Path(args.runs_root) if args.runs_root else None).run(
            not args.no_progress)
    after = PolicySet.from_dir(policies)
    out = {"campaign": doc.get("campaign", "3A"), "steps": log, "wall_seconds": round(time.perf_counter() - t0, 1),
           "parameter_hash": after.parameter_hash, "digests": dict(after.digests)}
    if before is not None:
        out["replay_identical"] = dict(after.digests) == dict(before)
    print(json.dumps(out, sort_keys=True) if args.json else
          "\n".join(f"{s['phase']:>7}  {s['outcome']}  ({s['seconds']} s)" for s in log)
          + f"\nauthority {after.parameter_hash[:16]}; wall {out['wall_seconds']} s")
    if before is not None and not out["replay_identical"]:
        changed = sorted(p for p in before if before[p] != after.digests.get(p))
        raise EngineError(E_REPLAY, f"replay ended on other policies ({', '.join(changed)} differ from the committed ones)")
    return 0


if __name__ == "__main__":
    run_cli(main)
