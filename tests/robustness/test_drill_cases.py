"""One test per case class of the reliability drill (issue 10): each bad input is one coded line,
exit status 2, no traceback, nothing published; the right input (Namibia) is accepted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from engine.core.errors import EngineError
from engine.policies import PolicySet
from tests.tuning.conftest import SMALL_STUDY

REPO = Path(__file__).resolve().parents[2]
BASE = PolicySet.from_dir(REPO / "policies")


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               MLFLOW_TRACKING_URI=f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=240)


def _one_coded_line(proc: subprocess.CompletedProcess, prefix: str = "E3A_") -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), proc.stderr
    return lines[0]


def _policy_code(pid: str, raw: bytes) -> str:
    with pytest.raises(EngineError) as err:
        PolicySet({**BASE.raw, pid: raw}, "drill")
    return err.value.code


# ------------------------------------------------------------------ bad numbers that used to pass
def test_nan_alpha_temperature_is_refused():
    raw = BASE.raw["zone_mixture_policy"].replace(b"alpha_temperature: ", b"alpha_temperature: .nan #")
    assert _policy_code("zone_mixture_policy", raw) == "E3A_POL_002_SCHEMA_INVALID"


def test_nan_guardrail_in_a_study_is_refused(tmp_path):
    from tuning.study.spec import load_study

    doc = yaml.safe_load(SMALL_STUDY)
    doc["vetoes"]["guardrails"] = [{"metric": "s4.top1_share_median", "op": "<=", "value": float("nan"),
                                    "reason": "OVER_FLATTENING"}]
    path = tmp_path / "nan.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(EngineError) as err:
        load_study(str(path))
    assert err.value.code == "E3A_TUN_010_STUDY_INVALID" and "vetoes.guardrails[0].value" in err.value.cause


def test_unknown_floor_tzid_and_missing_alpha_country_are_refused():
    from engine.chain.runner import run_chain

    floors = BASE.raw["zone_floor_policy"].replace(b"tzid: Africa/Abidjan", b"tzid: Africa/Abidjann", 1)
    with pytest.raises(EngineError) as err:
        run_chain(BASE.replace(zone_floor_policy=floors), 42)
    assert err.value.code == "E3A_S2_004_PRIOR_OR_POLICY_SCHEMA_INVALID"
    alphas = dict(BASE.doc("country_zone_alphas"))
    alphas["countries"] = {k: v for k, v in alphas["countries"].items() if k != "NA"}
    with pytest.raises(EngineError) as err:
        run_chain(BASE.with_documents(country_zone_alphas=alphas), 42)
    assert err.value.code == "E3A_S2_007_DOMAIN_MISMATCH_UNIVERSE" and "NA" in err.value.cause


def test_a_policy_cut_mid_line_is_refused_even_when_schema_valid():
    raw = BASE.raw["zone_floor_policy"]
    cut = raw[: raw.rindex(b"floor_value: ") + len(b"floor_value: 0")]   # "0.1" -> "0": still valid YAML
    assert _policy_code("zone_floor_policy", cut) == "E3A_POL_001_MALFORMED_YAML"


def test_duplicate_yaml_keys_are_refused():
    raw = BASE.raw["zone_mixture_policy"] + b"theta_mix: 0.5\n"
    assert _policy_code("zone_mixture_policy", raw) == "E3A_POL_001_MALFORMED_YAML"


def test_alias_bomb_is_refused_before_expansion():
    bomb = b"version: &a [x,x,x,x,x,x,x,x,x,x]\n" + b"".join(
        b"n%d: &%s [%s]\n" % (i, chr(97 + i).encode(), b",".join([b"*" + chr(96 + i).encode()] * 10))
        for i in range(1, 9))
    assert _policy_code("zone_floor_policy", bomb) == "E3A_POL_001_MALFORMED_YAML"


def test_merchant_id_beyond_uint64_and_huge_site_count_are_refused():
    from engine.world.outlets import validate_outlets

    for frame in (pd.DataFrame({"merchant_id": [str(2 ** 64)], "legal_country_iso": ["DE"], "site_count": ["3"]}),
                  pd.DataFrame({"merchant_id": ["7"], "legal_country_iso": ["DE"], "site_count": ["inf"]}),
                  pd.DataFrame({"merchant_id": ["7"], "legal_country_iso": ["DE"], "site_count": [str(10 ** 10)]})):
        with pytest.raises(EngineError) as err:
            validate_outlets(frame, {"DE"}, "drill")
        assert err.value.code == "E3A_WLD_001_INPUT_INVALID"
    top = validate_outlets(pd.DataFrame({"merchant_id": [str(2 ** 64 - 1)], "legal_country_iso": ["DE"],
                                         "site_count": ["2"]}), {"DE"}, "drill")
    assert top["merchant_id"].tolist() == [np.uint64(2 ** 64 - 1)] * 2      # exact, not rounded through float
    # a float column written as text ("7.0", as pandas writes float ids to CSV) is the id it names, as in parquet
    as_text = validate_outlets(pd.DataFrame({"merchant_id": ["7.0", "8", str(2 ** 64 - 1) + ".00"],
                                             "legal_country_iso": ["DE"] * 3}), {"DE"}, "drill")
    assert as_text["merchant_id"].tolist() == [np.uint64(7), np.uint64(8), np.uint64(2 ** 64 - 1)]
    for bad in ("7.5", ".0", "1e3", "-7.0", "7.01"):
        with pytest.raises(EngineError):
            validate_outlets(pd.DataFrame({"merchant_id": [bad], "legal_country_iso": ["DE"]}), {"DE"}, "drill")
    # the limit's message gives the total it refused, exactly where float64 holds it, else as about how many
    for counts, told in (([str(10 ** 10)], "10000000000 outlets"), ([str(2 ** 64 - 1), "5"], "about 1.84e+19 outlets")):
        with pytest.raises(EngineError) as err:
            validate_outlets(pd.DataFrame({"merchant_id": ["1", "2"][:len(counts)], "legal_country_iso": ["DE"] * len(counts),
                                           "site_count": counts}), {"DE"}, "drill")
        assert f"drill: {told} exceed the limit" in err.value.cause, err.value.cause


def test_namibia_stays_a_country_in_csv(tmp_path):
    from engine.world.model import load_world

    ref = tmp_path / "ref.csv"
    ref.write_text("country_iso,tzid\nNA,Africa/Windhoek\nDE,Europe/Berlin\n")
    assert load_world(reference=ref).countries == ["DE", "NA"]
    header_only = tmp_path / "empty.csv"
    header_only.write_text("country_iso,tzid\n")
    with pytest.raises(EngineError) as err:
        load_world(reference=header_only)
    assert err.value.code == "E3A_WLD_001_INPUT_INVALID"


# ------------------------------------------------------------------ the CLIs: one coded line, exit 2
def _invoke(argv: list[str], capsys) -> str:
    """The module's CLI through the one wrapper, in process (what ``python -m`` runs)."""
    import importlib
    import importlib.util

    from tuning.common.errors import invoke

    name = "engine.cli.main" if argv[0] == "engine" else argv[0]
    if importlib.util.find_spec(name).submodule_search_locations:   # a CLI package: python -m runs its __main__
        name += ".__main__"
    module = importlib.import_module(name)
    code = invoke(module.main, argv[1:])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("E3A_") and "usage:" not in lines[0], err
    return lines[0]


