"""The full verification of a run folder beyond the digests (spec S6-S7 §8, §9, §11).

:func:`check_identity` cross-checks every identity field of ``index.json`` - which the flag does not
cover - against the receipts, the flag's folder and the file system: ``manifest_fingerprint`` (index,
path token, S0 and S6 receipts), ``parameter_hash``, each member's ``path`` (rendered from the
identity), ``role``, ``schema_ref``, ``size_bytes``, the member set, and the S6 receipt's report and
issue-table digests. :func:`check_no_strays` requires every file of the run's datasets and logs to be
a member, the index or the flag: a stray ``part-00001.parquet`` or a second ``manifest_fingerprint=``
folder fails. Only ``reports/`` (timings, outside the bundle) is free. :func:`read_json` and
:func:`check_table` hold a member whose digests were re-sealed over bad content: a receipt that is not a
JSON object, a table that is not parquet or lacks its schema's columns (its footer only is read).
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from engine.core.errors import E_BUNDLE_MISSING, E_BUNDLE_TAMPERED, EngineError
from engine.core.hashing import run_id as run_id_of
from engine.publish.members import ROLES, SCHEMA, TABLE_MEMBERS, data_paths
from engine.states.lineage import COLUMNS
from engine.states.s6_validation import ISSUE_COLUMNS

FREE_FOLDERS = ("reports",)
# the parquet members and their columns, in order (SCHEMA: engine/states/lineage.py#COLUMNS; the S6 issue table's own)
TABLE_COLUMNS = {**{lid: COLUMNS[key] for key, lid in TABLE_MEMBERS.items()}, "s6_issue_table_3A": ISSUE_COLUMNS}


def _tampered(msg: str) -> EngineError:
    return EngineError(E_BUNDLE_TAMPERED, msg)


def member_path(run_dir: Path, rel: object) -> Path:
    """The file a bundle path names, checked before anything is opened: a relative path without ``..``,
    no symbolic link on the way (nothing points out of the run) and a regular file at the end (a named
    pipe would block the reader, a device such as /dev/zero would never end)."""
    parts = PurePosixPath(rel).parts if isinstance(rel, str) and rel else ()
    if not parts or PurePosixPath(rel).is_absolute() or any(p in ("..", ".") or "\\" in p for p in parts):
        raise _tampered(f"{str(rel)[:200]!r}: not a path inside the run")
    path = run_dir
    for part in parts:
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            raise EngineError(E_BUNDLE_MISSING, f"{rel}: missing from the run") from None
        except OSError as exc:
            raise _tampered(f"{rel}: unreadable ({exc.strerror or exc})") from None
        if stat.S_ISLNK(mode):
            raise _tampered(f"{rel}: a symbolic link (a bundle file must be a regular file of the run)")
    if not stat.S_ISREG(mode):
        raise _tampered(f"{rel}: not a regular file (a bundle file cannot be a pipe, a device or a folder)")
    return path


def read_member(run_dir: Path, rel: object) -> bytes:
    """The bytes of a bundle file, opened only once :func:`member_path` accepts it (no link followed, no
    blocking open)."""
    path = member_path(run_dir, rel)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _tampered(f"{rel}: unreadable ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):   # replaced between the check and the open
            raise _tampered(f"{rel}: not a regular file")
        return fh.read()


def read_json(run_dir: Path, rel: str, lid: str) -> dict:
    """A JSON-object member (a receipt), parsed defensively: anything else is a coded tamper naming the member."""
    data = read_member(run_dir, rel)
    try:
        doc = json.loads(data)
    except ValueError as exc:   # JSONDecodeError, UnicodeDecodeError
        raise _tampered(f"member {lid} ({rel}): unreadable JSON ({str(exc)[:120]})") from None
    if not isinstance(doc, dict):
        raise _tampered(f"member {lid} ({rel}): not a JSON object (a {type(doc).__name__})")
    return doc


def check_table(lid: str, rel: str, data: bytes) -> None:
    """A parquet member opens as parquet with the columns of its contract (:data:`TABLE_COLUMNS`); only the
    footer is read, never the rows. A JSON-lines member is as the engine writes it: one object a line, each line
    ended by one newline, no blank line. Other members pass untouched."""
    if rel.endswith(".jsonl"):
        if data and (not data.endswith(b"\n") or data.startswith(b"\n") or b"\n\n" in data):
            raise _tampered(f"member {lid} ({rel}): a blank line or a missing final newline (not as the engine "
                            f"writes JSON lines)")
        return
    expected = TABLE_COLUMNS.get(lid)
    if expected is None:
        return
    try:
        names = pq.read_schema(pa.BufferReader(data)).names
    except (pa.ArrowException, ValueError, OSError) as exc:
        cause = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise _tampered(f"member {lid} ({rel}): not a readable parquet file ({cause})") from None
    if names != expected:
        raise _tampered(f"member {lid} ({rel}): columns {names[:30]} are not its schema's {expected}")


def check_identity(run_dir: Path, index_path: Path, index: dict) -> dict:
    """Every identity field of the index agrees with the receipts and the files; returns the identity."""
    members = {m.get("logical_id"): m for m in index["members"] if isinstance(m, dict)}
    if set(members) != set(ROLES) or len(index["members"]) != len(ROLES):
        raise _tampered(f"index members {sorted(map(str, members))} are not the bundle's {len(ROLES)} members")
    if set(index) - {"manifest_fingerprint", "parameter_hash", "s6_receipt_digest", "members", "metadata"}:
        raise _tampered("index.json has unknown top-level keys")
    s0 = read_json(run_dir, str(members["s0_gate_receipt_3A"]["path"]), "s0_gate_receipt_3A")
    s6 = read_json(run_dir, str(members["s6_receipt_3A"]["path"]), "s6_receipt_3A")
    mf, ph = index.get("manifest_fingerprint"), index.get("parameter_hash")
    token = index_path.parent.name.partition("manifest_fingerprint=")[2]
    if not (mf == token == s0.get("manifest_fingerprint") == s6.get("manifest_fingerprint")):
        raise _tampered("manifest_fingerprint differs between index.json, its folder and the S0/S6 receipts")
    if not (ph == s0.get("parameter_hash") == s6.get("parameter_hash")):
        raise _tampered("parameter_hash differs between index.json and the S0/S6 receipts")
    seed = s0.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _tampered("S0 receipt has no integer seed")
    identity = {"manifest_fingerprint": mf, "parameter_hash": ph, "seed": seed, "run_id": run_id_of(mf, seed)}
    if run_dir.resolve().name != identity["run_id"]:   # runs/<run_id> is where a run is found: another's is not it
        raise _tampered(f"the run folder is named {run_dir.resolve().name!r}, but the run it holds is "
                        f"{identity['run_id']} (seed {seed})")
    expected_paths = data_paths(identity)
    for lid, m in members.items():
        if set(m) - {"logical_id", "path", "schema_ref", "sha256_hex", "role", "size_bytes", "notes"}:
            raise _tampered(f"member {lid} has unknown keys")
        if m.get("path") != expected_paths[lid]:
            raise _tampered(f"member {lid}: path {m.get('path')!r} is not the one its identity renders")
        if m.get("role") != ROLES[lid] or m.get("schema_ref") != SCHEMA:
            raise _tampered(f"member {lid}: role or schema_ref edited")
        size = (run_dir / m["path"]).stat().st_size
        if "size_bytes" in m and m["size_bytes"] != size:
            raise _tampered(f"member {lid}: size_bytes {m['size_bytes']} but the file has {size}")
    if s6.get("validation_report_digest") != members["s6_validation_report_3A"]["sha256_hex"] or \
            s6.get("issue_table_digest") != members["s6_issue_table_3A"]["sha256_hex"]:
        raise _tampered("S6 receipt's report/issue digests do not match the bundle members")
    return identity


def check_no_strays(run_dir: Path, index: dict, index_path: Path) -> int:
    """Every file of the run folder (outside reports/) is a member, the index or the flag."""
    allowed = {str(m["path"]) for m in index["members"]}
    allowed |= {index_path.relative_to(run_dir).as_posix(), (index_path.parent / "_passed.flag")
                .relative_to(run_dir).as_posix()}
    seen = 0
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir).as_posix()
        if rel.split("/", 1)[0] in FREE_FOLDERS:
            continue
        if path.is_dir() and not path.is_symlink():
            continue
        if rel not in allowed:
            raise _tampered(f"{rel}: file not accounted for by the bundle (stray or second partition)")
        seen += 1
    if seen != len(allowed):
        raise EngineError(E_BUNDLE_MISSING, f"{run_dir}: {len(allowed) - seen} bundle file(s) missing")
    return seen
