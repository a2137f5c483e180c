"""A world directory: one named input holding any of a user's outlet catalogue, zone universe, population
evidence and policy files (``README.md`` "Worlds a user brings"). Missing parts fall back to the default
world's. Reading and validating happen here, at the edge; every bad part is one coded line.

==========================  =====================================================================
``outlets.parquet|.csv``    the outlet catalogue (``merchant_id``, ``legal_country_iso`` [, ``site_count``])
``universe.csv|.parquet``   Z(c): ``country_iso``, ``tzid`` (an IANA name known to ``tzdata``)
``population.csv|.parquet`` the evidence fidelity is measured against: ``country_iso``, ``tzid``, ``population``
``country_zone_alphas.yaml`` its own priors (without ``universe.*``, the α pack defines Z(c), as before)
``zone_floor_policy.yaml``, ``zone_mixture_policy.yaml``  its own floors and mixture policy
==========================  =====================================================================
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from engine.core.errors import E_WORLD_INPUT, E_WORLD_MISSING, EngineError
from engine.world.clocks import clocks_of, published_name
from engine.world.evidence import fidelity_evidence
from engine.world.universe import ISO2, refuse_unknown_tzids
from engine.world.columns import require_columns

POLICY_FILES = ("zone_mixture_policy.yaml", "country_zone_alphas.yaml", "zone_floor_policy.yaml")
OUTLET_FILES = ("outlets.parquet", "outlets.csv")
UNIVERSE_FILES = ("universe.csv", "universe.parquet")
POPULATION_FILES = ("population.csv", "population.parquet")
KNOWN_FILES = POLICY_FILES + OUTLET_FILES + UNIVERSE_FILES + POPULATION_FILES


@dataclass(frozen=True)
class WorldParts:
    """Which parts a world directory holds (None: not there, the default's is used)."""

    root: Path
    outlets: Path | None
    universe: Path | None
    population: Path | None
    alphas: Path | None
    policy_files: tuple[Path, ...]

    @property
    def empty(self) -> bool:
        return not (self.outlets or self.universe or self.population or self.policy_files)


def _present(path: Path) -> bool:
    """The part is there: a file, or a link to one, even a broken link (read, it says so; skipped, the world
    would silently fall back to the default's part)."""
    return path.exists() or path.is_symlink()


def _one_of(root: Path, names: tuple[str, ...]) -> Path | None:
    found = [root / n for n in names if _present(root / n)]
    if len(found) > 1:
        raise EngineError(E_WORLD_INPUT, f"{root}: holds both {found[0].name} and {found[1].name}; keep one")
    return found[0] if found else None


def _misnamed_part(root: Path) -> None:
    """A file named almost as a part the world lacks (``outlet.csv``, ``Population.csv``, ``outlets.CSV``) is a
    typo, not a note beside the world: read as missing, its part would silently be the default world's. One coded
    line. Other files (a README, a backup beside the part it backs up) are left alone."""
    known = {n.lower(): n for n in KNOWN_FILES}
    groups = [OUTLET_FILES, UNIVERSE_FILES, POPULATION_FILES] + [(f,) for f in POLICY_FILES]
    for entry in sorted(root.iterdir()):
        name = entry.name
        if name in KNOWN_FILES or name.startswith(".") or not entry.is_file():
            continue
        close = known.get(name.lower()) or next(iter(difflib.get_close_matches(name.lower(), list(known), 1, 0.85)),
                                                None)
        group = next((g for g in groups if close is not None and known[close] in g), ())
        if close is not None and not any(_present(root / f) for f in group):
            raise EngineError(E_WORLD_INPUT, f"{entry}: not a world part (its parts are {', '.join(KNOWN_FILES)}); "
                                             f"did you mean {known.get(close, close)}?")
        _refuse_unread_form(entry, groups, root)


def _refuse_unread_form(entry: Path, groups: list[tuple[str, ...]], root: Path) -> None:
    """A file named as a part the world lacks, in a form it does not read (``population.xlsx``, ``outlets (1).csv``,
    ``outlets.csv.zip``, ``outlets_2026.csv``): the part would silently be the default world's (helper 52: fidelity
    graded against the built-in people, not the team's). One coded line naming the forms it reads."""
    name = entry.name.lower()
    for group in groups:
        stem = group[0].split(".")[0]
        if name.startswith(stem) and not name[len(stem):len(stem) + 1].isalnum() and \
                not any(_present(root / f) for f in group):
            raise EngineError(E_WORLD_INPUT, f"{entry}: read as no part, the world's {stem} would be the default "
                                             f"world's; a world reads it as {' or '.join(group)} (rename or convert "
                                             f"it)")


def world_parts(world_dir: str | Path) -> WorldParts:
    root = Path(world_dir)
    if root.is_file():   # a world is a folder of parts; one file is a shorthand's
        raise EngineError(E_WORLD_INPUT, f"{root}: a file, not a world folder: --world takes the folder holding it "
                                         f"({root.parent}); a catalogue alone is --outlets FILE")
    if not root.is_dir():
        raise EngineError(E_WORLD_MISSING, f"{root}: world directory not found")
    _misnamed_part(root)
    policies = tuple(root / f for f in POLICY_FILES if _present(root / f))
    parts = WorldParts(root, _one_of(root, OUTLET_FILES), _one_of(root, UNIVERSE_FILES),
                       _one_of(root, POPULATION_FILES), (root / "country_zone_alphas.yaml") if
                       _present(root / "country_zone_alphas.yaml") else None, policies)
    if parts.empty:
        raise EngineError(E_WORLD_MISSING, f"{root}: a world directory holds at least one of "
                                           f"{', '.join(KNOWN_FILES)}")
    return parts


def _text_column(frame: pd.DataFrame, name: str, source: str) -> pd.Series:
    col = frame[name]
    if col.isna().any() or (col.astype(str).str.strip() == "").any():
        raise EngineError(E_WORLD_INPUT, f"{source}: empty {name} cell")
    return col.astype(str)


def validate_population(frame: pd.DataFrame, universe: pd.DataFrame | None, source: str) -> pd.DataFrame:
    """The population evidence: country_iso, tzid, population (finite, >= 0), no duplicate (country, tzid),
    tzids known to tzdata; with a universe, every row lies on a clock of its country's Z(c)."""
    require_columns(frame, {"country_iso", "tzid", "population"}, "population evidence", source)
    if frame.empty:
        raise EngineError(E_WORLD_INPUT, f"{source}: population evidence has no rows")
    out = pd.DataFrame({"country_iso": _text_column(frame, "country_iso", source),
                        "tzid": _text_column(frame, "tzid", source)})
    bad = out.loc[~out["country_iso"].str.fullmatch(ISO2), "country_iso"]
    if len(bad):
        raise EngineError(E_WORLD_INPUT, f"{source}: invalid country code {bad.iloc[0]!r} (two upper-case letters, "
                                         f"ISO 3166-1 alpha-2, no spaces)")
    refuse_unknown_tzids(out["tzid"], source)
    raw = frame["population"].astype(str).str.strip()
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)

    def refuse(bad: np.ndarray, what: str) -> None:   # the row named by its clock, in a CSV or a parquet file alike
        i = int(np.argmax(bad))
        raise EngineError(E_WORLD_INPUT, f"{source}: population {raw.iloc[i]!r} of {out['country_iso'].iloc[i]} on "
                                         f"{out['tzid'].iloc[i]} {what} ({int(bad.sum())} such rows)")

    if not np.isfinite(values).all():
        refuse(~np.isfinite(values), "is not a finite number")
    if (values < 0).any():
        refuse(values < 0, "is negative")
    if (values > MAX_CLOCK_POPULATION).any():
        refuse(values > MAX_CLOCK_POPULATION, f"is more people than live on Earth (at most {MAX_CLOCK_POPULATION:.0e} "
                                              f"a clock): population is a headcount, not a scaled figure")
    out["population"] = values
    _refuse_shares(out, source)
    if out.duplicated(["country_iso", "tzid"]).any():
        dup = out[out.duplicated(["country_iso", "tzid"])].iloc[0]
        raise EngineError(E_WORLD_INPUT, f"{source}: duplicate row {dup['country_iso']}/{dup['tzid']}")
    out["clock"] = clocks_of(out["tzid"])
    if universe is not None:
        have = set(zip(universe["country_iso"], clocks_of(universe["tzid"])))
        outside = [(c, t) for c, t, k in zip(out["country_iso"], out["tzid"], out["clock"]) if (c, k) not in have]
        if outside:
            raise EngineError(E_WORLD_INPUT, f"{source}: population row {outside[0][0]}/{outside[0][1]} is outside "
                                             f"the zone universe ({len(outside)} such rows); add the zone to the "
                                             f"universe or drop the row")
    return out.sort_values(["country_iso", "tzid"]).reset_index(drop=True)


