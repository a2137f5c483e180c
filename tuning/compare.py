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
from tuning.common import worlds
from tuning.common.errors import E_ARTIFACTS, TuningParser, run_cli
from tuning.report.files import (GATE_FAMILIES, atomic_write_text, compact_gates, fmt, is_run_id, json_text,
                                 load_run_dir, md_table, read_json, require_keys, run_block, run_fidelity_evidence,
                                 score_tables, utc_now)

OUT_JSON = "segment3a_p0_candidate_vs_baseline_{rid}.json"
OUT_MD = "segment3a_p0_candidate_vs_baseline_{rid}.md"
PACK_KEYS = ("baseline_authority", "metrics", "gates", "verdict")
VERDICTS = ("PASS_BPLUS", "PASS_B", "FAIL_REALISM")   # engine.metrics.run_verdict's answers
NON_FINITE = ("inf", "-inf", "nan")                   # how a report writes a non-finite float


def read_p0_pack(path: str | Path) -> dict:
    doc = read_json(path, "P0 metrics pack")
    require_keys(doc, PACK_KEYS, path, "P0 metrics pack")
    for key in ("baseline_authority", "metrics", "gates"):
        if not isinstance(doc[key], dict):
            raise EngineError(E_ARTIFACTS, f"{path}: P0 metrics pack field {key} is not an object")
    require_keys(doc["baseline_authority"], ("run_id",), path, "baseline_authority")
    check_pack_shape(doc, path)
    return doc


def _number(value) -> bool:
    """A metric value as a P0 pack holds it: a number, a flag, null, or the report's spelling of a non-finite
    float (tuning.report.files.json_text); lists (the escalation curves) are carried as they are."""
    return value is None or isinstance(value, (int, float, list)) or value in NON_FINITE


def check_pack_shape(doc: Mapping, path: str | Path) -> None:
    """The sections the comparator reads are objects where it reads objects, the verdict is a known verdict,
    the run id names a file, and the metric values are numbers."""
    from engine import DELTA_METRICS, lookup   # the metric pack (pandas): once the arguments are sound

    def bad(field: str, value, want: str) -> EngineError:
        return EngineError(E_ARTIFACTS, f"{path}: P0 metrics pack field {field} is {value!r:.80}, not {want}")

    rid = doc["baseline_authority"]["run_id"]
    if not is_run_id(rid):
        raise bad("baseline_authority.run_id", rid, "a run id")
    if doc["verdict"] not in VERDICTS:
        raise bad("verdict", doc["verdict"], f"one of {', '.join(VERDICTS)}")
    for family, block in doc["gates"].items():
        if not isinstance(block, dict):
            raise bad(f"gates.{family}", block, "an object")
        for gate_id, entry in block.items():
            if not isinstance(entry, dict):
                raise bad(f"gates.{family}.{gate_id}", entry, "an object")
            if not isinstance(entry.get("status", ""), str):
                raise bad(f"gates.{family}.{gate_id}.status", entry["status"], "a gate status")
    for section, block in doc["metrics"].items():
        if not isinstance(block, dict):
            raise bad(f"metrics.{section}", block, "an object")
    todo = [(f"metrics.{k}", v) for k, v in doc["metrics"].items()]
    while todo:
        where, node = todo.pop()
        for key, value in node.items():
            if isinstance(value, dict):
                todo.append((f"{where}.{key}", value))
            elif not _number(value):
                raise bad(f"{where}.{key}", value, "a number")
    for metric, _ in DELTA_METRICS.values():   # compared: a number, or absent
        if isinstance(lookup(doc["metrics"], metric), (list, dict)):
            raise bad(f"metrics.{metric}", lookup(doc["metrics"], metric), "a number")


def pack_world(doc: Mapping) -> dict | None:
    """The world a P0 pack measured (``measures.world``: fingerprint and name), or None (a pack that does not say)."""
    world = (doc.get("measures") or {}).get("world") if isinstance(doc.get("measures"), dict) else None
    return world if isinstance(world, dict) and isinstance(world.get("fingerprint"), str) else None


def candidate_from_json(path: Path) -> dict:
    doc = read_p0_pack(path)
    auth = doc["baseline_authority"]
    return {**{k: auth.get(k) for k in ("runs_root", "run_id", "run_root", "seed", "manifest_fingerprint",
                                       "parameter_hash")},
            "metrics": doc["metrics"], "gates": doc["gates"], "verdict": doc["verdict"], "world": pack_world(doc)}


def candidate_from_run(run_dir: Path, world=None) -> dict:
    res = load_run_dir(run_dir)
    pack, gates, verdict = score_tables(res.tables, run_fidelity_evidence(res, world))
    block = run_block(res, run_dir.resolve().parent if run_dir.is_absolute() else run_dir.parent)
    block["run_root"] = run_dir.as_posix()
    # its world is the one given (--world); a run's seal does not tell a catalogue-only world from the default one
    return {**block, "metrics": pack, "gates": compact_gates(gates), "verdict": verdict,
            "world": worlds.record(world) if world is not None else None}


def require_one_world(baseline: Mapping, candidate: Mapping) -> None:
    """A comparison's deltas and progression decision are two policies' on one world: a candidate measured on
    another world than the baseline pack's is refused (E3A_TUN_070) where both say which world they measured (a
    candidate pack's ``measures.world``, a run folder's ``--world``)."""
    a, b = pack_world(baseline), candidate.get("world")
    if a is not None and b is not None and a["fingerprint"] != b["fingerprint"]:
        raise EngineError(worlds.E_WORLD_MISMATCH, f"the baseline measured world {a.get('name')} "
                                                   f"({a['fingerprint'][:12]}), the candidate world {b.get('name')} "
                                                   f"({b['fingerprint'][:12]}): their deltas would compare two worlds, "
                                                   f"not two policies (compare packs of one world)")


def comparison_document(baseline_path: Path, baseline: Mapping, candidate: Mapping) -> dict:
    from engine import compare_packs

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
    from engine import DELTA_METRICS, lookup

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
    require_one_world(baseline, candidate)
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
