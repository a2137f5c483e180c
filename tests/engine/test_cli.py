"""The command line: run, verify, tamper detection, and coded one-line errors for bad input."""

import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from engine.cli.main import main
from tests.engine.conftest import ANCHOR, ROOT, engine_here
from tests.environment import needs_shared


def _cli(*args, cwd=ROOT):
    proc = subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, capture_output=True, text=True, timeout=240)
    return proc.returncode, proc.stdout, proc.stderr


def _here(*args):
    """``_cli`` in this process (a refusal's many cases; each kind keeps one case as a program)."""
    proc = engine_here(ROOT, *args)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    assert main(["run", "--seed", "42", "--run-root", str(root), "--policies", str(ROOT / "policies")]) == 0
    (only,) = [p for p in root.iterdir() if not p.name.startswith(".")]
    return only


def test_run_publishes_a_verifiable_bundle(run_dir):
    assert main(["verify", str(run_dir)]) == 0
    flag = next(run_dir.glob("data/validation/*/_passed.flag")).read_text()
    assert flag.startswith("sha256_hex = ") and flag.endswith("\n")
    report = json.loads((run_dir / "reports" / "run_report.json").read_text())
    assert report["s6_overall_status"] == "PASS" and set(report["seconds"]) == {f"S{i}" for i in range(8)} | {"metrics"}


def test_the_run_line_gives_the_fidelity_figures_of_its_metric_pack(tmp_path):
    """The program prints the F-gates' figures beside the verdict, from the run's own metric pack."""
    from engine import PolicySet, default_world, run_chain

    rc, out, err = _cli("run", "--seed", "42", "--run-root", str(tmp_path))
    assert rc == 0, err
    f = run_chain(PolicySet.from_dir(ROOT / "policies"), 42, default_world()).pack["fidelity"]
    line = out.strip().splitlines()[-1]
    assert line.endswith(f"fidelity FAITHFUL (prior JSD {f['prior_jsd_mean']:.4f}, largest {f['prior_jsd_max']:.4f}, "
                         f"over-served {f['prior_overserved_max']:.4f}, realised JSD "
                         f"{f['realised_jsd_mean']:.4f}, unpopulated {f['unpopulated_share']:.4f}, outside universe "
                         f"{f['outside_universe_share']:.4f}, aliases 0)"), line
    assert 0 < f["prior_jsd_mean"] < f["realised_jsd_mean"] <= 0.03


