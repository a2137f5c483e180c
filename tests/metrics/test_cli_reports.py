"""The P0 / POPT / report CLIs end to end on the real engine (one authority run; each CLI also as a program)."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.environment import SHARED_ANCHOR, needs_shared
from tuning import compare as compare_cli
import tuning.report.__main__ as report_cli
import tuning.runtime.__main__ as runtime_cli
from tuning.common.errors import run_cli

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def program(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m tuning.<argv[0]> ...`` as a program (it must exit, whatever it leaves behind)."""
    env = dict(os.environ, PYTHONPATH=str(POLICIES.parent) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", f"tuning.{argv[0]}", *argv[1:]], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("p0")
    out, runs = root / "reports", root / "runs"
    done = program("baseline", "--policies", str(POLICIES), "--out", str(out), "--runs-root", str(runs), cwd=root)
    assert done.returncode == 0 and "| gate | value | threshold | status |" in done.stdout, done.stderr
    (pack_json,) = sorted(out.glob("segment3a_p0_baseline_metrics_*.json"))
    return root, out, runs, pack_json


def test_baseline_pack_keys(workspace, capsys):
    _, out, runs, pack_json = workspace
    doc = json.loads(pack_json.read_text())
    assert set(doc) == {"generated_utc", "phase", "segment", "baseline_authority", "paths", "thresholds", "metrics",
                        "gates", "verdict", "measures"}
    assert (doc["phase"], doc["segment"]) == ("P0", "3A")
    assert doc["measures"]["subject"] == "authority"  # no flag: the current authority, and the pack says so
    rid = doc["baseline_authority"]["run_id"]
    assert pack_json.name == f"segment3a_p0_baseline_metrics_{rid}.json"
    assert set(doc["baseline_authority"]["lineage_tokens"]) == {"seed", "manifest_fingerprint", "parameter_hash",
                                                               "run_id"}
    assert set(doc["paths"]) == {"s1_glob", "s2_glob", "s3_glob", "s4_glob", "zone_alloc_glob"}
    assert len(doc["gates"]["hard"]) == 10 and len(doc["gates"]["stretch"]) == 7
    assert set(next(iter(doc["gates"]["hard"].values()))) == {"value", "threshold", "status"}
    assert set(doc["metrics"]) == {"s1", "s2", "s3", "s4", "zone_alloc", "fidelity"}
    assert len(doc["gates"]["fidelity"]) == 9 and doc["metrics"]["fidelity"]["applicable"] is True
    assert doc["verdict"] in {"PASS_BPLUS", "PASS_B", "FAIL_REALISM"}
    assert pack_json.read_text() == json.dumps(doc, sort_keys=True, indent=2) + "\n"   # sorted, indent 2
    md = (out / f"segment3a_p0_baseline_metrics_{rid}.md").read_text()
    assert "| gate | value | threshold | status |" in md and "3A-V08_s4_share_pairs_zones_ge_005_ge_2" in md
    assert (runs / rid).is_dir()


def test_compare_against_run_dir_and_json(workspace):
    _, out, runs, pack_json = workspace
    rid = json.loads(pack_json.read_text())["baseline_authority"]["run_id"]
    for candidate in (runs / rid, pack_json):
        done = program("compare", str(pack_json), str(candidate), "--out", str(out), cwd=out)
        assert done.returncode == 0, done.stderr
        doc = json.loads((out / f"segment3a_p0_candidate_vs_baseline_{rid}.json").read_text())
        assert {"baseline", "candidate", "delta_candidate_minus_baseline", "uplift_directional", "gate_drift",
                "progression_decision"} <= set(doc)
        assert set(doc["candidate"]) >= {"runs_root", "run_id", "run_root", "seed", "manifest_fingerprint",
                                         "parameter_hash", "metrics", "gates", "verdict"}
        assert all(v == 0.0 for v in doc["delta_candidate_minus_baseline"].values())  # same run: zero deltas
        assert all(d == "UNCHANGED" for fam in doc["gate_drift"].values() for d in fam.values())
    assert (out / f"segment3a_p0_candidate_vs_baseline_{rid}.md").exists()


def test_runtime_baseline_and_closure(workspace):
    _, out, runs, _ = workspace
    done = program("runtime", "baseline", "--repeats", "1", "--policies", str(POLICIES), "--out", str(out),
                   "--runs-root", str(runs), cwd=out)
    assert done.returncode == 0, done.stderr
    (popt0,) = sorted(out.glob("segment3a_popt0_baseline_*.json"))
    doc = json.loads(popt0.read_text())
    assert doc["phase"] == "POPT.0"
    assert [r["state"] for r in doc["timing"]["state_table"]] == ["S0", "S1", "S2", "S3", "S4", "S5", "S6", "S7"]
    assert sum(r["segment_share"] for r in doc["timing"]["state_table"]) == pytest.approx(1.0)
    assert [h["role"] for h in doc["hotspots"]] == ["primary", "secondary", "closure"]
    assert doc["progression_gate"]["decision"] in {"GO", "HOLD"}
    assert doc["evidence"]["s7_passed_flag_present"] is True
    rid = doc["run"]["run_id"]
    assert (out / f"segment3a_popt0_hotspot_map_{rid}.md").exists()
    assert runtime_cli.main(["closure", str(popt0), str(popt0), "--out", str(out)]) == 0
    closure = json.loads((out / f"segment3a_popt1_closure_{rid}.json").read_text())
    assert set(closure["runtime"]) == {"s6", "s7", "s5"}
    assert all(closure["veto"].values())
    assert closure["decision"]["progression_decision"] == "UNLOCK_P0"


def test_report_cli(workspace):
    _, out, runs, pack_json = workspace
    rid = json.loads(pack_json.read_text())["baseline_authority"]["run_id"]
    target = out / "report.html"
    done = program("report", str(runs / rid), "--out", str(target), cwd=out)
    assert done.returncode == 0, done.stderr
    page = target.read_text()
    # 13 realism figures + one population / prior / realised figure per country with >= 2 populated clocks
    from tests.engine.test_world_clocks import _cities

    per_country = collections.Counter(c for c, _ in _cities()[0])
    multi = sorted(c for c, n in per_country.items() if n >= 2)
    assert page.count("Plotly.newPlot(") == 13 + len(multi) and page.count("plotly.js v") == 1
    assert all(f'id="fig-fidelity_shares_{iso}"' in page for iso in multi)
    assert "3A-F01_alias_count" in page and "Fidelity: <b id=\"fidelity-verdict\">" in page
    # the page has no timestamp: the same run renders the same bytes
    assert report_cli.main([str(runs / rid), "--out", str(out / "again.html")]) == 0
    assert (out / "again.html").read_text() == page


def test_report_and_compare_refuse_a_tampered_run(workspace, tmp_path, capsys):
    """A report or a comparison is never drawn from a bundle whose bytes are not the ones S7 sealed: a flipped byte
    of zone_alloc is the verify's coded line, exit 2, and nothing is written."""
    import shutil

    _, _, runs, pack_json = workspace
    rid = json.loads(pack_json.read_text())["baseline_authority"]["run_id"]
    copy = tmp_path / rid
    shutil.copytree(runs / rid, copy)
    target = next(copy.glob("data/zone_alloc/**/*.parquet"))
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    for main, argv in ((report_cli.main, [str(copy), "--out", str(tmp_path / "r.html")]),
                       (compare_cli.main, [str(pack_json), str(copy)])):
        with pytest.raises(SystemExit) as done:   # the programs' own wrapper (their refusals run as programs above)
            run_cli(main, argv)
        err = capsys.readouterr().err
        assert done.value.code == 2 and err.startswith("E3A_VER_001") and "zone_alloc" in err, err
    assert not (tmp_path / "r.html").exists()


ANCHOR = SHARED_ANCHOR


@needs_shared
def test_report_cli_on_the_anchor_world_is_not_applicable(tmp_path):
    from engine.cli.main import main as engine_main

    runs = tmp_path / "runs"
    assert engine_main(["run", "--seed", "42", "--world", str(ANCHOR), "--run-root", str(runs)]) == 0
    (run,) = [p for p in runs.iterdir() if not p.name.startswith(".")]
    assert report_cli.main([str(run), "--out", str(tmp_path / "anchor.html")]) == 0
    page = (tmp_path / "anchor.html").read_text()
    assert "Fidelity: <b id=\"fidelity-verdict\">NOT_APPLICABLE</b>" in page
    start = page.index("<tr><td>3A-F01_alias_count</td>")
    rows = page[start:page.index("</tbody>", start)]
    assert rows.count("<td class=\"NA\">N/A</td>") == 9 and "FAIL" not in rows


@pytest.mark.parametrize("argv", [
    ["compare", "/nonexistent/base.json", "/nonexistent/run"],
    ["report", "/nonexistent/run"],
    ["runtime", "closure", "/nonexistent/a.json", "/nonexistent/b.json"],
    ["baseline", "--policies", "/nonexistent/policies"],
    ["runtime", "baseline", "--repeats", "0"],
])
def test_cli_errors_are_one_line_exit_2(argv, tmp_path):
    done = program(*argv, cwd=tmp_path)   # as programs: a refusal exits too
    err = done.stderr.strip()
    assert done.returncode == 2 and err.startswith("E3A_") and "\n" not in err and "Traceback" not in err, err
    assert not list(tmp_path.iterdir())


def test_bad_json_is_coded(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit) as exc:
        run_cli(compare_cli.main, [str(bad), str(bad)])
    assert exc.value.code == 2 and capsys.readouterr().err.startswith("E3A_TUN_023")


def test_compare_refuses_a_candidate_measured_on_another_world(workspace, tmp_path, capsys):
    """A P0 pack records the world it measured: a candidate pack (or a run given with --world) of another world is
    E3A_TUN_070, exit 2, nothing written; a pack that does not say which world it measured is compared as before."""
    _, _, _, pack_json = workspace
    doc = json.loads(pack_json.read_text())
    other = dict(doc, measures={**doc["measures"], "world": {"fingerprint": "ab" * 32, "name": "elsewhere"}})
    silent = dict(doc, measures={"subject": "authority"})
    for name, pack in (("other.json", other), ("silent.json", silent)):
        (tmp_path / name).write_text(json.dumps(pack))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as done:
        run_cli(compare_cli.main, [str(pack_json), str(tmp_path / "other.json"), "--out", str(out)])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.startswith("E3A_TUN_070_WORLD_MISMATCH") and "elsewhere (abababababab)" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    assert compare_cli.main([str(pack_json), str(tmp_path / "silent.json"), "--out", str(out)]) == 0


def _same_zones_other_people(tmp_path, country: str, factor: float):
    """Two world folders with the default world's zone universe: ``mine`` its people, ``other_people`` the same but
    ``country``'s first populated clock with ``factor`` times its people."""
    from engine import default_world

    world = default_world()
    mine, other = tmp_path / "mine", tmp_path / "other_people"
    pop = world.population.copy()
    for folder in (mine, other):
        folder.mkdir()
        world.universe[["country_iso", "tzid"]].to_csv(folder / "universe.csv", index=False)
        pop.to_csv(folder / "population.csv", index=False)
    row = pop.index[(pop["country_iso"] == country) & (pop["population"] > 0)][0]
    pop.loc[row, "population"] = pop.loc[row, "population"] * factor
    pop.to_csv(other / "population.csv", index=False)
    return mine, other


def test_report_refuses_a_world_of_the_same_zones_but_other_people(tmp_path, capsys):
    """``--world`` names the world a run was made on: another world with the run's zone universe but other people
    (one clock with ten times its people) would grade the run's fidelity against evidence it was never made from.
    Refused by the world digest the run sealed, nothing written; the run's own world is accepted."""
    from engine.cli.main import main as engine_main

    mine, other = _same_zones_other_people(tmp_path, "US", 10)
    runs = tmp_path / "runs"
    assert engine_main(["run", "--seed", "42", "--world", str(mine), "--run-root", str(runs)]) == 0
    (run,) = [p for p in runs.iterdir() if not p.name.startswith(".")]
    capsys.readouterr()
    target = tmp_path / "report.html"
    done = program("report", str(run), "--world", str(other), "--out", str(target), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("E3A_TUN_070_WORLD_MISMATCH"), done.stderr[-2000:]
    assert "sealed world digest" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not target.exists()
    assert report_cli.main([str(run), "--world", str(mine), "--out", str(target)]) == 0 and target.exists()


def test_report_of_a_fraction_run_checks_its_subsample_world(tmp_path, capsys):
    """A ``--fraction`` run sealed the digest of its keyed subsample: the report rebuilds that subsample from the
    merchants of the run's S1 rows and the ``--world`` catalogue, so the run's own world is accepted and a world of the
    same zones and outlets but other people is refused (before, a fraction run was not compared at all)."""
    from engine.cli.main import main as engine_main
    from engine.core.errors import EngineError

    mine, other = _same_zones_other_people(tmp_path, "DE", 3)
    runs = tmp_path / "runs"
    assert engine_main(["run", "--seed", "7", "--world", str(mine), "--fraction", "0.2", "--run-root", str(runs)]) == 0
    (run,) = [p for p in runs.iterdir() if not p.name.startswith(".")]
    capsys.readouterr()
    target = tmp_path / "report.html"
    with pytest.raises(EngineError) as refused:
        report_cli.main([str(run), "--world", str(other), "--out", str(target)])
    assert refused.value.code.startswith("E3A_TUN_070") and "sealed world digest" in str(refused.value)
    assert not target.exists()
    assert report_cli.main([str(run), "--world", str(mine), "--out", str(target)]) == 0 and target.exists()
