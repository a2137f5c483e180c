"""``python -m tuning.rank --phase P1.2 [--top 10] [--study NAME] [--json]``

The ranking table of a phase's trials, read from MLflow (the numbers the UI shows): feasible
(``veto`` = PASS) first, then by J descending, then by trial number.
"""

from __future__ import annotations

import argparse
import json
from typing import Sequence

from engine.errors import EngineError
from tuning.errors import E_RUN_MISSING, TuningParser, run_cli
from tuning.study_spec import DEFAULT_KEY_METRICS, load_study
from tuning.tracking import RUN_KIND_TRIAL, client, search_all


def ranked_runs(phase: str, study: str | None = None, key_metrics: Sequence[str] = DEFAULT_KEY_METRICS) -> list[dict]:
    mlc = client()
    exp = mlc.get_experiment_by_name(f"3A-{phase}")
    if exp is None:
        raise EngineError(E_RUN_MISSING, f"no MLflow experiment 3A-{phase} at {mlc.tracking_uri}")
    flt = f"tags.run_kind = '{RUN_KIND_TRIAL}'" + (f" and tags.study = '{study}'" if study else "")
    rows = []
    for run in search_all(mlc, [exp.experiment_id], flt, order_by=["metrics.J DESC"]):
        t, m = run.data.tags, run.data.metrics
        rows.append({"run_id": run.info.run_id, "study": t.get("study"), "trial": int(t.get("optuna_trial", -1)),
                     "J": m.get("J"), "veto": t.get("veto", "FAIL"), "veto_reasons": t.get("veto_reasons", ""),
                     "verdict": t.get("verdict"), "engine_run_id": t.get("engine_run_id"),
                     "authority": t.get("authority", ""), "params": dict(run.data.params),
                     "metrics": {k: m.get(k) for k in key_metrics}})
    rows.sort(key=lambda r: (r["veto"] != "PASS", -(r["J"] if r["J"] is not None else float("-inf")),
                             r["study"] or "", r["trial"]))
    return rows


def format_rows(rows: Sequence[dict], key_metrics: Sequence[str]) -> str:
    short = [m.split(".", 1)[0] + "." + m.split(".", 1)[1].replace("share_", "").replace("_multi_tz", "_mtz")
             for m in key_metrics]
    head = ["rank", "study", "trial", "mlflow_run_id", "J", "veto", "verdict"] + short
    out = ["\t".join(head)]
    for i, r in enumerate(rows, 1):
        veto = r["veto"] if r["veto"] == "PASS" else f"FAIL({r['veto_reasons']})"
        cells = [str(i), str(r["study"]), str(r["trial"]), r["run_id"],
                 "-" if r["J"] is None else f"{r['J']:+.6f}", veto, str(r["verdict"])]
        cells += ["-" if r["metrics"].get(m) is None else f"{r['metrics'][m]:.6f}" for m in key_metrics]
        out.append("\t".join(cells + ([f"[{r['authority']} authority]"] if r["authority"] else [])))
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = TuningParser(prog="python -m tuning.rank", description=__doc__.splitlines()[0])
    ap.add_argument("--phase", required=True)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--study", help="only this Optuna study's trials")
    ap.add_argument("--studies-dir", default="studies")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    try:
        key_metrics = list(load_study(args.phase, args.studies_dir).key_metrics)
    except EngineError:
        key_metrics = list(DEFAULT_KEY_METRICS)
    rows = ranked_runs(args.phase, args.study, key_metrics)[: args.top]
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
    else:
        print(format_rows(rows, key_metrics))
    return 0


if __name__ == "__main__":
    run_cli(main)
