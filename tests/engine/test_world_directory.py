"""A world is one input: a directory of outlets, universe, population evidence and policies, every part
validated with one coded line; the world's identity is its content; its catalogue is read once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from engine import ChainCache, PolicySet, run_chain
from engine.core.errors import EngineError
from engine.world.model import default_world, load_world
from engine.world.outlets import validate_outlets
from tests.engine.world_parts import OUTLETS, POPULATION, UNIVERSE, refused as _refused, write_world as _world

ROOT = Path(__file__).resolve().parents[2]


def test_a_full_world_is_fidelity_applicable_on_its_own_evidence(tmp_path):
    d = _world(tmp_path, universe_csv=UNIVERSE, population_csv=POPULATION, outlets_parquet=OUTLETS)
    world = load_world(d)
    assert world.fidelity_applicable and world.evidence.applicable and world.countries == ["FR", "US"]
    pop = world.evidence.clock_population.set_index(["country_iso", "clock"])["population"]
    assert pop[("US", "America/New_York")] == 120e6 and len(pop) == 4
    res = run_chain(policies=_authored(world), seed=3, world=world)
    assert res.s6_status == "PASS"
    assert {g["status"] for g in res.gates["fidelity"].values()} <= {"PASS", "FAIL"}  # measured, never N/A


def _authored(world):
    from engine import authored_baseline

    return authored_baseline(world)


def test_population_alone_defines_the_universe_one_name_per_clock(tmp_path):
    # Asia/Calcutta is a link to Asia/Kolkata: one clock, the population merges, IN's own zone.tab name is kept
    pop = pd.DataFrame({"country_iso": ["IN", "IN", "NL"], "tzid": ["Asia/Kolkata", "Asia/Calcutta", "Europe/Amsterdam"],
                        "population": [10.0, 5.0, 7.0]})
    world = load_world(_world(tmp_path, population_csv=pop))
    assert list(zip(world.universe["country_iso"], world.universe["tzid"])) == [("IN", "Asia/Kolkata"),
                                                                                 ("NL", "Europe/Amsterdam")]
    assert world.population.set_index("tzid")["population"]["Asia/Kolkata"] == 15.0


def test_an_aliased_universe_with_evidence_is_refused_for_f01_would_fail_whatever_the_policy(tmp_path):
    """Two names of one clock beside population evidence: the alias is a zone nobody can live on, 3A-F01 fails on
    every run (a campaign on it ended FROZEN_BEST_EFFORT_DISTORTED); the world is one coded line naming them."""
    uni = pd.DataFrame({"country_iso": ["NL", "NL", "CA", "CA", "CA"],
                        "tzid": ["Europe/Amsterdam", "Europe/Brussels", "America/Toronto", "Canada/Eastern",
                                 "America/Vancouver"]})
    pop = pd.DataFrame({"country_iso": ["NL", "CA", "CA"], "tzid": ["Europe/Amsterdam", "America/Toronto",
                                                                    "America/Vancouver"], "population": [17e6, 9e6, 3e6]})
    outlets = pd.DataFrame({"merchant_id": [1], "legal_country_iso": ["NL"], "site_count": [50]})
    with pytest.raises(EngineError) as err:
        load_world(_world(tmp_path, universe_csv=uni, population_csv=pop, outlets_csv=outlets))
    assert err.value.code == "E3A_WLD_001_INPUT_INVALID"
    assert err.value.cause.endswith("universe.csv: CA lists America/Toronto and Canada/Eastern, names of one clock "
                                    "(America/Toronto); keep one (2 such clocks)")
    # without evidence the same universe runs (its fidelity is NOT_APPLICABLE: an alias is only shown there)
    world = load_world(_world(tmp_path, "bare", universe_csv=uni, outlets_csv=outlets))
    assert run_chain(_authored(world), 1, world).gates["fidelity"]["3A-F01_alias_count"]["status"] == "N/A"


def test_a_catalogue_country_the_evidence_has_no_row_for_names_the_population_file(tmp_path):
    pop = pd.DataFrame({"country_iso": ["NL"], "tzid": ["Europe/Amsterdam"], "population": [17.0]})
    outlets = pd.DataFrame({"merchant_id": [1], "legal_country_iso": ["FR"], "site_count": [5]})
    with pytest.raises(EngineError) as err:
        load_world(_world(tmp_path, population_csv=pop, outlets_csv=outlets))
    assert "population.csv defines the universe here (one zone per populated clock) and has no population row " \
           "for FR; give it population or add a universe.csv" in err.value.cause


@pytest.mark.parametrize("country,says", [
    ("DE", "has no population row for DE;"),
    ("de", "(country codes are written as the universe writes them, two upper-case letters with no spaces: 'DE')"),
    ("PW", "gives PW no population on any clock;")])
def test_the_refusal_names_the_catalogue_country_not_another_one_the_evidence_leaves_at_zero(tmp_path, country, says):
    """Helper 41: a population row of 0 for Palau made every catalogue country without a zone read 'gives PW no
    population on any clock' (DE with no rows; a lower-case 'us' whose hint was right, then contradicted)."""
    pop = pd.DataFrame({"country_iso": ["DE", "NL", "PW"], "tzid": ["Europe/Berlin", "Europe/Amsterdam", "Pacific/Palau"],
                        "population": [83e6, 17e6, 0.0]})
    if country == "DE":
        pop = pop[pop["country_iso"] != "DE"]
    outlets = pd.DataFrame({"merchant_id": [1, 2], "legal_country_iso": ["NL", country], "site_count": [5, 3]})
    with pytest.raises(EngineError) as err:
        load_world(_world(tmp_path, population_csv=pop, outlets_csv=outlets))
    assert says in err.value.cause and err.value.cause.count(";") <= 1
    others = {"DE", "PW"} - {country.upper()}
    assert not any(f"gives {c}" in err.value.cause for c in others)


