"""The authority folder's own records read as they are written: a lineage entry or a ladder step that is not one
is one coded line naming the file and the item (no traceback, nothing appended); ``verify_authority`` names an
authority with no lineage as such, and reports an unreadable install intent without removing it; ``ladder record``
takes only the plan's phases and one-line text. One case of each as a program, the others in process."""

from __future__ import annotations

import shutil

import pytest

from tests.tuning.conftest import REPO, make_project, run_here

BROKEN = {"lineage.yaml": "promotions: [abc]\n", "ladder.yaml": "steps: [abc, 5]\n"}
WANT = {"lineage.yaml": ("E3A_TUN_023_RUN_ARTIFACTS_INVALID", "promotions[0] is str 'abc', not a mapping"),
        "ladder.yaml": ("E3A_TUN_050_USAGE", "steps[0] is str 'abc', not a mapping")}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("records") / "proj")
    shutil.copyfile(REPO / "policies" / "lineage.yaml", root / "policies" / "lineage.yaml")
    return root


def _folder(project, name: str):
    folder = project / name
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(project / "policies", folder)
    return folder


def _refused(proc, code: str, *needles: str) -> str:
    err = proc.stderr.strip()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(err.splitlines()) == 1 and err.startswith(f"{code}: "), err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("broken, command", [
    ("lineage.yaml", ("tuning.verify_authority",)),
    *(("ladder.yaml", command) for command in [("tuning.verify_authority",), ("tuning.ladder", "show"), ("tuning.freeze",),
                                               ("tuning.ladder", "record", "--phase", "P1.2", "--decision", "REVIEWED")])])
def test_a_record_that_is_not_a_mapping_is_one_coded_line(project, broken, command):
    folder = _folder(project, "broken")
    (folder / broken).write_text(BROKEN[broken])
    ladder = (folder / "ladder.yaml").read_bytes()
    code, what = WANT[broken]
    program = command == ("tuning.verify_authority",) and broken == "lineage.yaml"   # one case as a program
    _refused(run_here(project, *command, "--policies", str(folder), program=program), code, f"{broken}: ", what)
    assert (folder / "ladder.yaml").read_bytes() == ladder   # nothing appended onto the broken file


@pytest.mark.parametrize("broken, text, code, what", [
    ("ladder.yaml", "steps:\n- {phase: P0, decision: X, mlflow_run_id: r}\n", "E3A_TUN_050_USAGE",
     "steps[0] has no text 'parameter_hash'"),
    ("ladder.yaml", "steps:\n- {phase: P0, decision: X, mlflow_run_id: r, parameter_hash: h, evidence: [1]}\n",
     "E3A_TUN_050_USAGE", "steps[0] has an 'evidence' that is not a mapping"),
    ("lineage.yaml", "promotions:\n- {parameter_hash: 5, previous_authority: {}}\n", "E3A_TUN_023_RUN_ARTIFACTS_INVALID",
     "promotions[0] has no text 'parameter_hash'"),
    ("lineage.yaml", "promotions:\n- {parameter_hash: h, previous_authority: [1]}\n", "E3A_TUN_023_RUN_ARTIFACTS_INVALID",
     "promotions[0] has a 'previous_authority' that is not a mapping")])
def test_a_record_without_the_fields_read_is_one_coded_line(project, broken, text, code, what):
    folder = _folder(project, "fields")
    (folder / broken).write_text(text)
    _refused(run_here(project, "tuning.verify_authority", "--policies", str(folder)), code, what)


def test_verify_authority_agrees_on_the_lineage_of_an_authority_that_recorded_no_install(project):
    folder = _folder(project, "never_installed")
    (folder / "lineage.yaml").unlink()
    (folder / "ladder.yaml").unlink()
    proc = run_here(project, "tuning.verify_authority", "--policies", str(folder))
    assert "agree   lineage: " in proc.stdout and "DIFFER" not in proc.stdout, (proc.stdout, proc.stderr)
    assert "no lineage entry" in proc.stdout and "last lineage entry None" not in proc.stdout
    assert f"lineage: {folder}/ " in proc.stdout          # the folder checked, not "policies/" whatever it was


