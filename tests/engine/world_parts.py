"""A small world's parts, written as files, and the assertion that loading one is refused: shared by the world
directory's tests."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from engine.core.errors import EngineError
from engine.world.model import load_world

UNIVERSE = pd.DataFrame({"country_iso": ["FR", "US", "US", "US"],
                         "tzid": ["Europe/Paris", "America/New_York", "America/Chicago", "America/Los_Angeles"]})
POPULATION = pd.DataFrame({"country_iso": ["FR", "US", "US", "US"],
                           "tzid": ["Europe/Paris", "America/New_York", "America/Chicago", "America/Los_Angeles"],
                           "population": [60e6, 120e6, 90e6, 60e6]})
OUTLETS = pd.DataFrame({"merchant_id": [1, 2, 2, 3], "legal_country_iso": ["US", "US", "FR", "US"],
                        "site_count": [40, 12, 3, 7]})


def write_world(tmp_path: Path, name: str = "w", **parts: pd.DataFrame) -> Path:
    d = tmp_path / name
    d.mkdir()
    for file, frame in parts.items():
        path = d / file.replace("_", ".")
        frame.to_parquet(path, index=False) if path.suffix == ".parquet" else frame.to_csv(path, index=False)
    return d


def refused(world_dir: Path, needle: str, code: str = "E3A_WLD_001_INPUT_INVALID") -> None:
    with pytest.raises(EngineError) as err:
        load_world(world_dir)
    assert err.value.code == code and needle in err.value.cause, err.value.one_line()
