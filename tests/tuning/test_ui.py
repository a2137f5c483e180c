"""A newcomer's UIs: MLflow opens model-training experiments ranked feasible-first by J (checked in headless
Chromium), the sweep's HTML renders offline, optuna-dashboard marks vetoed trials infeasible."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.tuning.conftest import make_project, trial_runs
from tests.tuning.ui_helpers import MlflowUi, chromium, dump_dom, visible_text

pytestmark = pytest.mark.slow  # a sweep, optuna-dashboard, an MLflow server and headless Chromium

# a guardrail the neutral trial 0 passes and the blended trials (higher J) fail: a vetoed trial has the best J
MIXED = (("study: t-veto", "study: t-mixed"),
         ("{metric: s4.top1_share_median, op: '<=', value: 0.0, reason: FORCED_VETO}",
          "{metric: s2.top1_share_median_multi_tz, op: '>=', value: 0.59, reason: KEEP_TOP1}"))


@pytest.fixture(scope="module")
def ui_proj(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("ui") / "proj")
    text = (root / "studies" / "veto.yaml").read_text()
    for old, new in MIXED:
        text = text.replace(old, new)
    (root / "studies" / "mixed.yaml").write_text(text)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")
        (root / "mlruns").mkdir()
        from tuning.sweep import main
        assert main(["--no-progress", "--json", "--phase", "studies/mixed.yaml", "--trials", "5"]) == 0
        runs = trial_runs("t-mixed")
        assert {r.data.tags["veto"] for r in runs} == {"PASS", "FAIL"}
        best = max(runs, key=lambda r: r.data.metrics["J"])
        assert best.data.tags["veto"] == "FAIL"  # the setting this module is about
        yield root


def test_every_experiment_opens_as_model_training(ui_proj):
    from tuning.tracking import client
    exps = client().search_experiments()
    assert {"Default", "3A-P1.2"} <= {e.name for e in exps}
    assert all(e.tags.get("mlflow.experimentKind") == "custom_model_development" for e in exps), \
        [(e.name, e.tags) for e in exps]


def test_sweep_html_artifacts_load_nothing_from_the_network(ui_proj):
    pages = list(Path("mlruns", "artifacts").rglob("*.html"))
    assert {"optimization_history.html", "parallel_coordinate.html", "report.html"} <= {p.name for p in pages}
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert not re.search(r"<(script|link|img)\b[^>]*\b(src|href)\s*=\s*[\"']?(https?:)?//", html, re.I), page
        assert "Plotly.newPlot" in html and len(html) > 1_000_000, page  # plotly.js is inline


def test_optuna_dashboard_shows_vetoes_infeasible_and_a_feasible_best(ui_proj):
    optuna_dashboard = pytest.importorskip("optuna_dashboard")
    from wsgiref.util import setup_testing_defaults

    from tuning.dashboard import feasible_best_storage
    from tuning.study_store import open_storage

    app = optuna_dashboard.wsgi(feasible_best_storage(open_storage(None, "t-mixed")))

    def get(path: str) -> dict:
        env = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
        setup_testing_defaults(env)
        status = []
        body = b"".join(app(env, lambda s, h, *a: status.append(s)))
        assert status[0].startswith("200"), (path, status)
        return json.loads(body)

    (study,) = [s for s in get("/api/studies")["study_summaries"] if s["study_name"] == "t-mixed"]
    detail = get(f"/api/studies/{study['study_id']}")
    veto = {int(r.data.tags["optuna_trial"]): r.data.tags["veto"] for r in trial_runs("t-mixed")}
    assert len(detail["trials"]) == len(veto) == 5
    for t in detail["trials"]:
        assert len(t["constraints"]) == 1 and (t["constraints"][0] <= 0) == (veto[t["number"]] == "PASS"), t
    (best,) = detail["best_trials"]
    assert veto[best["number"]] == "PASS"
    stock = open_storage(None, "t-mixed")  # what the stock storage would have called best: a vetoed trial
    assert veto[stock.get_best_trial(stock.get_study_id_from_name("t-mixed")).number] == "FAIL"


def test_mlflow_ui_in_headless_chromium_ranks_trials_feasible_first_with_j(ui_proj, tmp_path):
    binary = chromium()
    if binary is None:
        pytest.skip("chromium is absent and cannot be installed here (no apt-get or not root)")
    from tuning.tracking import client
    from tuning.ui_view import rank_url

    runs = trial_runs("t-mixed")
    exp_id = client().get_experiment_by_name("3A-P1.2").experiment_id
    with MlflowUi(ui_proj / "mlruns" / "mlflow.db") as ui:
        text = visible_text(dump_dom(binary, rank_url(ui.base, exp_id), tmp_path / "profile"))
    assert "Training runs" in text and "Sort: J_feasible" in text, text[:80]
    header = text[text.index("Run Name"): text.index("Run Name") + 30]
    assert {"J", "veto", "study"} <= set(header), header
    names = [t for t in text if re.fullmatch(r"trial-\d{4}", t)]
    assert sorted(names) == sorted(r.info.run_name for r in runs)  # every trial, flat, no sweep run
    feasible = sorted((r for r in runs if r.data.tags["veto"] == "PASS"), key=lambda r: -r.data.metrics["J"])
    assert names[: len(feasible)] == [r.info.run_name for r in feasible]  # feasible first, by J
    shown = set(text)
    assert all(f"{r.data.metrics['J']:.6g}"[:6] in " ".join(shown) for r in runs)  # the J column's values
