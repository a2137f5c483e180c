"""The optimised fidelity section equals, bit for bit, the pre-optimisation pandas formulation
(tests/metrics/fidelity_reference.py) on random worlds: aliases, countries with more than 8
clocks (the scalar jsd path), zero shares and counts, unpopulated and outside-universe clocks,
shuffled rows, S2/S4 rows whose zone is outside Z(c) (the string path), and evidence with and without an
authored prior (gate 3A-F07's allowance)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from engine.metrics import fidelity
from engine.metrics.exact import kahan_group_sum, pandas_group_sum
from engine.metrics.fidelity_index import EvidenceIndex
from engine.world.evidence import FidelityEvidence
from tests.metrics.fidelity_reference import reference_fidelity_metrics


def random_world(seed: int, outside_zc: bool, shuffle: bool = True) -> tuple[dict, FidelityEvidence]:
    rng = np.random.default_rng(seed)
    countries = [f"{chr(65 + i)}{chr(65 + j)}" for i in range(3) for j in range(rng.integers(3, 9))]
    zc_rows, pop_rows, s2_rows = [], [], []
    for c in countries:
        n_zones = int(rng.choice([1, 2, 3, 5, 9, 12, 14]))
        n_clocks = max(1, n_zones - int(rng.integers(0, 3)))
        for z in range(n_zones):
            clock = f"K/{c}{z % n_clocks}"
            zc_rows.append((c, f"Z/{c}{z}", clock))
            s2_rows.append((c, f"Z/{c}{z}", float(rng.choice([0.0, rng.random(), rng.random() * 1e-9]))))
        for k in range(n_clocks + int(rng.integers(0, 3))):  # some populated clocks outside Z(c)
            if rng.random() < 0.8:
                pop_rows.append((c, f"K/{c}{k}", int(rng.integers(1, 10 ** 6))))
    zc = pd.DataFrame(zc_rows, columns=["country_iso", "tzid", "clock"])
    pop = pd.DataFrame(pop_rows, columns=["country_iso", "clock", "population"])
    s2 = pd.DataFrame(s2_rows, columns=["country_iso", "tzid", "share_effective"])
    picks = rng.integers(0, len(zc), 12 * len(zc))
    # merchants drawn from a pool around F08's 30 a country, so some countries enter realised_jsd_max and some do not
    s4 = pd.DataFrame({"merchant_id": rng.integers(0, int(rng.choice([25, 60, 200])), picks.size).astype(np.uint64),
                       "legal_country_iso": zc["country_iso"].to_numpy()[picks], "tzid": zc["tzid"].to_numpy()[picks],
                       "zone_site_count": rng.integers(0, 40, picks.size)})
    if outside_zc:
        s4.loc[0, "tzid"] = "Z/stray"
        s2.loc[len(s2)] = [countries[0], "Z/extra", 0.25]
    if shuffle:  # else S2 stays sorted, so pandas summed its clocks with np.add.reduceat
        s2 = s2.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        s4 = s4.sample(frac=1.0, random_state=seed + 1).reset_index(drop=True)
    # an authored prior on Z(c)'s clocks (as the authoring law's: a share per country and clock) for half the seeds
    authored = None
    if seed % 4 < 2:
        keys = zc[["country_iso", "clock"]].drop_duplicates().reset_index(drop=True)
        keys["share"] = rng.random(len(keys)) * rng.choice([1.0, 1e-3], len(keys))
        keys["share"] = keys["share"] / keys.groupby("country_iso")["share"].transform("sum")
        authored = keys
    return {"s2": s2, "s4": s4}, FidelityEvidence(zc, pop, bool(seed % 2), authored)


def _same(tables, evidence) -> None:
    got = fidelity.fidelity_metrics(tables, evidence)
    want = reference_fidelity_metrics(tables, evidence)
    assert json.dumps(got) == json.dumps(want)


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("seed", range(25))
def test_matches_the_pandas_formulation_on_random_worlds(seed, shuffle):
    tables, evidence = random_world(seed, outside_zc=False, shuffle=shuffle)
    assert fidelity._by_codes(tables, fidelity.evidence_index(evidence)) is not None
    _same(tables, evidence)


def _writer_sorted(tables: dict) -> dict:
    """S4 in its writer order (merchant_id, legal_country_iso, tzid), as the chain and a published run hold it."""
    s4 = tables["s4"].sort_values(["merchant_id", "legal_country_iso", "tzid"], kind="stable").reset_index(drop=True)
    return {**tables, "s4": s4}


@pytest.mark.parametrize("seed", range(12))
def test_writer_ordered_s4_counts_its_merchants_in_one_pass_as_the_reference_does(seed):
    """S4 in writer order takes realised_jsd_max's one-pass merchant count (a pair's rows are one run); the pack
    equals the pandas reference there too, and each country's count equals the ``np.unique`` one of any order."""
    tables, evidence = random_world(seed, outside_zc=False)
    ordered = _writer_sorted(tables)
    _same(ordered, evidence)
    countries = np.unique(tables["s4"]["legal_country_iso"].to_numpy().astype(str))
    want = [tables["s4"][tables["s4"]["legal_country_iso"] == c]["merchant_id"].nunique() for c in countries]
    for frame in (ordered["s4"], tables["s4"]):
        assert fidelity.merchants_by_country(frame, countries).tolist() == want


