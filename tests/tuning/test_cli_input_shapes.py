"""Programs that read a file someone else wrote (a POPT.0 report, a P0 metrics pack, a local cluster's state.json)
or a port number refuse a wrong shape or value with one coded line and a non-zero exit, never a traceback nor a
decision made on garbage; ``purge`` deletes nothing from a folder that no ``start`` made."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from tests.tuning.conftest import run_here, run_module

ARTIFACTS = "E3A_TUN_023_RUN_ARTIFACTS_INVALID"
USAGE = "E3A_TUN_050_USAGE"


def _cli(root: Path, module: str, *args: str, program: bool = False):
    """``python -m module args`` in ``root``: as a program (one case per command), else in process."""
    return run_here(root, module, *args, program=program, timeout=120)


def _refused(proc, code: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(code + ":"), proc.stderr[-800:]
    assert "Traceback" not in proc.stderr
    return lines[0]


def _set(doc: dict, dotted: str, value) -> dict:
    doc = copy.deepcopy(doc)
    node = doc
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


# --- python -m tuning.runtime closure -------------------------------------------------------------------------

def _popt0(run_id: str) -> dict:
    from engine import STATES, popt0_table

    table = popt0_table({s: 0.01 * (i + 1) for i, s in enumerate(STATES)}, window_elapsed_s=0.5)
    evidence = {"s6_status": "PASS", "s6_overall_status": "PASS", "s6_issues_error": 0, "s7_status": "PASS",
                "s7_passed_flag_present": True, "s5_pairs_count_conservation_violations": 0, "identity_match": True}
    return {"phase": "POPT.0", "run": {"run_id": run_id, "seed": 42}, **table, "evidence": evidence}


def _closure(tmp_path: Path, base: dict, cand: dict, program: bool = False):
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "cand.json").write_text(json.dumps(cand))
    return _cli(tmp_path, "tuning.runtime", "closure", "base.json", "cand.json", "--out", "out", program=program)


def test_closure_of_well_formed_reports_decides(tmp_path):
    done = _closure(tmp_path, _popt0("b1"), _popt0("c1"), program=True)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "decision: **UNLOCK_P0**" in done.stdout
    assert (tmp_path / "out" / "segment3a_popt1_closure_c1.json").is_file()


@pytest.mark.parametrize("side", ["cand", "base"])
@pytest.mark.parametrize("field, value", [
    ("timing", []),
    ("run", []),
    ("timing.state_table", [1, 2]),
    ("timing.state_table", {"S0": 1}),
    ("timing.segment_elapsed_s", "abc"),
    ("timing.segment_elapsed_s", float("nan")),
    ("timing.segment_elapsed_s", -1.0),
    ("timing.state_table.0.elapsed_s", "1.5"),
    ("timing.state_table.0.elapsed_s", float("inf")),
    ("timing.log_window", [0.5]),
    ("evidence", [1]),
    ("run.run_id", "../escape"),
])
def test_closure_refuses_a_malformed_popt0_report(tmp_path, side, field, value):
    docs = {"base": _popt0("b1"), "cand": _popt0("c1")}
    docs[side] = _set(docs[side], field, value)
    program = (side, field, value) == ("cand", "timing", [])   # one case as a program, the rest in process
    line = _refused(_closure(tmp_path, docs["base"], docs["cand"], program), ARTIFACTS)
    assert f"{side}.json" in line and field.replace(".0.", "[0].") in line, line
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "escape").exists()


# --- python -m tuning.compare ---------------------------------------------------------------------------------

def _pack(run_id: str) -> dict:
    return {"baseline_authority": {"run_id": run_id, "seed": 42},
            "metrics": {"s2": {"top1_share_median_multi_tz": 0.5, "hhi_median_multi_tz": "nan"},
                        "s1": {"pairs_total": 10, "site_count_curve": [{"bucket": "1-2", "pairs": 3}]},
                        "s4": {"count_conservation_all_pairs": True, "top1_share_p75": None}},
            "gates": {"hard": {"3A-V01": {"value": 0.5, "threshold": 0.85, "status": "PASS"}}, "stretch": {},
                      "fidelity": {"3A-F01": {"value": 0, "threshold": 0, "status": "PASS"}}},
            "verdict": "PASS_B", "thresholds": {}, "paths": {}}


def _compare(tmp_path: Path, base: dict, cand: dict, program: bool = False):
    (tmp_path / "base.json").write_text(json.dumps(base))
    (tmp_path / "cand.json").write_text(json.dumps(cand))
    return _cli(tmp_path, "tuning.compare", "base.json", "cand.json", "--out", "out", program=program)


def test_compare_of_well_formed_packs(tmp_path):
    done = _compare(tmp_path, _pack("b1"), _pack("c1"), program=True)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert (tmp_path / "out" / "segment3a_p0_candidate_vs_baseline_c1.json").is_file()


@pytest.mark.parametrize("side", ["cand", "base"])
@pytest.mark.parametrize("field, value", [
    ("gates.fidelity", [1]),
    ("gates.hard.3A-V01", 5),
    ("gates.hard.3A-V01.status", 1),
    ("verdict", 5),
    ("verdict", "MAYBE"),
    ("metrics.s2", "x"),
    ("metrics.s2.top1_share_median_multi_tz", "abc"),
    ("metrics.s2.top1_share_median_multi_tz", [0.5]),
    ("metrics.s1.pairs_total", "abc"),
    ("baseline_authority.run_id", "../escape"),
])
def test_compare_refuses_a_malformed_pack(tmp_path, side, field, value):
    docs = {"base": _pack("b1"), "cand": _pack("c1")}
    docs[side] = _set(docs[side], field, value)
    program = (side, field, value) == ("cand", "gates.fidelity", [1])
    line = _refused(_compare(tmp_path, docs["base"], docs["cand"], program), ARTIFACTS)
    assert f"{side}.json" in line and field in line, line
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "escape").exists()


# --- python -m tuning.local_services (fake folders only: no server is started) ---------------------------------

GOOD_STATE = {"optuna_storage": "postgresql://u@127.0.0.1:1/optuna", "mlflow_tracking_uri": "http://127.0.0.1:1",
              "mlflow_pid": 0, "pgdata": "/nonexistent/pg"}


@pytest.mark.parametrize("action", ["status", "stop", "purge"])
@pytest.mark.parametrize("text", ["{", "{}", "[]", "\xff", json.dumps({**GOOD_STATE, "mlflow_pid": "12"}),
                                  json.dumps({**GOOD_STATE, "pgdata": 5})])
def test_local_services_refuse_a_broken_state_file(tmp_path, action, text):
    cluster = tmp_path / "cluster"
    (cluster / "artifacts").mkdir(parents=True)
    (cluster / "state.json").write_bytes(text.encode("latin-1"))
    program = (action, text) == ("status", "{")
    line = _refused(_cli(tmp_path, "tuning.local_services", action, "--dir", str(cluster), program=program), USAGE)
    assert "state file is broken" in line and "delete" in line, line
    assert (cluster / "state.json").read_bytes() == text.encode("latin-1")   # left for the user to look at
    assert (cluster / "artifacts").is_dir()


def test_a_broken_state_file_names_what_it_can(tmp_path):
    cluster = tmp_path / "cluster"
    cluster.mkdir()
    (cluster / "state.json").write_text(json.dumps({"mlflow_pid": 4242, "pgdata": "/srv/pg"}))
    line = _refused(_cli(tmp_path, "tuning.local_services", "stop", "--dir", str(cluster)), USAGE)
    assert "optuna_storage" in line and "4242" in line and "pg_ctl -D /srv/pg stop" in line, line


def test_purge_refuses_a_folder_start_did_not_make(tmp_path):
    user = tmp_path / "user"
    (user / "artifacts").mkdir(parents=True)
    (user / "artifacts" / "model.bin").write_text("precious")
    (user / "mlflow.log").write_text("mine")
    line = _refused(_cli(tmp_path, "tuning.local_services", "purge", "--dir", str(user), program=True), USAGE)
    assert "not a local cluster folder" in line and "nothing purged" in line, line
    assert (user / "artifacts" / "model.bin").read_text() == "precious" and (user / "mlflow.log").is_file()


def test_purge_of_a_stopped_and_a_started_cluster_folder(tmp_path, monkeypatch):
    import tuning.local_services.services as ls

    monkeypatch.setattr(ls, "ROOT_PGDATA", tmp_path / "var")   # as root the database lives there
    stopped = tmp_path / "stopped"      # what stop leaves: the database, artifacts and log, no state.json
    (stopped / "artifacts").mkdir(parents=True)
    (stopped / "mlflow.log").write_text("log")
    pgdata = ls.pg_data_dir(stopped.resolve())
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("16\n")
    ls.purge(stopped)
    assert not pgdata.exists() and not (stopped / "artifacts").exists() and not (stopped / "mlflow.log").exists()
    started = tmp_path / "started"      # a state.json whose servers are gone (pid 0: no process is signalled)
    (started / "artifacts").mkdir(parents=True)
    (started / "state.json").write_text(json.dumps({**GOOD_STATE, "pgdata": str(tmp_path / "no-pg")}))
    done = run_module(tmp_path, "tuning.local_services", "purge", "--dir", str(started), timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert not (started / "artifacts").exists() and not (started / "state.json").exists()


# --- python -m tuning.dashboard --port ------------------------------------------------------------------------

@pytest.mark.parametrize("port", ["99999", "-1", "0", "65536", "http"])
def test_dashboard_refuses_a_port_out_of_range(tmp_path, port):
    line = _refused(_cli(tmp_path, "tuning.dashboard", "--phase", "P1.2", f"--port={port}", program=port == "99999"),
                    USAGE)
    assert "--port" in line, line
    assert not list(tmp_path.iterdir())


def test_a_cluster_started_again_answers_on_its_ports_so_its_studies_resume(tmp_path):
    """A study records the tracking URI it logs to; every start picked new ports, so after stop and start a kept
    study was refused (its URI answered no more). The ports are the first start's while free, else new ones."""
    import socket

    from tuning.local_services.services import PORTS_FILE, cluster_ports

    first = cluster_ports(tmp_path)
    assert cluster_ports(tmp_path) == first and json.loads((tmp_path / PORTS_FILE).read_text()) == {
        "postgresql": first[0], "mlflow": first[1]}
    with socket.socket() as taken:   # another program holds the MLflow port meanwhile: a free one instead
        taken.bind(("127.0.0.1", first[1]))
        again = cluster_ports(tmp_path)
    assert again[0] == first[0] and again[1] != first[1]
    (tmp_path / PORTS_FILE).write_text("[1, 2]")   # a ports file someone broke: new ports, no traceback
    assert all(0 < p < 65536 for p in cluster_ports(tmp_path))


