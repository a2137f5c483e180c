"""HashGate for a user-supplied upstream that ships a validation bundle (spec S0-S2 §1).

If the folder of a bring-your-own file holds ``_passed.flag``, the folder must also hold an
``index.json`` listing its files (a list, or ``{"files": [...]}``, entries with ``path`` and
optionally ``sha256_hex``); the files on disk (except the flag and the index) must equal the
listed set, every listed digest must match, and the flag's ``sha256_hex = <hex>`` must equal
SHA-256 of the listed files' bytes concatenated in path order. No PASS, no read.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from engine.core.errors import EngineError
from engine.publish.verify_bundle import read_member

E_UPSTREAM_GATE = "E3A_S0_001_UPSTREAM_GATE_FAILED"
FLAG = re.compile(r"^sha256_hex = ([a-f0-9]{64})\s*$")


def verify_upstream_bundle(folder: Path) -> str | None:
    """Return the composite digest when the folder carries a bundle, None when it carries none."""
    flag_path = folder / "_passed.flag"
    if not flag_path.exists():
        return None

    def fail(msg: str) -> None:
        raise EngineError(E_UPSTREAM_GATE, f"{folder}: {msg}")

    def read(rel: str) -> bytes:   # a regular file of the folder, checked before it is opened (no pipe, no device)
        try:
            return read_member(folder, rel)
        except EngineError as exc:
            raise EngineError(E_UPSTREAM_GATE, f"{folder}: {exc.cause}") from None

    index_path = folder / "index.json"
    if not index_path.exists():
        fail("_passed.flag without index.json")
    try:
        index = json.loads(read("index.json").decode("utf-8"))
    except ValueError:
        fail("index.json is not valid JSON")
    entries = index.get("files") if isinstance(index, dict) else index
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "path" in e for e in entries):
        fail("index.json must list files with a 'path'")
    paths = [str(e["path"]) for e in entries]
    for p in paths:
        if p.startswith("/") or "\\" in p or ".." in p.split("/") or ":" in p or not p.isascii():
            fail(f"index path {p!r} is not a safe relative path")
    if len(set(paths)) != len(paths):
        fail("index.json lists a path twice")
    on_disk = {f.relative_to(folder).as_posix() for f in folder.rglob("*") if f.is_file()} - {"_passed.flag"}
    listed = set(paths) | ({"index.json"} if "index.json" not in paths else set())
    if on_disk != listed:
        fail(f"files on disk differ from the index ({len(on_disk ^ listed)} differences)")
    digest = hashlib.sha256()
    for entry in sorted(entries, key=lambda e: str(e["path"])):
        data = read(str(entry["path"]))
        if "sha256_hex" in entry and hashlib.sha256(data).hexdigest() != entry["sha256_hex"]:
            fail(f"{entry['path']} does not match its indexed digest")
        digest.update(data)
    flag = read("_passed.flag").decode("ascii", errors="replace")
    match = FLAG.match(flag.splitlines()[0] if flag else "")
    if not match or match.group(1) != digest.hexdigest():
        fail("_passed.flag does not match the bundle digest")
    return digest.hexdigest()
