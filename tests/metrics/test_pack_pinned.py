"""The optimised metric pack reproduces, bit for bit, the pack of the pre-optimisation implementation
(tests/metrics/pack_pinned.json, see pack_pin_cases.py), and reads only the core columns."""

from __future__ import annotations

import json

import pytest

from engine.metrics import metric_pack
from engine.metrics.pack import REQUIRED_COLUMNS
from engine.states.lineage import COLUMNS, lineage_values
from tests.metrics.pack_pin_cases import FIXTURE, TABLES_FIXTURE, cases, chain_tables, helper_digests, pack_json

PINNED = json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def all_cases():
    return cases()


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pack_matches_pre_optimisation_bytes(all_cases, name):
    tables, evidence = all_cases[name]
    got = json.loads(pack_json(tables, evidence))
    assert json.dumps(got, indent=1) == json.dumps(PINNED[name], indent=1)


def _lineage_columns() -> set[str]:
    from engine.policies import PolicySet
    from tests.metrics.pack_pin_cases import ROOT

    identity = {"seed": 0, "manifest_fingerprint": "0" * 64, "parameter_hash": "0" * 64}
    return set(lineage_values(identity, PolicySet.from_dir(ROOT / "tests" / "fixtures" / "pinned_policies")))


LINEAGE = _lineage_columns()


def core_tables(published: dict, object_strings: bool = False, zone_alloc: bool = True) -> dict:
    """The states' lineage-free core tables: the published columns minus the constant lineage
    columns; S4 without the two columns the chain copies in from S3/S2; zone_alloc = S4's core with
    ``site_count`` per row. ``object_strings``: string columns as numpy object arrays."""
    drop = LINEAGE | {"routing_universe_hash"}
    core = {k: v[[c for c in COLUMNS[k] if c not in drop]] for k, v in published.items() if k != "zone_alloc"}
    core["s4"] = core["s4"].drop(columns=["share_sum_country", "alpha_sum_country"])
    if zone_alloc:
        core["zone_alloc"] = core["s4"].assign(site_count=published["zone_alloc"]["site_count"].to_numpy())
    if object_strings:
        core = {k: v.astype({c: object for c in v.columns if v[c].dtype.kind not in "biufc"})
                for k, v in core.items()}
    return core


@pytest.mark.parametrize("object_strings", [False, True])
@pytest.mark.parametrize("seed", [42, 7])
def test_pack_on_core_tables_equals_pack_on_published_tables(seed, object_strings):
    tables, evidence = chain_tables(seed)
    core = core_tables(tables, object_strings)
    assert all(c not in core["zone_alloc"].columns for c in ("seed", "manifest_fingerprint", "notes"))
    assert "site_count" in core["zone_alloc"].columns
    assert json.dumps(metric_pack(core, evidence)) == json.dumps(metric_pack(tables, evidence))


def test_pack_reads_only_the_required_columns():
    """Only REQUIRED_COLUMNS (+ zone_alloc's site_count) are read: the pack of the bare columns is the same."""
    tables, evidence = chain_tables(42)
    bare = {k: v[list(REQUIRED_COLUMNS[k]) + (["site_count"] if k == "zone_alloc" else [])].copy()
            for k, v in tables.items()}
    assert json.dumps(metric_pack(bare, evidence)) == json.dumps(metric_pack(tables, evidence))


def test_lineage_set_is_what_the_chain_attaches():
    assert {"seed", "manifest_fingerprint", "notes", "prior_pack_id", "theta_digest"} <= LINEAGE
    assert not LINEAGE & set(REQUIRED_COLUMNS["s4"])


def test_escalated_pairs_without_s4_rows_abort_with_the_same_message():
    """Message pinned from the pre-optimisation implementation on the same input."""
    from engine.core.errors import EngineError
    from engine.metrics.pack import escalated_pair_index, count_surface_pairs

    tables, _ = chain_tables(42)
    s1 = tables["s1"]
    esc = s1[s1["is_escalated"]]
    drop = set(zip(esc["merchant_id"].iloc[[5, 9]], esc["legal_country_iso"].iloc[[5, 9]]))
    s4 = tables["s4"]
    keep = [(m, c) not in drop for m, c in zip(s4["merchant_id"], s4["legal_country_iso"])]
    broken = {**tables, "s4": s4[keep].reset_index(drop=True)}
    want = ("E3A_MET_002_ESCALATED_PAIR_WITHOUT_S4_ROWS: 2 escalated pair(s) have no S4 rows, first "
            "(100032, RU); no metric pack")
    with pytest.raises(EngineError) as err:
        metric_pack(broken)
    assert str(err.value) == want
    with pytest.raises(EngineError) as err:
        escalated_pair_index(s1, count_surface_pairs(broken["s4"]))
    assert str(err.value) == want


TABLES_PINNED = json.loads(TABLES_FIXTURE.read_text())


@pytest.mark.parametrize("name", sorted(TABLES_PINNED))
def test_report_helper_tables_match_pre_optimisation_bytes(all_cases, name):
    """count_surface_pairs, s2_country_table, s3_pair_arrays, s3_cell_table and
    escalated_pair_index give the same tables (parquet bytes) as before."""
    tables, _ = all_cases[name]
    assert helper_digests(tables) == TABLES_PINNED[name]
