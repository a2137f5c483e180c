"""Inputs of the pinned S6 validations (tests/engine/test_s6_pinned.py) and the script that wrote
``s6_pinned.json``: a normal seed-42 run and tampered copies that trip every check.

The fixture was produced by the pre-split implementation of
``engine.states.s6_validation.validate`` (commit 8cf1aeb on main; the single cases with
``python -m tests.engine.s6_pin_cases`` at that commit, then the combined tamperings ``COMBOS`` by
passing that commit's ``validate`` to ``main``); the split implementation must reproduce the report's JSON
bytes and the issue table's parquet bytes exactly. Do not regenerate it to make a test pass.

When S4's second-zone safeguard stopped forcing zones whose clock holds under a tenth of the forced share of its
country's people (2026-12-07), every case was validated again by 8cf1aeb's ``validate`` in a second process on this
code's pickled case inputs, its outputs serialised here: 80 of the 87 entries came out as pinned, the 7 whose S4 or
S5 rows are shuffled changed (their issue rows follow the new S4 row order).
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from engine.core.hashing import sha256_hex
from engine.publish.serialize import json_bytes, parquet_bytes

FIXTURE = Path(__file__).with_name("s6_pinned.json")
ROOT = Path(__file__).resolve().parents[2]
ARGS = ("identity", "receipt", "sealed", "tables", "events", "trace_totals", "universe_doc", "policy_digests",
        "state_status", "universe")


@functools.lru_cache(maxsize=1)
def base_inputs() -> dict:
    from engine.chain.runner import run_chain
    from engine.publish.members import trace_totals
    from engine.policies import PolicySet
    from engine.world.model import default_world

    world = default_world()
    pol = PolicySet.from_dir(ROOT / "tests" / "fixtures" / "pinned_policies")
    r = run_chain(pol, 42, world)
    return {"identity": r.identity, "receipt": r.receipt, "sealed": r.sealed, "tables": r.tables,
            "events": r.events, "trace_totals": trace_totals(r.events), "universe_doc": r.universe_doc,
            "policy_digests": dict(pol.digests), "state_status": {s: "PASS" for s in ("S1", "S2", "S3", "S4", "S5")},
            "universe": world.universe}


def _fresh() -> dict:
    b = base_inputs()
    out = {k: copy.deepcopy(v) for k, v in b.items() if k not in ("tables", "events", "universe")}
    out["tables"] = {k: v.copy() for k, v in b["tables"].items()}
    out["events"], out["universe"] = b["events"].copy(), b["universe"]
    return out


def _drop(frame: pd.DataFrame, i: int) -> pd.DataFrame:
    return frame.drop(index=frame.index[i]).reset_index(drop=True)


def _append(frame: pd.DataFrame, row: pd.DataFrame, at: int | None = None) -> pd.DataFrame:
    if at is None:
        return pd.concat([frame, row], ignore_index=True)
    return pd.concat([frame.iloc[:at], row, frame.iloc[at:]], ignore_index=True)


def _set(frame: pd.DataFrame, i: int, col: str, value) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[frame.index[i], col] = value
    return frame


def _shuffle(frame: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    return frame.iloc[np.random.default_rng(seed).permutation(len(frame))].reset_index(drop=True)


def _monolithic_row(t: dict, table: str) -> pd.DataFrame:
    """A row of ``table`` re-keyed onto a monolithic pair of a multi-zone country (an extra, in-universe row)."""
    s1 = t["s1"]
    mono = s1[~s1["is_escalated"] & (s1["zone_count_country"] > 1)].iloc[0]
    same = t["s2"][t["s2"]["country_iso"] == mono["legal_country_iso"]].iloc[0]
    row = t[table].iloc[[0]].copy()
    row["merchant_id"] = np.uint64(mono["merchant_id"])
    row["legal_country_iso"] = mono["legal_country_iso"]
    row["tzid"] = same["tzid"]
    return row.astype(t[table].dtypes.to_dict())


def _t(name: str, fn):
    def apply(a: dict) -> None:
        a["tables"][name] = fn(a["tables"][name], a["tables"])
    return apply


def _stray(frame: pd.DataFrame, t: dict) -> pd.DataFrame:
    row = frame.iloc[[0]].copy()
    row["tzid"] = "Nowhere/Zone"
    return _append(frame, row.astype(frame.dtypes.to_dict()))


def _event_extra(a: dict) -> None:
    s1 = a["tables"]["s1"]
    mono = s1[~s1["is_escalated"]].iloc[0]
    row = a["events"].iloc[[0]].copy()
    row["merchant_id"] = np.uint64(mono["merchant_id"])
    col = "country_iso" if "country_iso" in row.columns else "legal_country_iso"
    row[col] = mono["legal_country_iso"]
    a["events"] = _append(a["events"], row.astype(a["events"].dtypes.to_dict()))


def _escalate_one(s1: pd.DataFrame, t: dict) -> pd.DataFrame:
    i = int(np.flatnonzero(~s1["is_escalated"].to_numpy() & (s1["zone_count_country"].to_numpy() > 1))[0])
    return _set(s1, i, "is_escalated", True)


MUTATIONS = {
    "normal": lambda a: None,
    "s0_gate_status": lambda a: a["receipt"]["upstream_gates"].update(
        {next(iter(a["receipt"]["upstream_gates"])): {"status": "FAIL"}}),
    "s0_manifest": lambda a: a["receipt"].update(manifest_fingerprint="f" * 64),
    "s0_parameter": lambda a: a["receipt"].update(parameter_hash="e" * 64),
    "s0_sealed_policy": lambda a: a.update(sealed=[r for r in a["sealed"] if r["artefact_kind"] != "policy"][:-1]
                                           + [r for r in a["sealed"] if r["artefact_kind"] != "policy"][-1:]),
    "s1_duplicate_end": _t("s1", lambda f, t: _append(f, f.iloc[[5]])),
    "s1_duplicate_adjacent": _t("s1", lambda f, t: _append(f, f.iloc[[5]], at=5)),
    "s1_site_count_zero": _t("s1", lambda f, t: _set(f, 0, "site_count", 0)),
    "s1_zone_count": _t("s1", lambda f, t: _set(f, 3, "zone_count_country", int(f["zone_count_country"].iloc[3]) + 1)),
    "s1_escalated_flip": _t("s1", _escalate_one),
    "s1_shuffled": _t("s1", lambda f, t: _shuffle(f)),
    "s2_duplicate": _t("s2", lambda f, t: _append(f, f.iloc[[0]])),
    "s2_missing": _t("s2", lambda f, t: _drop(f, 10)),
    "s2_alpha_negative": _t("s2", lambda f, t: _set(f, 2, "alpha_effective", -1.0)),
    "s2_alpha_nan": _t("s2", lambda f, t: _set(f, 4, "alpha_effective", np.nan)),
    "s2_alpha_sum": _t("s2", lambda f, t: _set(f, 0, "alpha_sum_country", float(f["alpha_sum_country"].iloc[0]) * 1.1)),
    "s2_shuffled": _t("s2", lambda f, t: _shuffle(f)),
    "s3_missing": _t("s3", lambda f, t: _drop(f, 7)),
    "s3_stray_zone": _t("s3", _stray),
    "s3_extra_pair": _t("s3", lambda f, t: _append(f, _monolithic_row(t, "s3"))),
    "s3_duplicate": _t("s3", lambda f, t: _append(f, f.iloc[[0]], at=0)),
    "s3_share_sum": _t("s3", lambda f, t: _set(f, 0, "share_drawn", float(f["share_drawn"].iloc[0]) + 0.01)),
    "s3_shuffled": _t("s3", lambda f, t: _shuffle(f)),
    "s3_event_missing": lambda a: a.update(events=_drop(a["events"], 0)),
    "s3_event_extra": _event_extra,
    "s3_event_duplicate": lambda a: a.update(events=_append(a["events"], a["events"].iloc[[3]])),
    "s3_event_blocks": lambda a: a.update(events=_set(a["events"], 0, "blocks", int(a["events"]["blocks"].iloc[0]) + 1)),
    "s3_trace_totals": lambda a: a["trace_totals"].update(events_total=a["trace_totals"]["events_total"] + 1),
    "s3_events_shuffled": lambda a: a.update(events=_shuffle(a["events"])),
    "s4_missing": _t("s4", lambda f, t: _drop(f, 3)),
    "s4_extra_pair": _t("s4", lambda f, t: _append(f, _monolithic_row(t, "s4"))),
    "s4_stray_zone": _t("s4", _stray),
    "s4_duplicate": _t("s4", lambda f, t: _append(f, f.iloc[[2]], at=2)),
    "s4_count": _t("s4", lambda f, t: _set(f, 0, "zone_site_count", int(f["zone_site_count"].iloc[0]) + 1)),
    "s4_reported": _t("s4", lambda f, t: _set(f, 1, "zone_site_count_sum", int(f["zone_site_count_sum"].iloc[1]) + 1)),
    "s4_shuffled": _t("s4", lambda f, t: _shuffle(f)),
    "s5_missing": _t("zone_alloc", lambda f, t: _drop(f, 4)),
    "s5_extra_pair": _t("zone_alloc", lambda f, t: _append(f, _monolithic_row(t, "zone_alloc"))),
    "s5_count": _t("zone_alloc", lambda f, t: _set(f, 0, "zone_site_count", int(f["zone_site_count"].iloc[0]) + 1)),
    "s5_site_count": _t("zone_alloc", lambda f, t: _set(f, 0, "site_count", int(f["site_count"].iloc[0]) + 1)),
    "s5_row_hash": _t("zone_alloc", lambda f, t: _set(f, 0, "routing_universe_hash", "0" * 64)),
    "s5_shuffled": _t("zone_alloc", lambda f, t: _shuffle(f)),
    "s5_doc_digest": lambda a: a["universe_doc"].update(zone_alpha_digest="1" * 64),
    "s5_doc_routing": lambda a: a["universe_doc"].update(routing_universe_hash="2" * 64),
    "status_s3_fail": lambda a: a["state_status"].update(S3="FAIL"),
    "status_s5_fail": lambda a: a["state_status"].update(S5="FAIL"),
    "status_s1_missing": lambda a: a["state_status"].pop("S1"),
}


def _combos(n: int = 40, seed: int = 9) -> dict:
    """Two or three tamperings at once ("a+b+c"), drawn once with a fixed seed."""
    rng = np.random.default_rng(seed)
    names = [k for k in MUTATIONS if k != "normal"]
    out = {}
    while len(out) < n:
        picked = sorted(rng.choice(len(names), size=int(rng.integers(2, 4)), replace=False))
        out["+".join(names[i] for i in picked)] = None
    return out


COMBOS = _combos()


def case_inputs(name: str) -> dict:
    a = _fresh()
    for part in name.split("+"):
        MUTATIONS[part](a)
    return a


def outputs(report: dict, issues: pd.DataFrame) -> dict:
    return {"report_json": json_bytes(report).decode("utf-8"),
            "issues_parquet_sha256": sha256_hex(parquet_bytes(issues)),
            "issues_rows": json.loads(issues.to_json(orient="records"))}


def main(validate=None) -> None:
    if validate is None:
        from engine.states.s6_validation import validate

    out = {}
    for name in list(MUTATIONS) + list(COMBOS):
        a = case_inputs(name)
        try:
            out[name] = outputs(*validate(*(a[k] for k in ARGS)))
        except Exception as exc:  # the pre-split validate crashed on this input
            out[name] = {"raises": f"{type(exc).__name__}: {exc}"}
    FIXTURE.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
