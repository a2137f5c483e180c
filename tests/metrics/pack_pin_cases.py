"""Inputs of the pinned metric packs (tests/metrics/test_pack_pinned.py) and the scripts that
wrote ``pack_pinned.json`` and ``pack_tables_pinned.json``.

Both fixtures were produced by the pre-optimisation implementation of ``engine.metrics`` (pandas
groupby/merge fidelity, commit 8cf1aeb on main): the first five packs with
``python -m tests.metrics.pack_pin_cases`` at that commit, the other packs by passing that commit's
``metric_pack`` to ``main`` and the helper tables by passing its ``pack`` module to
``helper_digests``. The optimised implementation must reproduce them bit for bit (floats compared
through their exact JSON repr, keys in the same order). Do not regenerate them to make a test pass.

When the chain's own output changed (S3's logs and exponentials became engine/core/detmath.py's, the same
bits on every machine), the fixtures were produced again the same way: this code's case tables, pickled, given
to commit 8cf1aeb's ``metric_pack`` and ``pack`` module (a worktree on the path of a second process), their
helper tables digested here. Only the chain-derived S3 helper tables and the seed-7 packs changed.

When S4's second-zone safeguard stopped forcing zones whose clock holds under a tenth of the forced share of its
country's people (2026-12-07), the chain packs were produced again the same way (8cf1aeb's ``metric_pack`` and
``pack`` in a second process on this code's pickled case tables; the fidelity keys added since, F06-F08, from
tests/metrics/fidelity_reference.py, which agrees with 8cf1aeb's own F01-F05 keys on every case). Only the S4- and
zone_alloc-derived values and helper tables changed.
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
    from engine.chain.runner import run_chain
    from engine.policies import PolicySet
    from engine.world.model import default_world

    world = default_world()
    result = run_chain(PolicySet.from_dir(ROOT / "tests" / "fixtures" / "pinned_policies"), seed, world)
    return result.tables, world.evidence


def permuted(tables: dict, seed: int = 3) -> dict:
    """Every table's rows in a random order (no input is relied on to be sorted)."""
    rng = np.random.default_rng(seed)
    return {k: v.iloc[rng.permutation(len(v))].reset_index(drop=True) for k, v in tables.items()}


def _with_repeats(tables: dict, seed: int = 11) -> dict:
    """Rows repeated at random places (duplicate triplets, split pair runs, a repeated S1 pair)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, frame in tables.items():
        extra = frame.iloc[rng.integers(0, len(frame), 3)]
        at = np.sort(rng.integers(0, len(frame), 3))
        parts, prev = [], 0
        for i, a in enumerate(at):
            parts += [frame.iloc[prev:a], extra.iloc[[i]]]
            prev = a
        out[name] = pd.concat(parts + [frame.iloc[prev:]], ignore_index=True)
    return out


def _reversed(tables: dict) -> dict:
    return {k: v.iloc[::-1].reset_index(drop=True) for k, v in tables.items()}


def _split_runs(tables: dict) -> dict:
    """One row of every tenth S3/S4/zone_alloc pair moved to the end: pairs in two runs."""
    out = dict(tables)
    for name in ("s3", "s4", "zone_alloc"):
        frame = tables[name]
        moved = np.zeros(len(frame), dtype=bool)
        moved[::37] = True
        out[name] = pd.concat([frame[~moved], frame[moved]], ignore_index=True)
    return out


def cases() -> dict:
    """name -> (tables, evidence or None)."""
    from tests.metrics.synthetic_tables import make_synthetic_tables

    t42, ev = chain_tables(42)
    t7, _ = chain_tables(7)
    synth = make_synthetic_tables(2600, seed=0)
    out = {
        "seed42": (t42, ev),
        "seed7": (t7, ev),
        "seed42_permuted": (permuted(t42), ev),
        "synthetic": (synth, None),
        "synthetic_permuted": (permuted(synth, 5), None),
        "seed7_repeated_rows": (_with_repeats(t7), ev),
        "seed42_reversed": (_reversed(t42), ev),
        "seed42_split_runs": (_split_runs(t42), ev),
    }
    for seed in (1, 2, 3):
        small = make_synthetic_tables(300, seed=seed, n_countries=30)
        out[f"synthetic_small_{seed}"] = (small, None)
        out[f"synthetic_small_{seed}_repeated"] = (_with_repeats(permuted(small, seed), seed), None)
    return out


def pack_json(tables: dict, evidence, metric_pack=None) -> str:
    if metric_pack is None:
        from engine.metrics import metric_pack

    return json.dumps(metric_pack(tables, evidence), allow_nan=True)


TABLES_FIXTURE = Path(__file__).with_name("pack_tables_pinned.json")


def helper_digests(tables: dict, pack_module=None) -> dict:
    """sha256 of the parquet bytes of the report helpers' tables (tuning.report.figures reads them)."""
    from engine.core.hashing import sha256_hex
    from engine.publish.serialize import parquet_bytes

    if pack_module is None:
        from engine.metrics import pack as pack_module
    m = pack_module
    s4_pairs = m.count_surface_pairs(tables["s4"])
    frames = {
        "s2_country_table": m.s2_country_table(tables["s2"]),
        "s3_pair_arrays": pd.DataFrame(m.s3_pair_arrays(tables["s3"])),
        "s3_cell_table": m.s3_cell_table(tables["s3"]),
        "s4_pairs": s4_pairs,
        "zone_alloc_pairs": m.count_surface_pairs(tables["zone_alloc"]),
        "s4_escalated": s4_pairs.iloc[m.escalated_pair_index(tables["s1"], s4_pairs)],
    }
    return {k: sha256_hex(parquet_bytes(v.reset_index(drop=True))) for k, v in frames.items()}


def main(metric_pack=None) -> None:
    out = {name: json.loads(pack_json(t, ev, metric_pack)) for name, (t, ev) in cases().items()}
    FIXTURE.write_text(json.dumps(out, indent=1, allow_nan=True) + "\n")


if __name__ == "__main__":
    main()
