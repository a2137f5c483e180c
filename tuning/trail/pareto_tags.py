"""The Pareto front in the trail: every trial run's ``pareto = true|false`` tag (``tag_front``) and the
parent run's ``pareto.html`` (plotly inline, renders offline). The front itself is :mod:`tuning.study.pareto`.
"""

from __future__ import annotations

from typing import Mapping, Sequence


def pareto_html(rows: Sequence, on_front: set[int], second_name: str, title: str) -> str:
    """Scatter of every complete trial (rows: :class:`tuning.study.trial_row.TrialRow`; feasible coloured, front
    joined by a line)."""
    import plotly.graph_objects as go

    def trace(sel, name, color, mode="markers"):
        sel = sorted(sel, key=lambda r: r.J)   # not a ranking: the front's line is drawn in J order
        return go.Scatter(x=[r.second for r in sel], y=[r.J for r in sel], mode=mode, name=name,
                          marker={"color": color, "size": 8}, text=[f"trial {r.trial}" for r in sel])

    usable = [r for r in rows if r.J is not None and r.second is not None]
    fig = go.Figure([
        trace([r for r in usable if not r.feasible], "vetoed", "#bbbbbb"),
        trace([r for r in usable if r.feasible and r.trial not in on_front], "feasible", "#4c78a8"),
        trace([r for r in usable if r.trial in on_front], "Pareto front", "#e45756", "lines+markers"),
    ])
    fig.update_layout(title=title, xaxis_title=second_name, yaxis_title="J (mean over seeds)", template="plotly_white")
    return fig.to_html(include_plotlyjs=True, full_html=True)


def tag_front(mlc, rows: Sequence, on_front: set[int], experiment_id: str, study: str,
              known: Mapping[str, bool] | None = None) -> int:
    """Tag every trial run ``pareto`` = true/false; returns the number of runs written. Only the runs whose
    value changes are written. ``known``: the current value of the runs this process created or tagged
    (a trial run of a two-objective study is created with ``pareto=false``, ``tuning.trail.tracking``); only when
    some run is not known (a resumed study, other workers' runs) does one search of the study's runs tagged
    true find the rest. Several hosts finishing one study tag the same runs at the same moment; on a
    database store the loser of such a race gets a unique-key violation: retried (the last writer, who saw
    the most trials, wins)."""
    runs = {r.mlflow_run_id: r.trial in on_front for r in rows if r.mlflow_run_id}
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
