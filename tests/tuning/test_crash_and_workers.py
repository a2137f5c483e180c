"""Crash safety and parallel workers, with real subprocesses on the shared storage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from optuna.trial import TrialState

from tests.proc_table import alive, children
from tests.tuning.conftest import env_for, load, p12_evaluation, run_here, run_module, trial_runs

pytestmark = pytest.mark.slow


def _assert_consistent(study_name: str, target: int) -> None:
    study = load(study_name)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == target
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    for failed in (t for t in study.trials if t.state == TrialState.FAIL):  # every lost trial was retried once
        retries = [t for t in study.trials if t.user_attrs.get("retry_of") == failed.number]
        assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
        assert {k: retries[0].params[k] for k in failed.params} == failed.params
    runs = trial_runs(study_name)
    assert len(runs) == target, "one MLflow run per complete trial, no duplicate"
    assert sorted(int(r.data.tags["optuna_trial"]) for r in runs) == sorted(t.number for t in complete)
    assert len({r.data.tags["trial_key"] for r in runs}) == target
    assert {r.info.status for r in runs} == {"FINISHED"}
    for t in complete:
        assert t.user_attrs["result"]["mlflow_run_id"] in {r.info.run_id for r in runs}


def _trail_processes_while(proc: subprocess.Popen, timeout: float = 240) -> int:
    """The most MLflow trail processes seen at once under ``proc`` while it runs (polled from /proc); a process
    still running after ``timeout`` seconds is killed."""
    most, deadline = 0, time.time() + timeout
    while proc.poll() is None:
        if time.time() > deadline:
            proc.kill()
            break
        seen, frontier = set(), [proc.pid]
        while frontier:
            kids = children(frontier.pop())
            seen.update(kids)
            frontier.extend(kids)
        trails = 0
        for pid in seen:
            try:
                trails += b"tuning.trail.server" in open(f"/proc/{pid}/cmdline", "rb").read()
            except OSError:
                pass
        most = max(most, trails)
        time.sleep(0.2)   # a worker's own trail process would live for seconds: seen at this pace
    return most


def _states(project) -> list:
    """The states of t-P1.2's trials so far; none before the sweep has created the study (its journal file comes
    first, the study's record after it)."""
    if not (project / ".optuna" / "t-P1.2.journal").exists():
        return []
    try:
        return [t.state for t in load("t-P1.2").trials]
    except KeyError:
        return []


def _sigkill_mid_trial(proc: subprocess.Popen, project, complete: int, poll: float) -> list[int] | None:
    """SIGKILL the sweep ``proc`` once ``complete`` trials of t-P1.2 are COMPLETE and one is RUNNING; its child
    processes as they were just before the kill, or None when it ended first (180 s at most)."""
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        time.sleep(poll)
        states = _states(project)
        if states.count(TrialState.COMPLETE) >= complete and TrialState.RUNNING in states:
            held = children(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)
            return held
    return None


