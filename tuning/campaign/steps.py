"""The campaign's steps on one world and one authority folder: :class:`Campaign`.

Every step calls the harness's library functions (authoring, the P0 pack, POPT.0, sweeps, promotion,
certification, freeze), never a CLI. The campaign's own sweeps are named ``campaign-<study>`` (plus the
world's label on a non-default world) in experiments ``campaign-3A-<phase>``, so they never mix with a
user's own sweeps; :func:`fresh_trail` clears exactly those before a run. An authority folder with an identity
of its own (``world.yaml``'s ``authority``) names its campaign's studies after it too
(``campaign-a<12 hex>-<study>``): two folders of one world, one campaign each, never share a study nor delete
each other's trail.
"""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from engine import fidelity_holds
from tuning.common import worlds
from tuning.campaign.rules import choose

NAMESPACE = "campaign-"


def sweep_steps(doc: dict) -> list[dict]:
    return [s for s in doc["steps"] if "sweep" in s or "frontier" in s]


def folder_scope(policies: Path, world) -> str | None:
    """What a campaign into ``policies`` puts before its studies' names: ``a<12 hex>-`` for a folder with an
    identity of its own, "" for a folder without one (the default world's ``policies/``, a folder bound before
    identities) which is its world's authority; None for a folder not bound yet (a new folder: no trail of its own)."""
    if not (Path(policies) / "world.yaml").exists():
        return "" if worlds.is_default(world) else None
    scope = worlds.authority_scope(policies)
    return f"a{scope[:12]}-" if scope else ""


def trail_names(step: dict, studies: Path, world, scope: str = "") -> tuple[str, str]:
    """(study name, experiment name) of a campaign sweep step on ``world`` into a folder of ``scope``."""
    from tuning.study.spec import load_study

    cfg = step.get("sweep") or step.get("frontier")
    spec = load_study(cfg["study"], studies)
    study = worlds.suffixed(NAMESPACE + scope + (cfg.get("name") or spec.study), world)
    return study, worlds.suffixed(f"{NAMESPACE}{spec.experiment}", world)


def fresh_trail(doc: dict, studies: Path, world, policies: Path = Path("policies"),
                optuna_dir: Path | None = None) -> list[str]:
    """A campaign into ``policies`` starts its own studies afresh: their Optuna journals are removed and their
    earlier MLflow runs deleted (MLflow's soft delete). Nothing else is touched: not a user's sweeps, not other
    worlds', not another folder's campaign."""
    import shutil

    from tuning.common.limits import OPTUNA_DIR

    scope = folder_scope(policies, world)
    if scope is None:   # a folder not bound yet has run no campaign
        return []
    optuna_dir = optuna_dir or OPTUNA_DIR
    names = [trail_names(step, studies, world, scope) for step in sweep_steps(doc)]
    for study, _ in names:
        (optuna_dir / f"{study}.journal").unlink(missing_ok=True)
        shutil.rmtree(optuna_dir / "locks" / study, ignore_errors=True)
    from tuning.trail.tracking import delete_study_runs

    delete_study_runs(names)
    return [study for study, _ in names]


