"""The trade-off of a multi-objective study: J (up) against a second objective (fidelity).

``front`` is pure: the non-dominated points among feasible trials. ``tag_front`` marks every trial
run of the study in MLflow with ``pareto = true|false``; ``pareto_html`` is the parent run's plot
(plotly inline, renders offline).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence


def _better_or_equal(a: float, b: float, direction: str) -> bool:
    return a <= b if direction == "minimize" else a >= b


def front(points: Iterable[tuple[int, float, float]], second_direction: str) -> list[int]:
    """Numbers of the non-dominated points ``(number, J, second)``: no other point is at least as
    good on both objectives and strictly better on one. Ties (equal on both) all stay on the front."""
    pts = list(points)
    keep = []
    for n, j, f in pts:
        dominated = any(dominates((j2, f2), (j, f), second_direction) for _, j2, f2 in pts)
        if not dominated:
            keep.append(n)
    return sorted(keep)


def dominates(a: tuple[float, float], b: tuple[float, float], second_direction: str) -> bool:
    """(J, second) ``a`` is at least as good as ``b`` on both objectives and strictly better on one."""
    return a[0] >= b[0] and _better_or_equal(a[1], b[1], second_direction) and (a[0] > b[0] or a[1] != b[1])


class FrontTracker:
    """The front of the points added so far, kept incrementally: a new point joins unless a front point
    dominates it, and drops the front points it dominates (dominance is transitive, so a point off the
    front is dominated by one on it: the result equals :func:`front` over every point added)."""

    def __init__(self, second_direction: str) -> None:
        self.direction = second_direction
        self.points: dict[str, tuple[float, float]] = {}

    def admits(self, j: float, second: float) -> bool:
        """Would this point join the front (no front point dominates it)?"""
        return not any(dominates(q, (j, second), self.direction) for q in self.points.values())

    def add(self, key: str, j: float, second: float) -> tuple[set[str], set[str]]:
        """Add a point; returns (keys that joined the front, keys that left it)."""
        p = (j, second)
        if not self.admits(j, second):
            return set(), set()
        left = {k for k, q in self.points.items() if dominates(p, q, self.direction)}
        for k in left:
            del self.points[k]
        self.points[key] = p
        return {key}, left


def pareto_html(rows: Sequence[dict], on_front: set[int], second_name: str, title: str) -> str:
    """Scatter of every complete trial (feasible coloured, front joined by a line)."""
    import plotly.graph_objects as go

    def trace(sel, name, color, mode="markers"):
        sel = sorted(sel, key=lambda r: r["J"])
        return go.Scatter(x=[r["second"] for r in sel], y=[r["J"] for r in sel], mode=mode, name=name,
                          marker={"color": color, "size": 8}, text=[f"trial {r['trial']}" for r in sel])

    usable = [r for r in rows if r.get("J") is not None and r.get("second") is not None]
    fig = go.Figure([
        trace([r for r in usable if r["veto"] != "PASS"], "vetoed", "#bbbbbb"),
        trace([r for r in usable if r["veto"] == "PASS" and r["trial"] not in on_front], "feasible", "#4c78a8"),
        trace([r for r in usable if r["trial"] in on_front], "Pareto front", "#e45756", "lines+markers"),
    ])
    fig.update_layout(title=title, xaxis_title=second_name, yaxis_title="J (mean over seeds)", template="plotly_white")
    return fig.to_html(include_plotlyjs=True, full_html=True)


def tag_front(mlc, rows: Sequence[dict], on_front: set[int], experiment_id: str, study: str,
              known: Mapping[str, bool] | None = None) -> int:
    """Tag every trial run ``pareto`` = true/false; returns the number of runs written. Only the runs whose
    value changes are written. ``known``: the current value of the runs this process created or tagged
    (a trial run of a two-objective study is created with ``pareto=false``, ``tuning.trail.tracking``); only when
    some run is not known (a resumed study, other workers' runs) does one search of the study's runs tagged
    true find the rest. Several hosts finishing one study tag the same runs at the same moment; on a
    database store the loser of such a race gets a unique-key violation: retried (the last writer, who saw
    the most trials, wins)."""
    runs = {r["run_id"]: r["trial"] in on_front for r in rows if r.get("run_id")}
    current = dict(known or {})
    if not set(runs) <= set(current):
        from tuning.trail.tracking import search_all

        true = {run.info.run_id for run in search_all(mlc, [experiment_id], f"tags.study = '{study}' and "
                                                                         f"tags.pareto = 'true'")}
        current.update({run_id: run_id in true for run_id in runs if run_id not in current})
    written = 0
    for run_id, want in runs.items():
        if want != current[run_id]:
            set_pareto_tag(mlc, run_id, want)
            written += 1
    return written


def set_pareto_tag(mlc, run_id: str, value: bool) -> None:
    """One run's ``pareto`` tag (a database store's unique-key race is retried)."""
    import time

    from mlflow.exceptions import MlflowException

    for attempt in range(4):
        try:
            mlc.set_tag(run_id, "pareto", "true" if value else "false")
            return
        except MlflowException:
            if attempt == 3:
                raise
            time.sleep(0.1 * (attempt + 1))
