"""Run store (the catalogue's IO edge): publish a ChainResult atomically, read it back, verify it.

Layout: RUN_ROOT/<run_id>/ holds every bundle member at its partitioned path, the S7 index and
``_passed.flag`` under data/validation/manifest_fingerprint=.../, and reports/run_report.json
(timings: outside the bundle, never hashed). The run folder is built under a temporary name and
renamed into place, so nothing half-written is ever visible.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from engine.core.errors import E_BUNDLE_MISSING, E_BUNDLE_TAMPERED, E_PUBLISH, EngineError
from engine.core.hashing import sha256_hex
from engine.publish.atomic import process_umask
from engine.publish.members import TABLE_MEMBERS, data_paths
from engine.publish.bundle import Bundle
from engine.chain.result import ChainResult
from engine.publish.serialize import json_bytes, read_jsonl
from engine.states.s7_bundle import bundle_digest, passed_flag
from engine.publish.verify_content import NEEDED, recheck_s6
from engine.publish.verify_bundle import (check_identity, check_no_strays, check_table, member_path, read_json,
                                          read_member)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def run_report(result) -> dict:
    return {"identity": result.identity, "seconds": result.seconds, "reused": sorted(result.reused),
            "s6_overall_status": result.s6_report["overall_status"], "s7": result.s7, "counters": result.counters,
            "realism": result.s6_report.get("realism")}


def _expected_files(result) -> dict[str, bytes]:
    """Every file a published run holds outside ``reports/`` (its timings), by run-relative path: the bundle's
    members, and the S7 index and flag of a passing run."""
    files = {Path(m.path).as_posix(): m.data for m in result.members}
    if result.s7.get("status") == "PASS":
        paths = data_paths(result.identity)
        files[Path(paths["index"]).as_posix()] = json_bytes(result.index)
        files[Path(paths["flag"]).as_posix()] = result.flag.encode("ascii")
    return files


def _first_difference(final: Path, expected: dict[str, bytes]) -> str | None:
    """What first differs between a published run folder and the files this run would publish (None: the same
    bytes): a missing, extra, linked or edited file. A run id is a digest of the inputs, so a difference is damage
    or tampering, never another result."""
    found = {p.relative_to(final).as_posix(): p for p in final.rglob("*")
             if (p.is_file() or p.is_symlink()) and p.relative_to(final).parts[0] != "reports"}
    for rel in sorted(expected.keys() - found.keys()):
        return f"{rel} is missing"
    for rel in sorted(found.keys() - expected.keys()):
        return f"{rel} is not a file of this run"
    for rel in sorted(expected):
        path = found[rel]
        if path.is_symlink() or not path.is_file() or path.read_bytes() != expected[rel]:
            return f"{rel} differs from this run's bytes"
    return None


def _clear_dead_staging(run_root: Path, run_id: str) -> None:
    """Remove this run's staging folders (``.tmp-<run_id>-<pid>-*``) whose process is gone: a publish killed
    outright (SIGKILL) leaves its own behind; one whose process lives (another publish of the same run) is left."""
    for stale in run_root.glob(f".tmp-{run_id}-*-*"):
        pid = stale.name[len(f".tmp-{run_id}-"):].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except OSError:   # alive under another user: not ours to remove
            continue


def _refuse_if_different(final: Path, result) -> None:
    """A run folder already published under this run id must hold this run's bytes (then publishing is a no-op)."""
    differs = _first_difference(final, _expected_files(result))
    if differs is not None:
        raise EngineError("E3A_IO_002_IMMUTABILITY_VIOLATION",
                          f"{final} exists with different content ({differs}); refusing to overwrite (python -m "
                          f"engine verify names what changed; remove the folder to publish the run again)")


