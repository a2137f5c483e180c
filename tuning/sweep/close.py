"""What a sweep leaves behind once its trials are done: the summary (ranked by :mod:`tuning.study.ranking`),
the Pareto front of a multi-objective study (trial tags + the parent run's plot), the report HTML
of the best feasible trials, the study's plots, and the parent run's end.

The close is split between the two processes of a sweep (:mod:`tuning.trail.process`): the trail
process writes the study's plots while this one re-scores the best trials for their reports."""

from __future__ import annotations

from collections import Counter

from optuna.trial import FixedTrial, TrialState

from tuning.study.cache_budget import cache_report
from tuning.study.ranking import feasible, pareto_numbers, trial_row
from tuning.trail.process import SweepTrail
from tuning.storage.budget import pruned_out
from tuning.storage.recovery import counts, original_number


def close_sweep(sweep, trail: SweepTrail, decision: str | None) -> dict:
    """Reconcile the trial runs; the plots and the Pareto front (trail process) and the reports (here) side
    by side; then the parent run's end with the summary, which is returned. Several processes finishing one
    study (hosts sharing a storage) close it once: the first to claim it (``Coordinator.claim_close``) does
    that work, the others' summaries name its parent run (``closed_by``)."""
    closer = sweep.coordinator.claim_close(trail.parent_run_id)
    if closer is None:
        trials = sweep.study.get_trials(deepcopy=True)   # sent to the trail process: a copy no one else updates
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        trail.reconcile([(t.number, original_number(t), trial_row(t).mlflow_run_id) for t in done])
        trail.write_plots(sweep.study_name, sweep.study.directions, trials)
    summary = summarise(sweep, trail)
    if closer is None:
        if sweep.spec.multi_objective:
            attach_pareto(sweep, trail, summary)
        attach_reports(sweep, trail)   # here, while the trail process writes the plots and the Pareto front
    else:
        summary["closed_by"] = closer
    summary["timed_out"] = sweep.timed_out() and summary["trials_complete"] < sweep.target
    if decision:
        summary["decision"] = decision
    trail.finish_parent(summary)
    if closer is None:
        sweep.coordinator.close_done()
    return summary


def summarise(sweep, trail: SweepTrail) -> dict:
    """The sweep's summary: counts, the ranked top, the best feasible trial, the Pareto front (trial rows as
    JSON, :meth:`TrialRow.to_json <tuning.study.trial_row.TrialRow.to_json>`)."""
    ranked = sweep.ranked()
    rows = [trial_row(t).with_(study=sweep.study_name) for t in ranked]
    c = counts(sweep.study)
    cap = sweep.pruned_cap
    best = rows[0].to_json() if rows and rows[0].feasible else {}
    out = {"study": sweep.study_name, "phase": sweep.spec.phase, "seed": sweep.seed, "seeds": sweep.seeds,
           "target": sweep.target, "trials_complete": c["COMPLETE"], "trials_failed": c["FAIL"],
           "trials_pruned": c["PRUNED"], "pruned_cap": cap,
           "stopped_by_pruned_cap": pruned_out(c, cap) and c["COMPLETE"] < sweep.target,
           "trials_feasible": sum(r.feasible for r in rows),
           "vetoes": dict(Counter(v for r in rows for v in r.vetoes).most_common()),   # reason -> trials it vetoed
           "parent_run_id": trail.parent_run_id,
           "experiment": trail.experiment_id, "best": best, "top": [r.to_json() for r in rows[: sweep.config.top]],
           "chain_cache": cache_report(sweep.objective.cache, sweep.worker_caches)}
    if sweep.spec.multi_objective:
        on_front = set(pareto_numbers(ranked, sweep.spec.second["direction"]))
        out["pareto"] = [r.to_json() for r in rows if r.trial in on_front]
    return out


def attach_pareto(sweep, trail: SweepTrail, summary: dict) -> None:
    """Tag every trial run with ``pareto`` and give the parent run its Pareto plot (in the trail process)."""
    rows = [trial_row(t) for t in sweep.ranked()]
    on_front = {r["trial"] for r in summary.get("pareto", [])}
    trail.tag_pareto(rows, on_front, sweep.spec.second["metric"], f"{sweep.study_name}: J vs {sweep.spec.second['name']}")


def attach_reports(sweep, trail: SweepTrail) -> None:
    """The run report HTML for the best feasible trials: each re-scored from its recorded parameters
    through the public :class:`optuna.trial.FixedTrial` (the same knob values the worker suggested),
    on the first seed's objective with tables kept (its anchor and chain cache are reused)."""
    try:
        from tuning.report.html import build_report_html
    except ImportError:
        return
    best = [t for t in sweep.ranked() if feasible(t)][: sweep.config.reports]
    if not best:
        return
    obj = sweep.objective.per_seed[0]
    obj.keep_tables = True
    try:
        for t in best:
            ev = obj.evaluate({k.name: k.suggest(FixedTrial(t.params, t.number)) for k in sweep.spec.knobs})
            html = build_report_html(ev.tables, ev.pack, ev.gates, f"{sweep.study_name} trial {t.number}",
                                     evidence=sweep.world.evidence)
            trail.log_text_artifact(trial_row(t).mlflow_run_id, "report.html", html)
    finally:
        obj.keep_tables = False
