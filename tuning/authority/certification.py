"""``python -m tuning.certify [--authority | --run MLFLOW_RUN_ID] [--seeds 42,7,101,202] [--json]``

Cross-seed certification (build plan P5): the authority policy set (or a trial's candidate) runs
S0 -> S7 on every seed of the seedpack (one chain cache: S2 is seed-invariant and is reused), each
seed is scored, and ``engine.metrics.seedpack_verdict`` gives the verdict with its gate matrix, the
cross-seed CV and the stability gates. MLflow: one parent run in ``3A-certify`` with one nested
run per seed; the summary is logged as JSON and Markdown.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from engine import run_chain
from engine import fidelity_holds, fidelity_overall
from tuning.study.cache_budget import chain_cache
from engine import EngineError
from engine import fidelity_verdict, seedpack_verdict
from engine import PolicySet, realism_floors
from tuning.common.errors import E_CERTIFY
from tuning.report.files import gate_table_md
from tuning.trail.tracking import CERTIFY_EXPERIMENT, client, experiment_id, log_batch
from tuning.study.trial_result import flatten_pack
from tuning.common import worlds


HOLDOUT_RATES = ("pass_rate_bplus", "pass_rate_b", "faithful_rate", "pass_rate_bplus_faithful", "pass_rate_b_faithful")


def certify(policies: PolicySet, seeds: Sequence[int], source: dict, runs_root: Path | None = None,
            holdout: int = 0, progress: bool = True, world=None) -> dict:
    """The seedpack verdict and fidelity (certified = PASS_B or better AND FAITHFUL on every seed),
    plus the pass rate on ``holdout`` held-out seeds (``tuning.authority.holdout``), on ``world`` (the default world
    when None)."""
    world = world if world is not None else worlds.load()
    bar = tqdm(total=len(seeds) + holdout, desc=f"certify {policies.parameter_hash[:12]}", unit="seed",
               file=sys.stderr, disable=not progress)
    try:
        return _certify(policies, seeds, source, runs_root, holdout, bar, world)
    finally:
        bar.close()


def _grade(summary: dict) -> None:
    """``certified``: the seedpack's verdict is B or better and FAITHFUL and, where held-out seeds were measured, B or
    better and FAITHFUL on at least ``HOLDOUT_MIN`` of them (what ``--require-certified`` and a freeze ask; the seedpack
    alone is ``seedpack_certified``); ``certified_grade``: the grade a freeze would certify (BPLUS, B or None)."""
    from tuning.authority.freeze import HOLDOUT_MIN, certified_grade

    held = summary.get("holdout")
    floors = summary.get("realism_floors")
    if floors is not None and not floors["passed"]:
        # the authoring law's realism floors (alpha sums, non-uniform priors) veto every tuning candidate; a policy
        # set outside them, edited by hand, is not certified either (alpha sums of 1e-4 made one-hot draws)
        summary["certified"] = False
        summary["reasons"] = [*summary["reasons"], *(f"realism floor: {r}" for r in floors["reasons"])]
    pooled = (held or {}).get("pooled")
    if pooled is not None and not pooled["faithful"] and fidelity_holds(summary["fidelity_verdict"]):
        # 3A-F09: a bias one seed's scatter hides, pooled over the held-out seeds, is a distortion of the policy's
        summary["fidelity_verdict"] = "DISTORTED"
        summary["certified"] = False
        summary["reasons"] = [*summary["reasons"], pooled_reason(pooled)]
    summary["seedpack_certified"] = seedpack = summary["certified"]
    summary["certified"] = seedpack and (not held or held["pass_rate_b_faithful"] >= HOLDOUT_MIN)
    evidence = {"fidelity": summary["fidelity_verdict"]}
    if held:
        evidence.update({"holdout_seeds": held["n"], **{f"holdout_{k}": held[k] for k in HOLDOUT_RATES}})
    summary["certified_grade"] = certified_grade(summary["verdict"], evidence) if seedpack else None


def pooled_reason(pooled: dict) -> str:
    """One line for a pooled fidelity record (3A-F09) that fails its line: its JSD, else its over-served share."""
    if pooled["jsd_low_max"] <= pooled["line"]:
        return (f"3A-F09 pooled fidelity: over {pooled['seeds']} held-out seeds, {pooled['overserved_country']} puts "
                f"{pooled['overserved_max']:.4f} of its realised outlets beyond ten times its clocks' people (and its "
                f"authored prior) beyond the seeds' scatter, above {pooled['overserved_line']}: outlets moved where "
                f"almost nobody lives")
    return (f"3A-F09 pooled fidelity: over {pooled['seeds']} held-out seeds, {pooled['country']}'s realised outlets sit "
            f"{pooled['jsd']:.4f} (JSD) from its people, at least {pooled['jsd_low_max']:.4f} beyond the seeds' "
            f"scatter, above {pooled['line']}: a bias each seed's scatter hides")


def pooled_line(pooled: dict) -> str:
    """The pooled fidelity record (3A-F09) in one line."""
    if not pooled["countries"]:
        return (f"pooled fidelity (3A-F09): no multi-clock country has outlets on {pooled['min_seeds']} of the "
                f"{pooled['seeds']} held-out seeds: nothing to read")
    return (f"pooled fidelity (3A-F09): largest country JSD beyond the seeds' scatter {pooled['jsd_low_max']:.4f} "
            f"({pooled['country']}, {pooled['jsd']:.4f} pooled; the largest pooled JSD {pooled['jsd_max']:.4f}) over "
            f"{pooled['countries']} countries and "
            f"{pooled['seeds']} held-out seeds, line {pooled['line']}; largest over-served share of a country's "
            f"outlets {pooled['overserved_max']:.4f}" + (f" ({pooled['overserved_country']})" if
                                                          pooled["overserved_country"] else "")
            + f", line {pooled['overserved_line']}: {'FAITHFUL' if pooled['faithful'] else 'DISTORTED'}")


def _certify(policies: PolicySet, seeds: Sequence[int], source: dict, runs_root: Path | None, holdout: int,
             bar, world) -> dict:
    """Parent run -> every seed's chain -> verdict -> one child run per seed -> summary (logged)."""
    mlc = client()
    exp = experiment_id(mlc, worlds.suffixed(CERTIFY_EXPERIMENT, world))
    parent = mlc.create_run(exp, run_name=f"certify-{policies.parameter_hash[:12]}", tags={
        "run_kind": "certification", "parameter_hash": policies.parameter_hash, "seeds": ",".join(map(str, seeds)),
        **{f"digest.{p}": d for p, d in policies.digests.items()}, **{k: str(v) for k, v in source.items()},
        **worlds.tags(world)})
    parent_id = parent.info.run_id
    t0 = time.perf_counter()
    try:
        per_seed, engine_seconds, rows, floors = _run_seeds(policies, seeds, runs_root, bar, world)
        verdict = seedpack_verdict(per_seed, seeds)
        fidelity = {seed: fidelity_verdict(per_seed[seed]["gates"]) for seed in seeds}
        for seed in seeds:
            _log_seed_run(mlc, exp, parent_id, seed, per_seed[seed], verdict["seeds"][seed], rows[seed],
                          fidelity[seed], engine_seconds[seed])
        faithful = all(fidelity_holds(v) for v in fidelity.values())
        summary = {"verdict": verdict["verdict"], "reasons": verdict["reasons"], "seeds": list(seeds),
                   "fidelity": fidelity, "fidelity_verdict": fidelity_overall(fidelity.values()),
                   "certified": faithful and verdict["verdict"] in ("PASS_B", "PASS_BPLUS"), "cv": verdict["cv"],
                   "parameter_hash": policies.parameter_hash, "digests": dict(policies.digests), "source": source,
                   "engine_seconds": engine_seconds, "engine_seconds_total": sum(engine_seconds.values()),
                   "wall_seconds": time.perf_counter() - t0, "mlflow_run_id": parent_id,
                   "engine_run_ids": {s: rows[s]["run_id"] for s in seeds}, "detail": verdict,
                   "world": worlds.record(world), "realism_floors": floors,
                   "fidelity_failing": {s: sorted(g for g, v in per_seed[s]["gates"].get("fidelity", {}).items()
                                                  if v["status"] == "FAIL") for s in seeds}}
        if holdout:
            from tuning.authority.holdout import holdout_report, holdout_seeds, tuning_seeds

            summary["holdout"] = holdout_report(policies, holdout_seeds(holdout, tuning_seeds()), bar, world)
        _grade(summary)
        _log_summary(mlc, parent_id, summary)
    except BaseException:
        mlc.set_terminated(parent_id, status="FAILED")
        raise
    return summary


