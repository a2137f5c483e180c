"""``python -m tuning.bench_distributed [--trials N] [--workers K] [--rounds R] [--defaults-only] [--json]``: the cost
of going distributed, measured as a user runs it.

Each round runs the same P1.2 budget from this project root three ways:

- ``local``: one ``python -m tuning.sweep`` process (journal file + sqlite MLflow store), the defaults;
- ``defaults``: K independent ``python -m tuning.sweep`` processes sharing a real PostgreSQL server and a
  real MLflow tracking server (started on loopback by :mod:`tuning.local_services`, their start-up not
  counted; ``--cluster-dir DIR``: the ones already running from DIR, left running), with the defaults a user
  runs (report HTML on, the default heartbeat and grace); once a trial
  is COMPLETE, the worker of the RUNNING trial started last is SIGKILLed and started again;
- ``tuned``: the same with ``--reports 0`` and a 5 s heartbeat / 30 s grace (what this bench used to run);
  ``--defaults-only`` leaves it out (a round is then the local run and the defaults, the target's figure).

Wall = launch of the first sweep process to the last exit. Each figure stands beside its target
(distributed / local <= 1.6), with its median and spread over the rounds. Where the time goes is reported
from the study itself (launch -> first trial asked, the trials, the close, kill -> the killed trial's retry
asked) and in CPU seconds: the sweep processes with their trail processes, the MLflow server, PostgreSQL,
and one more process run on the finished study (what every process costs besides its trials: imports, the
world, the anchor, its trail process; ``--no-fixed-probe`` skips it). The per-trial logging time against the
server is reported twice: as the sweeps saw it (the trail process's ``log_trial``, per trial) and from a probe
that logs trials one after another through the server and counts its HTTP requests.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from engine import EngineError
import tuning.local_services.services as ls
from tuning.bench_distributed.probe import log_probe
from tuning.common.errors import E_TRIALS_FAILING, E_USAGE, TuningParser, decimal, run_cli

TARGET_RATIO = 1.6
TUNED_ENV = {"SEG3A_HEARTBEAT_INTERVAL": "5", "SEG3A_GRACE_PERIOD": "30"}
USER_ENV = ("SEG3A_HEARTBEAT_INTERVAL", "SEG3A_GRACE_PERIOD")   # the defaults run sets neither
KILL_POLL_SECONDS = 0.05   # a default-world trial runs for ~0.1-0.2 s: a slower watch can miss every one of them


def sweep_argv(phase: str, trials: int, storage: str, study: str, tuned: bool) -> list[str]:
    argv = [sys.executable, "-m", "tuning.sweep", "--phase", phase, "--trials", str(trials), "--storage", storage,
            "--study", study, "--no-progress", "--json"]
    return argv + (["--reports", "0", "--top", "1"] if tuned else [])


def _launch(argv: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _trials(storage, study: str, states=None) -> list | None:
    """The study's trials (``states``: only those) through the storage's public API: one study-id lookup and one
    trial read, not a ``load_study`` (which also reads the study's attributes and directions) per poll."""
    try:
        return storage.get_all_trials(storage.get_study_id_from_name(study), deepcopy=False, states=states)
    except Exception:  # noqa: BLE001 - the schema or the study is not created yet
        return None


def kill_mid_trial(procs: list, storage_url: str, study: str, restart, deadline: float) -> dict | None:
    """SIGKILL a worker seen holding a RUNNING trial once a trial is COMPLETE, and ``restart()`` it (its
    replacement takes its place in ``procs``). Of the RUNNING trials it kills the one started last, the one with
    the most of its run still ahead: a default-world trial lasts ~0.1-0.2 s, and the oldest is the likeliest to be
    told between the read and the kill. A kill that lands after that worker told its trial (now COMPLETE or
    PRUNED) killed nothing mid-trial: the watch goes on. A trial read again as failed for its worker's death was
    killed mid-trial: another worker saw its owner dead and failed it in between (watching on would kill a second
    worker, perhaps the one running its retry). Returns the killed trial's number and the kill's wall clock."""
    import optuna
    from optuna.trial import TrialState

    from tuning.storage.budget import DEAD_WORKER_REASON

    rdb = None
    while time.time() < deadline and any(p.poll() is None for p in procs):
        time.sleep(KILL_POLL_SECONDS)
        try:
            rdb = rdb or optuna.storages.RDBStorage(url=storage_url)
        except Exception:  # noqa: BLE001 - the workers have not created the schema yet
            continue
        trials = _trials(rdb, study, (TrialState.RUNNING, TrialState.COMPLETE)) or []
        if not any(t.state == TrialState.COMPLETE for t in trials):
            continue
        by_pid = {p.pid: i for i, p in enumerate(procs)}
        held = [(t, by_pid.get((t.user_attrs.get("worker") or {}).get("pid"))) for t in trials
                if t.state == TrialState.RUNNING and t.datetime_start is not None]
        held = [(t, i) for t, i in held if i is not None and procs[i].poll() is None]
        if not held:
            continue
        t, i = max(held, key=lambda ti: ti[0].datetime_start)
        os.kill(procs[i].pid, signal.SIGKILL)
        procs[i].wait(timeout=30)
        killed_at = dt.datetime.now()
        procs[i] = restart()
        again = [u for u in _trials(rdb, study) or [] if u.number == t.number and (
            u.state == TrialState.RUNNING or
            (u.state == TrialState.FAIL and u.system_attrs.get("failed_reason") == DEAD_WORKER_REASON))]
        if again:
            return {"trial": t.number, "at": killed_at, "worker": i}
    return None


def timed_run(argvs: list[list[str]], env: dict, kill: tuple[str, str] | None = None) -> dict:
    """Launch every argv at once (``kill``: (storage URL, study) to kill one worker mid-trial and restart it),
    wait for all; wall seconds, each process's JSON summary and the children's CPU seconds."""
    cpu0 = _children_cpu()
    launched, t0 = dt.datetime.now(), time.perf_counter()
    procs = [_launch(a, env) for a in argvs]
    killed = None
    if kill is not None:
        killed = kill_mid_trial(procs, kill[0], kill[1], lambda: _launch(argvs[0], env), time.time() + 300)
    outs = [p.communicate() for p in procs]
    wall = time.perf_counter() - t0
    bad = [(p.returncode, err) for p, (_, err) in zip(procs, outs) if p.returncode != 0]
    if bad:
        raise EngineError(E_TRIALS_FAILING, f"a sweep process failed (exit {bad[0][0]}): "
                                            f"{(bad[0][1].strip().splitlines() or [''])[-1][:300]}")
    return {"wall": wall, "launched": launched, "ended": dt.datetime.now(), "killed": killed,
            "summaries": [json.loads(out) for out, _ in outs], "sweeps_cpu_s": _children_cpu() - cpu0}


def _children_cpu() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def server_cpu(pid: int) -> float:
    """CPU seconds of a server: ``pid``, its children and its process group, with the children they reaped
    (the MLflow server's workers share its group; PostgreSQL's backends are the postmaster's children)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()   # state ppid pgrp ...
        if pid in (int(stat.parent.name), int(fields[1]), int(fields[2])):
            total += sum(int(f) for f in fields[11:15])   # utime stime cutime cstime
    return total / tick


def where_time_goes(run: dict, storage, study: str) -> dict:
    """The run's timeline, read from the study: start-up (launch -> first trial asked), the trials, the close
    (last trial told -> last exit), the killed trial's retry (kill -> its retry asked) and the per-trial
    logging time of the trail processes."""
    from optuna.trial import TrialState

    trials = _trials(storage, study) or []
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    first = min(t.datetime_start for t in trials)
    last = max(t.datetime_complete for t in done)
    out = {"startup_s": (first - run["launched"]).total_seconds(),
           "trials_span_s": (last - first).total_seconds(), "close_s": (run["ended"] - last).total_seconds()}
    killed = run.get("killed")
    if killed is not None:
        retry = [t for t in trials if t.system_attrs.get("failed_trial") == killed["trial"]]
        out["killed_trial"] = killed["trial"]
        out["retry_after_kill_s"] = (min(t.datetime_start for t in retry) - killed["at"]).total_seconds() \
            if retry else None
    logs = sorted(s for s in ((t.user_attrs.get("result") or {}).get("log_seconds") for t in done) if s is not None)
    if logs:
        out["log_seconds_per_trial"] = {"median": statistics.median(logs), "p90": logs[int(0.9 * (len(logs) - 1))],
                                        "max": logs[-1], "trials": len(logs)}
    return out


def _services_cpu(state: dict) -> dict[str, float]:
    postmaster = int((Path(state["pgdata"]) / "postmaster.pid").read_text().split()[0])
    return {"mlflow_server": server_cpu(int(state["mlflow_pid"])), "postgresql": server_cpu(postmaster)}


def distributed_run(args, state: dict, env: dict, study: str, tuned: bool) -> dict:
    """K workers on the services, one killed mid-trial and restarted; wall, timeline and CPU seconds."""
    import optuna

    env = {k: v for k, v in env.items() if k not in USER_ENV} | (TUNED_ENV if tuned else {})
    env["MLFLOW_TRACKING_URI"] = state["mlflow_tracking_uri"]
    argv = sweep_argv(args.phase, args.trials, state["optuna_storage"], study, tuned)
    before = _services_cpu(state)
    run = timed_run([argv] * args.workers, env, kill=(state["optuna_storage"], study))
    after = _services_cpu(state)
    if run["killed"] is None:
        raise EngineError(E_TRIALS_FAILING, "no worker was caught holding a RUNNING trial to kill")
    storage = optuna.storages.RDBStorage(url=state["optuna_storage"])
    cpu = {"sweeps_and_trails": run["sweeps_cpu_s"], **{k: after[k] - before[k] for k in after}}
    # one more worker on the finished study: what a process costs before and after its trials (imports, the
    # world, the anchor, its trail process, the end of its parent run), paid by each of the K + 1 processes
    cpu["one_process_without_trials"] = fixed_cpu(args, argv, env)
    return {"wall_seconds": run["wall"], "trials_complete": run["summaries"][0]["trials_complete"],
            "where": where_time_goes(run, storage, study), "cpu_seconds": cpu,
            "reports": "off (--reports 0)" if tuned else "on (the default --reports 1)",
            "heartbeat": "5 s / grace 30 s" if tuned else "the defaults (10 s / grace 60 s)"}


def fixed_cpu(args, argv: list[str], env: dict) -> float | None:
    """One more process on the finished study: what a process costs besides its trials (imports, the world, the
    anchor, its trail process, the end of its parent run); None with ``--no-fixed-probe``."""
    return None if args.no_fixed_probe else timed_run([argv], env)["sweeps_cpu_s"]


def local_run(args, tmp: Path, env: dict, study: str) -> dict:
    store = tmp / study
    store.mkdir()
    env = dict(env, MLFLOW_TRACKING_URI=f"sqlite:///{store / 'mlflow.db'}")
    journal = f"journal:{store / 'study.journal'}"
    argv = sweep_argv(args.phase, args.trials, journal, study, tuned=False)
    run = timed_run([argv], env)
    from tuning.storage.stores import open_storage

    return {"wall_seconds": run["wall"], "trials_complete": run["summaries"][0]["trials_complete"],
            "where": where_time_goes(run, open_storage(journal, study), study),
            "cpu_seconds": {"sweep_and_trail": run["sweeps_cpu_s"],
                            "one_process_without_trials": fixed_cpu(args, argv, env)}}


def settings(args) -> tuple[str, ...]:
    """The distributed runs of a round: the defaults a user runs (the target's figure), then the bench's former
    settings unless ``--defaults-only``."""
    return ("defaults",) if args.defaults_only else ("defaults", "tuned")


def one_round(args, tmp: Path, state: dict, env: dict, index: int) -> dict:
    tag = f"{int(time.time())}-{index}"
    local = local_run(args, tmp, env, f"bench-local-{tag}")
    out = {"local": local}
    for name in settings(args):
        run = distributed_run(args, state, env, f"bench-{name}-{tag}", tuned=name == "tuned")
        run["ratio"] = run["wall_seconds"] / local["wall_seconds"]
        out[name] = run
    walls = ", ".join(f"{name} {out[name]['wall_seconds']:.1f} s" for name in settings(args))
    print(f"round {index + 1}/{args.rounds}: local {local['wall_seconds']:.1f} s, {walls} (load "
          f"{os.getloadavg()[0]:.2f})", file=sys.stderr, flush=True)
    return out


def _spread(values: list) -> dict | None:
    values = [v for v in values if v is not None]
    return {"median": statistics.median(values), "min": min(values), "max": max(values)} if values else None


def figures(rounds: list[dict]) -> dict:
    """Each figure's median and spread over the rounds; the ratios beside their target."""
    def runs(name: str, *path: str) -> dict | None:
        values = []
        for r in rounds:
            v = r[name]
            for key in path:
                v = v.get(key) if isinstance(v, dict) else None
            values.append(v)
        return _spread(values)

    out = {"local_wall_seconds": runs("local", "wall_seconds"),
           "local_fixed_cpu_seconds": runs("local", "cpu_seconds", "one_process_without_trials")}
    for name in [n for n in ("defaults", "tuned") if n in rounds[0]]:
        ratio = runs(name, "ratio")
        out[name] = {"ratio": {**ratio, "target": TARGET_RATIO, "within_target": ratio["median"] <= TARGET_RATIO},
                     "wall_seconds": runs(name, "wall_seconds"), "startup_s": runs(name, "where", "startup_s"),
                     "close_s": runs(name, "where", "close_s"),
                     "retry_after_kill_s": runs(name, "where", "retry_after_kill_s"),
                     "log_seconds_per_trial_median": runs(name, "where", "log_seconds_per_trial", "median"),
                     "fixed_cpu_seconds_per_process": runs(name, "cpu_seconds", "one_process_without_trials"),
                     "cpu_seconds": {k: runs(name, "cpu_seconds", k) for k in
                                     ("sweeps_and_trails", "mlflow_server", "postgresql")}}
    return out


def services(cluster_dir: str | None, scratch: Path) -> dict:
    """The servers to measure against: the local cluster running from ``cluster_dir`` (``python -m
    tuning.local_services start --dir DIR``; left running), else a new one in ``scratch`` (purged at the end)."""
    if not cluster_dir:
        return ls.start(scratch)
    state = ls.running(Path(cluster_dir))
    if state is None:
        raise EngineError(E_USAGE, f"--cluster-dir {cluster_dir}: no local cluster runs from it (start one with "
                                   f"python -m tuning.local_services start --dir {cluster_dir})")
    return state


def bench(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="seg3a-bench-dist-"))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")]))
    load = os.getloadavg()
    try:
        t0 = time.perf_counter()
        state = services(args.cluster_dir, tmp / "cluster")
        services_s = None if args.cluster_dir else time.perf_counter() - t0
        try:
            rounds = [one_round(args, tmp, state, env, i) for i in range(args.rounds)]
            probe = log_probe(state["mlflow_tracking_uri"], args.phase, args.probe_trials,
                              lambda: _services_cpu(state))
        finally:
            if not args.cluster_dir:
                ls.purge(tmp / "cluster")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"phase": args.phase, "trials": args.trials, "workers": args.workers, "cpu_count": os.cpu_count(),
            "load_average_before": [round(x, 2) for x in load],
            "load_average_after": [round(x, 2) for x in os.getloadavg()], "services_start_seconds": services_s,
            "target_ratio": TARGET_RATIO, "figures": figures(rounds), "log_probe": probe, "rounds": rounds,
            "services": args.cluster_dir or "started for this bench",
            "note": "wall = launch of the sweep process(es) to the last exit; distributed: one worker SIGKILLed "
                    "while it held a RUNNING trial and restarted; service start-up not counted"}