@pytest.mark.parametrize("part,frame,needle", [
    ("outlets_parquet", OUTLETS.drop(columns="legal_country_iso"), "lacks column"),
    ("outlets_parquet", OUTLETS.iloc[:0], "no rows"),
    ("outlets_parquet", OUTLETS.assign(site_count=[True, True, False, True]), "not a boolean"),
    ("outlets_parquet", OUTLETS.assign(site_count=[2, 1, 0, 3]), "site_count must be an integer >= 1"),
    ("outlets_csv", pd.concat([OUTLETS, OUTLETS.iloc[:1]]), "duplicate (merchant_id, legal_country_iso) pair (1, US)"),
    ("universe_csv", UNIVERSE.rename(columns={"tzid": "zone"}), "lacks column"),
    ("universe_csv", pd.concat([UNIVERSE, UNIVERSE.iloc[:1]]), "duplicate row"),
    ("universe_csv", UNIVERSE.assign(tzid=["Mars/Olympus", *UNIVERSE.tzid[1:]]), "unknown tzid"),
    ("population_csv", POPULATION.drop(columns="population"), "lacks column"),
    ("population_csv", POPULATION.assign(tzid=["Europe/Atlantis", *POPULATION.tzid[1:]]), "unknown tzid"),
    ("population_csv", POPULATION.assign(tzid=["Factory", *POPULATION.tzid[1:]]), "'Factory' is tzdata's placeholder"),
    ("universe_csv", UNIVERSE.assign(tzid=["Factory", *UNIVERSE.tzid[1:]]), "'Factory' is tzdata's placeholder"),
    ("population_csv", POPULATION.assign(population=[-1.0, 1.0, 1.0, 1.0]), "population '-1.0' of "),
    ("population_csv", POPULATION.assign(population=[np.inf, 1.0, 1.0, 1.0]), "is not a finite number (1 such rows)"),
    ("population_csv", POPULATION.assign(population=[5, 1, "x", 1]), "population 'x' of "),
    ("population_csv", POPULATION.assign(population=[1e308, 1e308, 1.0, 1.0]), "more people than live on Earth"),
    ("population_parquet", POPULATION.assign(population=[2e10, 1.0, 1.0, 1.0]), "more people than live on Earth"),
    ("population_csv", pd.concat([POPULATION, POPULATION.iloc[:1]]), "duplicate row"),
    ("population_csv", pd.concat([POPULATION, pd.DataFrame({"country_iso": ["FR"], "tzid": ["Asia/Tokyo"],
                                                             "population": [5.0]})]), "outside the zone universe"),
    ("population_csv", pd.concat([POPULATION, pd.DataFrame({"country_iso": ["DE"], "tzid": ["Europe/Berlin"],
                                                             "population": [5.0]})]), "outside the zone universe"),
])
def test_bad_world_parts_are_one_coded_line(tmp_path, part, frame, needle):
    parts = {"universe_csv": UNIVERSE, "population_csv": POPULATION, "outlets_parquet": OUTLETS}
    parts.pop("outlets_parquet" if part.startswith("outlets") else part.replace("parquet", "csv"), None)
    parts[part] = frame
    _refused(_world(tmp_path, **parts), needle)