def _run_seeds(policies: PolicySet, seeds: Sequence[int], runs_root: Path | None, bar,
               world) -> tuple[dict, dict, dict, dict]:
    """S0 -> S7 on every seed through one chain cache: (scored entry, engine seconds, identity) per seed, and the
    authoring realism floors of the policies' S2 (seed-invariant: read on the first seed), as tuning reads them."""
    from tuning.study.objective import evenly_populated_countries

    cache = chain_cache()   # seeds share only S0.world, S1, S2
    per_seed, engine_seconds, rows, floors = {}, {}, {}, {}
    for seed in seeds:
        res = run_chain(policies, seed, world, cache=cache, run_root=runs_root)
        floors = floors or realism_floors(res.cores["s2"], evenly_populated_countries(world))
        per_seed[seed] = {"pack": res.pack, "gates": res.gates, "s6_overall_status": res.s6_report["overall_status"],
                          "s7_status": res.s7.get("status")}
        engine_seconds[seed] = float(sum(res.seconds.values()))
        rows[seed] = res.identity
        bar.update(1)
    return per_seed, engine_seconds, rows, floors


def _log_seed_run(mlc, exp: str, parent_id: str, seed: int, entry: dict, row: dict, identity: dict,
                  fidelity: str, engine_seconds: float) -> None:
    """The nested MLflow run of one seed: its verdict row as tags, its pack as metrics, gate table + pack."""
    child = mlc.create_run(exp, run_name=f"seed-{seed}", tags={
        "mlflow.parentRunId": parent_id, "run_kind": "certification_seed", "seed": str(seed),
        "engine_run_id": identity["run_id"], "parameter_hash": identity["parameter_hash"],
        "manifest_fingerprint": identity["manifest_fingerprint"], "run_verdict": row["run_verdict"],
        "hard_pass": str(row["hard_pass"]).lower(), "stretch_pass": str(row["stretch_pass"]).lower(),
        "s6_status": str(row["s6_overall_status"]), "s7_status": str(row["s7_status"]),
        "failing_hard": ",".join(row["failing_hard"]) or "none", "fidelity": fidelity})
    log_batch(mlc, child.info.run_id, metrics={**flatten_pack(entry["pack"]), "seconds.engine": engine_seconds})
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "gate_table.md").write_text(gate_table_md(entry["gates"], detailed=True))
        Path(tmp, "metric_pack.json").write_text(json.dumps(entry, indent=2, sort_keys=True, default=str))
        mlc.log_artifacts(child.info.run_id, tmp)
    mlc.set_terminated(child.info.run_id)