def test_the_run_line_names_the_fidelity_gates_a_distorted_run_fails(tmp_path):
    """Priors that give every clock of a country an even part, however few its people, read DISTORTED, and the line
    says which gates fail (F07: mass on clocks beyond ten times their people), not only the figures."""
    doc = yaml.safe_load((ROOT / "policies" / "country_zone_alphas.yaml").read_text())
    for block in doc["countries"].values():
        for entry in block["tzid_alphas"]:
            entry["alpha"] = 1.0
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    (policies / "country_zone_alphas.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    rc, out, err = _cli("run", "--seed", "42", "--run-root", str(tmp_path / "runs"), "--policies", str(policies))
    assert rc == 0, err
    line = out.strip().splitlines()[-1]
    assert "fidelity DISTORTED (" in line and "over-served 0." in line, line
    failing = line.rsplit("; failing ", 1)[1].split(", ")
    assert "3A-F07_prior_overserved_max" in failing and all(g.startswith("3A-F0") for g in failing), line
    assert "realism PASS_BPLUS (observe)  fidelity DISTORTED" in line, line   # the grade flat priors buy


def test_the_run_line_names_the_plan_gates_the_authored_baseline_misses(tmp_path, capsys):
    """The authored baseline (P0's starting point) is FAITHFUL but misses plan gates: the line names them, as it
    names the fidelity gates of a DISTORTED run (they were only in reports/run_report.json). In process: the line's
    program test is the FAITHFUL one above."""
    assert main(["author", "--out", str(tmp_path / "authored")]) == 0
    capsys.readouterr()
    assert main(["run", "--seed", "42", "--run-root", str(tmp_path / "runs"), "--policies",
                 str(tmp_path / "authored")]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    (run,) = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]
    realism = json.loads((run / "reports" / "run_report.json").read_text())["realism"]
    missed = {"FAIL_REALISM": ("failing", realism["hard_failed"]), "PASS_B": ("below B+ on", realism["stretch_failed"])}
    assert realism["verdict"] in missed, realism
    words, gates = missed[realism["verdict"]]
    assert gates and f"realism {realism['verdict']} (observe; {words} {', '.join(gates)})  fidelity FAITHFUL" in line, \
        line


def test_republishing_same_run_is_a_noop_and_byte_identical(run_dir, tmp_path):
    assert main(["run", "--seed", "42", "--run-root", str(tmp_path), "--policies", str(ROOT / "policies")]) == 0
    other = tmp_path / run_dir.name
    for f in run_dir.rglob("*"):
        if f.is_file() and "reports" not in f.parts:
            assert (other / f.relative_to(run_dir)).read_bytes() == f.read_bytes(), f
    assert main(["run", "--seed", "42", "--run-root", str(tmp_path), "--policies", str(ROOT / "policies")]) == 0


def test_publishing_over_a_damaged_run_is_refused_and_leaves_it_as_found(run_dir, tmp_path, capsys):
    """A run id is a digest of the inputs, so a folder of that id whose files are not this run's bytes is damage: a
    flipped byte of a member (the flag still intact), an edited report of the same length, a removed or an added
    file. Each is refused, not reported as published over; a timings report of its own is no difference."""
    argv = ["run", "--seed", "42", "--run-root", str(tmp_path), "--policies", str(ROOT / "policies")]
    zone_alloc = next(p.relative_to(run_dir) for p in run_dir.glob("data/zone_alloc/**/*.parquet"))
    s6_report = next(p.relative_to(run_dir) for p in run_dir.glob("data/s6_validation_report/**/*.json"))

    def flip(path):
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))

    damages = {"flipped": (lambda d: flip(d / zone_alloc), f"{zone_alloc.as_posix()} differs"),
               "edited": (lambda d: (d / s6_report).write_text((d / s6_report).read_text().replace("PASS", "PASs")),
                          f"{s6_report.as_posix()} differs"),
               "removed": (lambda d: (d / zone_alloc).unlink(), f"{zone_alloc.as_posix()} is missing"),
               "added": (lambda d: (d / "data" / "extra.txt").write_text("x"), "data/extra.txt is not a file")}
    for name, (damage, cause) in damages.items():
        shutil.rmtree(tmp_path / run_dir.name, ignore_errors=True)
        shutil.copytree(run_dir, tmp_path / run_dir.name)
        damage(tmp_path / run_dir.name)
        before = {p: p.read_bytes() for p in (tmp_path / run_dir.name).rglob("*") if p.is_file()}
        capsys.readouterr()
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("E3A_IO_002_IMMUTABILITY_VIOLATION") and cause in err, (name, err)
        assert {p: p.read_bytes() for p in (tmp_path / run_dir.name).rglob("*") if p.is_file()} == before
    shutil.rmtree(tmp_path / run_dir.name)
    shutil.copytree(run_dir, tmp_path / run_dir.name)
    (tmp_path / run_dir.name / "reports" / "run_report.json").write_text("{}")
    assert main(argv) == 0


def test_flipping_one_byte_of_any_member_fails_verify(run_dir, tmp_path, capsys):
    index = json.loads(next(run_dir.glob("data/validation/*/index.json")).read_text())
    for member in index["members"] + [{"path": str(next(run_dir.glob("data/validation/*/_passed.flag"))
                                                   .relative_to(run_dir))}]:
        copy = tmp_path / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(run_dir, copy)
        target = copy / member["path"]
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0x01
        target.write_bytes(bytes(data))
        assert main(["verify", str(copy)]) == 2, member["path"]
        assert capsys.readouterr().err.startswith("E3A_VER_")


