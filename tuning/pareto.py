"""The trade-off of a multi-objective study: J (up) against a second objective (fidelity).

``front`` is pure: the non-dominated points among feasible trials. ``tag_front`` marks every trial
run of the study in MLflow with ``pareto = true|false``; ``pareto_html`` is the parent run's plot
(plotly inline, renders offline).
"""

from __future__ import annotations

from typing import Iterable, Sequence


def _better_or_equal(a: float, b: float, direction: str) -> bool:
    return a <= b if direction == "minimize" else a >= b


def front(points: Iterable[tuple[int, float, float]], second_direction: str) -> list[int]:
    """Numbers of the non-dominated points ``(number, J, second)``: no other point is at least as
    good on both objectives and strictly better on one. Ties (equal on both) all stay on the front."""
    pts = list(points)
    keep = []
    for n, j, f in pts:
        dominated = any(
            j2 >= j and _better_or_equal(f2, f, second_direction) and (j2 > j or f2 != f)
            for _, j2, f2 in pts)
        if not dominated:
            keep.append(n)
    return sorted(keep)


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
              known_false: Iterable[str] = ()) -> int:
    """Tag every trial run ``pareto`` = true/false; returns the number of runs written. A trial run of a
    two-objective study is created with ``pareto=false`` (``tuning.tracking``), so only the runs whose value
    changes are written: the front's, and those an earlier invocation tagged true that left it. Runs in
    ``known_false`` (created by this process, never tagged since) are known to be false; only when some run
    is not (a resumed study, other workers' runs) does one search of the study's runs tagged true find the
    rest. Several hosts finishing one study tag the same runs at the same moment; on a database store the
    loser of such a race gets a unique-key violation: retried (the last writer, who saw the most trials,
    wins)."""
    import time

    from mlflow.exceptions import MlflowException

    from tuning.tracking import search_all

    runs = {r["run_id"]: r["trial"] in on_front for r in rows if r.get("run_id")}
    known = set(known_false)
    now_true: set[str] = set()
    if not set(runs) <= known:
        now_true = {run.info.run_id for run in search_all(mlc, [experiment_id], f"tags.study = '{study}' and "
                                                                             f"tags.pareto = 'true'")}
    written = 0
    for run_id, want in runs.items():
        if want == (run_id in now_true):
            continue
        for attempt in range(4):
            try:
                mlc.set_tag(run_id, "pareto", "true" if want else "false")
                written += 1
                break
            except MlflowException:
                if attempt == 3:
                    raise
                time.sleep(0.1 * (attempt + 1))
    return written