@pytest.mark.parametrize("intent", [b"garbage", b'{"files": {"a": "YQ=="}, "sha256": {"a": "00"}, "last": "a"}'])
def test_verify_authority_reports_an_unreadable_intent_and_leaves_it(project, intent):
    folder = _folder(project, "intent")
    (folder / ".install-intent.json").write_bytes(intent)
    before = sorted((p.name, p.read_bytes()) for p in folder.iterdir())
    proc = run_here(project, "tuning.verify_authority", "--policies", str(folder))
    _refused(proc, "E3A_TUN_028_AUTHORITY_DISAGREES", "intent: ", ".install-intent.json", "left as it is")
    assert "DIFFER  intent" in proc.stdout
    assert sorted((p.name, p.read_bytes()) for p in folder.iterdir()) == before   # nothing removed, nothing made


ARGS0 = ["--phase", "P 1/../x", "--decision", "X"]


@pytest.mark.parametrize("args, what", [
    (ARGS0, "argument --phase: 'P 1/../x' is not a phase of the plan"),
    (["--phase", "AUTHOR", "--decision", "X"], "argument --phase: 'AUTHOR' is not a phase of the plan"),
    (["--phase", "P1.2", "--decision", "X", "--note", "a\nb"], "argument --note: must be one line"),
    (["--phase", "P1.2", "--decision", "X\r", "--note", "a"], "argument --decision: must be one line")])
def test_ladder_record_takes_the_plans_phases_and_one_line_text(project, args, what):
    folder = _folder(project, "record")
    ladder = (folder / "ladder.yaml").read_bytes()
    _refused(run_here(project, "tuning.ladder", "record", "--policies", str(folder), *args, program=args == ARGS0),
             "E3A_TUN_050_USAGE", what)
    assert (folder / "ladder.yaml").read_bytes() == ladder


def test_ladder_show_keeps_a_multi_line_note_on_its_row():
    from tuning.authority.ladder import PHASES, ladder_table

    step = {"phase": "P2", "decision": "HOLD", "parameter_hash": "a" * 64, "mlflow_run_id": "b" * 32,
            "note": "first\nsecond|third"}
    rows = ladder_table([step]).splitlines()
    assert len(rows) == 3 and "first second/third" in rows[2]
    assert {"P0", "POPT.0", "P1.2", "P5", "P6"} <= set(PHASES) and "AUTHOR" not in PHASES


def test_ladder_record_into_a_folder_that_is_no_authority_creates_nothing(project):
    """It was refused (E3A_POL_004) after its lock had created the folder and its ``.authority.lock``."""
    proc = run_here(project, "tuning.ladder", "record", "--policies", "nowhere", "--phase", "P2", "--decision", "X")
    _refused(proc, "E3A_POL_004_POLICY_MISSING")
    assert not (project / "nowhere").exists()


def test_ladder_show_says_when_an_install_is_pending_and_leaves_it(project):
    """An interrupted promotion's intent: show prints the ladder as it stands (the change may not be in it yet) and
    says so on stderr; it only reads, so the intent stays for the next command that writes the folder to finish."""
    folder = _folder(project, "pending")
    intent = folder / ".install-intent.json"
    intent.write_text('{"files": {}}')
    out = run_here(project, "tuning.ladder", "show", "--policies", "pending")
    assert out.returncode == 0 and "FROZEN_CERTIFIED_BPLUS" in out.stdout, out.stderr
    assert out.stderr.startswith("pending: an interrupted promotion's install is pending; the ladder below may not "
                                 "show it yet")
    assert intent.read_text() == '{"files": {}}'
    clean = run_here(project, "tuning.ladder", "show", "--policies", "policies")
    assert clean.returncode == 0 and clean.stderr == ""