def test_missing_member_fails_verify(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    next(copy.glob("data/s4_zone_counts/**/*.parquet")).unlink()
    assert main(["verify", str(copy)]) == 2


def _policy_copy(tmp_path, pid, mutate):
    d = tmp_path / "pol"
    d.mkdir(exist_ok=True)
    for f in (ROOT / "policies").glob("*.yaml"):
        (d / f.name).write_bytes(f.read_bytes())
    doc = yaml.safe_load((d / f"{pid}.yaml").read_text())
    result = mutate(doc)
    (d / f"{pid}.yaml").write_text(result if isinstance(result, str) else yaml.safe_dump(doc, sort_keys=False))
    return d


@pytest.mark.parametrize("pid,mutate,code", [
    ("zone_floor_policy", lambda d: "floors: [unclosed", "E3A_POL_001_MALFORMED_YAML"),
    ("zone_mixture_policy", lambda d: d.update(theta_mix=1.7), "E3A_POL_002_SCHEMA_INVALID"),
    ("zone_mixture_policy", lambda d: d.update(theta_mix=0.9), "E3A_POL_003_SANITY_CHECK_FAILED"),
    ("zone_mixture_policy", lambda d: d["s3_dispersion"].update(concentration_scale=9), "E3A_POL_002_SCHEMA_INVALID"),
    ("country_zone_alphas", lambda d: d["countries"]["US"]["tzid_alphas"].pop(), "E3A_S2_007_DOMAIN_MISMATCH_UNIVERSE"),
    ("country_zone_alphas", lambda d: d["countries"]["FR"]["tzid_alphas"].append({"tzid": "Asia/Tokyo", "alpha": 1.0}),
     "E3A_S2_005_ZONE_UNIVERSE_MISMATCH"),
    ("country_zone_alphas", lambda d: d["countries"]["FR"]["tzid_alphas"][0].update(alpha=-1.0),
     "E3A_POL_002_SCHEMA_INVALID"),
])
def test_bad_policies_get_coded_one_line_errors(tmp_path, pid, mutate, code):
    pol = _policy_copy(tmp_path, pid, mutate)
    run = _cli if pid == "zone_floor_policy" else _here   # the malformed file as a program, the rest in process
    rc, out, err = run("run", "--seed", "42", "--run-root", str(tmp_path / "runs"), "--policies", str(pol))
    assert rc == 2
    assert err.startswith(code) and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any(p for p in (tmp_path / "runs").iterdir()
                                                       if not p.name.startswith("."))


@pytest.mark.parametrize("frame,code", [
    (pd.DataFrame({"merchant_id": [1], "legal_country_iso": ["FR"], "site_count": [-2]}), "E3A_WLD_001_INPUT_INVALID"),
    (pd.DataFrame({"merchant_id": [1], "legal_country_iso": ["FR"], "site_count": [2.5]}), "E3A_WLD_001_INPUT_INVALID"),
    (pd.DataFrame({"merchant_id": [1], "site_count": [2]}), "E3A_WLD_001_INPUT_INVALID"),
    (pd.DataFrame({"merchant_id": [1], "legal_country_iso": ["QQ"], "site_count": [2]}), "E3A_WLD_001_INPUT_INVALID"),
])
def test_bad_outlet_catalogues(tmp_path, frame, code):
    path = tmp_path / "outlets.parquet"
    frame.to_parquet(path)
    run = _cli if "legal_country_iso" not in frame else _here   # a catalogue without a column as a program
    rc, _, err = run("run", "--seed", "1", "--run-root", str(tmp_path / "r"), "--outlets", str(path))
    assert rc == 2 and err.startswith(code) and "Traceback" not in err


def test_byo_outlets_and_reference(tmp_path):
    path = tmp_path / "outlets.csv"
    pd.DataFrame({"merchant_id": [1, 1, 2], "legal_country_iso": ["US", "FR", "US"],
                  "site_count": [40, 3, 12]}).to_csv(path, index=False)
    assert main(["run", "--seed", "3", "--run-root", str(tmp_path / "r"), "--outlets", str(path)]) == 0
    ref = tmp_path / "ref.csv"
    pd.DataFrame({"country_iso": ["US"], "tzid": ["Mars/Olympus"]}).to_csv(ref, index=False)
    rc, _, err = _cli("run", "--seed", "3", "--run-root", str(tmp_path / "r"), "--reference", str(ref))
    assert rc == 2 and err.startswith("E3A_WLD_001_INPUT_INVALID") and "unknown tzid" in err


def test_usage_errors_are_coded(tmp_path, capsys):
    rc, _, err = _cli("run", "--seed", "x", "--run-root", str(tmp_path))
    assert rc == 2 and err.startswith("E3A_CLI_001_USAGE")
    for argv, said in ((["--seed", "-1"], "argument --seed: '-1' is not an integer in [0, 2**64-1]"),
                       (["--seed", str(2**64)], "is not an integer in [0, 2**64-1]"),
                       (["--seed", "1", "--partitions", "100000"], "'100000' is not an integer in [1, 10000]"),
                       (["--seed", "1", "--fraction", "0"], "'0' is not a number in (0, 1]"),
                       # int() reads both (10, 3): a seed is written in decimal digits, as a merchant id is
                       (["--seed", "1_0"], "argument --seed: '1_0' is not an integer"),
                       (["--seed", "\u0663"], "argument --seed: '\u0663' is not an integer")):
        rc = main(["run", *argv, "--run-root", str(tmp_path)])
        err = capsys.readouterr().err   # the bound is said, not "invalid _uint64 value" (a helper function's name)
        assert rc == 2 and err.startswith("E3A_CLI_001_USAGE") and said in err and "invalid" not in err, err
    rc, _, err = _cli("verify", str(tmp_path / "nope"))
    assert rc == 2 and err.startswith("E3A_VER_002")


@needs_shared
def test_anchor_world_runs_end_to_end(tmp_path, capsys):
    assert main(["run", "--seed", "42", "--world", str(ANCHOR), "--run-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "S6 PASS  S7 PASS" in out and "world anchor_world" in out
    from engine.publish.store import load_run
    from engine.metrics import metric_pack

    (run,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    res = load_run(run)
    s2 = metric_pack(res.tables)["s2"]
    assert len(res.tables["s2"]) == 1158 and res.tables["s2"]["country_iso"].nunique() == 248
    assert s2["countries_multi_tz_total"] > 100 and 0 < s2["top1_share_median_multi_tz"] <= 1
    # the anchor brings its own universe: fidelity is reported as not applicable, never as a failure
    assert res.s6_report["overall_status"] == "PASS" and res.s7["status"] == "PASS"
    assert res.s6_report["realism"]["fidelity_verdict"] == "NOT_APPLICABLE"
    from engine.metrics import evaluate_gates, fidelity_verdict
    from engine.world.model import load_world

    evidence = load_world(ANCHOR).evidence
    assert not evidence.applicable
    pack = metric_pack(res.tables, evidence)
    gates = evaluate_gates(pack)
    assert pack["fidelity"]["alias_count"] > 0           # measured and shown (the anchor holds link aliases)
    assert {g["status"] for g in gates["fidelity"].values()} == {"N/A"}
    assert fidelity_verdict(gates) == "NOT_APPLICABLE"


def _bundle(folder, frame):
    import hashlib

    folder.mkdir()
    frame.to_csv(folder / "outlets.csv", index=False)
    data = (folder / "outlets.csv").read_bytes()
    (folder / "index.json").write_text(json.dumps({"files": [{"path": "outlets.csv",
                                                              "sha256_hex": hashlib.sha256(data).hexdigest()}]}))
    (folder / "_passed.flag").write_text(f"sha256_hex = {hashlib.sha256(data).hexdigest()}\n")
    return folder / "outlets.csv"


def test_upstream_bundle_is_verified_before_reading(tmp_path):
    frame = pd.DataFrame({"merchant_id": [1, 2], "legal_country_iso": ["US", "FR"], "site_count": [9, 4]})
    good = _bundle(tmp_path / "good", frame)
    assert main(["run", "--seed", "3", "--run-root", str(tmp_path / "r"), "--outlets", str(good)]) == 0
    bad = _bundle(tmp_path / "bad", frame)
    bad.write_text(bad.read_text().replace("9", "8"))
    rc, _, err = _cli("run", "--seed", "3", "--run-root", str(tmp_path / "r2"), "--outlets", str(bad))
    assert rc == 2 and err.startswith("E3A_S0_001_UPSTREAM_GATE_FAILED")


def test_an_upstream_bundle_file_that_is_a_pipe_is_refused_before_it_is_read(tmp_path):
    import os

    frame = pd.DataFrame({"merchant_id": [1, 2], "legal_country_iso": ["US", "FR"], "site_count": [9, 4]})
    outlets = _bundle(tmp_path / "piped", frame)
    (outlets.parent / "index.json").unlink()
    os.mkfifo(outlets.parent / "index.json")   # nobody writes it: reading it would block forever
    rc, _, err = _cli("run", "--seed", "3", "--run-root", str(tmp_path / "r"), "--outlets", str(outlets))
    assert rc == 2 and err.startswith("E3A_S0_001_UPSTREAM_GATE_FAILED") and "not a regular file" in err, err
    assert not (tmp_path / "r").exists()


def test_a_publish_killed_outright_leaves_staging_the_next_publish_removes(run_dir, tmp_path):
    """SIGKILL leaves a run's staging folder (``.tmp-<run_id>-<pid>-*``, never a published run); the next publish of
    that run removes those whose process is gone and leaves one whose process lives."""
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    dead = tmp_path / f".tmp-{run_dir.name}-{gone.pid}-x1"
    live = tmp_path / f".tmp-{run_dir.name}-1-x2"   # pid 1 lives
    other = tmp_path / f".tmp-{'0' * 32}-{gone.pid}-x3"   # another run's: not this publish's business
    for folder in (dead, live, other):
        (folder / "data").mkdir(parents=True)
    assert main(["run", "--seed", "42", "--run-root", str(tmp_path), "--policies", str(ROOT / "policies")]) == 0
    assert (tmp_path / run_dir.name).is_dir() and not dead.exists() and live.exists() and other.exists()


def test_a_world_on_the_default_universe_says_it_runs_the_default_authority(tmp_path, capsys, monkeypatch):
    """Helper 41: ``engine run --world W`` on a world whose zone universe is the default one ran the default world's
    tuned authority without a word (a custom universe's run says its policies are authored); now it names them. The
    default world itself prints no such line."""
    from engine import default_world

    world = default_world()
    folder = tmp_path / "same_zones"
    folder.mkdir()
    world.universe[["country_iso", "tzid"]].to_csv(folder / "universe.csv", index=False)
    world.population.to_csv(folder / "population.csv", index=False)
    monkeypatch.chdir(ROOT)
    assert main(["run", "--seed", "42", "--world", str(folder), "--run-root", str(tmp_path / "runs")]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("policies: the default world's authority (policies), tuned for the default world's "
                            "people and outlets (parameter_hash ") and first.endswith("pass --policies DIR to use others")
    assert main(["run", "--seed", "42", "--run-root", str(tmp_path / "runs")]) == 0
    assert not capsys.readouterr().out.startswith("policies:")


@pytest.mark.parametrize("text,code", [("floors: [unclosed\n", "E3A_POL_001_MALFORMED_YAML"),
                                       ("version: v1\nfloors:\n  - {tzid: Europe/Paris, floor_value: -1, "
                                        "bump_threshold: 0}\n", "E3A_POL_002_SCHEMA_INVALID")])
def test_a_bad_policy_file_a_world_ships_is_named_by_its_own_path(tmp_path, text, code):
    """The world's own file, not the policy set's label (it read ``authored:w+outlets/zone_floor_policy.yaml``, a
    path the user never wrote)."""
    world = tmp_path / "w"
    world.mkdir()
    pd.DataFrame({"country_iso": ["FR"], "tzid": ["Europe/Paris"], "population": [60e6]}).to_csv(
        world / "population.csv", index=False)
    pd.DataFrame({"merchant_id": [1], "legal_country_iso": ["FR"], "site_count": [4]}).to_csv(
        world / "outlets.csv", index=False)
    (world / "zone_floor_policy.yaml").write_text(text)
    rc, _, err = _here("run", "--seed", "1", "--world", str(world), "--run-root", str(tmp_path / "runs"))
    assert rc == 2 and err.startswith(f"{code}: {world / 'zone_floor_policy.yaml'}: "), err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()
