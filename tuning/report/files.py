"""Shared plumbing of the P0 / POPT / report CLIs: atomic writes, JSON/Markdown rendering,
reading reports and runs back with coded errors, and the evidence a run carries.

No wall-clock value enters anything hashed; ``generated_utc`` is only stamped on reports.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from engine import atomic_write
from engine import EngineError
from tuning.common.errors import E_ARTIFACTS, E_RUN_MISSING

GATE_FAMILIES = ("hard", "stretch", "fidelity")
REQUIRED_FAMILIES = ("hard", "stretch")        # always reported; "fidelity" only where the gates carry it
FAMILY_LEVELS = {"hard": "B", "stretch": "B+", "fidelity": "fidelity"}


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write text atomically (engine.publish.atomic: temp file beside the target, then rename)."""
    return atomic_write(path, text.encode("utf-8"))


def _json_safe(obj):
    """Non-finite floats become strings ("inf", "nan") so the file stays strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "inf" if obj > 0 else ("-inf" if obj < 0 else "nan")
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [_json_safe(v) for v in (sorted(obj) if isinstance(obj, set) else obj)]
    if hasattr(obj, "item") and callable(obj.item):
        return _json_safe(obj.item())
    if isinstance(obj, Path):
        return obj.as_posix()
    return obj


def json_text(obj) -> str:
    """Report JSON: keys sorted, indent 2, strict (no NaN/Infinity), trailing newline."""
    return json.dumps(_json_safe(obj), sort_keys=True, indent=2, allow_nan=False) + "\n"


def read_json(path: str | Path, what: str) -> dict:
    path = Path(path)
    if not path.is_file():
        raise EngineError(E_RUN_MISSING, f"{path}: {what} not found")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise EngineError(E_ARTIFACTS, f"{path}: {what} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise EngineError(E_ARTIFACTS, f"{path}: {what} is not a JSON object")
    return doc


def require_keys(doc: Mapping, keys: Iterable[str], path: str | Path, what: str) -> None:
    missing = [k for k in keys if k not in doc]
    if missing:
        raise EngineError(E_ARTIFACTS, f"{path}: {what} lacks {', '.join(missing)}")


def is_run_id(value) -> bool:
    """A run id another file's name is made of: text that names no other folder (no separator, not . or ..)."""
    return isinstance(value, str) and bool(value.strip()) and value not in (".", "..") and \
        not any(c in value for c in "/\\\0")


