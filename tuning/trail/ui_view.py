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
ranking), computed by MLflow. Its columns, in this order and at widths that show every value whole: J,
verdict, fidelity, veto, worst.J (the worst seed's J), the study's key metrics (a K-seed trial's J and key
metrics are means over its seeds; every ``worst.<metric>`` can be added from *Columns*), then veto_reasons,
study and optuna_trial.
``python -m tuning.rank --phase P --open`` prints its address.
"""

from __future__ import annotations

import json
from typing import Sequence

from mlflow import MlflowClient

RANK_VIEW = "rank"
VIEW_TAG = "mlflow.sharedViewState."
RANK_SORT = "J_feasible"
TRAINING_RUNS = "workflowType=machine_learning"  # what the UI reads first to choose its view (see above)
RUN_NAME_COLUMN = "attributes.`Run Name`"
# (column, width in px): a metric's full repr (up to ~21 characters) fits 175 px
WORST_J = "worst.J"
LEAD_COLUMNS = (("metrics.`J`", 175), ("tags.`verdict`", 115), ("tags.`fidelity`", 100), ("tags.`veto`", 65))
METRIC_WIDTH = 175
TAIL_COLUMNS = (("tags.`veto_reasons`", 200), ("tags.`study`", 110), ("tags.`optuna_trial`", 110))


def rank_view_state(key_metrics: Sequence[str]) -> dict:
    metrics = [(f"metrics.`{m}`", METRIC_WIDTH) for m in (WORST_J, *key_metrics) if m != "J"]
    columns = dict([*LEAD_COLUMNS, *metrics, *TAIL_COLUMNS])  # ordered, no duplicate
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