def test_outlets_in_a_multi_clock_country_the_evidence_leaves_empty_are_refused(tmp_path):
    # every outlet S3/S4 place in such a country lies where the evidence says nobody lives (3A-F02): no policy
    # could make the world faithful, so the world is refused before anything runs, naming the country
    empty_us = POPULATION.assign(population=[60e6, 0.0, 0.0, 0.0])
    _refused(_world(tmp_path, "zero", universe_csv=UNIVERSE, population_csv=empty_us, outlets_parquet=OUTLETS),
             "59 outlets in US, a country of several clocks with no population on any of them")
    fr_only = POPULATION[POPULATION.country_iso == "FR"]
    _refused(_world(tmp_path, "absent", universe_csv=UNIVERSE, population_csv=fr_only, outlets_parquet=OUTLETS),
             "give US its population or drop its rows")
    # the same evidence is a valid world when the catalogue leaves that country alone, and a single-clock
    # country without evidence places its outlets on its one clock (nothing to distort)
    assert load_world(_world(tmp_path, "fr_only", universe_csv=UNIVERSE, population_csv=empty_us,
                             outlets_parquet=OUTLETS[OUTLETS.legal_country_iso == "FR"])).countries == ["FR", "US"]
    no_fr = POPULATION[POPULATION.country_iso == "US"]
    assert load_world(_world(tmp_path, "no_fr", universe_csv=UNIVERSE, population_csv=no_fr,
                             outlets_parquet=OUTLETS)).fidelity_applicable


def test_a_spreadsheets_blanks_after_commas_are_not_part_of_names_or_values(tmp_path):
    clean = load_world(_world(tmp_path, "clean", universe_csv=UNIVERSE, population_csv=POPULATION,
                              outlets_csv=OUTLETS))
    spaced = _world(tmp_path, "spaced")
    for name, frame in (("universe", UNIVERSE), ("population", POPULATION), ("outlets", OUTLETS)):
        rows = [", ".join(frame.columns)] + [", ".join(map(str, r)) for r in frame.itertuples(index=False)]
        (spaced / f"{name}.csv").write_text("\n".join(rows) + "\n")
    assert load_world(spaced).fingerprint == clean.fingerprint   # the same world, read from "a, b" rows
    (spaced / "outlets.csv").write_text("merchant_id, merchant_id ,legal_country_iso,site_count\n1,1,US,5\n")
    _refused(spaced, "column 'merchant_id' appears twice")


def test_an_empty_or_ambiguous_world_directory_is_refused(tmp_path):
    _refused(_world(tmp_path, "empty"), "holds at least one of", "E3A_WLD_002_INPUT_MISSING")
    _refused(_world(tmp_path, "both", outlets_csv=OUTLETS, outlets_parquet=OUTLETS), "keep one")
    _refused(tmp_path / "absent", "not found", "E3A_WLD_002_INPUT_MISSING")


def test_a_world_is_its_contents_and_its_catalogue_is_read_once(tmp_path):
    a = load_world(_world(tmp_path, "a", outlets_parquet=OUTLETS))
    b = load_world(_world(tmp_path, "b", outlets_csv=OUTLETS))   # other name, other format, same rows
    assert a.fingerprint == b.fingerprint != default_world().fingerprint and a.label == f"w{a.fingerprint[:12]}"
    assert default_world().label == "" and a.catalogue is a.catalogue   # cached: read once per process
    policies, cache = PolicySet.from_dir(ROOT / "policies"), ChainCache()
    first, second = run_chain(policies, 42, a, cache=cache), run_chain(policies, 7, a, cache=cache)
    assert {"S0.world", "S1", "S2"} <= second.reused and "S3" not in second.reused
    fresh = run_chain(policies, 7, a, cache=ChainCache())   # the seed still reaches S3 through S0's RNG master
    assert fresh.pack == second.pack and fresh.pack != first.pack