NORMALISED_TOTALS = (1.0, 100.0, 1000.0, 10000.0)   # shares, percent, per mille, basis points
FEW_PEOPLE = 100.0   # people a clock, on average, below which every multi-clock country reads as weights
SHARE_LIKE_PEOPLE = 1000.0   # people a clock, on average, below which a normalised total reads as shares or percent
MAX_CLOCK_POPULATION = 1e10                # people on one clock: more than live on Earth is not a headcount


def _refuse_shares(evidence: pd.DataFrame, source: str) -> None:
    """Population is a headcount (people): the authoring law smooths each clock with people (engine.policies.authoring:
    up to 1,000 a clock, at most 5% of its country's people a clock) and F07 weighs clocks by people, so a share, a
    percentage or a weight is not read as a handful of people. Refused: a populated clock of less than one person;
    every country summing to one same normalised total; a country of two populated clocks or more whose total is
    within 1% of a normalised total and below SHARE_LIKE_PEOPLE a clock (one country in percent beside real
    headcounts, or rounded to 99.9); and evidence whose every country of two clocks or more holds fewer than
    FEW_PEOPLE a clock (weights). A territory of a few people beside real headcounts loads as given,
    and so does a small population on many clocks (1,465 people on 8 Antarctic clocks). Thousands cannot be told
    from people: the fidelity verdict of the first run says DISTORTED."""
    values = evidence["population"].to_numpy()
    fraction = (values > 0) & (values < 1)
    if fraction.any():
        row = evidence.iloc[int(np.argmax(fraction))]
        raise EngineError(E_WORLD_INPUT, f"{source}: population {row['population']:g} of {row['country_iso']} on "
                                         f"{row['tzid']} is less than one person: population is a headcount (people), "
                                         f"not a share (multiply each country's shares by its population)")
    totals = evidence.groupby("country_iso")["population"].sum()
    totals = totals[totals > 0]
    common = [t for t in NORMALISED_TOTALS if len(totals) >= 2 and np.allclose(totals, t, rtol=1e-9, atol=0)]
    if common:
        raise EngineError(E_WORLD_INPUT, f"{source}: every country's population sums to {common[0]:g}: population is "
                                         f"a headcount (people), not a share or a percentage (multiply each country's "
                                         f"shares by its population)")
    lived = evidence[evidence["population"] > 0]
    clocks = lived.assign(clock=clocks_of(lived["tzid"])).groupby("country_iso")["clock"].nunique()
    multi = [(c, float(totals[c]), int(k)) for c, k in clocks.items() if k >= 2]
    share = [(c, t, k) for c, t, k in multi if t < SHARE_LIKE_PEOPLE * k and
             any(abs(t - n) <= 0.01 * n for n in NORMALISED_TOTALS)]
    if share:   # one country in percent beside real headcounts, or rounded: 99.9
        c, total, k = share[0]
        raise EngineError(E_WORLD_INPUT, f"{source}: {c}'s population sums to {total:g} over {k} clocks, a "
                                         f"normalised total, with fewer than {SHARE_LIKE_PEOPLE:,.0f} people a clock "
                                         f"({len(share)} such countries): population is a "
                                         f"headcount (people), not a share or a percentage (multiply each country's "
                                         f"shares by its population)")
    few = [(c, t, k) for c, t, k in multi if t < FEW_PEOPLE * k]
    if multi and len(few) == len(multi):   # weights: 5/3/2 (a territory of a few people beside real ones loads)
        c, total, k = few[0]
        every = ("its one country of two clocks or more" if len(multi) == 1 else
                 f"every one of its {len(multi)} countries of two clocks or more")
        raise EngineError(E_WORLD_INPUT, f"{source}: {c}'s population sums to {total:g} people over {k} clocks, and "
                                         f"{every} has fewer than {FEW_PEOPLE:g} people a clock: population is a "
                                         f"headcount (people), not a weight or a share (multiply each country's "
                                         f"shares by its population)")


