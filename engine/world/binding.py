"""An authority folder's record of the world it belongs to: ``world.yaml`` (written by ``tuning.author --into``),
read at the edge. The harness (``tuning.common.worlds``) validates and writes it; the engine's CLI reads it to name
a bound folder's world when none is given. One reader, so both resolve its ``dir`` the same way."""

from __future__ import annotations

import os
import re
from pathlib import Path

from engine.core.errors import E_USAGE, EngineError
from engine.core.strict import load_yaml

WORLD_FILE = "world.yaml"


def world_record(policies_dir: str | Path, code: str) -> object | None:
    """The folder's ``world.yaml`` as loaded (``code``: the error of an unreadable one), or None without one."""
    path = Path(policies_dir) / WORLD_FILE
    return load_yaml(path, code) if path.exists() else None


def checked_record(policies_dir: str | Path, code: str) -> dict | None:
    """The folder's ``world.yaml`` as the harness writes it (a mapping: the world's 64-hex ``fingerprint``, its
    ``name`` and, where recorded, its ``dir``), or None without one; anything else is one ``code`` error naming
    the file and the field."""
    record = world_record(policies_dir, code)
    path = Path(policies_dir) / WORLD_FILE
    if record is None and not path.exists():
        return None
    if not isinstance(record, dict):
        raise EngineError(code, f"{path}: expected a mapping with the world's 'fingerprint', 'name' and 'dir'")
    fingerprint = record.get("fingerprint")
    if not isinstance(fingerprint, str) or not re.fullmatch(r"[0-9a-f]{64}", fingerprint):
        raise EngineError(code, f"{path}: 'fingerprint' must be the world's 64-hex fingerprint, not "
                                f"{fingerprint!r:.40}")
    for field, what, required in (("name", "name", True), ("dir", "directory", False)):
        value = record.get(field)
        if (required or value is not None) and (not isinstance(value, str) or not value.strip()):
            raise EngineError(code, f"{path}: '{field}' must be text (the world's {what}), not {value!r:.40}")
    return record


def recorded_dir(policies_dir: str | Path, record: object, code: str = E_USAGE) -> Path | None:
    """The directory of the world ``record`` names (its ``dir``, relative to the folder), as a path from the
    working directory; None when it names none (``code``: the error of a ``dir`` that is not text)."""
    where = record.get("dir") if isinstance(record, dict) else None
    if where is None:
        return None
    if not isinstance(where, str) or not where.strip():
        raise EngineError(code, f"{Path(policies_dir) / WORLD_FILE}: 'dir' must be text (the world's directory), "
                                f"not {where!r:.40}")
    world_dir = Path(where)
    return world_dir if world_dir.is_absolute() else Path(os.path.normpath(Path(policies_dir).resolve() / world_dir))
