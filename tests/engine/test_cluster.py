"""The engine's merchant partitions on a Dask LocalCluster publish the in-process run, byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.core.errors import EngineError
from tests.engine.conftest import ROOT

pytest.importorskip("dask.distributed")


def _files(run_root: Path) -> dict[str, bytes]:
    """Every published file except reports/ (wall-clock timings live there, outside the bundle)."""
    return {str(f.relative_to(run_root)): f.read_bytes() for f in sorted(run_root.rglob("*"))
            if f.is_file() and "reports" not in f.relative_to(run_root).parts}


def _run(run_root: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "engine", "run", "--seed", "42", "--run-root", str(run_root),
                           "--policies", str(ROOT / "policies"), *extra], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_cluster_local_2_publishes_the_in_process_run_byte_for_byte(tmp_path):
    plain, dask_run = _run(tmp_path / "in_process"), _run(tmp_path / "cluster", "--cluster", "local:2")
    assert plain.returncode == 0, plain.stderr[-2000:]
    assert dask_run.returncode == 0, dask_run.stderr[-2000:]
    ours, theirs = _files(tmp_path / "in_process"), _files(tmp_path / "cluster")
    assert any(name.endswith("_passed.flag") for name in ours) and len(ours) > 5
    assert ours.keys() == theirs.keys()
    assert [n for n in ours if ours[n] != theirs[n]] == []


def test_a_threaded_local_cluster_runs_every_partition_as_a_task():
    from dask.distributed import Client, LocalCluster

    from engine.chain.runner import run_chain
    from engine.chain.cluster import DaskMapper
    from engine.policies import PolicySet

    policies = PolicySet.from_dir(ROOT / "policies")
    base = run_chain(policies, 42)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        mapper, seen = DaskMapper(client), []

        def counting(fn, per_task, *shared):
            seen.append(len(per_task))
            return mapper(fn, per_task, *shared)

        split = run_chain(policies, 42, partitions=5, mapper=counting)
    assert seen == [5, 5, 5, 5]  # S3.plan, S3, S4.rounding and S4: one task per merchant partition
    assert split.flag == base.flag and split.universe_doc == base.universe_doc
    for name, table in base.tables.items():
        assert split.tables[name].equals(table), name


@pytest.mark.parametrize("spec, says", [
    ("tcp://127.0.0.1:99999", "Port out of range"), ("tcp://[::1:8786", "Invalid IPv6 URL"),
    ("tcp://host:abc", "Port could not be cast")])
def test_a_cluster_address_whose_port_does_not_parse_is_one_coded_line(spec, says):
    """A port past 65535 or a broken IPv6 form was a ValueError traceback from the connection check."""
    from engine.chain.cluster import parse_cluster

    with pytest.raises(EngineError) as exc:
        parse_cluster(spec)
    assert exc.value.one_line().startswith(f"E3A_CLI_001_USAGE: --cluster {spec!r}: ") and says in exc.value.cause


@pytest.mark.parametrize("spec", ["local:0", "local:x", "http://host:8786", "scheduler"])
def test_a_bad_cluster_address_is_one_coded_line(spec):
    from engine.chain.cluster import parse_cluster

    with pytest.raises(EngineError) as exc:
        parse_cluster(spec)
    assert exc.value.one_line().startswith("E3A_CLI_001_USAGE: --cluster must be")


_INTERRUPTED_CLUSTER = """
import sys, time
from engine.chain.cluster import dask_mapper
from engine.cli.wrap import invoke

def main(argv):
    with dask_mapper("local:2") as mapper:
        assert mapper.client.submit(sum, [1, 2]).result() == 3
        print("up", flush=True)
        time.sleep(120)

sys.exit(invoke(main))
"""


def test_ctrl_c_to_the_group_of_a_cluster_command_is_its_one_coded_line():
    """A terminal's Ctrl-C reaches every process of the group, the cluster's workers too: they ignore it (Dask's
    worker preload) and the command's own line is all that is printed (each worker printed a traceback)."""
    import signal

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", _INTERRUPTED_CLUSTER], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "up"
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130 and err.strip() == "E3A_CLI_002_INTERRUPTED: interrupted", err[-3000:]
