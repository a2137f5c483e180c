"""Runtime lanes: POPT.0 baseline + hotspot map (METRICS §13) and POPT.1 closure (§14).

    python -m tuning.runtime baseline [--seed 42] [--repeats 5] [--policies policies] [--out reports]
                                      [--runs-root runs] [--world DIR]
    python -m tuning.runtime closure BASELINE_JSON CANDIDATE_JSON [--require-s5-gate] [--out reports]

``baseline`` runs the full chain ``--repeats`` times with a cold cache (the engine times each state
with a monotonic clock), takes the per-state median, and writes
``segment3a_popt0_baseline_<rid>.json`` + ``segment3a_popt0_hotspot_map_<rid>.md``. The first
repeat is materialised so the bundle evidence (``_passed.flag``) exists for the closure vetoes.
``closure`` compares two POPT.0 JSONs and writes ``segment3a_popt1_closure_<candidate_rid>.{json,md}``.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Mapping, Sequence

from engine import EngineError
from engine import popt0_table, popt1_closure
from engine import median
from engine import STATES
from tuning.common.errors import E_ARTIFACTS, E_USAGE
from tuning.common.limits import MAX_SEEDS
from tuning.report.files import (atomic_write_text, fmt, is_run_id, json_text, md_table, passed_flag_path, require_keys,
                                 run_block, run_evidence, score_tables, utc_now)

POPT0_JSON = "segment3a_popt0_baseline_{rid}.json"
POPT0_MD = "segment3a_popt0_hotspot_map_{rid}.md"
POPT1_JSON = "segment3a_popt1_closure_{rid}.json"
POPT1_MD = "segment3a_popt1_closure_{rid}.md"


def state_evidence(res, pack: Mapping) -> dict:
    """Run-report counters per state (copied into the hotspot entries)."""
    s1, s3, s4 = pack["s1"], pack["s3"], pack["s4"]
    tables = res.tables
    return {
        "S0": {"policies_sealed": len(res.identity.get("policy_digests", {}))},
        "S1": {"pairs_total": s1["pairs_total"], "pairs_escalated": s1["pairs_escalated"]},
        "S2": {"prior_rows": len(tables["s2"]), "countries": pack["s2"]["countries_total"]},
        "S3": {"pairs": s3["pairs_total"], "share_rows": len(tables["s3"]), "rng_events": len(res.events)},
        "S4": {"pairs": s4["pairs_total"], "count_rows": len(tables["s4"]), **dict(res.counters or {})},
        "S5": {"zone_alloc_rows": len(tables["zone_alloc"]),
               "count_conservation_violations": pack["zone_alloc"]["count_conservation_violations"]},
        "S6": {"checks": len(res.s6_report.get("checks", [])), "overall_status": res.s6_report.get("overall_status"),
               "issues_total": len(res.s6_issues) if res.s6_issues is not None else None},
        "S7": {"status": res.s7.get("status"), "member_count": res.s7.get("member_count")},
    }


def measure(policies, world, seed: int, repeats: int, runs_root: str | Path):
    """Run the whole chain, S0-S7 with its publish, ``repeats`` times (cold cache); returns (first result,
    per-repeat seconds, window). Every repeat times the same states: the first publishes into ``runs_root`` (the
    run the report names), the others into a scratch root removed after each (the scoring path skips S5 and S7
    and runs a lighter S6, so a repeat without a run root would time other work)."""
    import tempfile

    from engine import run_chain

    from tqdm import tqdm

    samples, first, windows = [], None, []
    for i in tqdm(range(repeats), desc="POPT.0 repeats", unit="chain", file=sys.stderr, leave=False, disable=None):
        with tempfile.TemporaryDirectory(prefix="popt0-repeat-") as scratch:
            t0 = time.perf_counter()
            res = run_chain(policies, seed, world, run_root=runs_root if i == 0 else scratch)
            windows.append(time.perf_counter() - t0)
        samples.append({s: float(res.seconds.get(s, 0.0)) for s in STATES})
        first = first or res
    return first, samples, windows


def popt0_document(res, samples: list[dict], windows: list[float], runs_root) -> dict:
    pack, _, _ = score_tables(res.tables)
    seconds = {s: median([row[s] for row in samples]) for s in STATES}
    table = popt0_table(seconds, state_evidence(res, pack), window_elapsed_s=median(windows))
    flag = passed_flag_path(res.run_dir, res.identity)
    run = {**run_block(res, runs_root), "repeats": len(samples), "seconds_samples": samples,
           "report_paths": [(res.run_dir / "reports" / "run_report.json").as_posix()] if res.run_dir else [],
           "s7_index_path": (flag.parent / "index.json").as_posix() if flag else None}
    return {"generated_utc": utc_now(), "phase": "POPT.0", "segment": "3A", "run": run,
            **table, "evidence": run_evidence(res, pack)}


def gate_sentence(gate: Mapping, table: Sequence[Mapping]) -> str:
    """The POPT.0 gate in words: GO sends POPT.1 to optimise the primary hotspot; HOLD means there is no
    runtime work to do (the plan's METRICS §13 names; HOLD does not hold the remediation back)."""
    state, status = gate["next_state_for_popt1"], gate["primary_status"]
    if gate["decision"] != "HOLD":
        return (f"**{gate['decision']}**: the primary hotspot {state} is {status} (over its target budget): "
                f"POPT.1 optimises {state} first (next_state_for_popt1 = `{state}`)")
    if status == "MISSING":
        return "**HOLD**: no state was timed"
    over = [r["state"] for r in table if r["status"] not in ("GREEN", "MISSING")]
    others = f"; over their own target: {', '.join(over)}" if over else ", as is every state"
    return (f"**HOLD**: no runtime work needed, the primary hotspot {state} is GREEN (within its target "
            f"budget){others}: POPT.1 has nothing to optimise and the remediation goes on to P0")


def popt0_markdown(doc: Mapping) -> str:
    run, timing = doc["run"], doc["timing"]
    rows = [(r["state"], fmt(r["elapsed_s"]), r["elapsed_hms"] or "—", f"{100 * r['segment_share']:.2f}%",
             f"{r['budget_target_s']:g} / {r['budget_stretch_s']:g}", r["status"]) for r in timing["state_table"]]
    hot = [(str(h["rank"]), h["role"], h["state"], fmt(h["elapsed_s"]), f"{100 * h['segment_share']:.2f}%",
            h["budget"]["status"], "; ".join(h["candidate_actions"])) for h in doc["hotspots"]]
    gate = doc["progression_gate"]
    return "\n".join([
        f"# Segment 3A — POPT.0 runtime baseline `{run['run_id']}`",
        "",
        f"- seed `{run['seed']}`, repeats `{run['repeats']}` (per-state median), "
        f"segment elapsed `{fmt(timing['segment_elapsed_s'])}` s ({timing['segment_elapsed_hms']})",
        f"- progression gate: {gate_sentence(gate, timing['state_table'])}",
        "",
        "## State table",
        "",
        md_table(("state", "elapsed_s", "hh:mm:ss", "share", "budget target / stretch (s)", "status"), rows),
        "",
        "## Hotspot map",
        "",
        md_table(("rank", "role", "state", "elapsed_s", "share", "status", "candidate actions"), hot),
        "",
    ])


def _duration(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def check_popt0(doc: Mapping, path: str | Path) -> None:
    """The fields of a POPT.0 report that the closure reads have their shape (objects, a list of state rows,
    a safe run id) and its durations are finite numbers >= 0 (a state's elapsed_s may be null: not timed)."""
    def bad(field: str, value, want: str) -> EngineError:
        return EngineError(E_ARTIFACTS, f"{path}: POPT.0 report field {field} is {value!r:.80}, not {want}")

    require_keys(doc, ("run", "timing"), path, "POPT.0 report")
    for key in ("run", "timing"):
        if not isinstance(doc[key], Mapping):
            raise bad(key, doc[key], "an object")
    rid = doc["run"].get("run_id")
    if not is_run_id(rid):
        raise bad("run.run_id", rid, "a run id")
    timing = doc["timing"]
    rows = timing.get("state_table")
    if not isinstance(rows, list):
        raise bad("timing.state_table", rows, "a list of state rows")
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or not isinstance(row.get("state"), str):
            raise bad(f"timing.state_table[{i}]", row, "an object with a state")
        if row.get("elapsed_s") is not None and not _duration(row["elapsed_s"]):
            raise bad(f"timing.state_table[{i}].elapsed_s", row["elapsed_s"], "a finite number >= 0")
    if "segment_elapsed_s" in timing and not _duration(timing["segment_elapsed_s"]):
        raise bad("timing.segment_elapsed_s", timing["segment_elapsed_s"], "a finite number >= 0")
    window = timing.get("log_window")
    if window is not None and not isinstance(window, Mapping):
        raise bad("timing.log_window", window, "an object")
    if (window or {}).get("segment_window_elapsed_s") is not None and not _duration(window["segment_window_elapsed_s"]):
        raise bad("timing.log_window.segment_window_elapsed_s", window["segment_window_elapsed_s"],
                  "a finite number >= 0")
    if doc.get("evidence") is not None and not isinstance(doc["evidence"], Mapping):
        raise bad("evidence", doc["evidence"], "an object")


def seconds_of(doc: Mapping, path: str | Path) -> dict:
    check_popt0(doc, path)
    return {r["state"]: r.get("elapsed_s") for r in doc["timing"]["state_table"]}


def closure_document(base_path: Path, base: Mapping, cand_path: Path, cand: Mapping, require_s5: bool) -> dict:
    for doc, path in ((base, base_path), (cand, cand_path)):
        check_popt0(doc, path)
    result = popt1_closure(seconds_of(base, base_path), seconds_of(cand, cand_path), cand.get("evidence") or {},
                           require_s5_gate=require_s5)
    return {"generated_utc": utc_now(), "phase": "POPT.1", "segment": "3A",
            "baseline": {"json": base_path.as_posix(), "run_id": base["run"].get("run_id")},
            "candidate": {"json": cand_path.as_posix(), "run_id": cand["run"].get("run_id")}, **result}


def closure_markdown(doc: Mapping) -> str:
    rt, gates = doc["runtime"], doc["gates"]
    rows = [(k.upper(), fmt(v["baseline_s"]), fmt(v["candidate_s"]), f"{100 * v['improvement_fraction']:.2f}%",
             gates[k]["rule"], "yes" if gates[k]["required"] else "no", gates[k]["status"]) for k, v in rt.items()]
    veto = [(k, "PASS" if v else "FAIL") for k, v in doc["veto"].items()]
    dec = doc["decision"]
    return "\n".join([
        f"# Segment 3A — POPT.1 closure `{doc['candidate']['run_id']}` vs `{doc['baseline']['run_id']}`",
        "",
        f"- decision: **{dec['progression_decision']}** — {dec['reason']}",
        "",
        "## Runtime gates",
        "",
        md_table(("state", "baseline_s", "candidate_s", "improvement", "rule", "required", "status"), rows),
        "",
        "## Vetoes (fail-closed)",
        "",
        md_table(("veto", "status"), veto),
        "",
    ])


def popt0(policies_dir, world, seed: int, repeats: int, out: Path, runs_root, record: bool) -> dict:
    """POPT.0 of the authority in ``policies_dir`` on ``world``: measured, written, shown, optionally recorded."""
    from engine import PolicySet

    if not 1 <= repeats <= MAX_SEEDS:
        raise EngineError(E_USAGE, f"--repeats must be in [1, {MAX_SEEDS}], not {repeats}")
    res, samples, windows = measure(PolicySet.from_dir(policies_dir), world, seed, repeats, runs_root)
    doc = popt0_document(res, samples, windows, runs_root)
    _publish(Path(out), POPT0_JSON, POPT0_MD, doc["run"]["run_id"], doc, popt0_markdown(doc),
             ("POPT.0", doc["progression_gate"]["decision"], policies_dir) if record else None)
    return doc


def _publish(out: Path, json_name: str, md_name: str, rid: str, doc: dict, md: str, record: tuple | None) -> None:
    """Write the JSON + Markdown pair atomically, show the table, and optionally record the ladder step."""
    atomic_write_text(out / json_name.format(rid=rid), json_text(doc))
    atomic_write_text(out / md_name.format(rid=rid), md)
    print(md, end="")
    print(f"\nwrote {out / json_name.format(rid=rid)}")
    if record is not None:
        phase, decision, policies = record
        _record(phase, decision, doc, md, json_name.format(rid=rid), policies)


def _record(phase: str, decision: str, doc: dict, md: str, name: str, policies: str) -> None:
    from tuning.authority.ladder import record_step

    seconds = {row["state"]: row["elapsed_s"] for row in doc.get("timing", {}).get("state_table", [])}
    step = record_step(phase, decision, policies_dir=Path(policies), artifacts={
        name: json_text(doc).encode(), name.replace(".json", ".md"): md.encode()},
        metrics={f"seconds.{k}": v for k, v in seconds.items() if isinstance(v, (int, float))},
        evidence={"report": name})
    print(f"recorded {phase} {decision} as MLflow run {step['mlflow_run_id']}")