def test_kill_mid_trial_then_restart_completes_budget(project):
    # 12 trials: the kill waits for 2 COMPLETE and one RUNNING; the small study's trials are quick, so a shorter
    # budget could end between two polls (as the Ctrl-C test's 40 trials did once in CI)
    proc = subprocess.Popen([sys.executable, "-m", "tuning.sweep", "--phase", "P1.2", "--trials", "12",
                             "--no-progress"], cwd=project, env=env_for(project),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    loggers = _sigkill_mid_trial(proc, project, complete=2, poll=0.2)   # the sweep's MLflow logger process
    proc.wait(timeout=30)
    assert loggers is not None, proc.stderr.read().decode()[-2000:]
    assert loggers, "a one-worker sweep writes its trials' runs from one logger process"
    gone = time.time() + 10
    while time.time() < gone and any(alive(pid) for pid in loggers):
        time.sleep(0.2)
    assert not any(alive(pid) for pid in loggers), "the logger process outlived its killed sweep"
    assert len([t for t in load("t-P1.2").trials if t.state == TrialState.COMPLETE]) < 12

    out = run_here(project, "tuning.sweep", "--phase", "P1.2", "--trials", "12", "--json", "--no-progress")
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["trials_complete"] == 12
    _assert_consistent("t-P1.2", 12)
    assert [t for t in load("t-P1.2").trials if t.state == TrialState.FAIL], "the killed trial is failed and retried"
    from tuning.trail.tracking import client, search_all
    mlc = client()
    sweeps = search_all(mlc, [mlc.get_experiment_by_name("3A-P1.2").experiment_id], "tags.run_kind = 'sweep'")
    assert sorted(r.info.status for r in sweeps) == ["FINISHED", "KILLED"]


def test_two_workers_complete_the_budget_without_duplicates(project):
    """Forked workers (Linux's default) take the coordinator's world and anchor and log through its one trail
    process; the candidate they score first (the authority, enqueued) scores as it does in this process."""
    with open(project / "out.json", "w") as out, open(project / "err.txt", "w") as err:   # no pipe to fill
        proc = subprocess.Popen([sys.executable, "-m", "tuning.sweep", "--phase", "P1.2", "--trials", "6",
                                 "--workers", "2", "--json"], cwd=project, stdout=out, stderr=err,
                                env=dict(env_for(project), SEG3A_WORKER_START="fork"))
        trails = _trail_processes_while(proc)
    assert proc.wait(timeout=240) == 0, (project / "err.txt").read_text()[-2000:]
    assert json.loads((project / "out.json").read_text())["trials_complete"] == 6
    assert trails == 1, "forked workers start no trail process of their own"
    study = load("t-P1.2")
    assert len(study.trials) == 6
    assert proc.pid not in {t.user_attrs["worker"]["pid"] for t in study.trials}   # the workers ran them
    _assert_consistent("t-P1.2", 6)
    parents = {r.data.tags["sweep_run_id"] for r in trial_runs("t-P1.2")}
    assert len(parents) == 1  # the workers share the coordinator's parent run
    from tuning.study.trial_result import TrialResult

    first = next(t for t in study.trials if t.number == 0)
    assert first.user_attrs.get("authority_candidate") is True
    here = TrialResult.from_evaluation(p12_evaluation(project, first.params, seeds=None)[0], "P1.2", "J")
    run = next(r for r in trial_runs("t-P1.2") if r.data.tags["optuna_trial"] == "0")
    assert first.value == here.J
    assert {k: v for k, v in run.data.metrics.items() if k in here.flat_pack} == \
        {k: v for k, v in here.flat_pack.items() if v == v and abs(v) != float("inf")}


def test_a_killed_coordinator_s_workers_leave_their_trials_to_be_run_again(project):
    """SIGKILL of a ``--workers 2`` sweep process: its workers lose the trail they log through. Their trials are not
    theirs to fail: they stay RUNNING, the workers end, and the re-run fails them as a dead worker's and runs each
    again (``retry_of``): the budget completes with nothing lost (a worker used to tell them FAIL, never retried)."""
    with open(project / "err.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "tuning.sweep", "--phase", "P1.2", "--trials", "20",
                                 "--workers", "2", "--no-progress"], cwd=project, stdout=subprocess.DEVNULL,
                                stderr=err, env=dict(env_for(project), SEG3A_WORKER_START="fork"))
        children = _sigkill_mid_trial(proc, project, complete=3, poll=0.1) or []
        workers = [pid for pid in children if b"tuning.trail.server" not in open(f"/proc/{pid}/cmdline", "rb").read()]
        proc.wait(timeout=30)
    assert workers, (project / "err.txt").read_text()[-2000:]
    gone = time.time() + 60
    while time.time() < gone and any(alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not any(alive(pid) for pid in workers), "a worker outlived its killed sweep"
    left = load("t-P1.2").trials
    assert not [t for t in left if t.state == TrialState.FAIL], "a worker failed a trial it did not fail"
    assert [t for t in left if t.state == TrialState.RUNNING], "the killed sweep's trials stay RUNNING"
    out = run_here(project, "tuning.sweep", "--phase", "P1.2", "--trials", "20", "--json", "--no-progress")
    assert out.returncode == 0, out.stderr[-2000:]
    _assert_consistent("t-P1.2", 20)   # each trial left RUNNING was failed and run again, once


def test_workers_of_a_multi_seed_study_score_every_seed(project, monkeypatch):
    """Spawned workers (``SEG3A_WORKER_START=spawn``, the default off Linux) get the sweep's config: the study's
    seeds, not the first one only (a worker started with ``--seed <first>`` was refused by the study created with
    all of them)."""
    monkeypatch.setenv("SEG3A_WORKER_START", "spawn")
    (project / "studies" / "two.yaml").write_text((project / "studies" / "P1.2.yaml").read_text().replace(
        "seeds: [42]", "seeds: [42, 7]").replace("study: t-P1.2", "study: t-two"))
    out = run_module(project, "tuning.sweep", "--phase", "studies/two.yaml", "--trials", "3", "--workers", "2",
                     "--json", "--no-progress", "--reports", "0")
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout)["trials_complete"] == 3
    complete = [t for t in load("t-two").trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3 and all(t.user_attrs["result"]["seeds"] == [42, 7] for t in complete)


@pytest.mark.parametrize("sig, workers", [(signal.SIGINT, "1"), (signal.SIGTERM, "1"), (signal.SIGTERM, "2")],
                         ids=["ctrl-c", "group-sigterm", "group-sigterm-workers"])
def test_ctrl_c_ends_the_sweep_with_one_line_and_every_told_trial_keeps_its_run(project, sig, workers):
    """Ctrl-C reaches the whole process group, and so does SIGTERM from ``timeout`` or a container's stop: the
    sweep exits 130 (143) with one coded line (its ``--workers`` processes add none), its trail process (which
    ignores both) logs what it was sent, ends the sweep's run and ends, and no COMPLETE trial lacks its run."""
    from engine.cli.wrap import E_INTERRUPTED, E_TERMINATED

    status, line = (130, f"{E_INTERRUPTED}: interrupted") if sig == signal.SIGINT else \
        (143, f"{E_TERMINATED}: terminated (SIGTERM)")
    # 400 trials: the small study's candidates repeat policies whose scores the sweep reuses, so 40 of them could end
    # before the signal lands (a CI run saw the sweep exit 0 with the SIGTERM arriving in its interpreter's shutdown)
    proc = subprocess.Popen([sys.executable, "-m", "tuning.sweep", "--phase", "P1.2", "--trials", "400",
                             "--workers", workers, "--no-progress"], cwd=project, env=env_for(project),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline, trail = time.time() + 180, []
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if _states(project).count(TrialState.COMPLETE) >= 3:
                trail = children(proc.pid)
                os.killpg(proc.pid, sig)   # what a terminal's Ctrl-C does to the foreground group; timeout's SIGTERM
                break
        proc.wait(timeout=120)   # a stopped worker is killed 30 s after its SIGTERM at the latest (stop_workers)
    finally:   # a sweep that did not end is not left behind, nor are its workers and trail process
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = proc.stderr.read().decode()
    assert trail, "a running sweep has its trail process"
    assert proc.returncode == status and err.strip().splitlines() == [line], err[-2000:]
    gone = time.time() + 10
    while time.time() < gone and any(alive(pid) for pid in trail):
        time.sleep(0.2)
    assert not any(alive(pid) for pid in trail), "the trail process outlived its interrupted sweep"
    complete = [t for t in load("t-P1.2").trials if t.state == TrialState.COMPLETE]
    assert 3 <= len(complete) < 400
    runs = {r.info.run_id: r for r in trial_runs("t-P1.2")}
    for t in complete:
        assert runs[t.user_attrs["result"]["mlflow_run_id"]].info.status == "FINISHED"
    from tuning.trail.tracking import client, search_all
    mlc = client()
    sweeps = search_all(mlc, [mlc.get_experiment_by_name("3A-P1.2").experiment_id], "tags.run_kind = 'sweep'")
    assert [r.info.status for r in sweeps] == ["FAILED"], "the trail process outlived the interrupt to close it"


def test_a_bad_worker_start_method_is_a_usage_error(project):
    env = dict(env_for(project), SEG3A_WORKER_START="thread")
    out = subprocess.run([sys.executable, "-m", "tuning.sweep", "--phase", "P1.2", "--trials", "2", "--workers",
                          "2"], cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == "E3A_TUN_050_USAGE: SEG3A_WORKER_START='thread': expected fork or spawn"


def test_workers_report_their_chain_caches_to_the_sweeps_summary(project):
    """Each ``--workers`` process runs its trials on a chain cache of its own: the sweep's summary lists each
    worker's report, and the states they computed again for want of room (a pinned 1-byte budget keeps nothing)
    reach the sweep's totals and its one-line warning."""
    from tuning.study.cache_budget import recomputation_note

    env = dict(env_for(project), SEG3A_WORKER_START="fork", SEG3A_CHAIN_CACHE_BYTES="1")
    out = subprocess.run([sys.executable, "-m", "tuning.sweep", "--phase", "P1.2", "--trials", "3", "--workers", "2",
                          "--json", "--no-progress", "--reports", "0"], cwd=project, env=env, capture_output=True,
                         text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    cache = json.loads(out.stdout)["chain_cache"]
    assert [w["worker"] for w in cache["workers"]] == [0, 1]
    assert {w["budget_bytes"] for w in cache["workers"]} == {1} and cache["budget_bytes"] == 1
    workers_recomputed = sum(w["recomputed_states"] for w in cache["workers"])
    assert workers_recomputed > 0, "the workers' trials computed their states again: nothing fits in 1 byte"
    assert cache["total_recomputed_states"] == cache["recomputed_states"] + workers_recomputed
    assert "in 2 worker processes" in recomputation_note(cache)


def test_a_sweep_whose_trials_are_pruned_stops_at_its_cap_and_says_so(project):
    """A single-stage study's budget counts COMPLETE trials: a median pruner that prunes every trial after its
    start-up ones would keep the sweep asking forever. It stops once ``max_pruned`` trials are PRUNED, exits 0,
    and its summary and text say it stopped short."""
    from tests.tuning.conftest import SMALL_STUDY

    (project / "studies" / "cap.yaml").write_text(
        SMALL_STUDY.replace("study: t-P1.2", "study: t-cap").replace("seeds: [42]", "seeds: [42, 7]")
        .replace("trials: 6", "trials: 20") + "pruner: {name: median, n_startup_trials: 1, n_warmup_steps: 0, "
                                              "max_pruned: 2}\n")
    out = run_here(project, "tuning.sweep", "--phase", "studies/cap.yaml", "--json", "--no-progress", "--reports", "0")
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads(out.stdout)
    assert summary["pruned_cap"] == 2 and summary["trials_pruned"] == 2 and summary["stopped_by_pruned_cap"]
    assert summary["trials_complete"] < 20
    states = [t.state for t in load("t-cap").trials]
    assert states.count(TrialState.PRUNED) == 2 and TrialState.RUNNING not in states
    again = run_here(project, "tuning.sweep", "--phase", "studies/cap.yaml", "--no-progress", "--reports", "0")
    assert again.returncode == 0, again.stderr[-2000:]
    assert len(load("t-cap").trials) == len(states), "a re-run at the cap asks nothing more"
    assert "stopped short of the budget: 2 PRUNED trials reached the study's cap" in again.stdout


def test_an_interrupt_while_the_sweep_closes_ends_its_parent_run(project, monkeypatch, capsys):
    """Ctrl-C or SIGTERM after the last trial, while the close writes the best trials' reports: the sweep's
    parent run ends FAILED (it stayed RUNNING), and the command is the signal's one coded line."""
    import tuning.sweep.close as close
    from tuning.common.errors import invoke
    from tuning.sweep.__main__ import main
    from tuning.trail.tracking import client, search_all

    def interrupted(sweep, trail):
        raise KeyboardInterrupt

    monkeypatch.setattr(close, "attach_reports", interrupted)
    assert invoke(main, ["--phase", "P1.2", "--trials", "3", "--no-progress"]) == 130
    assert capsys.readouterr().err.strip().endswith("E3A_CLI_002_INTERRUPTED: interrupted")
    assert sum(t.state == TrialState.COMPLETE for t in load("t-P1.2").trials) == 3
    mlc = client()
    sweeps = search_all(mlc, [mlc.get_experiment_by_name("3A-P1.2").experiment_id], "tags.run_kind = 'sweep'")
    assert [r.info.status for r in sweeps] == ["FAILED"]


@pytest.mark.parametrize("codes, done, failure, note", [
    ([0, 0], True, None, None),
    ([0, -9], True, None, "1 worker process(es) killed (signal 9); the others finished the budget"),
    ([0, -9], False, "1 worker process(es) failed (exit -9)", None),
    ([2, 0], True, "1 worker process(es) failed (exit 2)", None),
    ([2, -15], True, "2 worker process(es) failed (exit 2)", None),
])
def test_a_killed_worker_fails_the_sweep_only_when_the_budget_is_left_undone(codes, done, failure, note):
    """One forked worker SIGKILLed: the others retried its trial and finished the budget, yet the sweep failed
    (no summary, no close); now it closes and says so. A worker's coded failure still fails the sweep."""
    from tuning.sweep.pool import workers_outcome

    got_failure, got_note = workers_outcome(codes, done)
    assert got_failure == failure and (got_note or "").startswith(note or "")
    assert (got_note is None) == (note is None)
