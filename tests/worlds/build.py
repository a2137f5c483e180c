"""World directories for the campaign and certification tests (and the README's outcome table)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from tests.worlds.catalogues import SHAPES, catalogue, shape_summary
from tests.worlds.geonames import country_population, universe_and_population

KINDS = (*(k for k in SHAPES if k != "regional"), "geonames5k", "multiclock")


def multiclock_population() -> pd.DataFrame:
    """GeoNames' 15,000+ cities of the countries with two populated clocks or more, per (country, name) as
    GeoNames files them: population evidence alone, which then defines Z(c)."""
    universe, population = universe_and_population(15000)
    clocks = universe.groupby("country_iso").size()
    return population[population["country_iso"].isin(clocks[clocks >= 2].index)].reset_index(drop=True)


def write_world(kind: str, out: str | Path, seed: int = 0, scale: int = 1) -> dict:
    """Write ``out/outlets.parquet`` (and, for ``geonames5k``, ``universe.csv`` + ``population.csv``;
    ``multiclock``: ``population.csv`` alone and the catalogue as ``outlets.csv``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if kind == "multiclock":
        population = multiclock_population()
        population.to_csv(out / "population.csv", index=False)
        per_country, shape = population.groupby("country_iso")["population"].sum().sort_index(), "regional"
    elif kind == "geonames5k":
        universe, population = universe_and_population(5000)
        universe.to_csv(out / "universe.csv", index=False)
        population.to_csv(out / "population.csv", index=False)
        per_country = population.groupby("country_iso")["population"].sum().sort_index()
        shape = "default_like"
    else:
        per_country, shape = country_population(15000), kind
    import tests.worlds.catalogues as cat

    if scale != 1:
        base = SHAPES[shape]
        cat.SHAPES = {**SHAPES, shape: dataclasses.replace(base, merchants=base.merchants * scale)}
    try:
        frame = catalogue(shape, list(per_country.index), per_country.to_numpy(), seed)
    finally:
        cat.SHAPES = SHAPES
    if kind == "multiclock":
        frame.to_csv(out / "outlets.csv", index=False)
    else:
        frame.to_parquet(out / "outlets.parquet", index=False)
    return shape_summary(frame)