@pytest.mark.parametrize("repeats", ["0", "1000000000"])
def test_runtime_baseline_refuses_a_repeat_count_out_of_range(tmp_path, repeats):
    """1e9 repeats ran silently until killed (each repeat is a chain); the count is bounded as a campaign's is."""
    from tests.tuning.conftest import make_project

    root = make_project(tmp_path / "proj")
    line = _refused(_cli(root, "tuning.runtime", "baseline", "--repeats", repeats), USAGE)
    assert f"--repeats must be in [1, 10000], not {repeats}" in line


def test_dashboard_on_a_sqlite_storage_without_the_study_creates_no_database(tmp_path):
    """Opening the URL to look for the study created an empty Optuna database (114 KB) where none was."""
    from tests.tuning.conftest import make_project

    root = make_project(tmp_path / "proj")
    db = tmp_path / "new.db"
    line = _refused(_cli(root, "tuning.dashboard", "--phase", "P1.2", "--storage", f"sqlite:///{db}"),
                    "E3A_TUN_011_STUDY_NOT_FOUND")
    assert "no Optuna study" in line and not db.exists()


@pytest.mark.parametrize("written", ["1_0", "\u0663", "\uff15", "0x10", "1e3", ""])
def test_a_seed_or_count_in_other_digits_than_decimal_is_refused(written):
    """``int()`` reads ``1_0`` as 10 and Arabic-Indic or fullwidth digits as numbers; a command line's seed and counts
    are decimal digits, as the catalogue's merchant ids are (which already refused them)."""
    import argparse

    from engine import EngineError, decimal_integer
    from tuning.certify import parse_seeds
    from tuning.common.errors import at_least_one, decimal

    with pytest.raises(argparse.ArgumentTypeError, match="is not an integer"):
        decimal(written)
    with pytest.raises(argparse.ArgumentTypeError, match="is not an integer"):
        at_least_one(written)
    with pytest.raises(EngineError, match="expected comma-separated integers"):
        parse_seeds(f"42,{written or 'x'}")
    assert decimal(" 7 ") == 7 and decimal("+3") == 3 and decimal_integer("-2") == -2
    assert parse_seeds("42, 7") == [42, 7]
