"""An authority folder's record of the world it belongs to: ``world.yaml`` (written by ``tuning.author --into``),
read at the edge. The harness (``tuning.common.worlds``) validates and writes it; the engine's CLI reads it to name
a bound folder's world when none is given. One reader, so both resolve its ``dir`` the same way."""

from __future__ import annotations

import os
from pathlib import Path

from engine.core.strict import load_yaml

WORLD_FILE = "world.yaml"


def world_record(policies_dir: str | Path, code: str) -> object | None:
    """The folder's ``world.yaml`` as loaded (``code``: the error of an unreadable one), or None without one."""
    path = Path(policies_dir) / WORLD_FILE
    return load_yaml(path, code) if path.exists() else None


def recorded_dir(policies_dir: str | Path, record: object) -> Path | None:
    """The directory of the world ``record`` names (its ``dir``, relative to the folder), as a path from the
    working directory; None when it names none."""
    where = record.get("dir") if isinstance(record, dict) else None
    if where is None:
        return None
    world_dir = Path(where)
    return world_dir if world_dir.is_absolute() else Path(os.path.normpath(Path(policies_dir).resolve() / world_dir))
