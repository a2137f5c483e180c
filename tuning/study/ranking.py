"""The one ranking of trials: feasible first, then by J descending, then by study name and trial number.

Every "which trial is best" in the harness is answered here: the sweep's summary and progress bar
(Optuna trials, :func:`ranked_trials`), ``tuning.rank`` and ``tuning.prune`` (MLflow trial runs,
:func:`rank_rows`), the optuna-dashboard's best trial (:func:`best_trial`). The MLflow UI's saved
``rank`` view sorts by ``J_feasible`` (J of feasible trials only), the same order. Also the Pareto
front of a multi-objective study and the printed table."""

from __future__ import annotations

from typing import Sequence

from optuna.trial import TrialState

from tuning.study.trial_result import RESULT_ATTR, read_user_attr  # noqa: F401 (RESULT_ATTR re-exported)


def trial_result(trial) -> dict:
    """The trial's recorded result (what ``TrialResult.user_attr`` wrote: run id, veto, key metrics, ...);
    vetoed unless it says otherwise."""
    return read_user_attr(trial.user_attrs.get(RESULT_ATTR))


def trial_j(trial) -> float | None:
    """J of a trial (the first objective of a multi-objective study)."""
    return trial.values[0] if trial.values else None


def rank_key(feasible: bool, j: float | None, number: int, study: str = "") -> tuple:
    """The sort key of the ranking (a trial without J ranks last among its feasibility class)."""
    return (not feasible, -(j if j is not None else float("-inf")), study, number)


def rank_trials(trials) -> list:
    """Optuna trials in ranking order (feasible = the sweep recorded veto PASS)."""
    return sorted(trials, key=lambda t: rank_key(trial_result(t)["veto"] == "PASS", trial_j(t), t.number))


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
    return best if best is not None and trial_result(best)["veto"] == "PASS" else None


def rank_rows(rows: list[dict]) -> list[dict]:
    """Trial rows (``veto``, ``J``, ``study``, ``trial``: e.g. MLflow trial runs) in ranking order."""
    return sorted(rows, key=lambda r: rank_key(r["veto"] == "PASS", r["J"], r["trial"], r.get("study") or ""))


def rank_rows_by_second(rows: list[dict]) -> list[dict]:
    """Trial rows (``second``, ``J``, ``trial``) by their second objective, lowest first, ties to the higher J
    (the campaign's ``pareto_min_second`` rule: the most faithful point first)."""
    return sorted(rows, key=lambda r: (r["second"], -r["J"], r["trial"]))


def pareto_numbers(trials, second_direction: str) -> list[int]:
    """Trial numbers on the feasible Pareto front of a multi-objective study (J up, the second
    objective in its direction)."""
    from tuning.study.pareto import front

    feasible = [t for t in trials if trial_result(t)["veto"] == "PASS" and t.values and len(t.values) == 2]
    return front([(t.number, t.values[0], t.values[1]) for t in feasible], second_direction)


def format_table(rows: list[dict], metric_names: Sequence[str]) -> str:
    short = [m.replace("share_", "").replace("_multi_tz", "_mtz") for m in metric_names]
    head = ["trial", "mlflow_run_id", "J", "veto"] + short
    lines = ["  ".join(head)]
    for r in rows:
        cells = [str(r["trial"]), str(r["run_id"]), f"{r['J']:+.6f}" if r["J"] is not None else "-",
                 r["veto"] if r["veto"] == "PASS" else f"FAIL({','.join(r['veto_reasons'] or [])})"]
        cells += ["-" if r["metrics"].get(m) is None else f"{r['metrics'][m]:.6f}" for m in metric_names]
        lines.append("  ".join(cells))
    return "\n".join(lines)