def test_a_merchant_whose_countries_interleave_is_counted_once_a_country():
    """Rows out of writer order (merchant 1's AA, BB, AA; merchant ids ascending) are not one run a pair: the count
    falls back to np.unique instead of counting AA's second run again."""
    s4 = pd.DataFrame({"merchant_id": np.array([1, 1, 1, 2, 3, 3], dtype=np.uint64),
                       "legal_country_iso": ["AA", "BB", "AA", "AA", "BB", "BB"]})
    assert fidelity.merchants_by_country(s4, np.array(["AA", "BB", "CC"])).tolist() == [2, 2, 0]
    ordered = s4.sort_values(["merchant_id", "legal_country_iso"], kind="stable")
    assert fidelity.merchants_by_country(ordered, np.array(["AA", "BB", "CC"])).tolist() == [2, 2, 0]


@pytest.mark.parametrize("shuffle", [True, False])
@pytest.mark.parametrize("seed", range(10))
def test_zones_outside_the_universe_take_the_string_path(seed, shuffle):
    tables, evidence = random_world(seed, outside_zc=True, shuffle=shuffle)
    assert fidelity._by_codes(tables, fidelity.evidence_index(evidence)) is None
    _same(tables, evidence)


@pytest.mark.parametrize("seed", range(10))
def test_string_path_equals_code_path(seed, monkeypatch):
    tables, evidence = random_world(seed, outside_zc=False)
    coded = fidelity.fidelity_metrics(tables, evidence)
    monkeypatch.setattr(EvidenceIndex, "clock_sums", lambda self, *a: None)
    assert json.dumps(fidelity.fidelity_metrics(tables, evidence)) == json.dumps(coded)


@pytest.mark.parametrize("layout", ["interleaved", "sorted", "sorted_nan", "sorted_inf", "runs_unsorted"])
@pytest.mark.parametrize("sort", [True, False])
def test_pandas_group_sum_is_pandas_groupby_sum(layout, sort):
    """Pins the pandas behaviour the old formulation relied on (reduceat over sorted runs, else Kahan)."""
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 60, 6000)
    if layout != "interleaved":
        keys = np.sort(keys)
    if layout == "runs_unsorted":  # contiguous runs, not in key order: monotone only for sort=False
        keys = (59 - keys) if sort else keys[::-1].copy()
    values = rng.random(keys.size) * 10.0 ** rng.integers(-8, 8, keys.size)
    if layout == "sorted_nan":
        values[::97] = np.nan
    if layout == "sorted_inf":
        values[5] = np.inf
    want = pd.DataFrame({"k": keys, "v": values}).groupby("k", sort=sort)["v"].sum()
    ids, uniques = pd.factorize(keys, sort=sort)
    got = pandas_group_sum(np.asarray(ids, dtype=np.int64), values, len(uniques))
    assert np.array_equal(got, want.to_numpy(), equal_nan=True)
    assert list(uniques) == list(want.index)
    if layout in ("interleaved", "sorted"):  # the two kernels really differ on these inputs
        assert not np.array_equal(kahan_group_sum(np.asarray(ids, dtype=np.int64), values, len(uniques)),
                                  np.bincount(np.asarray(ids), weights=values, minlength=len(uniques)))


@pytest.mark.parametrize("n", range(1, 20))
def test_segment_jsd_is_the_scalar_jsd_at_every_length(n):
    """Lengths below 8 take the padded running sum, 8 and more the scalar jsd: both bit for bit."""
    from engine.metrics.exact import jsd, segment_jsd

    rng = np.random.default_rng(n)
    p = rng.random((200, n)) * 10.0 ** rng.integers(-10, 3, (200, n))
    q = rng.random((200, n)) * 10.0 ** rng.integers(-3, 6, (200, n))
    p[rng.random((200, n)) < 0.2] = 0.0
    p[:, 0] += 1e-12
    got = segment_jsd(p.ravel(), q.ravel(), np.arange(200) * n, np.full(200, n))
    assert np.array_equal(got, np.array([jsd(a, b) for a, b in zip(p, q)]))
