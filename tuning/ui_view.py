"""The MLflow UI's ranking view of a phase experiment, saved in the experiment itself.

MLflow's runs page loads a shared view from the experiment tag ``mlflow.sharedViewState.<key>`` when the
URL carries ``?viewStateShareKey=<key>``. Every sweep saves the view ``rank``: trial runs only, sorted by
``J_feasible`` descending (J of the feasible trials; vetoed trials have no such metric and come last),
with the J, worst-seed J, veto and key-metric columns shown (a K-seed trial's J and key metrics are means
over its seeds; every ``worst.<metric>`` can be added from *Columns*): the order of :mod:`tuning.ranking`
(the harness's one ranking), computed by MLflow. ``python -m tuning.rank --phase P --open`` prints its URL.
"""

from __future__ import annotations

import json
from typing import Sequence

from mlflow import MlflowClient

RANK_VIEW = "rank"
VIEW_TAG = "mlflow.sharedViewState."
RANK_SORT = "J_feasible"
WORST_J = "worst.J"
RANK_TAG_COLUMNS = ("veto", "veto_reasons", "study", "optuna_trial")


def rank_view_state(key_metrics: Sequence[str]) -> dict:
    # J and each key metric are means over the trial's seeds; worst.J is its worst seed's J (tuning.seed_robust)
    columns = [f"metrics.`{m}`" for m in ("J", RANK_SORT, WORST_J, *key_metrics)]
    columns += [f"tags.`{t}`" for t in RANK_TAG_COLUMNS]
    return {"searchFilter": "tags.run_kind = 'trial'", "orderByKey": f"metrics.`{RANK_SORT}`", "orderByAsc": False,
            "selectedColumns": list(dict.fromkeys(columns))}


def ensure_rank_view(mlc: MlflowClient, experiment_id: str, key_metrics: Sequence[str]) -> None:
    """Save (or refresh) the ``rank`` view on the experiment."""
    value = json.dumps(rank_view_state(key_metrics), sort_keys=True)
    if mlc.get_experiment(experiment_id).tags.get(VIEW_TAG + RANK_VIEW) != value:
        from tuning.tracking import set_experiment_tag_once

        set_experiment_tag_once(mlc, experiment_id, VIEW_TAG + RANK_VIEW, value)


def rank_url(ui_base: str, experiment_id: str) -> str:
    return f"{ui_base.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={RANK_VIEW}"
