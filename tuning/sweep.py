"""``python -m tuning.sweep --phase P1.2 [--trials N] [--seed S] [--workers K] [--storage URL] [--study NAME]``

Creates or resumes the phase's Optuna study on persistent storage and completes its budget:
``--trials N`` means N COMPLETE trials in total (a resumed study counts the ones it has; trials a
killed process left RUNNING are failed and their parameters retried). ``--workers K`` runs K
processes on the shared storage under one MLflow parent run. Ends with the top candidates.

The CLI parses argv once into a :class:`~tuning.sweep_config.SweepConfig`; :class:`Sweep` is the
coordinator (study, objective, parent run, summary); :mod:`tuning.sweep_worker` holds the trial loop
and the worker processes; :mod:`tuning.sweep_outputs` the summary, the Pareto front and the reports.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from engine import PolicySet
from tuning.coordination import Coordinator
from tuning.errors import invoke, run_cli
from tuning.knobs import KNOBS
from tuning.objective import SeedRobustObjective
from tuning.ranking import best_feasible, format_table, ranked_trials, trial_j
from tuning.study_spec import StudySpec, load_study, metric_value, parse_condition
from tuning.study_store import lock_path, open_storage, open_study
from tuning.sweep_config import SweepConfig, parse_args
from tuning.sweep_outputs import attach_pareto, attach_reports, summarise
from tuning.sweep_worker import TrialLoop, WorkerSpec, logger_pool, run_pool
from tuning.tracking import SweepTracker
from tuning.trial_recovery import counts
from tuning.ui_view import ensure_rank_view

__all__ = ["Sweep", "SweepConfig", "main", "parse_args"]


class Sweep:
    """One sweep invocation on one study: built from a :class:`SweepConfig`, never from argv."""

    def __init__(self, config: SweepConfig) -> None:
        self.config = config
        self.spec: StudySpec = load_study(config.phase, config.studies_dir)
        self.seeds = [config.seed] if config.seed is not None else list(self.spec.seeds)
        self.seed = self.seeds[0]
        self.target = config.trials or self.spec.trials
        self.study_name = config.study or self.spec.study
        self.base = PolicySet.from_dir(config.policies or self.spec.base_policies)
        self.storage = open_storage(config.storage, self.study_name)
        self.study = open_study(self.spec, self.study_name, self.storage, self.seeds, self.base.parameter_hash)
        self.lock = lock_path(config.storage, self.study_name)  # the trial-budget lock (see Coordinator.exclusive)
        self.coordinator = Coordinator(self.study, self.storage, config.storage, self.lock, config.stale_after)
        self._objective: SeedRobustObjective | None = None
        self.deadline = time.monotonic() + config.timeout if config.timeout else None

    @property
    def objective(self) -> SeedRobustObjective:
        if self._objective is None:
            self._objective = SeedRobustObjective(self.spec, self.seeds, self.base)
        return self._objective

    def timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def show_best(self, progress: tqdm) -> None:
        """The best feasible J so far, in the progress bar."""
        best = best_feasible(self.study)
        progress.set_postfix_str("best feasible J " + ("-" if best is None else f"{trial_j(best):+.6f}"))

    # ------------------------------------------------------------------ coordinator
    def enqueue_authority_candidate(self) -> None:
        """A new study's first trial is the authority itself (every knob at its neutral value), so the
        ranking always holds the "change nothing" candidate (the plan's F0) and J has its zero."""
        if self.study.get_trials(deepcopy=False):
            return
        params = {}
        for space in self.spec.knobs:
            if space.fixed:
                continue
            neutral = KNOBS[space.name].neutral
            inside = neutral is not None and (
                neutral in space.choices if space.choices is not None else space.low <= neutral <= space.high)
            if not inside:
                return  # no neutral point inside this study's space: nothing to enqueue
            params[space.name] = neutral
        self.study.enqueue_trial(params, user_attrs={"authority_candidate": True})

    def precheck_decision(self) -> str | None:
        pre = self.spec.precheck
        if not pre:
            return None
        conds = [parse_condition(t, "TRIGGER") for t in pre["triggers"]]
        fired = [c.label() for c in conds if any(c.holds(o.anchor.pack, None) for o in self.objective.per_seed)]
        return pre["open"] if fired else pre["closed"]

    def run(self) -> dict:
        """The coordinator: parent run, precheck, the trials (this process or ``--workers K``), the summary."""
        names = (self.spec.phase, self.study_name, self.spec.objective_name)
        logger = logger_pool(*names) if self.config.workers == 1 else None
        try:
            tracker = SweepTracker(*names)   # while the logger process starts on the other core
            ensure_rank_view(tracker.mlc, tracker.experiment_id, self.spec.key_metrics)  # the UI's ranking view
            decision = self.precheck_decision()
            self.start_parent(tracker, decision)
            if decision is not None and decision == self.spec.precheck["closed"] and not self.config.force:
                return self.close_by_precheck(tracker, decision)
            with self.coordinator.exclusive():  # hosts starting together enqueue it once
                self.enqueue_authority_candidate()
            self.run_trials(tracker, logger)   # every trial's run is written before its trial is told
        finally:
            if logger is not None:   # its last run is written: let the process exit while the sweep closes
                logger.shutdown(wait=False)
        tracker.reconcile_trial_runs(self.study)  # one run per trial key, whatever HTTP retries did
        attach_reports(self, tracker)
        summary = summarise(self, tracker)
        if self.spec.multi_objective:
            attach_pareto(self, tracker, summary)
        summary["timed_out"] = self.timed_out() and summary["trials_complete"] < self.target
        if decision:
            summary["decision"] = decision
        tracker.finish_parent(self.study, summary)
        return summary

    def start_parent(self, tracker: SweepTracker, decision: str | None) -> None:
        seeds = ",".join(map(str, self.seeds))
        tracker.start_parent(
            params={"trials_target": self.target, "workers": self.config.workers, "seeds": seeds,
                    "sampler": json.dumps(self.spec.sampler, sort_keys=True), "study_file": str(self.spec.path)},
            tags={"seed": str(self.seed), "seeds": seeds, "base_parameter_hash": self.base.parameter_hash,
                  "storage": self.config.storage or "default-journal", **({"decision": decision} if decision else {})})

    def close_by_precheck(self, tracker: SweepTracker, decision: str) -> dict:
        """No trigger fired: no trials; the decision is recorded on the ladder with the anchor's evidence."""
        from tuning.ladder import record_step

        summary = summarise(self, tracker) | {"decision": decision, "note": "precheck: no trigger fired; no trials"}
        tracker.finish_parent(self.study, summary)
        triggers = self.spec.precheck["triggers"]
        record_step(self.spec.phase, decision, policies_dir=Path(self.config.policies or self.spec.base_policies),
                    source_run_id=tracker.parent_run_id, note="precheck: no collapse-risk trigger fired",
                    evidence={"triggers": [parse_condition(t, "TRIGGER").label() for t in triggers]},
                    metrics={f"{t['metric']}.seed_{o.seed}": metric_value(o.anchor.pack, t["metric"])
                             for t in triggers for o in self.objective.per_seed})
        return summary

    def run_trials(self, tracker: SweepTracker, logger=None) -> None:
        """Complete the budget in this process or in ``--workers K`` processes; a failure fails the parent run."""
        start = counts(self.study)["COMPLETE"]
        progress = None if not self.config.progress else tqdm(
            total=self.target, initial=min(start, self.target), desc=f"{self.study_name}", unit="trial",
            file=sys.stderr)
        if progress is not None:
            self.show_best(progress)
        status = "FINISHED"
        try:
            if self.config.workers == 1:
                TrialLoop(self, tracker, progress, logger=logger).run()
            else:
                run_pool(self, tracker.parent_run_id, worker_process, progress)
        except BaseException:
            status = "FAILED"
            raise
        finally:
            if progress is not None:
                progress.close()
            if status == "FAILED":
                tracker.mlc.set_terminated(tracker.parent_run_id, status="FAILED")

    def ranked(self) -> list:
        """The study's COMPLETE trials in the one ranking's order (tuning.ranking)."""
        return ranked_trials(self.study)


def worker_process(spec: WorkerSpec) -> None:
    """The target of one worker process: its exit status is the CLI's (2 with one coded line on failure)."""
    sys.exit(invoke(lambda _argv: run_worker(spec)))


def run_worker(spec: WorkerSpec) -> int:
    sweep = Sweep(spec.config)
    tracker = SweepTracker(sweep.spec.phase, sweep.study_name, sweep.spec.objective_name, spec.parent_run_id)
    TrialLoop(sweep, tracker, None, spec.index).run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    sweep = Sweep(config)
    summary = sweep.run()
    if config.json:
        print(json.dumps(summary, indent=2, sort_keys=True, default=str))
        return 0
    print(f"study {summary['study']} (phase {summary['phase']}, seeds {','.join(map(str, summary['seeds']))}): "
          f"{summary['trials_complete']} complete, {summary['trials_feasible']} feasible, "
          f"{summary['trials_failed']} failed; MLflow parent run {summary['parent_run_id']}"
          + (f"; --timeout reached before {summary['target']} trials (re-run to resume)"
             if summary.get("timed_out") else ""))
    if summary.get("decision"):
        print(f"decision: {summary['decision']}")
    print(format_table(summary["top"], sweep.spec.key_metrics))
    if summary.get("pareto") is not None:
        print(f"Pareto front (J up, {sweep.spec.second['metric']} {sweep.spec.second['direction']}): trials "
              + ", ".join(str(r["trial"]) for r in summary["pareto"]))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    run_cli(main)
