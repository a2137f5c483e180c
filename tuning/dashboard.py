"""optuna-dashboard on a phase's study: ``python -m tuning.dashboard --phase P1.2 [--study NAME] [--port 8080]``

Optuna 5's ``Trial.set_constraint`` stores a veto under the system attribute ``constraints:veto``, while
optuna-dashboard reads the older ``constraints`` list. The sweep mirrors its veto there
(:func:`mirror_constraints`), so the dashboard shows every vetoed trial as infeasible. The storage
served here also answers "best trial" with the best *feasible* trial (the stock storage ignores
constraints), so the dashboard never names a vetoed trial best while a feasible one exists.
Needs the ``optuna-dashboard`` package (``pip install -e ".[dashboard]"``).
"""

from __future__ import annotations

import types
from typing import Sequence

from optuna.study import StudyDirection
from optuna.trial import TrialState

from tuning.errors import TuningParser, run_cli

DASHBOARD_CONSTRAINTS_KEY = "constraints"


def mirror_constraints(trial, values: Sequence[float]) -> None:
    """Also store the trial's constraint values where optuna-dashboard reads them."""
    trial.storage.set_trial_system_attr(trial._trial_id, DASHBOARD_CONSTRAINTS_KEY, [float(v) for v in values])


def constraint_values(trial) -> list[float]:
    attrs = trial.system_attrs
    if DASHBOARD_CONSTRAINTS_KEY in attrs:
        return list(attrs[DASHBOARD_CONSTRAINTS_KEY])
    return [v for k, v in attrs.items() if k.startswith(DASHBOARD_CONSTRAINTS_KEY + ":")]


def is_feasible(trial) -> bool:
    return all(v <= 0 for v in constraint_values(trial))


def _best_feasible(storage, study_id: int):
    done = storage.get_all_trials(study_id, deepcopy=False, states=[TrialState.COMPLETE])
    if not done:
        raise ValueError("No trials are completed yet.")
    pool = [t for t in done if is_feasible(t)] or done  # all vetoed: fall back to the stock answer
    pick = max if storage.get_study_directions(study_id)[0] == StudyDirection.MAXIMIZE else min
    return pick(pool, key=lambda t: t.values[0])


def feasible_best_storage(storage):
    """The storage, its ``get_best_trial`` answering with the best feasible trial."""
    storage.get_best_trial = types.MethodType(_best_feasible, storage)
    return storage


def main(argv: Sequence[str] | None = None) -> int:
    ap = TuningParser(prog="python -m tuning.dashboard", description=__doc__.splitlines()[0])
    ap.add_argument("--phase", required=True)
    ap.add_argument("--study", help="study name (default: the phase's study file)")
    ap.add_argument("--studies-dir", default="studies")
    ap.add_argument("--storage", help="Optuna storage URL (default: the study's journal in .optuna/)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    args = ap.parse_args(argv)
    from optuna_dashboard import run_server

    from tuning.study_spec import load_study
    from tuning.study_store import open_storage

    name = args.study or load_study(args.phase, args.studies_dir).study
    print(f"optuna-dashboard on study {name}: http://{args.host}:{args.port}/dashboard")
    run_server(feasible_best_storage(open_storage(args.storage, name)), host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    run_cli(main)
