"""A newcomer's UIs, checked on the rendered pages. MLflow (in headless Chromium, real time): an experiment
link opens the training-runs table, not the GenAI overview; the rank view shows J, verdict, fidelity and
veto, whole, feasible first by J; a sweep's history plot renders in the run page's artifact viewer.
optuna-dashboard (``python -m tuning.dashboard``, through its HTTP API): vetoed trials are infeasible and
never among its best trials, for one objective and for two."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from engine import EngineError

from tests.environment import NO_CHROMIUM
from tests.tuning.conftest import env_for, make_project, seed_store, trial_runs
from tests.tuning.ui_helpers import Browser, MlflowUi, chromium, free_port

pytestmark = pytest.mark.slow  # sweeps, optuna-dashboard, an MLflow server and headless Chromium

# a guardrail the neutral trial 0 passes and the blended trials (higher J) fail: a vetoed trial has the best J
MIXED = (("study: t-veto", "study: t-mixed"),
         ("{metric: s4.top1_share_median, op: '<=', value: 0.0, reason: FORCED_VETO}",
          "{metric: s2.top1_share_median_multi_tz, op: '>=', value: 0.722, reason: KEEP_TOP1}"))
# the same with a second objective, in its own experiment: J up, prior JSD down
FRONT = (("study: t-mixed", "study: t-front"), ("phase: P1.2", "phase: P1.3"),
         ("objective:\n  name: J", "objective:\n  second: {name: jsd, metric: fidelity.prior_jsd_mean, "
                                   "direction: minimize}\n  name: J"))


@pytest.fixture(scope="module")
def ui_proj(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("ui") / "proj")
    text = (root / "studies" / "veto.yaml").read_text()
    for old, new in MIXED:
        text = text.replace(old, new)
    (root / "studies" / "mixed.yaml").write_text(text)
    for old, new in FRONT:
        assert old in text
        text = text.replace(old, new)
    (root / "studies" / "front.yaml").write_text(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
        seed_store(root)
        from tuning.sweep.__main__ import main
        for study in ("mixed", "front"):
            assert main(["--no-progress", "--json", "--phase", f"studies/{study}.yaml", "--trials", "5"]) == 0
        runs = trial_runs("t-mixed")
        assert {r.data.tags["veto"] for r in runs} == {"PASS", "FAIL"}
        best = max(runs, key=lambda r: r.data.metrics["J"])
        assert best.data.tags["veto"] == "FAIL"  # the setting this module is about
        yield root


@pytest.fixture(scope="module")
def ui(ui_proj):
    with MlflowUi(ui_proj / "mlruns" / "mlflow.db") as server:
        yield server


@pytest.fixture(scope="module")
def browser(ui_proj, tmp_path_factory):
    binary = chromium()
    if binary is None:
        pytest.skip(NO_CHROMIUM)
    with Browser(binary, tmp_path_factory.mktemp("chromium"), size=(1600, 1000)) as b:
        yield b


def _experiment_id(name: str = "3A-P1.2") -> str:
    from tuning.trail.tracking import client
    return client().get_experiment_by_name(name).experiment_id


def test_every_experiment_is_tagged_model_training(ui_proj):
    """The tag older MLflow 3 UIs read; 3.17 reads the address (``workflowType``), tested below."""
    from tuning.trail.tracking import client
    exps = client().search_experiments()
    assert {"Default", "3A-P1.2", "3A-P1.3"} <= {e.name for e in exps}
    assert all(e.tags.get("mlflow.experimentKind") == "custom_model_development" for e in exps), \
        [(e.name, e.tags) for e in exps]


def test_sweep_html_artifacts_load_nothing_from_the_network(ui_proj):
    pages = list(Path("mlruns", "artifacts").rglob("*.html"))
    assert {"optimization_history.html", "parallel_coordinate.html", "pareto.html", "report.html"} <= \
        {p.name for p in pages}
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert not re.search(r"<(script|link|img)\b[^>]*\b(src|href)\s*=\s*[\"']?(https?:)?//", html, re.I), page
        assert "Plotly.newPlot" in html and len(html) > 1_000_000, page  # plotly.js is inline


def test_an_experiment_link_opens_the_training_runs_table(ui_proj, ui, browser):
    from tuning.trail.ui_view import experiment_url

    page = browser.open(experiment_url(ui.base, _experiment_id()))
    page.wait_for("document.querySelectorAll('.ag-center-cols-container .ag-row').length === 6")  # 5 trials, 1 sweep
    text = page.eval("document.body.innerText")
    assert "Run Name" in text and "trial-0004" in text and "sweep-t-mixed" in text
    assert page.eval("location.hash").split("?")[0].endswith("/runs")
    for genai in ("Token Usage", "Evaluation runs", "Tool calls", "Traces\n0"):  # the GenAI overview's
        assert genai not in text, genai


_RANK_LAYOUT = r"""(() => {
  const box = el => { const r = el.getBoundingClientRect(); return [r.left, r.right]; };
  const heads = Object.fromEntries([...document.querySelectorAll('.ag-header-cell[col-id]')]
    .map(h => [h.getAttribute('col-id'), box(h)]));
  const text = c => { const r = document.createRange(); r.selectNodeContents(c); return r.getBoundingClientRect().right; };
  const rows = [...document.querySelectorAll('.ag-center-cols-container .ag-row')]
    .sort((a, b) => a.getBoundingClientRect().top - b.getBoundingClientRect().top)
    .map(r => Object.fromEntries([...r.querySelectorAll('.ag-cell[col-id]')].map(c =>
      [c.getAttribute('col-id'), [c.innerText, text(c) <= c.getBoundingClientRect().right]])));
  return {viewport: box(document.querySelector('.ag-center-cols-viewport')), heads, rows};
})()"""


def test_the_rank_view_shows_j_verdict_fidelity_and_veto_whole_feasible_first(ui_proj, ui, browser):
    from tuning.trail.ui_view import rank_url

    runs = trial_runs()
    page = browser.open(f"{ui.base}/#/")
    page.wait_for("document.readyState === 'complete'")
    page.eval("localStorage.setItem('mlflow.assistant.panelOpen_v1', 'true')")  # the narrowest table: panel open
    page.goto(rank_url(ui.base, _experiment_id()))
    page.wait_for(f"document.querySelectorAll('.ag-center-cols-container .ag-row').length === {len(runs)}")
    text = page.eval("document.body.innerText")
    assert "Sort: J_feasible" in text and "MLflow Assistant" in text
    layout = page.eval(_RANK_LAYOUT)
    (left, right), heads = layout["viewport"], layout["heads"]
    # at 1600 px, with MLflow's Assistant panel open (as on a first visit), these four columns are on screen
    for col in ("metrics.`J`", "tags.`verdict`", "tags.`fidelity`", "tags.`veto`"):
        assert col in heads and left <= heads[col][0] < heads[col][1] <= right, (col, heads.get(col), left, right)
    rows = layout["rows"]
    assert all(row["metrics.`J`"][1] for row in rows), "a J value is cut off"
    shown = sorted((row["tags.`veto`"][0], row["tags.`verdict`"][0], row["tags.`fidelity`"][0],
                    float(row["metrics.`J`"][0])) for row in rows)
    assert shown == sorted((r.data.tags["veto"], r.data.tags["verdict"], r.data.tags["fidelity"], r.data.metrics["J"])
                           for r in runs)
    vetoes = [row["tags.`veto`"][0] for row in rows]
    assert vetoes == sorted(vetoes, key=lambda v: v != "PASS")  # feasible first ...
    feasible_j = [float(row["metrics.`J`"][0]) for row in rows if row["tags.`veto`"][0] == "PASS"]
    assert feasible_j == sorted(feasible_j, reverse=True)  # ... by J


def test_a_sweep_history_plot_renders_in_the_artifact_viewer(ui_proj, ui, browser):
    from tuning.trail.tracking import client, search_all

    (sweep,) = search_all(client(), [_experiment_id()], "tags.run_kind = 'sweep' and tags.study = 't-mixed'")
    page = browser.open(f"{ui.base}/#/experiments/{_experiment_id()}/runs/{sweep.info.run_id}/artifacts/"
                        f"optimization_history.html?workflowType=machine_learning")
    page.wait_for("!!document.querySelector('iframe.mlflow-html-iframe')")  # MLflow's sandboxed HTML preview
    page.wait_for("document.querySelector('iframe.mlflow-html-iframe').getBoundingClientRect().height > 300")
    frame = None
    deadline = time.monotonic() + 60
    while frame is None and time.monotonic() < deadline:  # a sandboxed iframe runs in its own process
        frame = next(iter(page.frames()), None)
        time.sleep(0.25)
    assert frame is not None, "the preview's iframe never started"
    points = page.wait_for("document.querySelectorAll('.plotly .scatterlayer .point').length", session=frame)
    assert points == 5  # one per trial: the plot is drawn, inside the viewer
    assert page.eval("document.querySelector('.gtitle').textContent", session=frame) == "Optimization History Plot"


def test_rank_open_prints_the_address_of_the_ui_that_reads_this_store(ui_proj, ui, capsys, monkeypatch):
    from tuning.rank import main as rank

    def link(*args: str) -> tuple[str, str]:
        assert rank(["--phase", "P1.2", "--top", "1", "--open", *args]) == 0
        out, err = capsys.readouterr()
        return out.splitlines()[-1], err

    line, err = link("--ui", ui.base)
    assert line == f"MLflow UI: {ui.base}/#/experiments/{_experiment_id()}/runs?workflowType=machine_learning" \
                   "&viewStateShareKey=rank" and err == ""
    line, err = link()  # a local store, no --ui: port 5000, and a note when no UI of this store is there
    assert line.startswith("MLflow UI: http://127.0.0.1:5000/#/") and err.startswith("note: ") and "--ui" in err
    monkeypatch.setenv("MLFLOW_TRACKING_URI", ui.base)  # a tracking server: its own UI, whatever its port
    line, err = link()
    assert line.startswith(f"MLflow UI: {ui.base}/#/experiments/{_experiment_id()}/runs?") and err == ""


def test_after_the_readmes_one_switch_a_plain_experiment_link_opens_training_runs(ui_proj, ui, browser):
    """The README: switch MLflow's sidebar to *Model training* once on its home page; the browser remembers,
    and links without ``workflowType`` (MLflow's own) open training pages too. (Last: it changes the profile.)"""
    toggle = "[...document.querySelectorAll('[role=button]')].find(e => e.innerText.trim() === 'Model training')"
    page = browser.open(f"{ui.base}/#/")
    page.wait_for(f"!!{toggle}")
    page.eval(f"{toggle}.click()")
    page.wait_for("localStorage.getItem('mlflow.workflowType_v1') === '\"machine_learning\"'")
    page.goto(f"{ui.base}/#/experiments/{_experiment_id()}")
    page.wait_for("document.querySelectorAll('.ag-center-cols-container .ag-row').length === 6")
    assert "Token Usage" not in page.eval("document.body.innerText")


# ------------------------------------------------------------------------------------------ optuna-dashboard
def _dashboard(root: Path, study_file: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tuning.dashboard", "--phase", study_file, "--port", str(port)],
                            cwd=root, env=env_for(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, f"http://127.0.0.1:{port}"


def _get(base: str, path: str, deadline: float) -> dict:
    while True:
        try:
            with urllib.request.urlopen(base + path, timeout=10) as r:
                return json.loads(r.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def _detail(base: str, study: str, query: str = "") -> dict:
    deadline = time.monotonic() + 60
    (summary,) = [s for s in _get(base, "/api/studies", deadline)["study_summaries"] if s["study_name"] == study]
    return _get(base, f"/api/studies/{summary['study_id']}{query}", deadline)


def _stock_best(study: str) -> list[int]:
    """What optuna-dashboard's own app answers on the same journal."""
    from wsgiref.util import setup_testing_defaults

    import optuna_dashboard
    from tuning.storage.stores import open_storage

    storage = open_storage(None, study)
    app = optuna_dashboard.wsgi(storage)
    env = {"PATH_INFO": f"/api/studies/{storage.get_study_id_from_name(study)}", "REQUEST_METHOD": "GET"}
    setup_testing_defaults(env)
    return [t["number"] for t in json.loads(b"".join(app(env, lambda *a: None)))["best_trials"]]


def test_optuna_dashboard_shows_vetoes_infeasible_and_never_a_vetoed_best(ui_proj):
    pytest.importorskip("optuna_dashboard")
    # a study the storage does not hold (a typo, nothing swept yet): refused, and no journal made for it
    from tuning.dashboard import existing_study_storage

    with pytest.raises(EngineError) as err:   # the program's refusals: tests/robustness/test_cli_programs.py
        existing_study_storage(f"journal:{ui_proj / '.optuna' / 't-typo.journal'}", "t-typo")
    assert err.value.code == "E3A_TUN_011_STUDY_NOT_FOUND" and "no Optuna study t-typo" in err.value.cause
    with pytest.raises(EngineError) as err:   # a journal that holds other studies only
        existing_study_storage(f"journal:{ui_proj / '.optuna' / 't-mixed.journal'}", "t-typo")
    assert err.value.code == "E3A_TUN_011_STUDY_NOT_FOUND"
    assert not list(ui_proj.glob(".optuna/t-typo*"))
    servers = {study: _dashboard(ui_proj, f"studies/{f}.yaml") for study, f in (("t-mixed", "mixed"),
                                                                             ("t-front", "front"))}
    try:
        details = {"t-mixed": _detail(servers["t-mixed"][1], "t-mixed"),
                   "t-front": _detail(servers["t-front"][1], "t-front", "?after=4"),  # a client's later poll first
                   "t-front full": _detail(servers["t-front"][1], "t-front")}
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.communicate(timeout=30)
    for study, phase in (("t-mixed", "P1.2"), ("t-front", "P1.3")):
        veto = {int(r.data.tags["optuna_trial"]): r.data.tags["veto"] for r in trial_runs(study, phase)}
        trials = details[f"{study} full" if study == "t-front" else study]["trials"]
        assert len(trials) == len(veto) == 5
        for t in trials:
            assert len(t["constraints"]) == 1 and (t["constraints"][0] <= 0) == (veto[t["number"]] == "PASS"), t
        best = [t["number"] for t in details[study]["best_trials"]]
        assert best and all(veto[n] == "PASS" for n in best), (study, best, veto)
        assert any(veto[n] == "FAIL" for n in _stock_best(study)), study  # the stock app crowns a vetoed trial
        if study == "t-mixed":  # the best feasible J
            runs = [r for r in trial_runs(study, phase) if r.data.tags["veto"] == "PASS"]
            assert best == [int(max(runs, key=lambda r: r.data.metrics["J"]).data.tags["optuna_trial"])]
        if study == "t-front":  # the harness's feasible front: the trials the sweep tagged pareto = true
            assert best == sorted(int(r.data.tags["optuna_trial"]) for r in trial_runs(study, phase)
                                  if r.data.tags.get("pareto") == "true")
            assert [t["number"] for t in details["t-front full"]["best_trials"]] == best