def fmt(value) -> str:
    """Readable, stable number formatting for Markdown tables."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6f}" if math.isfinite(value) else str(value)
    return str(value)


def md_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return "\n".join(lines)


def gate_families(gates: Mapping | None) -> tuple[str, ...]:
    """The families a gate table reports: hard and stretch always, fidelity when the gates carry it."""
    return tuple(fam for fam in GATE_FAMILIES if fam in REQUIRED_FAMILIES or fam in (gates or {}))


def compact_gates(gates: Mapping) -> dict:
    """The report form of a gate table: ``{family: {gate_id: {value, threshold, status}}}``."""
    return {fam: {gid: {"value": g.get("value"), "threshold": g.get("threshold"), "status": g.get("status")}
                  for gid, g in (gates.get(fam) or {}).items()} for fam in gate_families(gates)}


def family_gate_rows(gates: Mapping) -> list[tuple]:
    """(family, gate, value, threshold, status) rows; the operator is shown with the threshold when known."""
    rows = []
    for fam in gate_families(gates):
        for gid, g in (gates.get(fam) or {}).items():
            thr = g.get("threshold")
            thr = fmt(thr) if isinstance(thr, bool) or thr is None else f"{thr:g}"
            rows.append((fam, gid, fmt(g.get("value")), f"{g['op']} {thr}" if g.get("op") else thr, g.get("status")))
    return rows


def gate_rows(gates: Mapping) -> list[tuple]:
    """(gate, value, threshold, status) rows of every reported family (``family_gate_rows`` without the family)."""
    return [row[1:] for row in family_gate_rows(gates)]


DETAILED_GATE_COLUMNS = ("family", "gate", "metric", "value", "op", "threshold", "status")


def gate_table_md(gates: Mapping | None, detailed: bool = False) -> str:
    """The one Markdown gate table.

    Default (reports, baselines): ``gate | value | threshold | status``, numbers formatted, the operator
    beside the threshold, no trailing newline. ``detailed=True`` (the ``gate_table.md`` artifact of every
    MLflow trial and certification run): ``family | gate | metric | value | op | threshold | status`` with
    the raw values as recorded, ending with a newline. ``gates`` may be None (a run that never scored):
    the detailed table is then its header only."""
    if not detailed:
        return md_table(("gate", "value", "threshold", "status"), gate_rows(gates or {}))
    rows = [(fam, gid, *(str(g[k]) for k in DETAILED_GATE_COLUMNS[2:]))
            for fam in gate_families(gates) for gid, g in ((gates or {}).get(fam) or {}).items()]
    return md_table(DETAILED_GATE_COLUMNS, rows) + "\n"


def load_run_dir(run_dir: str | Path):
    """A materialised run read back (``engine.publish.store.load_run``) with a coded error when absent or corrupt.
    A run that passed S7 is verified first (``engine verify``: every member against its digest, the flag against
    the bundle), so a report or a comparison is never drawn from a tampered bundle (``E3A_VER_…``); a run that
    did not pass S7 has no bundle to check and is read as it is, its S7 status shown."""
    from engine import load_run, verify

    path = Path(run_dir)
    if not path.is_dir():
        raise EngineError(E_RUN_MISSING, f"{path}: run directory not found")
    try:
        report = path / "reports" / "run_report.json"   # absent: load_run says the folder is not a run
        if report.is_file() and (json.loads(report.read_text()).get("s7") or {}).get("status") == "PASS":
            verify(path)
        return load_run(path)
    except EngineError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EngineError(E_ARTIFACTS, f"{path}: run unreadable ({type(exc).__name__}: {exc})") from None


def score_tables(tables: Mapping, evidence=None) -> tuple[dict, dict, str]:
    """Metric pack, gates and the plan's verdict; with the world's population evidence
    (``engine.world.evidence.FidelityEvidence``) the pack and gates also carry fidelity."""
    from engine import evaluate_gates, metric_pack, run_verdict  # the engine's metrics: only when scoring

    pack = metric_pack(tables, evidence)
    gates = evaluate_gates(pack)
    return pack, gates, run_verdict(gates)


def sealed_world_kind(res) -> str | None:
    """The world kind a run sealed (``world=<kind>`` in the notes of its S0 world row), or None."""
    for row in getattr(res, "sealed", None) or []:
        if not str(row.get("logical_id", "")).startswith("world_"):
            continue
        notes = str(row.get("notes", ""))
        versions = notes.split("=", 1)[1] if notes.startswith("versions=") else notes
        for item in versions.split(","):
            key, _, value = item.partition("=")
            if key == "world":
                return value
    return None


def _require_sealed_world(res, world) -> None:
    """A run of ``world`` sealed ``world.digest`` of the catalogue it scored: any other digest is another world (the
    same zones with other people, say), whose evidence would grade the run's fidelity against what it was not made
    from. A ``--fraction`` run scored a keyed subsample (engine.chain.subsample: whole merchants, every pair and
    outlet of each, in the catalogue's row order), so its catalogue is rebuilt from the merchants of its S1 rows."""
    from engine import outlets_for
    from tuning.common.worlds import E_WORLD_MISMATCH

    identity = getattr(res, "identity", None) or {}
    sealed, seed, s1 = identity.get("world_digest"), identity.get("seed"), res.tables.get("s1")
    if not sealed or seed is None or s1 is None:
        return
    full = world.catalogue if world.catalogue is not None else outlets_for(world, int(seed))
    expected = world.digest(full)   # a world's own catalogue: its digest is computed once per process
    if sealed == expected:
        return
    kept = full["merchant_id"].isin(s1["merchant_id"].unique())
    if not kept.all() and world.digest(full.loc[kept].reset_index(drop=True)) == sealed:
        return
    raise EngineError(E_WORLD_MISMATCH, f"the run was made on another world than {world.name} (its sealed world "
                                        f"digest {sealed[:12]}, this world's {expected[:12]}): pass --world DIR, the "
                                        f"folder of the world the run was made on")


def run_fidelity_evidence(res, world=None):
    """The population evidence a materialised run's fidelity is measured against.

    A run on the default world is measured against it: ``default_world().evidence`` when the run's
    Z(c) (its S2 rows) is today's default universe, else (a run made under an earlier default
    universe) the same GeoNames evidence applied to the run's own Z(c). Any other world
    (``--world``, ``--reference``) brings its own universe: fidelity is still measured and shown, but its
    gates are N/A and its verdict NOT_APPLICABLE. The default universe with the user's own outlets
    (``default+outlets``) is still population-true: fidelity applies. ``world`` (``--world``): the run's
    world, whose evidence is used (a world with its own population evidence makes fidelity applicable);
    a run whose Z(c) is not that world's is refused, and so is a run made on a world with its own population
    evidence when ``world`` is not given (its fidelity would read NOT_APPLICABLE where the run was graded).
    """
    from engine import fidelity_evidence
    from engine import default_world

    kind = sealed_world_kind(res)
    s2 = res.tables["s2"]
    universe = (s2[["country_iso", "tzid"]].astype(str).drop_duplicates()
                .sort_values(["country_iso", "tzid"]).reset_index(drop=True))
    if world is not None:
        from tuning.common.worlds import E_WORLD_MISMATCH

        if set(zip(universe["country_iso"], universe["tzid"])) != set(zip(world.universe["country_iso"],
                                                                          world.universe["tzid"])):
            raise EngineError(E_WORLD_MISMATCH, f"the run's zone universe is not the universe of world {world.name}")
        _require_sealed_world(res, world)
        return world.evidence
    if kind == "custom+evidence":   # graded only against the population evidence the run was made with
        from tuning.common.errors import E_USAGE

        raise EngineError(E_USAGE, "the run's world brings its own population evidence: pass --world DIR (that "
                                   "world) to measure its fidelity against it")
    if kind in ("default", "default+outlets"):
        world = default_world()
        same = set(zip(universe["country_iso"], universe["tzid"])) == set(
            zip(world.universe["country_iso"], world.universe["tzid"]))
        return world.evidence if same else fidelity_evidence(universe, True)
    return fidelity_evidence(universe, False)


def passed_flag_path(run_dir: str | Path | None, identity: Mapping) -> Path | None:
    if run_dir is None:
        return None
    from engine import data_paths

    return Path(run_dir) / data_paths(dict(identity))["flag"]


def table_globs(run_root: str | Path, identity: Mapping) -> dict:
    """``paths{s1_glob, s2_glob, s3_glob, s4_glob, zone_alloc_glob}`` of a materialised run."""
    from engine import TABLE_MEMBERS, data_paths

    paths = data_paths(dict(identity))
    root = Path(run_root).as_posix()
    return {f"{key}_glob": f"{root}/{Path(paths[logical]).parent.as_posix()}/*.parquet"
            for key, logical in TABLE_MEMBERS.items()}


def run_evidence(res, pack: Mapping) -> dict:
    """POPT.1 veto inputs of a chain result (fail-closed: unknown stays None).

    S6 run status is PASS whenever S6 completed (S6-S7.md §3): a ChainResult exists only then.
    ``s6_issues_error`` counts ERROR rows of the S6 issue table; S5 conservation is the zone_alloc
    count-conservation violations plus pairs whose total differs from S1 ``site_count``.
    """
    issues = getattr(res, "s6_issues", None)
    issues_error = None
    if issues is not None and "severity" in getattr(issues, "columns", ()):
        issues_error = int((issues["severity"].astype(str) == "ERROR").sum())
    za = pack.get("zone_alloc", {})
    s5_viol = None
    if "count_conservation_violations" in za:
        s5_viol = int(za["count_conservation_violations"]) + int(za.get("site_count_mismatch_pairs", 0))
    flag = passed_flag_path(getattr(res, "run_dir", None), res.identity)
    keys = ("manifest_fingerprint", "parameter_hash")
    receipt = getattr(res, "receipt", None) or {}
    reports = {"S5": getattr(res, "universe_doc", None), "S6": res.s6_report, "S7": getattr(res, "index", None)}
    return {
        "s6_status": "PASS" if res.s6_report else None,
        "s6_overall_status": (res.s6_report or {}).get("overall_status"),
        "s6_issues_error": issues_error,
        "s7_status": (res.s7 or {}).get("status"),
        "s7_passed_flag_present": bool(flag is not None and flag.is_file()),
        "s5_pairs_count_conservation_violations": s5_viol,
        "identity": {k: receipt.get(k) for k in keys},
        "report_identities": {s: ({k: d.get(k) for k in keys} if d else None) for s, d in reports.items()},
    }


def run_block(res, runs_root: str | Path | None) -> dict:
    """The identity block the reports share (``baseline_authority`` / ``candidate`` / ``run``)."""
    ident = res.identity
    run_root = res.run_dir.as_posix() if getattr(res, "run_dir", None) is not None else None
    return {
        "runs_root": Path(runs_root).as_posix() if runs_root is not None else None,
        "run_root": run_root,
        "run_id": ident["run_id"],
        "seed": ident["seed"],
        "manifest_fingerprint": ident["manifest_fingerprint"],
        "parameter_hash": ident["parameter_hash"],
    }
