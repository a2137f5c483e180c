"""P0 candidate-vs-baseline comparator (METRICS §11, §15).

    python -m tuning.compare BASELINE_JSON CANDIDATE [--out reports]

BASELINE_JSON is a P0 baseline pack (``segment3a_p0_baseline_metrics_<rid>.json``). CANDIDATE is
either another P0 pack JSON or a materialised run directory (scored here). Writes
``<out>/segment3a_p0_candidate_vs_baseline_<candidate_rid>.{json,md}`` and prints the Markdown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from engine import EngineError
from engine import compare_packs
from engine import DELTA_METRICS
from engine import lookup
from tuning.common import worlds
from tuning.common.errors import E_ARTIFACTS, TuningParser, run_cli
from tuning.report.files import (GATE_FAMILIES, atomic_write_text, compact_gates, fmt, json_text, load_run_dir,
                                 md_table, read_json, require_keys, run_block, run_fidelity_evidence, score_tables,
                                 utc_now)

OUT_JSON = "segment3a_p0_candidate_vs_baseline_{rid}.json"
OUT_MD = "segment3a_p0_candidate_vs_baseline_{rid}.md"
PACK_KEYS = ("baseline_authority", "metrics", "gates", "verdict")


def read_p0_pack(path: str | Path) -> dict:
    doc = read_json(path, "P0 metrics pack")
    require_keys(doc, PACK_KEYS, path, "P0 metrics pack")
    for key in ("baseline_authority", "metrics", "gates"):
        if not isinstance(doc[key], dict):
            raise EngineError(E_ARTIFACTS, f"{path}: P0 metrics pack field {key} is not an object")
    require_keys(doc["baseline_authority"], ("run_id",), path, "baseline_authority")
    return doc


def candidate_from_json(path: Path) -> dict:
    doc = read_p0_pack(path)
    auth = doc["baseline_authority"]
    return {**{k: auth.get(k) for k in ("runs_root", "run_id", "run_root", "seed", "manifest_fingerprint",
                                       "parameter_hash")},
            "metrics": doc["metrics"], "gates": doc["gates"], "verdict": doc["verdict"]}


def candidate_from_run(run_dir: Path, world=None) -> dict:
    res = load_run_dir(run_dir)
    pack, gates, verdict = score_tables(res.tables, run_fidelity_evidence(res, world))
    block = run_block(res, run_dir.resolve().parent if run_dir.is_absolute() else run_dir.parent)
    block["run_root"] = run_dir.as_posix()
    return {**block, "metrics": pack, "gates": compact_gates(gates), "verdict": verdict}


def comparison_document(baseline_path: Path, baseline: Mapping, candidate: Mapping) -> dict:
    result = compare_packs({"pack": baseline["metrics"], "gates": baseline["gates"], "verdict": baseline["verdict"]},
                           {"pack": candidate["metrics"], "gates": candidate["gates"],
                            "verdict": candidate["verdict"]})
    return {
        "generated_utc": utc_now(),
        "phase": "P0",
        "segment": "3A",
        "baseline": {"json": baseline_path.as_posix(), "run_id": baseline["baseline_authority"]["run_id"],
                     "verdict": baseline["verdict"], "metrics": baseline["metrics"], "gates": baseline["gates"]},
        "candidate": dict(candidate),
        **result,
    }


def comparison_markdown(doc: Mapping) -> str:
    base, cand = doc["baseline"], doc["candidate"]
    rows = []
    for key, (path, direction) in DELTA_METRICS.items():
        rows.append((key, fmt(lookup(base["metrics"], path)), fmt(lookup(cand["metrics"], path)),
                     fmt(doc["delta_candidate_minus_baseline"][key]), direction,
                     "yes" if doc["uplift_directional"][f"{key}_{direction}"] else "no"))
    drift_rows = []
    for fam in GATE_FAMILIES:
        for gid, drift in (doc["gate_drift"].get(fam) or {}).items():
            drift_rows.append((gid, (base["gates"][fam].get(gid) or {}).get("status", "—"),
                               ((cand["gates"].get(fam) or {}).get(gid) or {}).get("status", "—"), drift))
    lines = [
        f"# Segment 3A — P0 candidate `{cand['run_id']}` vs baseline `{base['run_id']}`",
        "",
        f"- baseline: `{base['json']}` — verdict **{base['verdict']}**",
        f"- candidate: `{cand.get('run_root') or cand['run_id']}` (seed `{cand.get('seed')}`) — "
        f"verdict **{cand['verdict']}**",
        f"- progression_decision: **{doc['progression_decision']}**",
        "",
        "## Metric deltas (candidate − baseline)",
        "",
        md_table(("metric", "baseline", "candidate", "delta", "uplift if", "uplift"), rows),
        "",
        "## Gate drift",
        "",
        md_table(("gate", "baseline", "candidate", "drift"), drift_rows),
        "",
    ]
    return "\n".join(lines)


def build_parser() -> TuningParser:
    ap = TuningParser(prog="python -m tuning.compare", description=__doc__.splitlines()[0])
    ap.add_argument("baseline_json", help="P0 baseline pack JSON")
    ap.add_argument("candidate", help="candidate P0 pack JSON or materialised run directory")
    ap.add_argument("--out", default="reports", help="reports folder (default: reports)")
    worlds.add_world_args(ap)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    baseline_path = Path(args.baseline_json)
    baseline = read_p0_pack(baseline_path)
    cand_path = Path(args.candidate)
    candidate = candidate_from_run(cand_path, worlds.given(args)) if cand_path.is_dir() else candidate_from_json(
        cand_path)
    doc = comparison_document(baseline_path, baseline, candidate)
    rid = candidate["run_id"]
    md = comparison_markdown(doc)
    out = Path(args.out)
    atomic_write_text(out / OUT_JSON.format(rid=rid), json_text(doc))
    atomic_write_text(out / OUT_MD.format(rid=rid), md)
    print(md, end="")
    print(f"\nwrote {out / OUT_JSON.format(rid=rid)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