def materialise(result, run_root: str | Path) -> Path:
    run_root = Path(run_root)
    try:
        run_root.mkdir(parents=True, exist_ok=True)
        if not os.access(run_root, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied", str(run_root))
    except OSError as exc:
        raise EngineError(E_PUBLISH, f"run root {run_root} is not a writable folder ({exc.strerror or exc})") from None
    final = run_root / result.identity["run_id"]
    if final.exists():
        _refuse_if_different(final, result)
        return final  # same inputs, same bytes: publishing again is a no-op
    tmp, raced = None, False
    try:
        _clear_dead_staging(run_root, result.identity["run_id"])
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{result.identity['run_id']}-{os.getpid()}-", dir=run_root))
        os.chmod(tmp, 0o777 & ~process_umask())   # mkdtemp creates 0700: a published run is readable as the umask says
        paths = data_paths(result.identity)
        for member in result.members:
            _write(tmp / member.path, member.data)
        if result.s7.get("status") == "PASS":
            _write(tmp / paths["index"], json_bytes(result.index))
            _write(tmp / paths["flag"], result.flag.encode("ascii"))
        _write(tmp / "reports" / "run_report.json", json.dumps(run_report(result), indent=2, sort_keys=True).encode())
        try:
            os.rename(tmp, final)
        except OSError as exc:   # another publish of this run renamed its folder into place first
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not final.is_dir() or final.is_symlink():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            tmp, raced = None, True
    except OSError as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise EngineError(E_PUBLISH, f"could not publish {final}: {exc.strerror or exc}") from None
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if raced:   # as a sequential re-publish: the same bytes are a no-op, other bytes are refused
        _refuse_if_different(final, result)
    return final


def _find_one(run_dir: Path, pattern: str) -> Path:
    hits = sorted(run_dir.glob(pattern))
    if len(hits) != 1:
        raise EngineError(E_BUNDLE_MISSING, f"{run_dir}: expected one {pattern}, found {len(hits)}")
    return hits[0]


def verify(run_dir: str | Path) -> dict:
    """Re-check the bundle from the files: every member digest, each parquet member's columns (its footer), the
    composite, the flag and the S6 receipt (a JSON object; anything else is E3A_VER_001), then S6 again on the
    sealed tables (:mod:`engine.publish.verify_content`: a re-sealed edit that breaks conservation or the domain).
    Every file is checked to be a regular file inside the run before it is opened
    (engine.publish.verify_bundle.member_path)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise EngineError(E_BUNDLE_MISSING, f"{run_dir}: run directory not found")
    index_path = _find_one(run_dir, "data/validation/manifest_fingerprint=*/index.json")
    index_rel = index_path.relative_to(run_dir).as_posix()
    flag_rel = index_path.parent.joinpath("_passed.flag").relative_to(run_dir).as_posix()
    flag_path = member_path(run_dir, flag_rel)
    index_bytes = read_member(run_dir, index_rel)
    try:
        index = json.loads(index_bytes)
        members = index["members"]
        if not isinstance(members, list) or not members or not all(
                isinstance(m, dict) and all(isinstance(m.get(k), str) for k in ("logical_id", "path", "sha256_hex"))
                for m in members):
            raise TypeError("members")
    except (ValueError, KeyError, TypeError):
        raise EngineError(E_BUNDLE_TAMPERED, f"{index_path}: index.json unreadable") from None
    if json_bytes(index) != index_bytes:
        raise EngineError(E_BUNDLE_TAMPERED, f"{index_path}: index.json is not canonical")
    ids = [m["logical_id"] for m in members]
    if ids != sorted(ids) or len(set(ids)) != len(ids):
        raise EngineError(E_BUNDLE_TAMPERED, f"{index_path}: members unsorted or duplicated")
    for m in members:   # every path checked before any member is read
        member_path(run_dir, m["path"])
    kept = {}   # the members S6 is re-run on, once the whole bundle has passed the checks below
    for m in members:
        data = read_member(run_dir, m["path"])
        if sha256_hex(data) != m["sha256_hex"]:
            raise EngineError(E_BUNDLE_TAMPERED, f"member {m['logical_id']} does not match its digest ({m['path']})")
        check_table(m["logical_id"], m["path"], data)   # a parquet member: its footer's columns (a re-sealed file)
        if m["logical_id"] in NEEDED:
            kept[m["logical_id"]] = data
        del data
    flag = read_member(run_dir, flag_rel)
    if flag != passed_flag(index).encode("ascii"):   # byte for byte what S7 writes for this index
        raise EngineError(E_BUNDLE_TAMPERED, f"{flag_path}: flag does not match the recomputed bundle digest")
    receipt_member = next((m for m in members if m["logical_id"] == "s6_receipt_3A"), None)
    if receipt_member is None:
        raise EngineError(E_BUNDLE_MISSING, "bundle has no s6_receipt_3A member")
    receipt = read_json(run_dir, receipt_member["path"], "s6_receipt_3A")
    if sha256_hex(json_bytes(receipt)) != index.get("s6_receipt_digest") or receipt.get("overall_status") != "PASS":
        raise EngineError(E_BUNDLE_TAMPERED, "s6 receipt digest mismatch or S6 not PASS")
    identity = check_identity(run_dir, index_path, index)   # identity fields the flag does not cover
    check_no_strays(run_dir, index, index_path)      # every file of every dataset accounted for
    recheck_s6(kept, identity)                       # the content: S6 again on the sealed tables (a re-sealed edit)
    return {"run_dir": str(run_dir), "members": len(members), "bundle_sha256_hex": bundle_digest(index),
            "status": "PASS"}


def load_run(run_dir: str | Path):
    """Read a materialised run back as a ChainResult (tables, events, identity, seconds, S6/S7)."""
    run_dir = Path(run_dir)
    report_path = run_dir / "reports" / "run_report.json"
    if not report_path.exists():
        raise EngineError(E_BUNDLE_MISSING, f"{run_dir}: not a run directory (reports/run_report.json missing)")
    report = json.loads(report_path.read_text())
    identity = report["identity"]
    paths = data_paths(identity)
    tables = {}
    for key, logical in TABLE_MEMBERS.items():
        path = run_dir / paths[logical]
        if not path.exists():
            raise EngineError(E_BUNDLE_MISSING, f"{run_dir}: {logical} missing")
        tables[key] = pd.read_parquet(path)
    events = pd.DataFrame(read_jsonl((run_dir / paths["rng_event_zone_dirichlet"]).read_bytes()))
    s6_report = json.loads((run_dir / paths["s6_validation_report_3A"]).read_bytes())
    s6_receipt = json.loads((run_dir / paths["s6_receipt_3A"]).read_bytes())
    s6_issues = pd.read_parquet(run_dir / paths["s6_issue_table_3A"])
    receipt = json.loads((run_dir / paths["s0_gate_receipt_3A"]).read_bytes())
    sealed = json.loads((run_dir / paths["sealed_inputs_3A"]).read_bytes())
    universe_doc = json.loads((run_dir / paths["zone_alloc_universe_hash"]).read_bytes())
    flag_path = run_dir / paths["flag"]
    index_path = run_dir / paths["index"]
    bundle = Bundle(tables=tables, universe_doc=universe_doc, s6_report=s6_report, s6_issues=s6_issues,
                    s6_receipt=s6_receipt, members=[], s7=report["s7"],
                    index=json.loads(index_path.read_bytes()) if index_path.exists() else {},
                    flag=flag_path.read_text() if flag_path.exists() else "")
    return ChainResult.from_bundle(bundle, identity=identity, events=events, seconds=report["seconds"],
                                   reused=set(report["reused"]), receipt=receipt, sealed=sealed,
                                   counters=report["counters"], run_dir=run_dir)
