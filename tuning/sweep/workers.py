"""One worker of a sweep: the ask -> evaluate -> log -> tell loop (:class:`TrialLoop`). The K processes of
``--workers K`` that each run one are started by :mod:`tuning.sweep.pool`; the budget they share is kept
through the coordinator's trial-budget lock (:mod:`tuning.storage.budget`).
"""

from __future__ import annotations

import math
import time
from collections import deque
from concurrent.futures import wait as futures_wait
from pathlib import Path

from optuna.trial import TrialState

from engine import EngineError
from tuning.common.errors import E_TRAIL, E_TRIALS_FAILING
from tuning.study.fidelity import rung_value, search_metrics, step as fidelity_step
from tuning.study.ranking import RESULT_ATTR
from tuning.study.seed_robust import seed_metrics, study_directions
from tuning.trail.process import SweepTrail
from tuning.study.trial_result import PolicyFiles, TrialResult, flatten_pack
from tuning.storage.recovery import mirror_constraints, original_number

VETO_CONSTRAINT = "veto"
FIRST_FAILURES = 3   # a process's first trials all failing for one cause: that cause stops the sweep
WARM_LEAD_S = 3.0    # the close's plotting imports (0.3-0.6 s on a busy machine): asked for well before the end
STOP_LOG_WAIT_S = 10.0   # stopped (Ctrl-C, SIGTERM): how long this process still waits for its trail's answers


def close_is_near(unasked: int, others_running: int, own_pending: int, pace_s: float | None,
                  lead_s: float = WARM_LEAD_S) -> bool:
    """Will this process have told its last trial within ``lead_s``? Its share of what is left: its own untold
    trials, and the budget nobody has asked for yet, split with the processes running the other trials (each
    holds at least one of them). ``pace_s``: this process's seconds per trial so far (None before its first)."""
    if pace_s is None:
        return False
    return (own_pending + unasked / (1 + max(0, others_running))) * pace_s <= lead_s


def tell_evaluation(study, trial, ev, multi_objective: bool) -> str | None:
    """Tell Optuna how the trial ended: PRUNED, J (and the second objective), or FAIL without one. Returns
    why the trial failed (its chain could not run, or it has no second value), None when it did not."""
    if "PRUNED" in ev.vetoes:
        study.tell(trial, state=TrialState.PRUNED)
    elif multi_objective:
        second = ev.second_value if ev.second_value is not None else float("nan")
        study.tell(trial, [ev.value, second] if second == second else None,
                   state=None if second == second else TrialState.FAIL)
        if second != second:   # told FAIL: a failed trial, whatever the reason
            return ev.error or f"{E_TRIALS_FAILING}: trial {trial.number} has no value of the second objective"
    else:
        study.tell(trial, ev.value)
    return ev.error if "ENGINE_ERROR" in ev.vetoes else None


def _code(cause: str) -> str:
    head = cause.split(":", 1)[0]
    return head if head.startswith("E3A_") and " " not in head else "uncoded"


