"""The MLflow UI's ranking view of a phase experiment, saved in the experiment itself, and the addresses
that open the UI on training runs.

**GenAI or training runs.** MLflow 3.17's UI does not choose its view from the experiment's
``mlflow.experimentKind`` tag: it reads the ``workflowType`` query parameter of the page's address
(``genai`` | ``machine_learning``), else the switch at the top of its sidebar (*GenAI* | *Model training*),
which the browser remembers (``localStorage["mlflow.workflowType_v1"]``); the default is GenAI (the
*Overview* of traces). Every address printed here carries ``workflowType=machine_learning``, so it opens
on the runs table whatever the browser remembers.

**The rank view.** MLflow's runs page loads a shared view from the experiment tag
``mlflow.sharedViewState.<key>`` when the address carries ``?viewStateShareKey=<key>``. Every sweep saves
the view ``rank``: trial runs only, sorted by ``J_feasible`` descending (J of the feasible trials; vetoed
trials have no such metric and come last): the order of :mod:`tuning.study.ranking` (the harness's one
ranking), computed by MLflow. Its columns are fields of the trial's row (:class:`tuning.study.trial_row.TrialRow`,
each at its MLflow tag or metric, :func:`~tuning.study.trial_row.mlflow_column`: the numbers ``tuning.rank``
prints), in this order and at widths that show every value whole: J, verdict, fidelity, veto (``feasible``),
worst.J (the worst seed's J), the study's key metrics (a K-seed trial's J and key metrics are means over its
seeds; every ``worst.<metric>`` can be added from *Columns*), then veto_reasons (``vetoes``), study and
optuna_trial (``trial``).
``python -m tuning.rank --phase P --open`` prints its address.
"""

from __future__ import annotations

import json
from typing import Sequence

from mlflow import MlflowClient

from tuning.study.trial_row import mlflow_column

RANK_VIEW = "rank"
VIEW_TAG = "mlflow.sharedViewState."
RANK_SORT = "J_feasible"
TRAINING_RUNS = "workflowType=machine_learning"  # what the UI reads first to choose its view (see above)
RUN_NAME_COLUMN = "attributes.`Run Name`"
# (row field, width in px): a metric's full repr (up to ~21 characters) fits 175 px
LEAD_FIELDS = (("J", 175), ("verdict", 115), ("fidelity", 100), ("feasible", 65))
METRIC_WIDTH = 175
TAIL_FIELDS = (("vetoes", 200), ("study", 110), ("trial", 110))


def rank_view_state(key_metrics: Sequence[str]) -> dict:
    """The view: the row fields above, then ``worst_J`` and the key metrics, each at its MLflow column."""
    metrics = [(m, METRIC_WIDTH) for m in ("worst_J", *key_metrics) if m != "J"]
    columns = {mlflow_column(f): width for f, width in (*LEAD_FIELDS, *metrics, *TAIL_FIELDS)}  # ordered, no duplicate
    return {"searchFilter": "tags.run_kind = 'trial'", "orderByKey": f"metrics.`{RANK_SORT}`", "orderByAsc": False,
            "selectedColumns": list(columns), "columnOrder": [RUN_NAME_COLUMN, *columns],
            "columnWidths": {RUN_NAME_COLUMN: 120, **columns}}


def ensure_rank_view(mlc: MlflowClient, experiment_id: str, key_metrics: Sequence[str]) -> None:
    """Save (or refresh) the ``rank`` view on the experiment."""
    value = json.dumps(rank_view_state(key_metrics), sort_keys=True)
    if mlc.get_experiment(experiment_id).tags.get(VIEW_TAG + RANK_VIEW) != value:
        from tuning.trail.tracking import set_experiment_tag_once

        set_experiment_tag_once(mlc, experiment_id, VIEW_TAG + RANK_VIEW, value)


def experiment_url(ui_base: str, experiment_id: str) -> str:
    """The experiment's runs table (not the GenAI overview)."""
    return f"{ui_base.rstrip('/')}/#/experiments/{experiment_id}/runs?{TRAINING_RUNS}"


def rank_url(ui_base: str, experiment_id: str) -> str:
    return f"{experiment_url(ui_base, experiment_id)}&viewStateShareKey={RANK_VIEW}"


def default_ui_base() -> str:
    """The UI of this trail: a tracking server serves its own UI; a local store is read by ``mlflow ui``, on
    port 5000 unless told otherwise (``--ui``)."""
    import os

    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"


def ui_mismatch(ui_base: str, experiment_name: str, experiment_id: str, tracking_uri: str) -> str | None:
    """Why ``ui_base`` would not show this experiment (no UI answers there, or it reads another store), or None."""
    import urllib.error
    import urllib.parse
    import urllib.request

    query = urllib.parse.urlencode({"experiment_name": experiment_name})
    start = f"mlflow ui --backend-store-uri {tracking_uri} --port PORT"
    try:
        with urllib.request.urlopen(f"{ui_base.rstrip('/')}/ajax-api/2.0/mlflow/experiments/get-by-name?{query}",
                                    timeout=5) as r:
            there = json.loads(r.read())["experiment"]["experiment_id"]
    except urllib.error.HTTPError:
        there = None
    except (OSError, ValueError, KeyError):
        return f"no MLflow UI answers at {ui_base}: start one ({start}) and pass --ui http://127.0.0.1:PORT"
    if there != experiment_id:
        return (f"the MLflow UI at {ui_base} reads another store (it has no experiment {experiment_name} with id "
                f"{experiment_id}): pass --ui with the address of `{start}`")
    return None