def _log_summary(mlc, parent_id: str, summary: dict) -> None:
    """The parent run's CV and held-out metrics, verdict tags, summary JSON + Markdown; then it is finished."""
    hold = summary.get("holdout") or {}
    log_batch(mlc, parent_id, metrics={"seconds.engine_total": summary["engine_seconds_total"],
                                       **{f"cv.{m}": v for m, v in summary["cv"].items()},
                                       **{f"holdout.{k}": hold[k] for k in HOLDOUT_RATES if k in hold},
                                       **({"holdout.n": hold["n"]} if hold else {}),
                                       **({"holdout.pooled_jsd_max": hold["pooled"]["jsd_max"],
                                           "holdout.pooled_jsd_low_max": hold["pooled"]["jsd_low_max"],
                                           "holdout.pooled_overserved_max": hold["pooled"]["overserved_max"],
                                           "holdout.pooled_countries": hold["pooled"]["countries"]}
                                          if hold.get("pooled") else {})},
              tags={"verdict": summary["verdict"], "fidelity_verdict": summary["fidelity_verdict"],
                    "certified": str(summary["certified"]).lower()})
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "certification_summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True,
                                                                      default=str))
        Path(tmp, "certification_summary.md").write_text(summary_markdown(summary))
        mlc.log_artifacts(parent_id, tmp)
    mlc.set_terminated(parent_id)


