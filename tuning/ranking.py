"""Ranking of a study's trials (Optuna side): feasible first, then by J; the Pareto front of a
multi-objective study; the printed table."""

from __future__ import annotations

from typing import Sequence

from optuna.trial import TrialState


from tuning.trial_result import RESULT_ATTR, read_user_attr  # noqa: F401 (RESULT_ATTR re-exported)


def trial_result(trial) -> dict:
    """The trial's recorded result (what ``TrialResult.user_attr`` wrote: run id, veto, key metrics, ...);
    vetoed unless it says otherwise."""
    return read_user_attr(trial.user_attrs.get(RESULT_ATTR))


def trial_j(trial) -> float | None:
    """J of a trial (the first objective of a multi-objective study)."""
    return trial.values[0] if trial.values else None


def ranked_trials(study) -> list:
    """COMPLETE trials, feasible first, then by J (descending), then by number."""
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return sorted(done, key=lambda t: (trial_result(t)["veto"] != "PASS", -(trial_j(t) or 0.0), t.number))


def pareto_numbers(trials, second_direction: str) -> list[int]:
    """Trial numbers on the feasible Pareto front of a multi-objective study (J up, the second
    objective in its direction)."""
    from tuning.pareto import front

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