@pytest.mark.parametrize("argv", [
    ["engine", "run", "--seed", str(2 ** 64), "--run-root", "r"],
    ["engine", "run", "--seed", "-1", "--run-root", "r"],
    ["tuning.sweep", "--phase", "P1.2", "--stale-after", "-5"],
    ["tuning.sweep", "--phase", "P1.2", "--max-failures", "-1"],
    ["tuning.sweep", "--phase", "P1.2", "--study", "/abs/path"],
    ["tuning.sweep", "--phase", "P1.2", "--seed", str(2 ** 64)],
    ["tuning.sweep"],
    ["tuning.promote"],
    ["tuning.freeze", "--bogus"],
    ["tuning.rank", "--nope"],
    ["tuning.ladder", "record"],
    ["tuning.certify", "--seeds", f"1,{2 ** 64}"],
])
def test_usage_errors_are_one_coded_line(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    _invoke(argv, capsys)
    assert not (tmp_path / ".optuna").exists() and not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize("argv", [["engine", "run", "--seed", "-1", "--run-root", "r"], ["tuning.promote"]])
def test_a_real_process_exits_2_with_one_coded_line(tmp_path, argv):
    _one_coded_line(_cli(*argv, cwd=tmp_path))


def test_bad_files_through_the_cli(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pd" / "country_zone_alphas.yaml").mkdir(parents=True)
    assert _invoke(["engine", "run", "--seed", "1", "--run-root", "r", "--policies", "pd"], capsys).startswith(
        "E3A_POL_004")
    (tmp_path / "afile").write_text("")
    assert _invoke(["engine", "run", "--seed", "42", "--run-root", "afile", "--policies", str(REPO / "policies")],
                   capsys).startswith("E3A_IO_001")
    studies = tmp_path / "studies"
    studies.mkdir()
    (studies / "P9.yaml").write_bytes(b"\x00\x01binary")
    (studies / "P8.yaml").write_bytes(b"phase: " + b"[" * 50_000 + b"]" * 50_000)
    step = yaml.safe_load(SMALL_STUDY)
    step["knobs"][0]["step"] = 5.0
    (studies / "P7.yaml").write_text(yaml.safe_dump(step))
    for phase in ("P9", "P8", "P7"):
        line = _invoke(["tuning.sweep", "--phase", phase, "--policies", str(REPO / "policies")], capsys)
        assert line.startswith("E3A_TUN_010"), line
    assert not list(tmp_path.rglob("*.tmp")) and not (tmp_path / "r").exists()


# ------------------------------------------------------------------ issue 19: the last bad inputs
@pytest.mark.parametrize("argv, code", [
    (["engine", "run", "--seed", "42", "--run-root", "r", "--partitions", "0"], "E3A_CLI_001_USAGE"),
    (["engine", "run", "--seed", "42", "--run-root", "r", "--partitions", "-3"], "E3A_CLI_001_USAGE"),
    (["tuning.ladder", "record", "--phase", "P1.2", "--decision", ""], "E3A_TUN_050_USAGE"),
    (["tuning.ladder", "record", "--phase", "P1.2", "--decision", "HOLD", "--note", " "], "E3A_TUN_050_USAGE"),
    (["tuning.rank", "--phase", "P1.2", "--top", "-1"], "E3A_TUN_050_USAGE"),
    (["tuning.promote", "0" * 32, "--reason", ""], "E3A_TUN_050_USAGE"),
    (["tuning.author", "--into-authority", "--reason", "  "], "E3A_TUN_050_USAGE"),
    (["tuning.sweep", "--phase", "studies/twice.yaml"], "E3A_TUN_010_STUDY_INVALID"),
    (["engine", "run", "--seed", "42", "--run-root", "r", "--policies", "norway"], "E3A_POL_001_MALFORMED_YAML"),
    (["engine", "run", "--seed", "42", "--run-root", "r", "--policies", "huge"], "E3A_POL_002_SCHEMA_INVALID"),
])
def test_the_last_bad_inputs_are_refused_and_write_nothing(tmp_path, monkeypatch, capsys, argv, code):
    """Each: one coded line, exit 2, nothing written (the two marked cases also as programs)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "twice.yaml").write_text(SMALL_STUDY.replace("seeds: [42]", "seeds: [42, 42]"))
    for name, edit in (("norway", lambda raw: raw.replace(b"\n  'NO':\n", b"\n  NO:\n")),
                       ("huge", lambda raw: raw.replace(b"alpha: ", b"alpha: 1.0e+154 #", 1))):
        (tmp_path / name).mkdir()
        for pid, raw in BASE.raw.items():
            (tmp_path / name / f"{pid}.yaml").write_bytes(edit(raw) if pid == "country_zone_alphas" else raw)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    if "--partitions" in argv and argv[-1] == "0" or argv[0] == "tuning.sweep":
        line = _one_coded_line(_cli(*argv, cwd=tmp_path))   # as a program
    else:
        line = _invoke(argv, capsys)
    assert line.startswith(code + ":"), line
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before   # nothing written