def _line(out: dict) -> str:
    f, p = out["figures"], out["log_probe"]

    def ratio(name: str) -> str:
        r = f[name]["ratio"]
        return f"{name} {r['median']:.2f}x (runs {r['min']:.2f}-{r['max']:.2f}; target <= {TARGET_RATIO}x)"

    retry = f["defaults"]["retry_after_kill_s"]
    ratios = "; ".join(ratio(name) for name in ("defaults", "tuned") if name in f)
    return (f"local {f['local_wall_seconds']['median']:.1f} s; {ratios}; killed trial "
            f"retried after {'-' if retry is None else format(retry['median'], '.1f')} s; logging "
            f"{p['seconds_median'] * 1000:.0f} ms, {p['requests_per_trial']:.0f} requests and "
            f"{sum(p['server_cpu_ms_per_trial'].values()):.0f} ms of the servers' CPU per trial; load "
            f"{out['load_average_before'][0]:.2f} -> {out['load_average_after'][0]:.2f}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = TuningParser(prog="python -m tuning.bench_distributed", description=__doc__.splitlines()[0])
    ap.add_argument("--phase", default="P1.2")
    ap.add_argument("--trials", type=decimal, default=40)
    ap.add_argument("--workers", type=decimal, default=4)
    ap.add_argument("--rounds", type=decimal, default=3, help="rounds of (local, defaults, tuned)")
    ap.add_argument("--defaults-only", action="store_true",
                    help="measure the defaults a user runs (the target's figure), not the former settings")
    ap.add_argument("--probe-trials", type=decimal, default=20, help="trials the logging probe writes")
    ap.add_argument("--no-fixed-probe", action="store_true",
                    help="skip the extra process per run that measures a process's fixed CPU cost (a quicker bench)")
    ap.add_argument("--cluster-dir", help="measure against the local cluster already running from this directory "
                    "(python -m tuning.local_services start --dir DIR), left running; default: start one, purge it at the end")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if min(args.trials, args.workers, args.rounds, args.probe_trials) < 1:
        raise EngineError(E_USAGE, "--trials, --workers, --rounds and --probe-trials must be >= 1")
    out = bench(args)
    print(json.dumps(out, indent=2, sort_keys=True, default=str) if args.json else _line(out))
    return 0


if __name__ == "__main__":
    run_cli(main)
