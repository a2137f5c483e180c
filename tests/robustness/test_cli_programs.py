"""Every CLI runs as a program (``python -m ...`` in a subprocess, with a timeout) on a refusal path and on a
success path, and exits (issue 19 item 1: tests that call ``main(argv)`` take another exit path than a program).

:data:`WHERE` names the test that runs each CLI as a program; a CLI missing from it fails
:func:`test_every_cli_runs_as_a_program_somewhere`. The cheap ones are here, on one small project.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.tuning.conftest import REPO, env_for, make_project, run_module, seed_store

# CLI -> (its refusal, its success) as programs; "here" = this module
WHERE = {
    "engine run": ("tests/engine/test_cli.py", "tests/engine/test_cli.py"),
    "engine verify": ("tests/robustness/test_verify_spec.py", "tests/robustness/test_verify_spec.py"),
    "engine author": ("tests/engine/test_author_cli.py", "tests/engine/test_author_cli.py"),
    "engine bench": ("here", "here"),
    "author": ("here", "here"),
    "baseline": ("tests/metrics/test_cli_reports.py", "tests/metrics/test_cli_reports.py"),
    "bench": ("here", "tests/tuning/test_bench.py"),
    "bench_distributed": ("here", "tests/tuning/test_distributed_sweep.py"),
    "campaign": ("here", "here"),
    "certify": ("here", "here"),
    "compare": ("tests/metrics/test_cli_reports.py", "tests/metrics/test_cli_reports.py"),
    "dashboard": ("here", "here"),
    "freeze": ("tests/tuning/test_sweep_e2e.py", "tests/tuning/test_sweep_e2e.py"),
    "ladder": ("here", "here"),
    "local_services": ("here", "here"),
    "promote": ("tests/tuning/test_sweep_e2e.py", "tests/tuning/test_sweep_e2e.py"),
    "prune": ("tests/tuning/test_sweep_e2e.py", "tests/tuning/test_sweep_e2e.py"),
    "rank": ("here", "tests/tuning/test_sweep_e2e.py"),
    "report": ("tests/metrics/test_cli_reports.py", "tests/metrics/test_cli_reports.py"),
    "results": ("tests/tuning/test_sweep_e2e.py", "tests/tuning/test_sweep_e2e.py"),
    "runtime": ("tests/metrics/test_cli_reports.py", "tests/metrics/test_cli_reports.py"),
    "sweep": ("tests/tuning/test_study_spec.py", "tests/tuning/test_crash_and_workers.py"),
    "verify_authority": ("here", "tests/robustness/test_promotion_drill.py"),
}


def test_every_cli_runs_as_a_program_somewhere():
    from tests.tuning.test_one_house import CLI_MODULES

    assert set(CLI_MODULES) | {"engine run", "engine verify", "engine author", "engine bench"} == set(WHERE)
    for cli, places in WHERE.items():
        names = [f'"{cli.split()[-1]}"'] if cli.startswith("engine") else [f'"tuning.{cli}"', f'"{cli}"']
        for place in places:
            text = Path(__file__).read_text() if place == "here" else (REPO / place).read_text()
            assert any(n in text for n in names), (cli, place)


@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("programs") / "proj")
    seed_store(root)
    return root


def _refused(proc: subprocess.CompletedProcess, code: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(code + ":"), proc.stderr[-800:]
    return lines[0]


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-800:]
    return proc.stdout


def test_ladder_program(proj):
    before = (proj / "policies" / "ladder.yaml").read_bytes()
    _refused(run_module(proj, "tuning.ladder", "record", "--phase", "P1.2", "--decision", " ", timeout=60),
             "E3A_TUN_050_USAGE")
    assert (proj / "policies" / "ladder.yaml").read_bytes() == before
    assert "FROZEN_CERTIFIED_BPLUS" in _ok(run_module(proj, "tuning.ladder", "show", timeout=60))
    _refused(run_module(proj, "tuning.ladder", "show", "--policies", "nowhere", timeout=60), "E3A_TUN_050_USAGE")


def test_rank_refused_as_a_program(proj, monkeypatch, capsys):
    _refused(run_module(proj, "tuning.rank", "--phase", "P1.2", "--top", "-1", timeout=60), "E3A_TUN_050_USAGE")
    _refused(run_module(proj, "tuning.rank", "--phase", "P1.2", "--pareto", timeout=60), "E3A_TUN_022_RUN_NOT_FOUND")
    # the hints of that refusal, through the programs' own wrapper in this process (one MLflow import, not three)
    from mlflow import MlflowClient
    from tuning.common.errors import invoke
    from tuning.rank import main as rank

    monkeypatch.chdir(proj)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{proj / 'mlruns' / 'mlflow.db'}")

    def refused(*argv: str) -> str:
        capsys.readouterr()
        assert invoke(rank, list(argv)) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("E3A_TUN_022_RUN_NOT_FOUND:"), line
        return line

    MlflowClient(f"sqlite:///{proj / 'mlruns' / 'mlflow.db'}").create_experiment("campaign-3A-P7")
    # only a campaign swept P7 here: the refusal says where its trials are
    assert refused("--phase", "P7").endswith("; campaign-3A-P7 holds the campaign's: add --campaign")
    assert "holds" not in refused("--phase", "P1.3", "--campaign")   # nothing of P1.3 anywhere: no hint
    MlflowClient(f"sqlite:///{proj / 'mlruns' / 'mlflow.db'}").create_experiment("3A-P4-w0123456789ab")
    assert refused("--phase", "P4").endswith("; 3A-P4-w0123456789ab holds another world's: add --world DIR")
    # only another world's campaign swept P5 here (helper 41: no hint without flags): both flags
    MlflowClient(f"sqlite:///{proj / 'mlruns' / 'mlflow.db'}").create_experiment("campaign-3A-P5-w0123456789ab")
    assert refused("--phase", "P5").endswith("; campaign-3A-P5-w0123456789ab holds another world's campaign sweeps: "
                                             "add --world DIR --campaign")


def test_certify_program(proj, tmp_path, monkeypatch, capsys):
    _refused(run_module(proj, "tuning.certify", "--seeds", "42,42", timeout=60), "E3A_TUN_030_CERTIFY_INPUT")
    out = json.loads(_ok(run_module(proj, "tuning.certify", "--seeds", "42", "--json", "--no-progress",
                                    "--require-certified", timeout=120)))   # the shipped authority: certified
    assert out["seeds"] == [42] and out["verdict"] in {"PASS_BPLUS", "PASS_B"} and out["certified"] is True
    # the authored baseline is not (FAIL_REALISM on seed 42): reported, then one coded line and exit 2 as a gate
    from tuning.author import main as author
    from tuning.certify import main as certify
    from tuning.common.errors import invoke

    own = make_project(tmp_path / "own")   # a store of its own: the module's proj keeps no record of this authority
    seed_store(own)
    monkeypatch.chdir(own)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env_for(own)["MLFLOW_TRACKING_URI"])
    assert invoke(author, ["--into", str(tmp_path / "authored")]) == 0
    capsys.readouterr()
    argv = ["--policies", str(tmp_path / "authored"), "--seeds", "42", "--no-progress"]
    assert invoke(certify, argv) == 0 and "certified false" in capsys.readouterr().out   # a measurement: exit 0
    assert invoke(certify, argv + ["--require-certified"]) == 2
    printed = capsys.readouterr()
    assert "certified false" in printed.out
    assert printed.err.strip().startswith("E3A_TUN_031_NOT_CERTIFIED: not certified on seeds 42: verdict FAIL_REALISM")


def test_verify_authority_on_a_fresh_checkout_reads_and_creates_no_store(tmp_path, monkeypatch, capsys):
    """A fresh clone has no ``mlruns/mlflow.db`` (mlruns/ is not committed): verifying the shipped authority says
    its MLflow records are absent (E3A_TUN_044) and leaves the store uncreated; an authority with no promotion
    (no lineage run) agrees with no store at all."""
    import shutil
    from tuning.common.errors import invoke
    from tuning.verify_authority import main as verify

    fresh = make_project(tmp_path / "fresh")   # its policies/: no lineage
    shipped = fresh / "shipped"
    shutil.copytree(REPO / "policies", shipped, ignore=shutil.ignore_patterns(".*"))
    monkeypatch.chdir(fresh)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)   # the working directory's store
    capsys.readouterr()   # (the program's own runs: test_author_and_verify_authority_programs)
    assert invoke(verify, ["--policies", "shipped"]) == 2
    refused = capsys.readouterr()
    assert refused.err.startswith("E3A_TUN_044_AUTHORITY_NOT_IN_STORE: ")
    assert "no MLflow store here" in refused.err and "tuning.campaign replay" in refused.err
    assert refused.out.count("absent  ") == 3 and "agree   ladder step" in refused.out
    assert invoke(verify, []) == 0
    agreed = capsys.readouterr().out
    assert "DIFFER" not in agreed and "absent" not in agreed and "no MLflow store here" in agreed, agreed
    from tuning.certify import main as certify
    from tuning.promote import main as promote

    for main, argv in ((promote, ["deadbeef"]), (certify, ["--run", "deadbeef"])):   # a lookup creates no store
        assert invoke(main, argv) == 2
        assert capsys.readouterr().err.startswith("E3A_TUN_022_RUN_NOT_FOUND: MLflow run deadbeef not found: no MLflow store")
    assert not (fresh / "mlruns").exists()


def test_authority_commands_refuse_a_folder_that_is_no_authority_and_leave_nothing_in_it(tmp_path, capsys):
    """verify_authority, freeze and ladder show pointed at a world folder (no policy files): one coded line each, and
    no lock file left in the folder (the authority lock was taken before the policy files were read)."""
    from tuning.common.errors import invoke
    from tuning.freeze import main as freeze
    from tuning.ladder import main as ladder
    from tuning.verify_authority import main as verify

    world = tmp_path / "my_world"
    world.mkdir()
    (world / "outlets.csv").write_text("merchant_id,legal_country_iso\n1,US\n")
    for main, argv in ((verify, []), (freeze, []), (ladder, ["show"])):
        capsys.readouterr()
        assert invoke(main, [*argv, "--policies", str(world)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("E3A_POL_004_POLICY_MISSING: ") and "not an authority folder" in err, err
    assert sorted(p.name for p in world.iterdir()) == ["outlets.csv"]


def test_author_and_verify_authority_programs(proj, tmp_path, capsys):
    import shutil

    folder = tmp_path / "authority"
    shutil.copytree(REPO / "policies", folder, ignore=shutil.ignore_patterns(".*"))   # the lineage included
    refused = run_module(proj, "tuning.verify_authority", "--policies", str(folder), timeout=60)
    line = _refused(refused, "E3A_TUN_044_AUTHORITY_NOT_IN_STORE")   # this store holds none of its runs: a fresh clone's
    assert "holds no record of run" in line and "tuning.campaign replay" in line and "DIFFER" not in refused.stdout
    assert refused.stdout.count("absent  ") == 5 and "agree   lineage" in refused.stdout
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    world = tmp_path / "my_world"
    world.mkdir()
    from tuning.author import main as author
    from tuning.common.errors import invoke

    capsys.readouterr()
    assert invoke(author, ["--world", str(world), "--into", str(world)]) == 2   # the wrapper programs run through
    assert capsys.readouterr().err.startswith("E3A_TUN_050_USAGE: ")
    assert list(world.iterdir()) == []   # its policy files would have become the world's own
    _refused(run_module(proj, "tuning.author", "--into-authority", "--reason", "restart", "--policies", str(folder),
                        timeout=60), "E3A_TUN_024_AUTHORITY_FROZEN")
    assert {p.name: p.read_bytes() for p in folder.iterdir() if p.name in before} == before
    out = _ok(run_module(proj, "tuning.author", "--into-authority", "--reason", "restart", "--reopen", "a test",
                         "--policies", str(folder), timeout=120))
    assert "installed the authored baseline" in out
    agreed = _ok(run_module(proj, "tuning.verify_authority", "--policies", str(folder), timeout=60))
    assert "DIFFER" not in agreed and "agree   ladder step" in agreed   # an authored install: no run, no alias


def test_campaign_program(proj, tmp_path):
    import shutil

    line = _refused(run_module(proj, "tuning.campaign", "run", "--file", "missing.yaml", timeout=60), "E3A_TUN_060_CAMPAIGN")
    assert line.endswith("(run from the project root, or pass --file PATH and --studies-dir DIR)")
    folder = tmp_path / "authority"
    shutil.copytree(REPO / "policies", folder, ignore=shutil.ignore_patterns(".*"))
    (tmp_path / "mini.yaml").write_text("campaign: mini\nsteps:\n  - {author: true}\n"
                                        "  - {phase: P0, baseline: {seed: 42}}\n")
    out = json.loads(_ok(run_module(proj, "tuning.campaign", "run", "--file", str(tmp_path / "mini.yaml"),
                                    "--policies", str(folder), "--no-progress", "--json", "--reopen", "program test",
                                    timeout=180)))   # a copy of the committed, frozen authority: re-authoring it
    # is a recorded decision (without --reopen: E3A_TUN_024, tests/tuning/test_campaign.py)
    assert [s["phase"] for s in out["steps"]] == ["author", "P0"]


def test_dashboard_program(proj):
    _refused(run_module(proj, "tuning.dashboard", "--phase", "P9", timeout=60), "E3A_TUN_011_STUDY_NOT_FOUND")
    import optuna
    from tuning.storage.stores import open_storage

    if "t-P1.2" not in optuna.get_all_study_names(open_storage(f"journal:{proj / '.optuna' / 't-P1.2.journal'}", "")):
        optuna.create_study(study_name="t-P1.2", storage=open_storage(f"journal:{proj / '.optuna' / 't-P1.2.journal'}",
                                                                      "t-P1.2"))   # the study the dashboard serves
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "tuning.dashboard", "--phase", "P1.2", "--port", str(port)],
                              cwd=proj, env=env_for(proj), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline, status = time.monotonic() + 90, None
        while status is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    status = r.status
            except OSError:
                time.sleep(0.3)
        assert status == 200, server.stderr.read() if server.poll() is not None else "no answer"
        # Ctrl-C right after a request (wsgiref may still be finishing it): the server stops, the program ends
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=30)
        assert server.returncode == 0 and "Traceback" not in err, err
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_local_services_program(tmp_path):
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    (cluster / "state.json").write_text(json.dumps({"optuna_storage": "postgresql://u@127.0.0.1:1/optuna",
                                                    "mlflow_tracking_uri": "http://127.0.0.1:1", "mlflow_pid": 0,
                                                    "pgdata": str(tmp_path / "pg")}))
    _refused(run_module(tmp_path, "tuning.local_services", "restart", "--dir", str(cluster), timeout=60),
             "E3A_TUN_050_USAGE")   # not a command
    out = run_module(tmp_path, "tuning.local_services", "status", "--dir", str(cluster), timeout=60)
    assert out.returncode == 1 and out.stdout == "" and "not running" in out.stderr   # its servers are gone
    # start/status/eval/stop on real servers: test_distributed_sweep runs the README's sequence from a shell
    _ok(run_module(tmp_path, "tuning.local_services", "stop", "--dir", str(tmp_path / "none"), timeout=60))


def test_bench_refusals_as_programs(tmp_path):
    _refused(run_module(tmp_path, "tuning.bench", "--sweep-trials", "0", timeout=60), "E3A_TUN_050_USAGE")
    _refused(run_module(tmp_path, "tuning.bench_distributed", "--workers", "0", timeout=60), "E3A_TUN_050_USAGE")
    assert not list(tmp_path.iterdir())


def test_engine_bench_programs(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def engine(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "engine", *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=180)

    _refused(engine("bench", "--repeats", "0"), "E3A_CLI_001_USAGE")
    doc = json.loads(_ok(engine("bench", "--json", "--repeats", "1", "--scale", "1")))
    assert doc