def clock_population_of(evidence: pd.DataFrame) -> pd.DataFrame:
    """country_iso, clock, population (> 0): the user's evidence summed per clock (names of one clock merge)."""
    grouped = evidence.groupby(["country_iso", "clock"], as_index=False)["population"].sum()
    grouped = grouped[grouped["population"] > 0]
    return grouped.sort_values(["country_iso", "clock"]).reset_index(drop=True)


def without_empty_zones(universe: pd.DataFrame, evidence: pd.DataFrame,
                        listed: frozenset = frozenset()) -> tuple[pd.DataFrame, tuple]:
    """(Z(c) without its zones on a clock the evidence leaves empty in a country it has people in, those zones as
    (country_iso, tzid)). Such a zone never gets outlets (our law), but in Z(c) it counts toward the country's zone
    count: S1 escalates merchants S4 cannot split, and the plan's multi-zone gates count a country of one populated
    clock as multi-zone at a top-1 share of 1.0, which no policy can lower. A country without people on any clock
    keeps every zone (it stays uniform), and so does a zone ``listed`` (by the alpha pack the world ships, whose
    zones are its own)."""
    left = fidelity_evidence(universe, True, clock_population_of(evidence)).empty_zones - listed   # F02's own rule
    empty = np.array([(c, t) in left for c, t in zip(universe["country_iso"], universe["tzid"])], dtype=bool)
    left_out = tuple(zip(universe["country_iso"][empty], universe["tzid"][empty]))
    return universe[~empty].reset_index(drop=True), left_out