def summary_markdown(summary: dict) -> str:
    detail, seeds = summary["detail"], summary["seeds"]
    lines = [f"# 3A certification: {summary['verdict']} / {summary['fidelity_verdict']}", "",
             f"- policies: parameter_hash `{summary['parameter_hash']}` ({summary['source']})",
             f"- seeds: {', '.join(map(str, seeds))}; engine seconds {summary['engine_seconds_total']:.2f}", ""]
    lines += [f"- {r}" for r in summary["reasons"]] + ["", "| gate | " + " | ".join(map(str, seeds)) + " |",
                                                       "|---|" + "---|" * len(seeds)]
    for family in ("hard", "stretch"):
        for gid, per in detail["gate_matrix"][family].items():
            lines.append(f"| {gid} | " + " | ".join(str(per.get(s)) for s in seeds) + " |")
    lines.append("| fidelity | " + " | ".join(summary["fidelity"][s] for s in seeds) + " |")
    lines += ["", "| CV metric | CV |", "|---|---|"] + [f"| {m} | {v:.6g} |" for m, v in detail["cv"].items()]
    hold = summary.get("holdout")
    if hold:
        lines += ["", f"Held-out seeds: {hold['n']} from [{hold['range'][0]}, {hold['range'][1]}); "
                      f"PASS_BPLUS {hold['pass_rate_bplus']:.1%}, PASS_B or better {hold['pass_rate_b']:.1%}, "
                      f"FAITHFUL {hold['faithful_rate']:.1%}"]
        if hold.get("pooled"):
            lines.append(pooled_line(hold["pooled"]))
    return "\n".join(lines) + "\n"


def failing_gates(summary: dict) -> list[str]:
    """Gates that fail on any seedpack seed (the cross-seed ones included), then those failing on held-out seeds
    (most often first) when those seeds hold the grade back."""
    detail = summary.get("detail") or {}
    matrix = detail.get("gate_matrix", {})
    seedpack = sorted({g for fam in matrix.values() for g, per in fam.items()
                       if any(v != "PASS" for v in per.values())})
    # the cross-seed gates (3A-X01's CV of the primary medians, B or B+ limit; X03): a seedpack that is B on every
    # seed and B only by its spread names X01, not the per-seed gates its held-out seeds fail now and then
    for gate, block in (detail.get("stability") or {}).items():
        statuses = [block.get("status")] + [v.get("status") for v in block.values() if isinstance(v, dict)]
        if block.get("verdict_bearing") and "FAIL" in statuses:
            seedpack.append(gate)
    # held-out seeds' failing gates where they hold a grade back: B+ and FAITHFUL on fewer than HOLDOUT_MIN of them
    # (a gate failing on 2 of 200 is inside the freeze's allowance, not a blocking gate)
    from tuning.authority.freeze import HOLDOUT_MIN

    hold = summary.get("holdout") or {}
    held = list(hold.get("failing", {})) if hold.get("pass_rate_bplus_faithful", 0.0) < HOLDOUT_MIN else []
    fidelity = sorted({g for s in summary.get("seeds", []) for g in summary.get("fidelity_failing", {}).get(s, [])})
    return list(dict.fromkeys(seedpack + fidelity + held))   # each gate once, where it first failed


def record_certification(policies_dir: Path, policies: PolicySet, summary: dict) -> dict:
    """The P5 step of the decision ladder: the verdict, its evidence, and the cross-seed CV of every CV
    metric (``cv.<metric>``) and held-out rates as the step's metrics."""
    from tuning.authority.txn import authority_lock
    from tuning.authority.ladder import record_step

    cv = {k: v for k, v in summary["cv"].items() if isinstance(v, (int, float))}
    hold = summary.get("holdout") or {}
    with authority_lock(policies_dir):  # serialised with promote and freeze
        from tuning.authority.guards import require_lineage_agrees
        from tuning.authority.promotion import read_lineage

        if PolicySet.from_dir(policies_dir).parameter_hash != policies.parameter_hash:
            raise EngineError(E_CERTIFY, "the authority changed while it was being certified; run again")
        require_lineage_agrees(policies_dir, policies, read_lineage(policies_dir), "record its certification")
        return record_step("P5", summary["verdict"], policies_dir=policies_dir, source_run_id=summary["mlflow_run_id"],
                           evidence={"seeds": ",".join(map(str, summary["seeds"])),
                                     "certify_run_id": summary["mlflow_run_id"],
                                     "fidelity": summary["fidelity_verdict"], "certified": summary["certified"],
                                     "failing_gates": ",".join(failing_gates(summary)) or "none",
                                     **({"holdout_seeds": hold["n"], "holdout_range": hold["range"],
                                         **{f"holdout_{k}": hold[k] for k in HOLDOUT_RATES}} if hold else {}),
                                     **({"holdout_pooled_jsd_max": hold["pooled"]["jsd_max"],
                                         "holdout_pooled_jsd_low_max": hold["pooled"]["jsd_low_max"],
                                         "holdout_pooled_country": hold["pooled"]["country"] or "none"}
                                        if hold.get("pooled") else {})},
                           metrics={**{f"cv.{k}": v for k, v in cv.items()},
                                    **{f"holdout.{k}": hold[k] for k in HOLDOUT_RATES if k in hold}})
