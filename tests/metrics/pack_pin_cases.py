"""Inputs of the pinned metric packs (tests/metrics/test_pack_pinned.py) and the script that wrote
``pack_pinned.json``.

The fixture was produced ONCE by the pre-optimisation implementation of ``engine.metrics`` (pandas
groupby/merge fidelity, commit 8cf1aeb on main) with ``python -m tests.metrics.pack_pin_cases``;
the optimised implementation must reproduce it bit for bit (floats compared through their exact
JSON repr, keys in the same order). Do not regenerate it to make a test pass.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd

FIXTURE = Path(__file__).with_name("pack_pinned.json")
ROOT = Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=4)
def chain_tables(seed: int):
    from engine.chain import run_chain
    from engine.policies import PolicySet
    from engine.world.model import default_world

    world = default_world()
    result = run_chain(PolicySet.from_dir(ROOT / "policies"), seed, world)
    return result.tables, world.evidence


def permuted(tables: dict, seed: int = 3) -> dict:
    """Every table's rows in a random order (no input is relied on to be sorted)."""
    rng = np.random.default_rng(seed)
    return {k: v.iloc[rng.permutation(len(v))].reset_index(drop=True) for k, v in tables.items()}


def cases() -> dict:
    """name -> (tables, evidence or None)."""
    from tests.metrics.synthetic_tables import make_synthetic_tables

    t42, ev = chain_tables(42)
    t7, _ = chain_tables(7)
    synth = make_synthetic_tables(2600, seed=0)
    return {
        "seed42": (t42, ev),
        "seed7": (t7, ev),
        "seed42_permuted": (permuted(t42), ev),
        "synthetic": (synth, None),
        "synthetic_permuted": (permuted(synth, 5), None),
    }


def pack_json(tables: dict, evidence) -> str:
    from engine.metrics import metric_pack

    return json.dumps(metric_pack(tables, evidence), allow_nan=True)


def main() -> None:
    out = {name: json.loads(pack_json(t, ev)) for name, (t, ev) in cases().items()}
    FIXTURE.write_text(json.dumps(out, indent=1, allow_nan=True) + "\n")


if __name__ == "__main__":
    main()
