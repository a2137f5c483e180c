"""optuna-dashboard on a phase's study: ``python -m tuning.dashboard --phase P1.2 [--study NAME] [--port 8080]``

Optuna 5's ``Trial.set_constraint`` stores a veto under the system attribute ``constraints:veto``, while
optuna-dashboard reads the older ``constraints`` list. The sweep mirrors its veto there
(:func:`tuning.storage.recovery.mirror_constraints`), so the dashboard shows every vetoed trial as infeasible.

optuna-dashboard 0.21 picks its best trials itself, ignoring constraints: the storage's best value for one
objective, the Pareto front of every COMPLETE trial for two. So a vetoed trial can wear its "Best Trial"
badge. The dashboard served here is optuna-dashboard's own WSGI app (:func:`optuna_dashboard.wsgi`) behind
:class:`FeasibleBest`, which answers its study API with ``best_trials`` = the harness's own answer
(:mod:`tuning.study.ranking`): the best feasible trial, or the feasible Pareto front (the trials the sweep tags
``pareto = true``); none when no trial is feasible. Nothing of Optuna or the dashboard is patched.
Needs the ``optuna-dashboard`` package (``pip install -e ".[dashboard]"``).
"""

from __future__ import annotations

import argparse
import io
import json
import re
from pathlib import Path
from typing import Sequence

from engine import EngineError
from tuning.common import worlds
from tuning.common.errors import E_STUDY_MISSING, TuningParser, run_cli

STUDY_DETAIL = re.compile(r"/api/studies/(\d+)/?")


def feasible_best_numbers(storage, study_id: int) -> list[int]:
    """The study's best trials by the harness's ranking: [the best feasible trial] for one objective, the
    feasible Pareto front for two (J up, the second objective in its direction); [] when none is feasible."""
    from optuna.study import StudyDirection
    from optuna.trial import TrialState

    from tuning.study.ranking import best_trial, feasible, pareto_numbers

    trials = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,))
    directions = storage.get_study_directions(study_id)
    if len(directions) == 2:
        return pareto_numbers(trials, "minimize" if directions[1] == StudyDirection.MINIMIZE else "maximize")
    best = best_trial(trials)
    return [best.number] if best is not None and feasible(best) else []


class FeasibleBest:
    """WSGI middleware: optuna-dashboard's study detail (``GET /api/studies/<id>``) with ``best_trials``
    replaced by :func:`feasible_best_numbers`' trials, as the dashboard serialised them."""

    def __init__(self, app, storage):
        self.app, self.storage, self.seen = app, storage, {}  # seen: {study id: {number: serialised trial}}

    def _call(self, environ: dict) -> tuple[str, list, bytes]:
        out = {}
        body = b"".join(self.app(environ, lambda status, headers, *exc: out.update(status=status, headers=headers)))
        return out["status"], out["headers"], body

    def __call__(self, environ, start_response):
        match = STUDY_DETAIL.fullmatch(environ.get("PATH_INFO", ""))
        if not match or environ.get("REQUEST_METHOD", "GET") != "GET":
            return self.app(environ, start_response)
        status, headers, body = self._call(environ)
        if status.startswith("200"):
            body = json.dumps(self._with_feasible_best(int(match.group(1)), json.loads(body), environ)).encode()
            headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
            headers.append(("Content-Length", str(len(body))))
        start_response(status, headers)
        return [body]

    def _with_feasible_best(self, study_id: int, detail: dict, environ: dict) -> dict:
        seen = self.seen.setdefault(study_id, {})
        seen.update({t["number"]: t for t in detail["trials"]})
        numbers = feasible_best_numbers(self.storage, study_id)
        if any(n not in seen for n in numbers):  # a client's first request asked only for the latest trials
            full = {k: v for k, v in environ.items() if not k.startswith("bottle.")}  # bottle caches the query
            full.update({"QUERY_STRING": "", "wsgi.input": io.BytesIO()})
            seen.update({t["number"]: t for t in json.loads(self._call(full)[2])["trials"]})
        detail["best_trials"] = [seen[n] for n in numbers if n in seen]
        return detail


def dashboard_app(storage):
    """optuna-dashboard's WSGI app on ``storage``, its best trials the feasible ones."""
    import optuna_dashboard

    return FeasibleBest(optuna_dashboard.wsgi(storage), storage)


def tcp_port(value: str) -> int:
    """An argument type: a TCP port to serve on, 1-65535 (0, any free port, would leave the printed URL wrong)."""
    try:
        number = int(value, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{number} is not a TCP port (1-65535)")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    ap = TuningParser(prog="python -m tuning.dashboard", description=__doc__.splitlines()[0])
    ap.add_argument("--phase", required=True)
    ap.add_argument("--study", help="study name (default: the phase's study file)")
    ap.add_argument("--studies-dir", default="studies")
    ap.add_argument("--storage", help="Optuna storage URL (default: the study's journal in .optuna/)")
    ap.add_argument("--world", metavar="DIR", help="the studies of this world (stored as <study>-w<id>)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=tcp_port, default=8080, help="1-65535 (default: 8080)")
    args = ap.parse_args(argv)
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from tuning.study.spec import load_study

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args) -> None:  # no line per request
            pass

    world = worlds.load(args.world)
    name = worlds.suffixed(args.study or load_study(args.phase, args.studies_dir).study, world)
    httpd = make_server(args.host, args.port, dashboard_app(existing_study_storage(args.storage, name)),
                        server_class=Server, handler_class=Quiet)
    print(f"optuna-dashboard on study {name}: http://{args.host}:{args.port}/dashboard", flush=True)
    serve(httpd)
    return 0


def existing_study_storage(url: str | None, name: str):
    """The storage holding the study ``name``, opened; a study it does not hold (nothing swept yet, a typo, a world's
    study asked without --world) is one coded line, and no journal or study is created for it."""
    from tuning.storage.stores import default_storage_url, journal_path, open_storage
    from tuning.trail.store_init import sqlite_path

    where = url or default_storage_url(name)
    path = journal_path(where)
    sqlite = sqlite_path(where)   # opened, a sqlite database is created
    missing = (path is not None and not Path(path).is_file()) or (sqlite is not None and not sqlite.is_file())
    storage = None if missing else open_storage(url, name)
    if storage is None or name not in {s.study_name for s in storage.get_all_studies()}:
        raise EngineError(E_STUDY_MISSING, f"no Optuna study {name} in {where} (run its sweep first; a world's "
                                           f"studies need --world DIR)")
    return storage


def serve(httpd) -> None:
    """Serve until Ctrl-C, which stops the server between two requests: raised inside one, wsgiref would print
    it as that request's error (a traceback) and serve on."""
    import signal
    import threading

    previous = signal.signal(signal.SIGINT, lambda *_: threading.Thread(target=httpd.shutdown, daemon=True).start())
    try:
        httpd.serve_forever()
    finally:
        signal.signal(signal.SIGINT, previous)
        httpd.server_close()


if __name__ == "__main__":
    run_cli(main)
