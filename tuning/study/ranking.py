"""The one ranking of trials: feasible first, then by J descending, then by study name and trial number.

Every "which trial is best" in the harness is answered here: the sweep's summary and progress bar
(Optuna trials, :func:`ranked_trials`), ``tuning.rank``, ``tuning.prune`` and the campaign's selection (trial
rows, :class:`~tuning.study.trial_row.TrialRow`, :func:`rank_rows`), the optuna-dashboard's best trial
(:func:`best_trial`). The MLflow UI's saved
``rank`` view sorts by ``J_feasible`` (J of feasible trials only), the same order. Also the Pareto
front of a multi-objective study and the printed table."""

from __future__ import annotations

from typing import Sequence

from optuna.trial import TrialState

from tuning.study.trial_row import RESULT_ATTR, TrialRow  # noqa: F401 (RESULT_ATTR re-exported)


def trial_row(trial) -> TrialRow:
    """The trial's row (what ``TrialResult.user_attr`` recorded, its values and parameters); vetoed unless its
    record says otherwise."""
    return TrialRow.from_trial(trial)


def feasible(trial) -> bool:
    """The sweep recorded the trial feasible (veto PASS)."""
    return TrialRow.from_user_attr(trial.user_attrs.get(RESULT_ATTR)).feasible


def trial_j(trial) -> float | None:
    """J of a trial (the first objective of a multi-objective study)."""
    return trial.values[0] if trial.values else None


def rank_key(feasible: bool, j: float | None, number: int, study: str = "") -> tuple:
    """The sort key of the ranking (a trial without J ranks last among its feasibility class)."""
    return (not feasible, -(j if j is not None else float("-inf")), study, number)


def rank_trials(trials) -> list:
    """Optuna trials in ranking order (feasible = the sweep recorded veto PASS)."""
    return sorted(trials, key=lambda t: rank_key(feasible(t), trial_j(t), t.number))


def ranked_trials(study) -> list:
    """The study's COMPLETE trials in ranking order."""
    return rank_trials(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def best_trial(trials):
    """The first trial of the ranking (the best feasible one, else the best vetoed one); None if empty."""
    ranked = rank_trials(trials)
    return ranked[0] if ranked else None


def best_feasible(study):
    """The study's best feasible COMPLETE trial, or None."""
    best = best_trial(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    return best if best is not None and feasible(best) else None


def rank_rows(rows: Sequence[TrialRow]) -> list[TrialRow]:
    """Trial rows (from Optuna trials or MLflow trial runs) in ranking order."""
    return sorted(rows, key=lambda r: rank_key(r.feasible, r.J, r.trial, r.study or ""))


def rank_rows_by_second(rows: Sequence[TrialRow]) -> list[TrialRow]:
    """Trial rows by their second objective, lowest first, ties to the higher J (the campaign's
    ``pareto_min_second`` rule: the most faithful point first)."""
    return sorted(rows, key=lambda r: (r.second, -r.J, r.trial))


def pareto_numbers(trials, second_direction: str) -> list[int]:
    """Trial numbers on the feasible Pareto front of a multi-objective study (J up, the second
    objective in its direction)."""
    from tuning.study.pareto import front

    points = [t for t in trials if feasible(t) and t.values and len(t.values) == 2]
    return front([(t.number, t.values[0], t.values[1]) for t in points], second_direction)


def format_table(rows: Sequence[TrialRow], metric_names: Sequence[str]) -> str:
    short = [m.replace("share_", "").replace("_multi_tz", "_mtz") for m in metric_names]
    head = ["trial", "mlflow_run_id", "J", "veto"] + short
    lines = ["  ".join(head)]
    for r in rows:
        cells = [str(r.trial), str(r.mlflow_run_id), f"{r.J:+.6f}" if r.J is not None else "-",
                 r.veto if r.feasible else f"FAIL({','.join(r.vetoes)})"]
        cells += ["-" if r.metrics.get(m) is None else f"{r.metrics[m]:.6f}" for m in metric_names]
        lines.append("  ".join(cells))
    return "\n".join(lines)
