"""Long work shows progress; a sweep honours --timeout; rank prints an aligned table, JSON and the UI address."""

from __future__ import annotations

import json
import re

import pytest

from engine.core.errors import EngineError


def test_progress_timeout_and_rank(project, capsys):
    from tuning.rank import main as rank
    from tuning.sweep.__main__ import main as sweep

    assert sweep(["--phase", "P1.2", "--trials", "3"]) == 0
    shown = re.findall(r"best feasible J ([+-]\d\.\d{6})", capsys.readouterr().err)
    assert rank(["--phase", "P1.2", "--json"]) == 0
    ranked = json.loads(capsys.readouterr().out)
    assert len(ranked) == 3 and shown and float(shown[-1]) == round(ranked[0]["J"], 6)  # the bar ends on the best
    assert rank(["--phase", "studies/P1.2.yaml", "--json"]) == 0   # a study file, as sweep --phase takes one
    assert json.loads(capsys.readouterr().out) == ranked
    # --timeout: no new trial starts once it has passed; a later invocation resumes the budget
    assert sweep(["--phase", "P1.2", "--trials", "6", "--timeout", "0.001", "--json", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["timed_out"] is True and summary["trials_complete"] == 3
    with pytest.raises(EngineError) as err:
        sweep(["--phase", "P1.2", "--timeout", "0"])
    assert err.value.code == "E3A_TUN_050_USAGE"
    # rank: an aligned table (each column starts at the same offset on every line) and the UI address
    assert rank(["--phase", "P1.2", "--open"]) == 0
    table = capsys.readouterr().out
    lines = table.splitlines()
    assert lines[-1].startswith("MLflow UI: http://127.0.0.1:5000/#/experiments/") and \
        lines[-1].endswith("/runs?workflowType=machine_learning&viewStateShareKey=rank")
    head, body = lines[0], lines[1:-1]
    assert len(body) == 3 and "\t" not in table
    for col in ("mlflow_run_id", "veto", "verdict"):
        at = head.index(col)
        assert all(line[at - 1] == " " and line[at] != " " for line in body), col
    assert [line.split()[3] for line in body] == [r["mlflow_run_id"] for r in ranked]
    from tuning.trail.tracking import client
    exp = client().get_experiment_by_name("3A-P1.2")
    view = json.loads(exp.tags["mlflow.sharedViewState.rank"])
    assert view["orderByKey"] == "metrics.`J_feasible`" and view["orderByAsc"] is False
    assert view["selectedColumns"][:4] == ["metrics.`J`", "tags.`verdict`", "tags.`fidelity`", "tags.`veto`"]
    # another study in the phase's experiment: ranked with it when it scores the same objective (J), apart when not
    assert sweep(["--phase", "studies/veto.yaml", "--trials", "2", "--no-progress"]) == 0
    capsys.readouterr()
    assert rank(["--phase", "P1.2", "--json", "--top", "4"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 4   # one ranking of both studies' J
    (project / "studies" / "other.yaml").write_text((project / "studies" / "P1.2.yaml").read_text().replace(
        "study: t-P1.2", "study: t-other").replace("name: J\n", "name: J_other\n"))
    assert sweep(["--phase", "studies/other.yaml", "--trials", "2", "--no-progress"]) == 0
    capsys.readouterr()
    assert rank(["--phase", "P1.2"]) == 0
    text = capsys.readouterr().out
    assert 0 <= text.index("objective J (5 trials of t-P1.2, t-veto; ranked on its own):") < \
        text.index("objective J_other (2 trials of t-other; ranked on its own):")
    assert rank(["--phase", "P1.2", "--json", "--top", "2"]) == 0
    assert [r["study"] for r in json.loads(capsys.readouterr().out)][2:] == ["t-other"] * 2
    assert rank(["--phase", "P1.2", "--study", "t-other"]) == 0
    assert "ranked on its own" not in capsys.readouterr().out   # one study: one table
    # run outside the project (no study file where --studies-dir points): the default columns, and it says so
    assert rank(["--phase", "P1.2", "--studies-dir", "nowhere"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("objective J") or out.out.startswith("rank ")
    assert out.err.strip() == ("note: nowhere/P1.2.yaml: study file not found: ranked on the default key metrics "
                               "(--studies-dir DIR: the project's studies)"), out.err


def test_certify_shows_progress_per_seed(project, capsys):
    from tuning.certify import main as certify

    assert certify(["--authority", "--seeds", "42,7"]) == 0
    assert re.search(r"certify [0-9a-f]{12}: 100%\|.*\| 2/2", capsys.readouterr().err)



def test_the_table_marks_each_trial_s_targets_and_a_first_row_that_misses_them_is_said():
    """Targets are reported, never vetoed: a feasible #1 may miss them, and the trial a campaign would select (the
    best feasible one that meets them) is then further down, or absent."""
    from tuning.rank import first_misses_targets, format_rows
    from tuning.study.trial_row import TrialRow

    rows = [TrialRow(trial=7, J=0.30, feasible=True, target_pass=False, verdict="PASS_B"),
            TrialRow(trial=3, J=0.20, feasible=False, vetoes=("FIDELITY_DISTORTED",), target_pass=True),
            TrialRow(trial=5, J=0.10, feasible=True, target_pass=True, verdict="PASS_BPLUS")]
    head, *body = format_rows(rows, []).splitlines()
    assert head.split()[7:] == ["verdict", "targets"]
    assert [line.split()[8] for line in body] == ["MISSED", "met", "met"]
    assert first_misses_targets(rows) == ("note: #1 (trial 7) misses the study's targets (reported, not vetoed); the "
                                          "best feasible trial that meets them is #3 (trial 5)")
    assert first_misses_targets(rows, listed=2).endswith("is #3 (trial 5), below the 2 listed (--top)")
    assert first_misses_targets(rows, listed=3).endswith("is #3 (trial 5)")
    assert first_misses_targets(rows[:2]).endswith("no feasible trial meets them")
    assert first_misses_targets(rows[2:]) is None
    assert first_misses_targets(rows[1:]) is None   # an infeasible #1: its veto says why
    assert first_misses_targets([]) is None


def test_a_phase_without_trials_is_said_not_shown_as_an_empty_table(project, capsys):
    """The phase's experiment exists (a sweep whose precheck closed the phase logs its parent run only) but holds no
    trial: the header alone would read as a ranking of nothing."""
    from tuning.rank import main as rank
    from tuning.trail.tracking import client

    client().create_experiment("3A-P3")
    assert rank(["--phase", "P3"]) == 0
    out = capsys.readouterr()
    head = ["rank", "study", "trial", "mlflow_run_id", "J", "worst.J", "veto", "verdict", "targets"]
    assert out.out.split()[:9] == head and len(out.out.splitlines()) == 1
    assert out.err.splitlines()[0] == ("note: no trial in the MLflow experiment 3A-P3: no sweep of phase P3 has logged "
                                       "one (a phase its precheck closes, e.g. a campaign's P3_NOOP_LOCK, runs none)")
