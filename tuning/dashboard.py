"""optuna-dashboard on a phase's study: ``python -m tuning.dashboard --phase P1.2 [--study NAME] [--port 8080]``

Optuna 5's ``Trial.set_constraint`` stores a veto under the system attribute ``constraints:veto``, while
optuna-dashboard reads the older ``constraints`` list. The sweep mirrors its veto there
(:func:`mirror_constraints`), so the dashboard shows every vetoed trial as infeasible. The storage
served here also answers "best trial" with the first trial of the harness's one ranking
(:mod:`tuning.ranking`: feasible first, then J; the stock storage ignores constraints), so the
dashboard never names a vetoed trial best while a feasible one exists.
Needs the ``optuna-dashboard`` package (``pip install -e ".[dashboard]"``).
"""

from __future__ import annotations

import types
from typing import Sequence

from optuna.trial import TrialState

from tuning.errors import TuningParser, run_cli

DASHBOARD_CONSTRAINTS_KEY = "constraints"


def mirror_constraints(trial, values: Sequence[float]) -> None:
    """Also store the trial's constraint values where optuna-dashboard reads them."""
    from tuning.trial_recovery import live_trial_id

    trial.storage.set_trial_system_attr(live_trial_id(trial), DASHBOARD_CONSTRAINTS_KEY, [float(v) for v in values])


def _best_feasible(storage, study_id: int):
    """The dashboard's best trial: the first of the harness ranking (:func:`tuning.ranking.best_trial`)."""
    from tuning.ranking import best_trial

    best = best_trial(storage.get_all_trials(study_id, deepcopy=False, states=[TrialState.COMPLETE]))
    if best is None:
        raise ValueError("No trials are completed yet.")
    return best


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
    from tuning.study_spec import load_study
    from tuning.study_store import open_storage

    name = args.study or load_study(args.phase, args.studies_dir).study
    print(f"optuna-dashboard on study {name}: http://{args.host}:{args.port}/dashboard", flush=True)
    serve(feasible_best_storage(open_storage(args.storage, name)), args.host, args.port)
    return 0


def serve(storage, host: str, port: int) -> None:
    """optuna-dashboard's app on wsgiref until Ctrl-C, which stops the server between two requests: raised inside
    one, wsgiref would print it as that request's error (a traceback) and serve on."""
    import signal
    import threading
    from wsgiref.simple_server import make_server

    from optuna_dashboard import wsgi

    server = make_server(host, port, wsgi(storage))
    previous = signal.signal(signal.SIGINT, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    try:
        server.serve_forever()
    finally:
        signal.signal(signal.SIGINT, previous)
        server.server_close()


if __name__ == "__main__":
    run_cli(main)