def refuse_aliases(universe: pd.DataFrame, source: str) -> None:
    """A universe read beside population evidence may hold one name of each clock per country: a second name (a
    tzdata link, ``America/Montreal`` beside ``Canada/Eastern``) is a zone nobody can live on, so 3A-F01 fails on
    it whatever the policy and the world could never be certified faithful. One coded line naming the first."""
    frame = universe[["country_iso", "tzid"]].assign(clock=clocks_of(universe["tzid"]))
    dup = frame[frame.duplicated(["country_iso", "clock"], keep=False)].sort_values(["country_iso", "clock", "tzid"])
    if dup.empty:
        return
    country, clock = dup["country_iso"].iloc[0], dup["clock"].iloc[0]
    names = dup.loc[(dup["country_iso"] == country) & (dup["clock"] == clock), "tzid"].tolist()
    more = dup.groupby(["country_iso", "clock"]).ngroups
    raise EngineError(E_WORLD_INPUT, f"{source}: {country} lists {' and '.join(names)}, names of one clock ({clock}); "
                                     f"keep one" + (f" ({more} such clocks)" if more > 1 else ""))


def universe_from_population(evidence: pd.DataFrame) -> pd.DataFrame:
    """Z(c) from the evidence alone: one name per populated clock, as the default world publishes it: the country's
    own zone.tab name for the clock, whatever name the evidence files it under (``US/Central`` is published as
    ``America/Chicago``); a clock without one keeps the evidence's name carrying the most population, ties to the
    smaller name."""
    populated = evidence[evidence["population"] > 0]
    rows = [(country, published_name(country, clock, dict(zip(grp["tzid"], grp["population"]))))
            for (country, clock), grp in populated.groupby(["country_iso", "clock"], sort=True)]
    if not rows:
        raise EngineError(E_WORLD_INPUT, "population evidence: no row with population > 0")
    return pd.DataFrame(rows, columns=["country_iso", "tzid"]).sort_values(["country_iso", "tzid"]).reset_index(
        drop=True)


def population_per_zone(universe: pd.DataFrame, evidence: pd.DataFrame) -> pd.DataFrame:
    """pop(c, z) for every universe row from the evidence rows: a clock's population goes to one name of it
    (the name the evidence carries most, then the first by name; an alias is not evidence of people)."""
    out = universe[["country_iso", "tzid"]].copy()
    out["clock"] = clocks_of(out["tzid"])
    carried = evidence.set_index(["country_iso", "tzid"])["population"]
    out["_carried"] = [float(carried.get((c, t), 0.0)) for c, t in zip(out["country_iso"], out["tzid"])]
    out = out.sort_values(["country_iso", "clock", "_carried", "tzid"], ascending=[True, True, False, True])
    holder = ~out.duplicated(["country_iso", "clock"], keep="first")
    mass = clock_population_of(evidence).set_index(["country_iso", "clock"])["population"]
    values = [float(mass.get((c, k), 0.0)) for c, k in zip(out["country_iso"], out["clock"])]
    out["population"] = pd.Series(values, index=out.index).where(holder, 0.0)
    out = out[["country_iso", "tzid", "population"]]
    return out.sort_values(["country_iso", "tzid"]).reset_index(drop=True)


def check_catalogue_evidence(catalogue: pd.DataFrame, evidence, source: str, evidence_source: str) -> None:
    """A bring-your-own catalogue may place outlets only in multi-clock countries the evidence populates
    (``evidence``: the world's :class:`~engine.world.evidence.FidelityEvidence`): elsewhere every outlet S3/S4
    place counts as unpopulated (3A-F02), whatever the policy, so the world could never be certified faithful.
    One coded line naming the first such country and its outlets."""
    clocks = evidence.zone_clocks[["country_iso", "clock"]].drop_duplicates().groupby("country_iso").size()
    populated = set(evidence.clock_population["country_iso"])   # its rows are the populated clocks
    lacking = sorted(c for c in clocks.index[clocks >= 2] if c not in populated)
    if not lacking:
        return
    countries = catalogue["legal_country_iso"]
    held = countries[countries.isin(lacking)].value_counts()
    if held.empty:
        return
    first = sorted(held.index)[0]
    more = f" ({len(held)} such countries)" if len(held) > 1 else ""
    raise EngineError(E_WORLD_INPUT, f"{source}: {int(held[first])} outlets in {first}, a country of several "
                                     f"clocks with no population on any of them in {evidence_source}{more}; give "
                                     f"{first} its population or drop its rows")