def test_a_world_is_named_after_its_folder_however_the_path_reaches_it(tmp_path, monkeypatch):
    d = _world(tmp_path, "my_world", outlets_csv=OUTLETS)
    (d / "sub").mkdir()
    names = []
    for cwd, arg in ((tmp_path, "my_world"), (d, "."), (d / "sub", ".."), (tmp_path, str(d))):
        monkeypatch.chdir(cwd)
        names.append(load_world(arg).name)
    assert names == ["my_world+outlets"] * 4


def test_the_cli_refuses_a_bad_world_with_one_line_and_publishes_nothing(tmp_path):
    bad = _world(tmp_path, universe_csv=UNIVERSE, population_csv=POPULATION.assign(population=[-5, 1, 1, 1]))
    out = subprocess.run([sys.executable, "-m", "engine", "run", "--seed", "1", "--world", str(bad), "--run-root",
                          str(tmp_path / "runs")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 2 and out.stderr.startswith("E3A_WLD_001_INPUT_INVALID") and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()
    good = _world(tmp_path, "good", universe_csv=UNIVERSE, population_csv=POPULATION, outlets_parquet=OUTLETS)
    out = subprocess.run([sys.executable, "-m", "engine", "run", "--seed", "1", "--world", str(good), "--run-root",
                          str(tmp_path / "runs")], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0 and "policies: authored for the custom universe" in out.stdout
    assert "fidelity FAITHFUL" in out.stdout or "fidelity DISTORTED" in out.stdout
    assert "as given" not in out.stdout          # every policy authored: no world's own file to name


def test_a_catalogue_country_the_evidence_leaves_without_population_is_named_as_such(tmp_path):
    """Population alone defines Z(c): a country it gives no population on any clock has no zone, and the refusal of
    its outlets says why (it read only 'not in the zone universe')."""
    pop = POPULATION.assign(population=[0.0, 120e6, 90e6, 60e6])   # FR at 0
    _refused(_world(tmp_path, population_csv=pop, outlets_parquet=OUTLETS),
             "population.csv defines the universe here (one zone per populated clock) and gives FR no population on any clock")


def test_a_pair_of_any_size_reads_the_same_in_either_form():
    """One row per outlet and one row per pair with ``site_count`` are one catalogue, whatever a pair's size (the
    one limit is the catalogue's total, in both forms)."""
    from engine.world.outlets import MAX_OUTLETS

    rows = pd.DataFrame({"merchant_id": [7] * 1_200_000 + [3] * 2, "legal_country_iso": ["US"] * 1_200_002})
    pairs = pd.DataFrame({"merchant_id": [7, 3], "legal_country_iso": ["US", "US"], "site_count": [1_200_000, 2]})
    by_row, by_pair = validate_outlets(rows, {"US"}, "rows"), validate_outlets(pairs, {"US"}, "pairs")
    pd.testing.assert_frame_equal(by_row.reset_index(drop=True), by_pair.reset_index(drop=True), check_dtype=False)
    with pytest.raises(EngineError, match="exceed the limit"):
        validate_outlets(pairs.assign(site_count=[MAX_OUTLETS, 1]), {"US"}, "pairs")


def test_a_world_that_ships_its_policies_runs_from_any_directory(tmp_path):
    """A world shipping all three policy files runs on them alone, wherever the command is run from; a world on
    the default universe without them needs the default authority (``policies/`` here), and says so."""
    import shutil

    own = _world(tmp_path, "own", outlets_parquet=OUTLETS)
    for name in ("country_zone_alphas", "zone_floor_policy", "zone_mixture_policy"):
        shutil.copy(ROOT / "policies" / f"{name}.yaml", own / f"{name}.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}

    def run(world: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "engine", "run", "--seed", "1", "--world", str(world),
                               "--run-root", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120,
                              cwd=elsewhere, env=env)

    done = run(own)
    assert done.returncode == 0, done.stderr
    expected = PolicySet.from_dir(ROOT / "policies").parameter_hash   # the files it ships, byte for byte
    assert list((tmp_path / "runs").glob(f"*/data/s2_country_zone_priors/parameter_hash={expected}"))
    bare = _world(tmp_path, "bare", outlets_parquet=OUTLETS)
    refused = run(bare)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert refused.stderr.startswith("E3A_POL_004") and "run from the project root, or pass --policies" in refused.stderr
    bound = tmp_path / "bound_authority"   # what tuning.author --into writes: the folder records its world
    shutil.copytree(own, bound)
    (bound / "world.yaml").write_text("dir: ../own\nfingerprint: '" + "0" * 64 + "'\nname: own\n")   # text, as written
    done = subprocess.run([sys.executable, "-m", "engine", "run", "--seed", "1", "--policies", str(bound),
                           "--run-root", str(tmp_path / "runs2")], capture_output=True, text=True, timeout=120,
                          cwd=elsewhere, env=env)
    assert done.returncode == 2 and done.stderr.strip() == (f"E3A_CLI_001_USAGE: --policies {bound}: that authority "
                                                            f"belongs to world own (world.yaml); pass --world {own}")
    assert not (tmp_path / "runs2").exists()


def test_a_world_of_population_evidence_alone_and_a_csv_catalogue_loads_as_given(tmp_path):
    """``tests.worlds multiclock`` (the README's outcome table): population.csv alone defines Z(c), one zone per
    populated clock, and the pair-level CSV catalogue is read as written."""
    from tests.worlds.build import write_world
    from tests.worlds.geonames import clock

    summary = write_world("multiclock", tmp_path / "mc")
    assert sorted(p.name for p in (tmp_path / "mc").iterdir()) == ["outlets.csv", "population.csv"]
    world = load_world(tmp_path / "mc")
    evidence = pd.read_csv(tmp_path / "mc" / "population.csv")
    clocks = {(c, clock(t)) for c, t in zip(evidence["country_iso"], evidence["tzid"])}
    assert len(world.universe) == len(clocks) and world.fidelity_applicable
    assert (world.universe.groupby("country_iso").size() >= 2).all()
    catalogue = world.catalogue   # one row per outlet
    assert len(catalogue) == summary["outlets"]
    assert len(catalogue[["merchant_id", "legal_country_iso"]].drop_duplicates()) == summary["pairs"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.sampled_from(["FR", "US"])), min_size=0, max_size=40))
def test_an_outlet_catalogue_is_sorted_and_each_pairs_sites_are_numbered_from_one(rows):
    # the oracle: the rows in (merchant, country) order, ties kept in file order, numbered per pair with a counter
    frame = pd.DataFrame(rows, columns=["merchant_id", "legal_country_iso"]).astype({"merchant_id": "int64"})
    out = validate_outlets(frame, {"FR", "US"}, "t")
    seen: dict = {}
    expected = []
    for m, c in sorted(rows, key=lambda r: (r[0], r[1])):
        seen[(m, c)] = seen.get((m, c), 0) + 1
        expected.append((m, c, seen[(m, c)]))
    assert list(zip(out["merchant_id"].tolist(), out["legal_country_iso"].tolist(), out["site_order"].tolist())) \
        == expected
    assert out["site_order"].dtype == np.uint32 and out["merchant_id"].dtype == np.uint64


@pytest.mark.parametrize("population, needle", [
    ([1.0, 0.5, 0.3, 0.2], "population 0.5 of US on America/New_York is less than one person"),
    ([100.0, 50.0, 30.0, 20.0], "every country's population sums to 100"),
    ([1000.0, 500.0, 300.0, 200.0], "every country's population sums to 1000"),
])
def test_population_given_as_shares_is_refused_as_such(tmp_path, population, needle):
    """Population is people: shares are refused, as they were when the authoring law smoothed every clock with 1,000
    people and authored them a near-uniform prior (a user's Chatham Islands, 0.01% of NZ, got 47% of NZ's outlets).
    The law now caps its smoothing at 5% of a country's people a clock, and people authors by the people."""
    from engine.policies.authoring import author_alphas

    shares = POPULATION.assign(population=population)
    _refused(_world(tmp_path, universe_csv=UNIVERSE, population_csv=shares), needle)
    people = shares.assign(population=[1.0, 0.5, 0.3, 0.2]).assign(population=lambda f: f["population"] * 1e8)
    world = load_world(_world(tmp_path, "people", universe_csv=UNIVERSE, population_csv=people))
    assert world.population["population"].sum() == pytest.approx(2e8)
    alphas = {e["tzid"]: e["alpha"] for e in author_alphas(people)["countries"]["US"]["tzid_alphas"]}
    assert alphas["America/New_York"] / sum(alphas.values()) == pytest.approx(0.5, abs=0.01)


def test_a_small_headcount_beside_real_ones_is_not_a_share(tmp_path):
    """A territory of a few people on two clocks beside a country of real headcounts loads as given (FR 60, US
    270 M and KI 5 are not one normalised total either)."""
    ki = pd.DataFrame({"country_iso": ["KI", "KI"], "tzid": ["Pacific/Tarawa", "Pacific/Kiritimati"]})
    pop = pd.concat([POPULATION.assign(population=[60.0, 120e6, 90e6, 60e6]), ki.assign(population=[3.0, 2.0])])
    world = load_world(_world(tmp_path, universe_csv=pd.concat([UNIVERSE, ki]), population_csv=pop))
    assert sorted(world.population["population"].tolist()) == [2.0, 3.0, 60.0, 60e6, 90e6, 120e6]


@pytest.mark.parametrize("us, needle", [
    ([3.0, 2.0, 1.0], "US's population sums to 6 people over 3 clocks, and its one country of two clocks or more "
                      "has fewer than 100 people a clock"),                          # weights
    ([55.0, 30.0, 15.0], "US's population sums to 100 over 3 clocks, a normalised total"),   # percent, one country
    ([33.3, 33.3, 33.3], "US's population sums to 99.9 over 3 clocks, a normalised total"),  # rounded percentages
])
def test_evidence_the_smoothing_outweighs_as_shares_or_weights_is_refused(tmp_path, us, needle):
    """A share, a percentage or a weight, whatever its total, is not a headcount: refused (when the authoring law
    smoothed every clock with 1,000 people, such a world was authored a near-uniform prior, DISTORTED from its first
    run; a one-country world in percent passed the normalised-total test, which needs two countries)."""
    pop = POPULATION.assign(population=[60.0, *us])
    _refused(_world(tmp_path, universe_csv=UNIVERSE, population_csv=pop), needle)


def test_percentages_beside_real_headcounts_and_basis_points_are_refused_and_a_small_real_population_loads(tmp_path):
    """One country in percent beside another's headcount is refused for that country; two countries in basis points
    too; 1,465 people on 8 Antarctic clocks are people (their fidelity verdict says what the smoothing makes of
    them)."""
    ki = pd.DataFrame({"country_iso": ["KI", "KI"], "tzid": ["Pacific/Tarawa", "Pacific/Kiritimati"]})
    mixed = pd.concat([POPULATION.assign(population=[60e6, 50.0, 30.0, 20.0]), ki.assign(population=[9e4, 3e4])])
    _refused(_world(tmp_path, "mixed", universe_csv=pd.concat([UNIVERSE, ki]), population_csv=mixed),
             "US's population sums to 100 over 3 clocks, a normalised total")
    bps = pd.concat([POPULATION.assign(population=[1e4, 5000.0, 3000.0, 2000.0]), ki.assign(population=[7e3, 3e3])])
    _refused(_world(tmp_path, "bps", universe_csv=pd.concat([UNIVERSE, ki]), population_csv=bps),
             "every country's population sums to 10000")
    aq = pd.DataFrame({"country_iso": ["AQ"] * 4, "tzid": ["Antarctica/McMurdo", "Antarctica/Casey",
                                                          "Antarctica/Davis", "Antarctica/Palmer"],
                       "population": [1000.0, 200.0, 150.0, 115.0]})
    world = load_world(_world(tmp_path, "aq", population_csv=aq))
    assert world.population["population"].sum() == 1465.0


def test_a_population_only_world_publishes_each_clock_under_the_countrys_own_name(tmp_path):
    """Evidence keyed by legacy link names: each clock is published as the default world publishes it, by the
    country's own zone.tab name (it published US/Central, NZ and NZ-CHAT as given); a clock its country has no
    zone.tab name for keeps the evidence's name (northern Vietnam on Bangkok's clock)."""
    pop = pd.DataFrame({"country_iso": ["US", "US", "NZ", "NZ", "VN", "VN"],
                        "tzid": ["US/Central", "US/Eastern", "NZ", "NZ-CHAT", "Asia/Saigon", "Asia/Bangkok"],
                        "population": [9e7, 1.2e8, 5e6, 600.0, 5e7, 4e7]})
    world = load_world(_world(tmp_path, population_csv=pop))
    assert sorted(zip(world.universe["country_iso"], world.universe["tzid"])) == [
        ("NZ", "Pacific/Auckland"), ("NZ", "Pacific/Chatham"), ("US", "America/Chicago"), ("US", "America/New_York"),
        ("VN", "Asia/Bangkok"), ("VN", "Asia/Ho_Chi_Minh")]