class Campaign:
    def __init__(self, doc: dict, policies: Path, studies: Path, runs_root: Path | None, world=None,
                 world_dir: str | Path | None = None, reports: Path = Path("reports"), reopen: str | None = None) -> None:
        self.doc, self.policies, self.studies, self.runs_root = doc, policies, studies, runs_root
        self.reopen = reopen   # the reason a frozen authority is re-authored (recorded with the authored baseline)
        self.progress = False  # set by run()
        self.reports = reports   # the P0 and POPT.0 packs; their runs go under runs_root (else runs/, as the commands')
        self.world = world if world is not None else worlds.load(world_dir)
        self.world_dir = world_dir
        self.log: list[dict] = []
        self.narrowed: dict[str, object] = {}     # study -> its spec narrowed to the frontier's region
        self.frontier_outcome: dict | None = None  # what the frontier proved (reachability, blocking gates)
        self._facts: dict | None = None
        self._sites = None   # the world's pairs and their sites (pair_sites)
        self._parts: dict[str, float] = {}        # the running step's seconds by part (sweep, validation, promotion)

    @property
    def baseline_runs(self) -> Path:
        """Where the P0 and POPT.0 steps publish their runs: ``--runs-root``, else ``runs`` (tuning.baseline's and
        tuning.runtime's own default)."""
        return self.runs_root if self.runs_root is not None else Path("runs")

    def validation(self, check: dict | None) -> tuple[int, int] | None:
        """(seeds, candidates) of a step's validation on unseen seeds, None without one: the file's ``seeds`` and
        ``top``, or its ``small_world`` block's on a world of at most ``max_pairs`` pairs, where a chain costs
        milliseconds and 16 seeds cannot see a gate that fails on 2% of them (the default world's P4 pick then held
        B+ and FAITHFUL on 97.6% of 1,000 held-out seeds; validated on 256 seeds of 20 candidates, 98.7%)."""
        if not check:
            return None
        small = check.get("small_world")
        if small and self.pairs <= int(small["max_pairs"]):
            return int(small["seeds"]), int(small["top"])
        return int(check.get("seeds", 12)), int(check.get("top", 5))

    @property
    def pairs(self) -> int:
        """The world's (merchant, country) pairs."""
        return len(self.sites)

    @property
    def sites(self):
        """The world's (merchant, country) pairs and their sites, counted once for its size and its facts."""
        if self._sites is None:
            from tuning.campaign.facts import pair_sites

            self._sites = pair_sites(self.world)
        return self._sites

    @property
    def facts(self) -> dict:
        """Measured facts of the world that reasons quote (``{name}`` in a step's ``reason``)."""
        if self._facts is None:
            from tuning.campaign.facts import world_facts

            self._facts = world_facts(self.world, self.sites)
        return self._facts

    def reason(self, step: dict) -> str:
        return str(step.get("reason", "")).format(**self.facts).strip()

    def run(self, progress: bool = True) -> list[dict]:
        from tqdm import tqdm

        from tuning.study.score_memo import shared_scores

        self.progress = progress   # the sweeps', validations' and certifications' own bars under the campaign's
        bar = tqdm(self.doc["steps"], desc="campaign", unit="step", disable=not progress, file=sys.stderr)
        with shared_scores() as memo:   # a step's anchors are the scores the last step's validation computed
            for step in bar:
                bar.set_postfix_str(str(step.get("phase", "author")))
                t0, self._parts, hits = time.perf_counter(), {}, memo.hits
                outcome = self.step(step)
                entry = {"phase": step.get("phase", "author"), "outcome": outcome,
                         "seconds": round(time.perf_counter() - t0, 2)}
                if self._parts:
                    entry["parts"] = {k: round(v, 2) for k, v in self._parts.items()}
                if memo.hits > hits:
                    entry["scores_reused"] = memo.hits - hits
                self.log.append(entry)
                if not progress:   # no bar: one line a step on stderr, for a log that is read later
                    print(f"campaign: step {len(self.log)}/{len(self.doc['steps'])} {entry['phase']}: {outcome} "
                          f"({entry['seconds']:.1f} s)", file=sys.stderr, flush=True)
        return self.log

    @contextlib.contextmanager
    def part(self, name: str):
        """Book the seconds of one part of the running step (the campaign's JSON shows them per step)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._parts[name] = self._parts.get(name, 0.0) + time.perf_counter() - t0

    def step(self, step: dict) -> str:
        if "author" in step:
            return self.author()
        phase = step["phase"]
        if "baseline" in step:
            from tuning.baseline.pack import p0

            p0(self.policies, "authority", int(step["baseline"].get("seed", 42)), self.reports, self.baseline_runs,
               self.world, record=True)
            return "recorded"
        if "runtime" in step:
            from tuning.runtime.lanes import popt0

            cfg = step["runtime"]
            popt0(self.policies, self.world, int(cfg.get("seed", 42)), int(cfg.get("repeats", 3)), self.reports,
                  self.baseline_runs, record=True)
            return "recorded"
        if "review" in step:
            from tuning.authority.ladder import record_step

            record_step(phase, step["review"]["decision"], policies_dir=self.policies, note=step["review"]["reason"])
            return step["review"]["decision"]
        if "sweep" in step:
            return self.sweep(step)
        if "frontier" in step:
            return self.frontier(step)
        if "certify" in step:
            return self.certify(step["certify"])
        return self.freeze(step)

    def author(self) -> str:
        """A fresh trail: lineage and ladder restart, the world's authored baseline is installed (recorded)."""
        from tuning.authority.authoring import install_authored

        from tuning.authority.guards import frozen_step

        self.policies.mkdir(parents=True, exist_ok=True)
        # --reopen's reason, with what it reopened: a frozen authority, or a folder of promotions of its own
        frozen = self.reopen and (self.policies / "ladder.yaml").exists() and \
            frozen_step(self.policies, any_freeze=True) is not None
        what = "a frozen authority" if frozen else "an authority folder"
        reopened = f"; reopened {what}: {self.reopen}" if self.reopen else ""
        # the folder's world binding stays: the CLI checked it is this world's, and authoring refuses another's
        for name in ("lineage.yaml", "ladder.yaml"):
            (self.policies / name).unlink(missing_ok=True)
        install_authored(self.policies, reason=f"campaign {self.doc.get('campaign', '3A')}: P0 starts from the "
                                               f"authored baseline{reopened}", world=self.world,
                         world_dir=self.world_dir)
        return "authored"

    def certify(self, cfg: dict) -> str:
        from engine import PolicySet
        from tuning.authority.certification import certify, record_certification

        policies = PolicySet.from_dir(self.policies)
        summary = certify(policies, [int(s) for s in cfg.get("seeds", [42, 7, 101, 202])],
                          {"source": "authority", "policies_dir": str(self.policies)}, None,
                          int(cfg.get("holdout", 0)), progress=self.progress, world=self.world)
        record_certification(self.policies, policies, summary)
        self._parts["seedpack"] = float(summary["wall_seconds"])
        if "holdout" in summary:
            self._parts["holdout"] = float(summary["holdout"]["wall_seconds"])
        return summary["verdict"]

    def _run_sweep(self, cfg: dict):
        from tuning.study.spec import load_study
        from tuning.sweep.config import SweepConfig
        from tuning.sweep.coordinator import Sweep

        from tuning.authority.holdout import tuning_seeds, validation_seeds

        trials = int(cfg["trials"]) if cfg.get("trials") else None
        spec = self.narrowed.get(cfg["study"]) or load_study(cfg["study"], self.studies)
        check = self.validation(self.doc.get("validate"))
        unseen = tuple(validation_seeds(check[0], tuning_seeds(self.studies))) if check else ()
        sweep = Sweep(SweepConfig(phase=cfg["study"], studies_dir=str(self.studies), policies=str(self.policies),
                                  progress=self.progress, study=cfg.get("name"), trials=trials, namespace=NAMESPACE,
                                  study_scope=folder_scope(self.policies, self.world) or "",
                                  precheck_seeds=unseen), spec=spec, world=self.world)
        with self.part("sweep"):
            return sweep, sweep.run()

    def frontier(self, step: dict) -> str:
        """An exploration whose study states a joint goal as guardrails (targets that veto, so the sampler
        searches for them): records whether a faithful trial meets every target on every seed, the region
        those trials span, the blocking targets when none does, and narrows the studies named in ``narrow``
        to that region (a computed review, with its evidence)."""
        from tuning.campaign.rules import describe_region, narrow, reachability, region
        from tuning.authority.ladder import record_step
        from tuning.study.spec import load_study

        sweep, summary = self._run_sweep(step["frontier"])
        rows = trial_rows(sweep)
        targets = {c.reason: c.label() for c in sweep.spec.guardrails if c.reason.endswith("_TARGET")}
        proof = reachability(rows, targets)
        found = region(proof["meets"], sweep.spec.knobs)
        decision = step["reachable"] if proof["meets"] else step["unreachable"]
        labels = ", ".join(c.label() for c in sweep.spec.targets) or ", ".join(targets.values())
        vetoed = ", ".join(f"{k} on {n}" for k, n in proof["vetoed_by"].items())
        note = (f"{len(proof['meets'])} of {proof['trials']} trials faithful and meeting [{labels}] on every seed; "
                f"region: {describe_region(found)}" if proof["meets"] else
                f"no faithful trial of {proof['trials']} meets [{labels}] on every seed; faithful trials meeting each "
                f"alone: {proof['per_target']}; blocking: {', '.join(proof['blocking'])}" if proof["faithful"] else
                f"none of {proof['trials']} trials is free of vetoes other than [{labels}] ({vetoed}), so the targets "
                f"were measured on no faithful, sound trial: nothing blocks them that this frontier can name")
        front = summary.get("pareto") or []
        record_step(step["phase"], decision, policies_dir=self.policies, source_run_id=summary["parent_run_id"],
                    note=f"{self.reason(step)} {note}".strip(),
                    evidence={"study": summary["study"], "trials": proof["trials"], "faithful": proof["faithful"],
                              "meets": len(proof["meets"]), "blocking": ",".join(proof["blocking"]) or "none",
                              "vetoed_by": ",".join(f"{k}:{n}" for k, n in proof["vetoed_by"].items()) or "none",
                              "region": found, "front": [{"trial": r["trial"], "J": r["J"],
                                                          "second": r.get("second")} for r in front]})
        self.frontier_outcome = {"decision": decision, "blocking": proof["blocking"], "reachable": bool(proof["meets"])}
        if proof["meets"] and step.get("narrow"):
            for name in step["narrow"]:
                self.narrowed[name] = narrow(load_study(name, self.studies), found)
            spaces = {name: describe_region(region_of(self.narrowed[name])) for name in step["narrow"]}
            record_step(step["phase"], step.get("narrowed", "SPACES_NARROWED"), policies_dir=self.policies,
                        source_run_id=summary["parent_run_id"],
                        note="the studies' knob spaces narrowed to the frontier's region: "
                             + "; ".join(f"{k}: {v}" for k, v in spaces.items()),
                        evidence={"studies": ",".join(step["narrow"])})
        return decision

    def sweep(self, step: dict) -> str:
        from tuning.campaign.rules import eligible, validated
        from tuning.campaign.validation import validation_rates
        from tuning.authority.ladder import record_step
        from tuning.authority.promotion import promote

        sweep, summary = self._run_sweep(step["sweep"])
        if summary.get("decision") and not summary.get("trials_complete"):
            return summary["decision"]  # a precheck closed the phase (recorded by the sweep)
        rule = step.get("promote_if", {})
        min_j = float(rule["min_J"]) if "min_J" in rule else None
        rows = trial_rows(sweep)
        front = {r["trial"] for r in summary["pareto"]} if "pareto" in summary else None
        pick, why = choose(rows, step.get("select", "best_feasible"), min_j, bool(rule.get("targets", False)), front)
        if summary.get("stopped_by_pruned_cap"):   # recorded on the ladder with whatever the step decides
            why = (f"{why} (the sweep stopped short at {summary['trials_complete']} of {summary['target']} COMPLETE "
                   f"trials: {summary['trials_pruned']} PRUNED, the study's cap)")
        check = self.validation(step.get("validate", self.doc.get("validate")))
        if pick is not None and check:
            ranked = eligible(rows, step.get("select", "best_feasible"), min_j, bool(rule.get("targets", False)))
            with self.part("validation"):
                rates, anchor = validation_rates(sweep, ranked[: check[1]], check[0], progress=self.progress)
            pick, checked = validated(ranked, rates, step.get("select", "best_feasible"))
            why = (f"the rule ({step.get('select', 'best_feasible')}) first picks {why}; {checked}; "
                   f"the authority itself holds on {anchor[0]:.0%}, {anchor[1]:.0%} PASS_BPLUS and "
                   + ("FAITHFUL" if self.world.fidelity_applicable else "fidelity NOT_APPLICABLE"))
            mine = rates[pick.trial]
            if mine[0] < anchor[0] or mine[1] < anchor[1]:   # on seeds it was not tuned on: no better than the
                # authority at the phase, or worse at the campaign's goal: nothing is promoted
                pick, why = None, f"{why}: no candidate holds as well as the authority on unseen seeds"
        if pick is None or pick.J is None or (min_j is not None and pick.J <= min_j):   # none promoted, unless the
            # authority is DISTORTED on a seed of the study: then any faithful, sound candidate replaces it
            pick, why = restore_fidelity(sweep, rows, step.get("select", "best_feasible"), why)
        if pick is None:
            floor = "" if min_j is None else f" with J > {min_j:g}"
            record_step(step["phase"], step["else"], policies_dir=self.policies, source_run_id=summary["parent_run_id"],
                        note=f"{self.reason(step)} {why}; no candidate to promote{floor}".strip())
            return step["else"]
        reason = f"{self.reason(step)} {why}".strip()
        with self.part("promotion"):
            promote(pick.mlflow_run_id, self.policies, step["decision"], self.runs_root, step.get("ladder_phase"),
                    reason=reason, world=self.world)
        return step["decision"]

    def freeze(self, step: dict) -> str:
        """P6: the certified grade, or best effort naming what blocks the campaign's target grade."""
        from tuning.authority.freeze import freeze

        target = step["freeze"].get("target") if isinstance(step["freeze"], dict) else None
        trade_off = (self.frontier_outcome or {}).get("blocking") or []   # what no faithful P2 trial met together
        return freeze(self.policies, target=target, trade_off=trade_off)["decision"]


