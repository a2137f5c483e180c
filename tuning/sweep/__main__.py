"""``python -m tuning.sweep --phase P1.2 [--trials N] [--seed S] [--workers K] [--storage URL] [--study NAME]``

Creates or resumes the phase's Optuna study on persistent storage and completes its budget:
``--trials N`` means N COMPLETE trials in total (a resumed study counts the ones it has; trials a
killed process left RUNNING are failed and their parameters retried). ``--workers K`` runs K
processes on the shared storage under one MLflow parent run. Ends with the top candidates.

The CLI parses argv once into a :class:`~tuning.sweep.config.SweepConfig` and at once starts the
sweep's MLflow trail process (:mod:`tuning.trail.process`; this process never imports MLflow), then
loads the rest: :class:`Sweep` (:mod:`tuning.sweep.coordinator`) is the coordinator (study, objective, parent
run, summary); :mod:`tuning.sweep.workers` holds the trial loop and the worker processes;
:mod:`tuning.sweep.close` the close (summary, Pareto front, reports, plots).
"""

from __future__ import annotations

import json
import os
from typing import Sequence

from tuning.common.errors import run_cli
from tuning.sweep.config import SweepConfig, parse_args
from tuning.sweep.pool import trail_channels
from tuning.trail.process import TrailProcess

__all__ = ["Sweep", "SweepConfig", "main", "parse_args"]


def __getattr__(name: str):
    if name == "Sweep":   # the coordinator loads the engine and Optuna: imported when asked for
        from tuning.sweep.coordinator import Sweep

        return Sweep
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    # MLflow's process starts now, while this one loads the engine and Optuna (with a channel per forked worker)
    process = TrailProcess(trail_channels(config))
    try:
        from tuning.storage.stores import PRUNED_PER_TRIAL
        from tuning.study.cache_budget import recomputation_note
        from tuning.study.ranking import format_table
        from tuning.study.trial_row import TrialRow
        from tuning.sweep.coordinator import Sweep

        sweep = Sweep(config)
    except BaseException:
        process.close()
        raise
    summary = sweep.run(process)
    if config.json:
        print(json.dumps(summary, indent=2, sort_keys=True, default=str))
        return 0
    print(f"study {summary['study']} (phase {summary['phase']}, seeds {','.join(map(str, summary['seeds']))}): "
          f"{summary['trials_complete']} complete, {summary['trials_pruned']} pruned, {summary['trials_feasible']} feasible, "
          f"{summary['trials_failed']} failed; MLflow parent run {summary['parent_run_id']}"
          + (f"; --timeout reached before {summary['target']} trials (re-run to resume)"
             if summary.get("timed_out") else ""))
    if summary.get("stopped_by_pruned_cap"):
        print(f"stopped short of the budget: {summary['trials_pruned']} PRUNED trials reached the study's cap "
              f"(pruner max_pruned, default {PRUNED_PER_TRIAL} x trials) with {summary['trials_complete']} of "
              f"{summary['target']} COMPLETE")
    if summary["trials_complete"] and not summary["trials_feasible"]:
        reasons = ", ".join(f"{reason} ({n})" for reason, n in summary["vetoes"].items())
        print(f"no feasible trial: every complete trial was vetoed, by {reasons or 'its record'}; no candidate of this "
              f"sweep can be promoted (python -m tuning.rank --phase {summary['phase']} lists each trial's vetoes)")
    if summary.get("decision"):
        print(f"decision: {summary['decision']}")
    if summary.get("closed_by_precheck"):
        print(f"precheck: {summary['closed_by_precheck']}")
        return 0
    if summary.get("precheck"):
        print(f"precheck: {summary['precheck']}")
    note = recomputation_note(summary.get("chain_cache") or {})
    if note:
        print(note)
    print(format_table([TrialRow.from_json(r) for r in summary["top"]], sweep.spec.key_metrics))
    if summary.get("pareto") is not None:
        print(f"Pareto front (J up, {sweep.spec.second['metric']} {sweep.spec.second['direction']}): "
              + (f"trials {', '.join(str(r['trial']) for r in summary['pareto'])}" if summary["pareto"] else
                 "empty, no feasible trial"))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    run_cli(main)
