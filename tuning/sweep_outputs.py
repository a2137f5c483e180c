"""What a sweep leaves behind once its trials are done: the summary (ranked by :mod:`tuning.ranking`),
the Pareto front of a multi-objective study (trial tags + the parent run's plot), and the report HTML
of the best feasible trials."""

from __future__ import annotations

import tempfile
from pathlib import Path

from optuna.trial import FixedTrial

from engine.world.model import default_world
from tuning.ranking import pareto_numbers, trial_j, trial_result
from tuning.tracking import SweepTracker
from tuning.trial_recovery import counts


def summarise(sweep, tracker: SweepTracker) -> dict:
    """The sweep's summary: counts, the ranked top, the best feasible trial, the Pareto front."""
    ranked = sweep.ranked()
    rows = [{"trial": t.number, "J": trial_j(t), "params": t.params, **trial_result(t)} for t in ranked]
    c = counts(sweep.study)
    best = rows[0] if rows and rows[0]["veto"] == "PASS" else {}
    out = {"study": sweep.study_name, "phase": sweep.spec.phase, "seed": sweep.seed, "seeds": sweep.seeds,
           "target": sweep.target, "trials_complete": c["COMPLETE"], "trials_failed": c["FAIL"],
           "trials_feasible": sum(r["veto"] == "PASS" for r in rows), "parent_run_id": tracker.parent_run_id,
           "experiment": tracker.experiment_id, "best": best, "top": rows[: sweep.config.top]}
    if sweep.spec.multi_objective:
        on_front = set(pareto_numbers(ranked, sweep.spec.second["direction"]))
        out["pareto"] = [r for r in rows if r["trial"] in on_front]
    return out


def attach_pareto(sweep, tracker: SweepTracker, summary: dict) -> None:
    """Tag every trial run with ``pareto`` and give the parent run its Pareto plot."""
    from tuning.pareto import pareto_html, tag_front

    rows = [{"trial": t.number, "J": trial_j(t), "second": t.values[1] if t.values and len(t.values) > 1 else None,
             **trial_result(t)} for t in sweep.ranked()]
    on_front = {r["trial"] for r in summary.get("pareto", [])}
    tag_front(tracker.mlc, rows, on_front)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "pareto.html").write_text(pareto_html(rows, on_front, sweep.spec.second["metric"],
                                                        f"{sweep.study_name}: J vs {sweep.spec.second['name']}"),
                                            encoding="utf-8")
        tracker.mlc.log_artifact(tracker.parent_run_id, str(Path(tmp, "pareto.html")))


def attach_reports(sweep, tracker: SweepTracker) -> None:
    """The run report HTML for the best feasible trials: each re-scored from its recorded parameters
    through the public :class:`optuna.trial.FixedTrial` (the same knob values the worker suggested),
    on the first seed's objective with tables kept (its anchor and chain cache are reused)."""
    try:
        from tuning.report import build_report_html
    except ImportError:
        return
    feasible = [t for t in sweep.ranked() if trial_result(t)["veto"] == "PASS"][: sweep.config.reports]
    if not feasible:
        return
    obj = sweep.objective.per_seed[0]
    obj.keep_tables = True
    try:
        for t in feasible:
            ev = obj.evaluate({k.name: k.suggest(FixedTrial(t.params, t.number)) for k in sweep.spec.knobs})
            html = build_report_html(ev.tables, ev.pack, ev.gates, f"{sweep.study_name} trial {t.number}",
                                     evidence=default_world().evidence)
            with tempfile.TemporaryDirectory() as tmp:
                Path(tmp, "report.html").write_text(html, encoding="utf-8")
                tracker.mlc.log_artifact(trial_result(t)["run_id"], str(Path(tmp, "report.html")))
    finally:
        obj.keep_tables = False