def restore_fidelity(sweep, rows: list, select: str, why: str) -> tuple:
    """When the phase would promote nothing but its authority is DISTORTED on one of the study's seeds, the best
    feasible trial (feasible: FAITHFUL on every seed, structurally sound, no plan gate lost, whatever its J or its
    targets) is promoted instead, so a campaign never keeps, nor freezes, a DISTORTED authority while a faithful
    candidate exists (our law: a grade is never held with DISTORTED fidelity). (None, why) otherwise."""
    from tuning.campaign.rules import eligible

    distorted = [o.seed for o in sweep.objective.per_seed if not fidelity_holds(o.anchor.fidelity)]
    if not distorted:
        return None, why
    faithful = eligible(rows, select, None) or eligible(rows, "best_feasible", None)
    if not faithful:
        return None, f"{why}; the authority is DISTORTED on seeds {distorted} and {_no_faithful(rows)}"
    pick = faithful[0]
    return pick, (f"{why}; but the authority is DISTORTED on seeds {distorted}: trial {pick.trial} (J {pick.J:.6g}), "
                  f"faithful and sound on every seed, restores fidelity")


def _no_faithful(rows: list) -> str:
    """Why no trial restores fidelity: none is faithful on every seed, or those that are were vetoed otherwise."""
    from collections import Counter

    faithful_vetoed = [r for r in rows if r.vetoes and "FIDELITY_DISTORTED" not in r.vetoes]
    if not faithful_vetoed:
        return "no trial is faithful on every seed"
    vetoed = Counter(v for r in faithful_vetoed for v in r.vetoes)
    return (f"no trial is faithful on every seed and free of vetoes ({len(faithful_vetoed)} faithful trial(s) vetoed: "
            + ", ".join(f"{k} {c}" for k, c in vetoed.most_common()) + ")")


def trial_rows(sweep) -> list:
    """The sweep's complete trials as rows (:class:`~tuning.study.trial_row.TrialRow`, ranking order), with their
    searched knob values."""
    from tuning.study.ranking import trial_row

    return [trial_row(t) for t in sweep.ranked()]


def region_of(spec) -> dict:
    return {k.name: ({"choices": list(k.choices)} if k.choices is not None else {"low": k.low, "high": k.high})
            for k in spec.knobs if not k.fixed}
