"""The keyed stratified merchant subsample (engine.chain.subsample) and run_chain(..., fraction=f)."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from engine import EngineError, run_chain
from engine.chain.runner import ChainCache
from engine.chain.sizing import approx_bytes
from engine.chain.subsample import merchant_strata, selected_merchants, subsample
from engine.world.model import default_world, outlets_for
from tests.engine.conftest import ROOT, engine_here

COUNTRIES = ["AA", "BB", "CC", "DD"]


@st.composite
def catalogues(draw):
    n = draw(st.integers(1, 40))
    mids = draw(st.lists(st.integers(0, 2 ** 64 - 1), min_size=n, max_size=n, unique=True))
    rows = []
    for m in mids:
        for c in draw(st.lists(st.sampled_from(COUNTRIES), min_size=1, max_size=3, unique=True)):
            rows.append((m, c, draw(st.integers(1, 300))))
    return pd.DataFrame(rows, columns=["merchant_id", "legal_country_iso", "site_count"]).astype(
        {"merchant_id": np.uint64})


fractions = st.floats(0.01, 1.0, allow_nan=False)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(catalogues(), fractions)
def test_every_stratum_keeps_a_merchant(cat, f):
    strata = merchant_strata(cat)
    kept = set(selected_merchants(cat, f).tolist())
    for _, grp in strata.groupby(["home", "band"]):
        n_kept = sum(int(m) in kept for m in grp["merchant_id"])
        assert n_kept >= 1
        assert n_kept == max(1, int(np.ceil(f * len(grp) - 1e-9)))


@settings(max_examples=60, deadline=None)
@given(catalogues(), fractions, fractions)
def test_fractions_are_nested(cat, a, b):
    lo, hi = sorted((a, b))
    assert set(selected_merchants(cat, lo).tolist()) <= set(selected_merchants(cat, hi).tolist())


@settings(max_examples=60, deadline=None)
@given(catalogues(), fractions, st.randoms(use_true_random=False))
def test_the_choice_does_not_depend_on_row_order(cat, f, rnd):
    order = list(range(len(cat)))
    rnd.shuffle(order)
    shuffled = cat.iloc[order].reset_index(drop=True)
    assert selected_merchants(cat, f).tolist() == selected_merchants(shuffled, f).tolist()


def test_fraction_one_is_the_catalogue_itself_and_bad_fractions_are_refused():
    cat = outlets_for(default_world(), 42)
    assert subsample(cat, 1.0) is cat
    for bad in (0, -0.1, 1.5, float("nan"), float("inf"), "x"):
        with pytest.raises(EngineError) as err:
            subsample(cat, bad)
        assert err.value.code == "E3A_CLI_001_USAGE"


def test_fraction_one_is_todays_run_and_a_subsample_is_its_own_deterministic_world(policies, baseline):
    full = run_chain(policies, 42, fraction=1.0)
    assert full.identity == baseline.identity and full.flag == baseline.flag
    a = run_chain(policies, 42, fraction=0.25)
    b = run_chain(policies, 42, fraction=0.25, partitions=3, cache=ChainCache())
    shuffled = outlets_for(default_world(), 42).sample(frac=1.0, random_state=1)
    c = run_chain(policies, 42, outlets=shuffled, fraction=0.25)
    assert a.identity["run_id"] != full.identity["run_id"]
    assert a.identity["world_digest"] != full.identity["world_digest"]
    assert a.flag == b.flag == c.flag and a.pack == b.pack == c.pack
    assert len(a.cores["s1"]) < len(full.cores["s1"])


def test_a_kept_pair_draws_what_it_draws_at_full_scale(policies, baseline):
    sub = run_chain(policies, 42, fraction=0.3)
    keys = ["merchant_id", "legal_country_iso", "tzid"]
    joined = sub.cores["s3"].merge(baseline.cores["s3"], on=keys, suffixes=("", "_full"))
    assert len(joined) > 0
    same = np.isclose(joined["share_drawn"], joined["share_drawn_full"], rtol=0, atol=0)
    # pairs escalated in both runs (S1's decision is per pair) draw the very same shares
    assert same.mean() > 0.99


def test_fractions_never_share_a_cache_entry(policies):
    cache = ChainCache()
    run_chain(policies, 42, cache=cache, fraction=0.5)
    second = run_chain(policies, 42, cache=cache, fraction=0.2)
    assert "S1" not in second.reused and "S2" in second.reused


def test_the_chain_cache_is_bounded_by_bytes(policies):
    res = run_chain(policies, 42)
    one = approx_bytes(res.cores["s4"])
    assert one > 0
    cache = ChainCache(max_entries=100, max_bytes=int(2.5 * one))
    for i in range(5):
        cache.put(str(i), res.cores["s4"].copy())
    assert len(cache) == 2 and cache.bytes <= 2.5 * one
    cache.put("big", [res.cores["s4"].copy() for _ in range(3)])   # larger than the whole budget: not kept
    assert cache.get("big") is None and cache.bytes <= 2.5 * one


def _engine(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=240)


@pytest.mark.parametrize("bad", ["0", "1.5", "nan", "-1"])
def test_engine_run_refuses_a_fraction_outside_0_1(tmp_path, bad):
    proc = engine_here(ROOT, "run", "--seed", "42", "--run-root", str(tmp_path), "--fraction", bad,
                       program=bad == "0")   # one as a program, the others in process
    assert proc.returncode == 2 and proc.stderr.startswith("E3A_CLI_001_USAGE") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not any(tmp_path.iterdir())


def test_engine_run_publishes_a_verifiable_subsample_run(tmp_path):
    proc = _engine("run", "--seed", "42", "--run-root", str(tmp_path), "--fraction", "0.2")
    assert proc.returncode == 0, proc.stderr
    assert "fraction 0.2" in proc.stdout
    run_dir = proc.stdout.split("run_dir ")[1].split()[0]
    assert _engine("verify", run_dir).returncode == 0


def test_engine_bench_subsample_writes_its_error_table(tmp_path):
    out = tmp_path / "sub.json"
    proc = _engine("bench", "--subsample", "--scale", "1", "--seeds", "42", "--fractions", "0.2,0.5", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    doc = __import__("json").loads(out.read_text())["world"]
    assert doc["fractions"] == [0.2, 0.5] and doc["pairs_full"] == 2606
    gates = doc["by_fraction"]["0.5"]["gates"]
    assert {"3A-V01_s2_top1_median_multi_tz", "3A-F04_realised_jsd_mean"} <= set(gates)
    assert "| 3A-V06 | `s4.top1_share_p75` |" in proc.stdout
    kept = subsample(outlets_for(default_world(), 42), 0.5)[["merchant_id", "legal_country_iso"]].drop_duplicates()
    assert doc["by_fraction"]["0.5"]["pairs_kept"] == len(kept) < 2606   # the kept count, as the schedule reads it
    assert "| pairs kept (count) | | " in proc.stdout and f"{len(kept):,}" in proc.stdout


@pytest.mark.parametrize("bad", [["--fractions", "0.5,0.2"], ["--fractions", "0"], ["--seeds", "42,42"]])
def test_engine_bench_subsample_refuses_bad_fractions_or_seeds(bad):
    proc = engine_here(ROOT, "bench", "--subsample", "--scale", "1", *bad, program=bad[0] == "--seeds")
    assert proc.returncode == 2 and proc.stderr.startswith("E3A_CLI_001_USAGE") and "Traceback" not in proc.stderr


def test_a_catalogue_file_is_read_once_per_process(tmp_path, monkeypatch):
    from engine.world import model

    (tmp_path / "w").mkdir()
    outlets_for(default_world(), 7)[["merchant_id", "legal_country_iso"]].to_parquet(tmp_path / "w" / "outlets.parquet")
    reads = []
    real = model._read_table
    monkeypatch.setattr(model, "_read_table", lambda p: reads.append(p) or real(p))
    a, b = model.load_world(tmp_path / "w"), model.load_world(tmp_path / "w")
    assert a is not b and a.catalogue is b.catalogue and len(reads) == 1
