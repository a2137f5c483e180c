"""``python -m tuning.sweep --phase P1.2 [--trials N] [--seed S] [--workers K] [--storage URL] [--study NAME]``

Creates or resumes the phase's Optuna study on persistent storage and completes its budget:
``--trials N`` means N COMPLETE trials in total (a resumed study counts the ones it has; trials a
killed process left RUNNING are failed and their parameters retried). ``--workers K`` runs K
processes on the shared storage under one MLflow parent run. Ends with the top candidates.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from optuna.trial import TrialState
from tqdm import tqdm

from engine.errors import EngineError
from engine.policies import PolicySet
from engine.world.model import default_world
from tuning.dashboard import mirror_constraints
from tuning.errors import E_TRIALS_FAILING, E_USAGE, TuningParser, run_cli
from tuning.knobs import KNOBS
from tuning.objective import PhaseObjective, SeedRobustObjective
from tuning.ranking import RESULT_ATTR, format_table, pareto_numbers, ranked_trials, trial_j, trial_result
from tuning.study_spec import StudySpec, load_study, metric_or_none, metric_value, parse_condition
from tuning.study_store import check_sweep_args, lock_path, open_study
from tuning.tracking import SweepTracker, flatten_pack, log_batch
from tuning.ui_view import ensure_rank_view
from tuning.coordination import Coordinator
from tuning.trial_recovery import counts, original_number

VETO_CONSTRAINT = "veto"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = TuningParser(prog="python -m tuning.sweep", description=__doc__.splitlines()[0])
    ap.add_argument("--phase", required=True, help="study file studies/<PHASE>.yaml (or a path to one)")
    ap.add_argument("--trials", type=int, help="complete trials in total (default: the study's budget)")
    ap.add_argument("--seed", type=int, help="score one engine seed only (default: every seed of the study)")
    ap.add_argument("--workers", type=int, default=1, help="processes on the shared storage")
    ap.add_argument("--storage", help="Optuna storage URL or journal file (default .optuna/<study>.journal)")
    ap.add_argument("--study", help="Optuna study name (default: the study file's)")
    ap.add_argument("--studies-dir", default="studies")
    ap.add_argument("--policies", help="base policy directory (default: the study file's base_policies)")
    ap.add_argument("--top", type=int, default=5, help="candidates printed at the end")
    ap.add_argument("--reports", type=int, default=1, help="best feasible trials that get a report HTML")
    ap.add_argument("--force", action="store_true", help="run even when the phase precheck says no-op")
    ap.add_argument("--stale-after", type=float, default=6 * 3600.0,
                    help="seconds after which a RUNNING trial of another host counts as dead")
    ap.add_argument("--max-failures", type=int, default=5, help="crashing trials tolerated per process")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("--materialise", action="store_true", help="write every trial's run folder under --runs-root")
    ap.add_argument("--runs-root", default="runs")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--timeout", type=float, help="seconds after which no new trial starts (those running finish; "
                                                  "a later invocation resumes the budget)")
    ap.add_argument("--worker-of", help=argparse.SUPPRESS)       # parent MLflow run id (spawned workers)
    ap.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    check_sweep_args(args)
    if args.timeout is not None and not args.timeout > 0:
        raise EngineError(E_USAGE, "--timeout must be > 0 seconds")
    return args


class Sweep:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.spec: StudySpec = load_study(args.phase, args.studies_dir)
        self.seeds = [args.seed] if args.seed is not None else list(self.spec.seeds)
        self.seed = self.seeds[0]
        self.target = args.trials or self.spec.trials
        self.study_name = args.study or self.spec.study
        self.base = PolicySet.from_dir(args.policies or self.spec.base_policies)
        self.study = open_study(self.spec, self.study_name, args.storage, self.seeds, args.worker_index,
                                self.base.parameter_hash)
        self.lock = lock_path(args.storage, self.study_name)
        self.coordinator = Coordinator(self.study, args.storage, self.lock, args.stale_after)
        self._objective: SeedRobustObjective | None = None
        self.deadline = time.monotonic() + args.timeout if args.timeout else None

    @property
    def objective(self) -> SeedRobustObjective:
        if self._objective is None:
            self._objective = SeedRobustObjective(self.spec, self.seeds, self.base)
        return self._objective

    # ------------------------------------------------------------------ one worker
    def run_worker(self, tracker: SweepTracker, progress: tqdm | None) -> int:
        """Ask -> evaluate -> (log to MLflow in a background thread) -> tell.

        Logging trial N overlaps the evaluation of trial N+1; N is told to Optuna only once its MLflow
        run is complete, so a crash never leaves a COMPLETE trial without its run (the RUNNING trial
        is retried and its run replaced)."""
        anchor = self.objective.anchor  # once per process: also warms the S0/S1 cache
        if self.args.worker_index == 0:
            log_batch(tracker.mlc, tracker.parent_run_id,
                      metrics={f"anchor.{k}": v for k, v in flatten_pack(anchor.pack).items()},
                      tags={"anchor_engine_run_id": anchor.identity["run_id"]})
        self._failures = done = 0
        pending = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-log") as pool:
            try:
                while not self.timed_out():  # --timeout: no new trial starts after the deadline
                    trial = self.coordinator.next_trial(self.target, pending is not None)  # lock, recover, ask
                    if trial is None and pending is None:
                        break
                    if trial is None:  # the budget is taken: tell ours, then look again
                        done, pending = done + self._finish(*pending, progress), None
                        continue
                    staged = self._guard(trial, lambda: self._evaluate(trial, tracker, pool))
                    if pending is not None:
                        done += self._finish(*pending, progress)
                    pending = staged
            finally:
                if pending is not None:
                    done += self._finish(*pending, progress)
                self.coordinator.close()
        return done

    def _guard(self, trial, fn):
        """Run one stage of a trial; a crash marks the trial FAIL (an EngineError also stops the sweep)."""
        try:
            return fn()
        except EngineError:
            self.study.tell(trial, state=TrialState.FAIL)
            raise
        except Exception as exc:  # a crashing trial is recorded as FAIL and the budget continues
            self.study.tell(trial, state=TrialState.FAIL)
            self._failures += 1
            if self._failures > self.args.max_failures:
                raise EngineError(E_TRIALS_FAILING, f"{self._failures} trials crashed in this process; last: "
                                                    f"{type(exc).__name__}: {exc}") from None
            return None

    def _evaluate(self, trial, tracker: SweepTracker, pool: ThreadPoolExecutor):
        t0 = time.perf_counter()
        values = {k.name: k.suggest(trial) for k in self.spec.knobs}

        def on_seed(index: int, seed: int, running_mean: float) -> bool:
            # per-seed J as an intermediate value: the study's pruner may stop a hopeless trial early
            if self.spec.multi_objective:
                return False
            trial.report(running_mean, step=index)
            return trial.should_prune()

        ev = self.objective.evaluate(values, Path(self.args.runs_root) if self.args.materialise else None, on_seed)
        if self.objective.pruned:
            ev.vetoes = sorted(set(ev.vetoes) | {"PRUNED"})
        # one constraint (> 0 = infeasible: TPE ranks it below every feasible trial, best_trial skips it)
        veto = math.fsum(ev.constraints.values())
        trial.set_constraint(VETO_CONSTRAINT, veto)
        mirror_constraints(trial, [veto])  # also where optuna-dashboard reads it
        harness = time.perf_counter() - t0 - ev.chain_seconds
        future = pool.submit(tracker.log_trial, trial.number, original_number(trial), ev, values,
                             {"seconds.harness_pre_log": harness})
        return trial, ev, future

    def _finish(self, trial, ev, future, progress) -> int:
        def tell() -> int:
            result = future.result()  # the trial's TrialResult (tuning.trial_result), its MLflow run logged
            trial.set_user_attr(RESULT_ATTR, result.user_attr(self.spec.key_metrics))
            if "PRUNED" in ev.vetoes:
                self.study.tell(trial, state=TrialState.PRUNED)
            elif self.spec.multi_objective:
                second = ev.second_value if ev.second_value is not None else float("nan")
                self.study.tell(trial, [ev.value, second] if second == second else None,
                                state=None if second == second else TrialState.FAIL)
            else:
                self.study.tell(trial, ev.value)
            if progress is not None:
                progress.update(1)
                self.show_best(progress)
            return 1

        return self._guard(trial, tell) or 0

    def timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def show_best(self, progress: tqdm) -> None:
        """The best feasible J so far, in the progress bar."""
        best = next((trial_j(t) for t in ranked_trials(self.study) if trial_result(t)["veto"] == "PASS"), None)
        progress.set_postfix_str("best feasible J " + ("-" if best is None else f"{best:+.6f}"))

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
        args = self.args
        tracker = SweepTracker(self.spec.phase, self.study_name, self.spec.objective_name, args.worker_of)
        if args.worker_of:  # a spawned worker: its coordinator owns the parent run and the summary
            self.run_worker(tracker, None)
            return {}
        ensure_rank_view(tracker.mlc, tracker.experiment_id, self.spec.key_metrics)  # the UI's ranking view
        decision = self.precheck_decision()
        tracker.start_parent(
            params={"trials_target": self.target, "workers": args.workers, "seeds": ",".join(map(str, self.seeds)),
                    "sampler": json.dumps(self.spec.sampler, sort_keys=True), "study_file": str(self.spec.path)},
            tags={"seed": str(self.seed), "seeds": ",".join(map(str, self.seeds)), "base_parameter_hash": self.base.parameter_hash,
                  "storage": args.storage or "default-journal", **({"decision": decision} if decision else {})})
        if decision is not None and decision == self.spec.precheck["closed"] and not args.force:
            summary = self.summary(tracker) | {"decision": decision, "note": "precheck: no trigger fired; no trials"}
            tracker.finish_parent(self.study, summary)
            from tuning.ladder import record_step

            record_step(self.spec.phase, decision, policies_dir=Path(args.policies or self.spec.base_policies),
                        source_run_id=tracker.parent_run_id, note="precheck: no collapse-risk trigger fired",
                        evidence={"triggers": [parse_condition(t, "TRIGGER").label()
                                               for t in self.spec.precheck["triggers"]]},
                        metrics={f"{t['metric']}.seed_{o.seed}": metric_value(o.anchor.pack, t["metric"])
                                 for t in self.spec.precheck["triggers"] for o in self.objective.per_seed})
            return summary
        with self.coordinator.exclusive():  # hosts starting together enqueue it once
            self.enqueue_authority_candidate()
        start = counts(self.study)["COMPLETE"]
        progress = None if args.no_progress else tqdm(total=self.target, initial=min(start, self.target),
                                                      desc=f"{self.study_name}", unit="trial", file=sys.stderr)
        if progress is not None:
            self.show_best(progress)
        status = "FINISHED"
        try:
            if args.workers == 1:
                self.run_worker(tracker, progress)
            else:
                self.run_pool(tracker.parent_run_id, progress)
        except BaseException:
            status = "FAILED"
            raise
        finally:
            if progress is not None:
                progress.close()
            if status == "FAILED":
                tracker.mlc.set_terminated(tracker.parent_run_id, status="FAILED")
        tracker.reconcile_trial_runs(self.study)  # one run per trial key, whatever HTTP retries did
        self.attach_reports(tracker)
        summary = self.summary(tracker)
        if self.spec.multi_objective:
            self.attach_pareto(tracker, summary)
        summary["timed_out"] = self.timed_out() and summary["trials_complete"] < self.target
        if decision:
            summary["decision"] = decision
        tracker.finish_parent(self.study, summary)
        return summary

    def run_pool(self, parent_run_id: str, progress: tqdm | None) -> None:
        argv = [sys.executable, "-m", "tuning.sweep", "--phase", self.args.phase, "--trials", str(self.target),
                "--seed", str(self.seed), "--study", self.study_name, "--studies-dir", self.args.studies_dir,
                "--policies", self.args.policies or self.spec.base_policies, "--worker-of", parent_run_id,
                "--stale-after", str(self.args.stale_after), "--max-failures", str(self.args.max_failures),
                "--runs-root", self.args.runs_root, "--no-progress"] + (["--materialise"] if self.args.materialise else [])
        if self.args.storage:
            argv += ["--storage", self.args.storage]
        if self.deadline is not None:
            argv += ["--timeout", str(max(self.deadline - time.monotonic(), 0.001))]
        procs = [subprocess.Popen(argv + ["--worker-index", str(i)], stdin=subprocess.DEVNULL)
                 for i in range(self.args.workers)]
        try:
            while any(p.poll() is None for p in procs):
                time.sleep(0.5)
                if progress is not None:
                    progress.n = min(counts(self.study)["COMPLETE"], self.target)
                    self.show_best(progress)
        except BaseException:
            for p in procs:
                p.terminate()
            raise
        bad = [p.returncode for p in procs if p.returncode != 0]
        if bad:
            raise EngineError(E_TRIALS_FAILING, f"{len(bad)} worker process(es) failed (exit {bad[0]})")
        if progress is not None:
            progress.n = min(counts(self.study)["COMPLETE"], self.target)
            progress.refresh()

    # ------------------------------------------------------------------ the end
    def ranked(self) -> list:
        return ranked_trials(self.study)

    def summary(self, tracker: SweepTracker) -> dict:
        ranked = self.ranked()
        rows = [{"trial": t.number, "J": trial_j(t), "params": t.params, **trial_result(t)} for t in ranked]
        c = counts(self.study)
        best = rows[0] if rows and rows[0]["veto"] == "PASS" else {}
        out = {"study": self.study_name, "phase": self.spec.phase, "seed": self.seed, "seeds": self.seeds,
               "target": self.target,
                "trials_complete": c["COMPLETE"], "trials_failed": c["FAIL"],
                "trials_feasible": sum(r["veto"] == "PASS" for r in rows), "parent_run_id": tracker.parent_run_id,
                "experiment": tracker.experiment_id, "best": best, "top": rows[: self.args.top]}
        if self.spec.multi_objective:
            on_front = set(pareto_numbers(ranked, self.spec.second["direction"]))
            out["pareto"] = [r for r in rows if r["trial"] in on_front]
        return out

    def attach_pareto(self, tracker: SweepTracker, summary: dict) -> None:
        """Tag every trial run with ``pareto`` and give the parent run its Pareto plot."""
        import tempfile

        from tuning.pareto import pareto_html, tag_front

        rows = [{"trial": t.number, "J": trial_j(t), "second": t.values[1] if t.values and len(t.values) > 1 else None,
                 **trial_result(t)} for t in self.ranked()]
        on_front = {r["trial"] for r in summary.get("pareto", [])}
        tag_front(tracker.mlc, rows, on_front)
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "pareto.html").write_text(pareto_html(rows, on_front, self.spec.second["metric"],
                                                            f"{self.study_name}: J vs {self.spec.second['name']}"),
                                                encoding="utf-8")
            tracker.mlc.log_artifact(tracker.parent_run_id, str(Path(tmp, "pareto.html")))

    def attach_reports(self, tracker: SweepTracker) -> None:
        """The run report HTML for the best feasible trials (re-run with tables; the cache makes it cheap)."""
        try:
            from tuning.report import build_report_html
        except ImportError:
            return
        import tempfile
        feasible = [t for t in self.ranked() if trial_result(t)["veto"] == "PASS"][: self.args.reports]
        if not feasible:
            return
        obj = PhaseObjective(self.spec, self.seed, self.base, cache=self.objective.cache, keep_tables=True)
        obj._anchor = self.objective.per_seed[0].anchor
        for t in feasible:
            ev = obj.evaluate({**{k.name: k.value for k in self.spec.knobs if k.fixed}, **t.params})
            html = build_report_html(ev.tables, ev.pack, ev.gates, f"{self.study_name} trial {t.number}",
                                     evidence=default_world().evidence)
            with tempfile.TemporaryDirectory() as tmp:
                Path(tmp, "report.html").write_text(html, encoding="utf-8")
                tracker.mlc.log_artifact(trial_result(t)["run_id"], str(Path(tmp, "report.html")))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sweep = Sweep(args)
    summary = sweep.run()
    if args.worker_of:
        return 0
    if args.json:
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
