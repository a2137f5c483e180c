"""One sweep invocation on one study: :class:`Sweep`, the coordinator (the study, the objective, the trail
process's parent run, the precheck, the trials, the close). ``python -m tuning.sweep`` builds it from a
:class:`~tuning.sweep.config.SweepConfig` once its MLflow trail process is already starting
(:mod:`tuning.sweep`)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from engine import EngineError, PolicySet
from tuning.authority.guards import require_lineage_agrees
from tuning.authority.lineage import read_lineage
from tuning.authority.txn import settle
from tuning.storage.budget import Coordinator
from tuning.common.errors import E_TRACKING, invoke
from tuning.study.knobs import KNOBS
from tuning.study.ranking import best_feasible, ranked_trials, trial_j
from tuning.storage.sampler_streams import history_free_trials
from tuning.study.spec import StudySpec, load_study, metric_value, parse_condition
from tuning.storage.stores import lock_path, open_storage, open_study, pruned_cap, trail_of
from tuning.sweep.config import SweepConfig
from tuning.sweep.close import close_sweep, summarise
from tuning.sweep.pool import WorkerSpec, inherited, run_pool, trail_channels
from tuning.sweep.workers import TrialLoop
from tuning.trail.process import SweepTrail, TrailChannel, TrailProcess
from tuning.storage.recovery import counts
from tuning.common import worlds


class Sweep:
    """One sweep invocation on one study: built from a :class:`SweepConfig`, never from argv."""

    def __init__(self, config: SweepConfig, spec: StudySpec | None = None, world=None) -> None:
        """``spec``: the study as already loaded (the campaign narrows a study's knob space), else the file's;
        ``world``: the world as already loaded (a campaign reads its catalogue once), else the config's."""
        self.config = config
        self.spec: StudySpec = spec if spec is not None else load_study(config.phase, config.studies_dir)
        self.seeds = [config.seed] if config.seed is not None else list(self.spec.seeds)
        self.seed = self.seeds[0]
        self.target = config.trials or self.spec.trials
        # the catalogue is read and validated once, here (or by the caller that passes its world)
        base_dir = config.policies or self.spec.base_policies
        # a folder's own world unless one is given (the study's ``world:`` included)
        self.world = world if world is not None else worlds.authority_world(base_dir, config, self.spec.world)
        worlds.require(base_dir, self.world, f"a {self.spec.phase} sweep")
        worlds.require_tunable(self.world, f"a {self.spec.phase} sweep")
        self.study_name = worlds.suffixed(config.namespace + config.study_scope + (config.study or self.spec.study),
                                          self.world)
        self.experiment = worlds.suffixed(f"{config.namespace}{self.spec.experiment}", self.world)
        settle(base_dir)   # an interrupted promotion is finished first
        self.base = PolicySet.from_dir(base_dir)
        # files changed by hand since the lineage installed them: no trial of this sweep could be promoted
        require_lineage_agrees(Path(base_dir), self.base, read_lineage(Path(base_dir)),
                               f"run a {self.spec.phase} sweep on it (none of its trials could be promoted)")
        self.lock = lock_path(config.storage, self.study_name)  # the trial-budget lock (see Coordinator.exclusive)
        self.storage = self.study = self.coordinator = None   # opened by open_study(), once everything is valid
        self._objective = None
        self._unseen = None            # the precheck's objective on the config's precheck_seeds
        self.history_free = history_free_trials(self.spec)   # trials the loop may run ahead of the trail
        self.worker_caches: list[dict] = []   # each --workers process's chain cache report (tuning.sweep.pool)
        self.deadline = time.monotonic() + config.timeout if config.timeout else None

    @property
    def objective(self):
        """The seed-robust objective (tuning.study.objective), built on first use: the engine's chain and world are
        imported then, while the trail process starts (tuning.trail.process)."""
        if self._objective is None:
            from tuning.study.fidelity import MultiFidelityObjective
            from tuning.study.objective import SeedRobustObjective

            full = SeedRobustObjective(self.spec, self.seeds, self.base, world=self.world)
            self._objective = MultiFidelityObjective(full, self.spec, self.base, self.world)
        return self._objective

    @property
    def world_record(self) -> dict:
        """What every trial of this sweep records of its world (tags ``world``/``world_name``, metric_pack.json)."""
        return worlds.record(self.world)

    def open_study(self) -> None:
        """The Optuna storage and study (a new journal is created here): called only once the study's metrics
        are checked against the anchor's pack and the MLflow store has answered."""
        if self.study is None:
            self.storage = open_storage(self.config.storage, self.study_name)
            from tuning.study.fidelity import pruner

            self.study = open_study(self.spec, self.study_name, self.storage, self.seeds, self.base.parameter_hash,
                                    pruner=pruner(self.spec, self.objective.fractions),
                                    trail=trail_of(os.environ.get("MLFLOW_TRACKING_URI")),
                                    world=(self.world.fingerprint, self.world.name))
            self.coordinator = Coordinator(self.study, self.storage, self.config.storage, self.lock,
                                           self.config.stale_after)
            self.coordinator.count_pruned = self.objective.multi_fidelity
            self.coordinator.max_pruned = self.pruned_cap

    @property
    def pruned_cap(self) -> int | None:
        """The PRUNED trials after which this sweep stops short of its budget (None: they count against it, or
        nothing prunes)."""
        return None if self.objective.multi_fidelity else pruned_cap(self.spec, self.target)

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

    def precheck_anchors(self) -> list:
        """The anchors the precheck reads: every seed of the study, and the config's ``precheck_seeds`` (unseen
        seeds on which a trigger also opens the phase: a collapse that shows only off the tuning seeds counts)."""
        extra = [s for s in self.config.precheck_seeds if s not in self.seeds]
        if not extra:
            return list(self.objective.per_seed)
        if self._unseen is None:
            from tuning.study.objective import SeedRobustObjective

            self._unseen = SeedRobustObjective(self.spec, extra, self.base, world=self.world,
                                               cache=self.objective.cache)
            for unseen in self._unseen.per_seed:   # the campaign's validation seeds: it pools them (3A-F09), and
                unseen.keep_outlets = True         # reads these anchors' scores from the memo, outlets included
        return list(self.objective.per_seed) + list(self._unseen.per_seed)

    def precheck_decision(self) -> str | None:
        pre = self.spec.precheck
        if not pre:
            return None
        conds = [parse_condition(t, "TRIGGER") for t in pre["triggers"]]
        anchors = self.precheck_anchors()
        fired = [c.label() for c in conds if any(c.holds(o.anchor.pack, None) for o in anchors)]
        return pre["open"] if fired else pre["closed"]

    def run(self, process: TrailProcess | None = None) -> dict:
        """The coordinator: the trail process (``process``: one already started, else a new one; MLflow starts
        on the other core while the engine, the world and the anchor load here), the parent run, the
        precheck, the trials (this process, ``--workers K`` or a ``--cluster``), the close. Nothing is written before
        the study's metrics are checked against the anchor's pack, the Dask cluster is reached and the tracking
        store has answered: a refused study, an unreachable cluster or store leaves no journal and no MLflow run."""
        process = process if process is not None else TrailProcess(trail_channels(self.config))
        cluster = contextlib.ExitStack()
        try:
            self.objective.anchor   # the anchor's pack holds every metric the study names (E3A_TUN_010 if not)
            if self.config.cluster:   # each seed's chain a Dask task (tuning.sweep.seed_tasks): reached first
                from tuning.sweep.seed_tasks import cluster_seeds

                cluster.enter_context(cluster_seeds(self.config.cluster, self.objective, self.spec, self.base,
                                                    self.world))
        except BaseException:
            cluster.close()
            process.close()
            raise
        with cluster:
            return self._run_on(process)

    def _run_on(self, process: TrailProcess) -> dict:
        trail = SweepTrail(self.spec.phase, self.study_name, self.spec.objective_name, process=process,
                           experiment=self.experiment)
        ok = False
        try:
            trail.experiment_id     # the store answers (its own coded error if not) before the journal is opened
            self.open_study()
            self.check_recorded_runs(trail)
            self.start_parent(trail)
            if self.spec.multi_objective:
                trail.watch_front(self.spec.second["direction"])
            decision = self.precheck_decision()
            closed = decision is not None and decision == self.spec.precheck["closed"]
            if decision is not None and (self.config.force or not closed):   # a closing precheck's decision is
                # tagged once its ladder step is written (close_by_precheck); --force past it: its finding only
                trail.log_parent({}, {"precheck" if closed else "decision": decision}, soon=True)
            if closed and not self.config.force:
                summary = self.close_by_precheck(trail, decision)
            else:
                with self.coordinator.exclusive():  # hosts starting together enqueue it once
                    self.enqueue_authority_candidate()
                self.run_trials(trail)   # every trial's run is written before its trial is told
                try:
                    summary = close_sweep(self, trail, None if closed else decision)
                except BaseException:   # Ctrl-C or SIGTERM while it closes: its parent run does not stay RUNNING
                    trail.end_parent("FAILED")
                    raise
                if closed:
                    summary["precheck"] = f"{decision}: no trigger fired; --force ran the trials"
            ok = True
            return summary
        finally:
            trail.close(check=ok)

    def check_recorded_runs(self, trail: SweepTrail) -> None:
        """A resumed study's COMPLETE trials name their MLflow runs, and its close writes the best ones' reports
        onto them: the tracking store must still hold them (checked on the first and the last), else one coded
        line before any trial runs, not a failed close after them (E3A_TUN_042)."""
        from optuna.trial import TrialState

        from tuning.study.ranking import trial_row

        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        ids = list(dict.fromkeys(r for r in (trial_row(t).mlflow_run_id for t in done[:1] + done[-1:]) if r))
        if not ids:
            return
        found = trail.missing_runs(ids).result()
        if found["missing"]:
            raise EngineError(E_TRACKING, f"study {self.study_name}: its {len(done)} complete trial(s) were logged to "
                                          f"MLflow runs the tracking store {found['store']} does not hold (run "
                                          f"{found['missing'][0]}): the store was deleted or replaced; point "
                                          f"MLFLOW_TRACKING_URI at the store that holds them, or start a new study "
                                          f"with --study NAME")

    def start_parent(self, trail: SweepTrail) -> None:
        seeds = ",".join(map(str, self.seeds))
        trail.start_parent(
            params={"trials_target": self.target, "workers": self.config.workers, "seeds": seeds,
                    "sampler": json.dumps(self.spec.sampler, sort_keys=True), "study_file": str(self.spec.path)},
            tags={"seed": str(self.seed), "seeds": seeds, "base_parameter_hash": self.base.parameter_hash,
                  "storage": self.config.storage or "default-journal", **worlds.tags(self.world)},
            key_metrics=self.spec.key_metrics)

    def close_by_precheck(self, trail: SweepTrail, decision: str) -> dict:
        """No trigger fired: no trials; the decision is recorded on the ladder with the anchor's evidence."""
        from tuning.authority.ladder import record_step

        triggers = self.spec.precheck["triggers"]
        labels = [parse_condition(t, "TRIGGER").label() for t in triggers]
        folder = Path(self.config.policies or self.spec.base_policies)
        said = ("no collapse-risk trigger fired on the authority's anchor (seeds "
                f"{', '.join(str(o.seed) for o in self.precheck_anchors())}; {'; '.join(labels)}), so no trial ran and "
                f"{decision} is recorded in the ladder of {folder}/; --force runs the trials anyway")
        summary = summarise(self, trail) | {"decision": decision, "note": "precheck: no trigger fired; no trials",
                                            "closed_by_precheck": said}
        try:   # the ladder step first: a step that cannot be written (a read-only authority) leaves no decision
            record_step(self.spec.phase, decision, policies_dir=folder,
                        source_run_id=trail.parent_run_id, note="precheck: no collapse-risk trigger fired",
                        evidence={"triggers": labels},
                        metrics={f"{t['metric']}.seed_{o.seed}": metric_value(o.anchor.pack, t["metric"])
                                 for t in triggers for o in self.precheck_anchors()})
        except BaseException:
            trail.end_parent("FAILED")
            raise
        trail.log_parent({}, {"decision": decision})
        trail.finish_parent(summary)
        return summary

    def run_trials(self, trail: SweepTrail) -> None:
        """Complete the budget in this process or in ``--workers K`` processes; a failure fails the parent run."""
        start = self.coordinator.spent(counts(self.study))   # as the budget counts (a resumed sweep starts there)
        progress = None if not self.config.progress else tqdm(
            total=self.target, initial=min(start, self.target), desc=f"{self.study_name}", unit="trial",
            file=sys.stderr)
        if progress is not None:
            self.show_best(progress)
        status = "FINISHED"
        try:
            if not self.config.cluster:   # the search stages' anchors, once (forked workers inherit them)
                self.objective.warm()
            if self.config.cluster or self.config.workers == 1:   # a cluster's runner is set by run()
                TrialLoop(self, trail, progress).run()
            else:
                trail.warm_close()   # this process closes the study; it waits for its workers meanwhile
                self.worker_caches = run_pool(self, trail.parent_run_id, worker_process, progress,
                                              trail_process=trail.process)
        except BaseException:
            status = "FAILED"
            raise
        finally:
            if progress is not None:
                progress.close()
            if status == "FAILED":
                trail.end_parent("FAILED")

    def ranked(self) -> list:
        """The study's COMPLETE trials in the one ranking's order (tuning.study.ranking)."""
        return ranked_trials(self.study)


def worker_process(spec: WorkerSpec, cache_reports=None) -> None:
    """The target of one ``--workers K`` process: its exit status is the CLI's (2 with one coded line; stopped by
    Ctrl-C or SIGTERM, 130 or 143 with no line of its own: its coordinator says it once).
    ``cache_reports``: where it puts its chain cache's report once its trials are done (:func:`run_pool` reads them)."""
    sys.exit(invoke(lambda _argv: run_worker(spec, cache_reports), signal_lines=False))


def run_worker(spec: WorkerSpec, cache_reports=None) -> int:
    from engine import map_in_process
    from tuning.study.cache_budget import cache_report, rebudget
    from tuning.study.objective import PhaseObjective

    # K workers share the cores: with a core or less each, a large world's S3/S4 merchant ranges run one after
    # another, not on threads over every core. The ranges stay the engine's default, as its coordinator laid out the
    # anchors it inherits (a plan of other ranges would be another cache entry: engine.chain.steps.run_inputs)
    if (os.cpu_count() or 1) // max(1, spec.of) <= 1:
        PhaseObjective.mapper = staticmethod(map_in_process)
    parent, channel = inherited(spec)   # forked: the coordinator's world and warm objective, a trail channel
    if parent is not None:
        sweep = Sweep(spec.config, spec=parent.spec, world=parent.world)
        sweep._objective = parent.objective
    else:
        sweep = Sweep(spec.config)
    # ... and its memory: the chain cache (inherited warm, or new) holds this worker's share of the budget for
    # what it puts; the coordinator's entries it was forked with are the coordinator's memory (engine.chain.cache)
    shared = sweep.objective.cache.inherited() if parent is not None else 0
    rebudget(sweep.objective.cache, spec.of, shared)
    sweep.objective.anchor   # the study's metrics are checked before this worker opens anything
    sweep.open_study()
    sweep.coordinator.siblings_awaited = False   # on one machine its coordinator waits for every worker it started
    trail = SweepTrail(sweep.spec.phase, sweep.study_name, sweep.spec.objective_name, spec.parent_run_id,
                       process=None if channel is None else TrailChannel.adopt(channel), experiment=sweep.experiment)
    ok, loop = False, TrialLoop(sweep, trail, None, spec.index, may_close=False)
    try:
        if sweep.spec.multi_objective:
            trail.watch_front(sweep.spec.second["direction"])
        loop.run()
        ok = True
    finally:   # stopped by a signal: what is left of its brief wait for the trail (TrialLoop.stop_wait)
        trail.close(check=ok, timeout=loop.stop_wait())
    if cache_reports is not None:
        cache_reports.put({"worker": spec.index, **cache_report(sweep.objective.cache)})
    return 0