class TrialLoop:
    """The trials one process evaluates for a :class:`tuning.sweep.Sweep` (its study, objective, coordinator);
    their MLflow runs are written by the process's trail (:mod:`tuning.trail.process`)."""

    def __init__(self, sweep, trail: SweepTrail, progress=None, index: int = 0, may_close: bool = True) -> None:
        self.sweep, self.trail, self.progress, self.index = sweep, trail, progress, index
        self.may_close = may_close   # False in a --workers K process: the process that spawned it closes
        self.started: float | None = None   # when this process's first trial was asked
        self.evaluated = 0
        self.failures = 0
        self.first_causes: list[str] | None = []   # causes while every trial so far failed (None: one did not)
        self.stop: EngineError | None = None        # the failure budget is spent: raised once pending are told
        self.directions: dict | None = None   # the study's metric directions (worst.<metric> without a gate)
        self.has_history = False   # once the study has history, it keeps it (see _history_free)
        self.stop_deadline: float | None = None   # stopped by a signal: when waiting for the trail ends (_logged)

    def run(self) -> int:
        """Ask -> evaluate -> (log to MLflow in the trail process) -> tell.

        Logging trial N overlaps the evaluation of trial N+1; N is told to Optuna only once its MLflow
        run is complete, so a crash never leaves a COMPLETE trial without its run (the RUNNING trial
        is retried and its run replaced). The next trial is asked when every trial but the last is told
        (lag 1: the sampler sees the same history on every re-run), except while the study is
        history-free (:func:`tuning.storage.sampler_streams.history_free_trials`): then the loop runs ahead
        instead of waiting for the trail process (still starting during the first trials)."""
        sweep = self.sweep
        anchor = sweep.objective.anchor  # once per process: also warms the S0/S1 cache
        if self.index == 0:   # the anchor's metrics: means over the seeds, as a trial's
            mean, _ = seed_metrics([flatten_pack(e.pack) for e in anchor.per_seed], {})
            self.trail.log_parent({f"anchor.{k}": v for k, v in mean.items()},
                                  {"anchor_engine_run_id": anchor.identity["run_id"]}, soon=True)
        done, pending = 0, deque()
        try:
            while self.stop is None and not sweep.timed_out():  # --timeout: no new trial starts after it
                done += self._catch_up(pending)
                trial = sweep.coordinator.next_trial(sweep.target, bool(pending), sweep.timed_out)  # lock, recover, ask
                self._warm_close_when_due(trial is not None, len(pending))
                if trial is None and not pending:
                    break
                if trial is None:  # the budget is taken: tell ours, then look again
                    done += self._finish(*pending.popleft())
                    continue
                staged = self._guard(trial, lambda: self._evaluate(trial))
                if staged is not None:
                    pending.append(staged)
        except BaseException as exc:
            if not isinstance(exc, Exception):   # Ctrl-C, SIGTERM: tell what is logged, briefly, and end
                self.stop_deadline = time.monotonic() + STOP_LOG_WAIT_S
            raise
        finally:
            while pending:   # popped first: a trial is finished (told) once, even if that fails
                done += self._finish(*pending.popleft())
            sweep.coordinator.close()
        if self.stop is not None:
            raise self.stop
        return done

    def _warm_close_when_due(self, asked: bool, pending: int) -> None:
        """Ask the trail process for the close's imports (sent once, :meth:`SweepTrail.warm_close`): on this
        host's own storage at the first ask (this process closes the study); on a storage other hosts share,
        where whichever finishes first closes it, only once this process's own end is near
        (:func:`close_is_near`), so the hosts that will not close (or die first) never load the plotting stack."""
        if not self.may_close:
            return
        now = time.perf_counter()
        self.started = self.started if self.started is not None else now
        done, running = self.sweep.coordinator.seen
        pace = (now - self.started) / self.evaluated if self.evaluated else None
        if not self.sweep.coordinator.rdb or close_is_near(max(0, self.sweep.target - done - running - asked),
                                                           running - pending, pending + asked, pace):
            self.trail.warm_close()

    def _catch_up(self, pending: deque) -> int:
        """Tell the oldest pending trials until one is left (lag 1); while the study is history-free, only
        those whose run is already logged (no wait)."""
        done = 0
        while len(pending) > 1:
            if not pending[0][3].done() and self._history_free(len(pending)):
                break
            done += self._finish(*pending.popleft())
        return done

    def _history_free(self, pending: int) -> bool:
        """Would a lag-1 loop still be history-free at this ask? At most ``pending - 1`` more trials would be
        COMPLETE or PRUNED by now."""
        if self.has_history:
            return False
        told = self.sweep.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        self.has_history = len(told) >= self.sweep.history_free   # trials are never untold: no need to look again
        return len(told) + pending - 1 < self.sweep.history_free

    def _guard(self, trial, fn):
        """Run one stage of a trial; a crash marks the trial FAIL (an EngineError also stops the sweep). A trail
        that is gone (the sweep process was killed: a ``--workers`` process loses the trail it logs through) is not
        the trial's failure: the trial stays RUNNING, its owner ends with this process, and the next sweep fails it
        as a dead worker's and runs it again (``retry_of``), as after any kill."""
        try:
            return fn()
        except EngineError as exc:
            if exc.code != E_TRAIL:
                self._tell_failed(trial)
            raise
        except Exception as exc:  # a crashing trial is recorded as FAIL and the budget continues
            self._tell_failed(trial)
            self.failed(f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
            return None

    def _tell_failed(self, trial) -> None:
        self.sweep.study.tell(trial, state=TrialState.FAIL)
        self.sweep.coordinator.told(trial)

    def failed(self, cause: str | None) -> None:
        """Count a trial that failed, whatever the kind (crashed, told FAIL, its chain could not run): more than
        ``--max-failures`` in this process stop the sweep; so do its first :data:`FIRST_FAILURES` trials (at
        most ``--max-failures`` + 1) when they all failed for one cause (an unwritable run root, a store that
        is gone): that cause is then the sweep's one coded line."""
        if cause is None:
            self.first_causes = None
            return
        self.failures += 1
        limit = self.sweep.config.max_failures
        if self.first_causes is not None:
            self.first_causes.append(cause)
            codes = {_code(c) for c in self.first_causes}
            if len(self.first_causes) >= min(FIRST_FAILURES, limit + 1) and len(codes) == 1:
                code = codes.pop()
                text = cause.split(":", 1)[1].strip() if code != "uncoded" else cause
                self.stop = self.stop or EngineError(code if code != "uncoded" else E_TRIALS_FAILING, (
                    f"{text} (the first {len(self.first_causes)} trials all failed so; the sweep stopped)"))
        if self.failures > limit:
            self.stop = self.stop or EngineError(E_TRIALS_FAILING, (
                f"{self.failures} trials failed in this process (--max-failures {limit}); last: {cause}"))

    def _evaluate(self, trial):
        sweep, t0 = self.sweep, time.perf_counter()
        self.evaluated += 1
        values = {k.name: k.suggest(trial) for k in sweep.spec.knobs}

        def on_seed(index: int, seed: int, running_mean: float) -> bool:
            # per-seed J as an intermediate value: the study's pruner may stop a hopeless trial early
            if sweep.spec.multi_objective:
                return False
            trial.report(running_mean, step=index)
            return trial.should_prune()

        def on_rung(fraction: float, stage_ev) -> bool:
            # a search stage (tuning.study.fidelity): the fraction is the successive-halving budget
            trial.report(rung_value(stage_ev), step=fidelity_step(fraction))
            return trial.should_prune()

        cfg = sweep.config
        ev = sweep.objective.evaluate(values, Path(cfg.runs_root) if cfg.materialise else None, on_seed,
                                      on_rung=None if sweep.spec.multi_objective else on_rung)
        if sweep.objective.pruned:
            ev.vetoes = sorted(set(ev.vetoes) | {"PRUNED"})
        if ev.search:
            trial.set_user_attr("fidelity", {"fraction": ev.fraction, "search": ev.search})
        # one constraint (> 0 = infeasible: TPE ranks it below every feasible trial, best_trial skips it)
        veto = math.fsum(ev.constraints.values())
        trial.set_constraint(VETO_CONSTRAINT, veto)
        mirror_constraints(trial, [veto])  # also where optuna-dashboard reads it
        harness = time.perf_counter() - t0 - ev.chain_seconds
        if self.directions is None:
            self.directions = study_directions(sweep.spec)
        result = TrialResult.from_evaluation(ev, sweep.spec.phase, sweep.spec.objective_name,
                                             {"seconds.harness_pre_log": harness, **search_metrics(ev)},
                                             self.directions,
                                             world=sweep.world_record)
        future = self.trail.log_trial(trial.number, original_number(trial), result, PolicyFiles.of(ev.policies),
                                      values)
        return trial, ev, result, future

    def stop_wait(self) -> float | None:
        """Seconds left to wait for the trail once stopped by a signal (None: not stopped, wait as long as it takes)."""
        return None if self.stop_deadline is None else max(0.0, self.stop_deadline - time.monotonic())

    def _logged(self, future) -> bool:
        """Is the trial's run logged? Once stopped, a run the trail has not logged by the deadline (or could not log)
        is not waited for: its trial stays RUNNING, and the next sweep fails it as a dead worker's and runs it again,
        as after a kill. A process whose trail never answers still ends."""
        if self.stop_deadline is None:
            return True
        done, _ = futures_wait([future], timeout=self.stop_wait())
        return bool(done) and future.exception() is None

    def _finish(self, trial, ev, result: TrialResult, future) -> int:
        if not self._logged(future):
            return 0

        def tell() -> str | None:
            recorded = result.with_run(*future.result())  # the trial's MLflow run is logged (its id, seconds)
            trial.set_user_attr(RESULT_ATTR, recorded.user_attr(self.sweep.spec.key_metrics))
            why = tell_evaluation(self.sweep.study, trial, ev, self.sweep.spec.multi_objective)
            self.sweep.coordinator.told(trial)
            if self.progress is not None:
                self.progress.update(1)
                self.sweep.show_best(self.progress)
            return why

        told = self._guard(trial, lambda: [tell()])
        if told is None:
            return 0
        self.failed(told[0])   # told: a trial whose chain could not run counts against --max-failures too
        return 1
