"""Outlet catalogues of four shapes, from numpy's own Generator (not the engine's keyed streams).

Each kind is a law: how many merchants, how many countries each trades in and which (weighted by the
country's city population to a power), and outlets per merchant x country (a discretised lognormal body
plus a share of chains with a Pareto tail). The kinds:

- ``default_like``: close to the default world's upstream (median 5-7, p90 ~20, a few very large chains);
- ``small_local``: small local merchants in populous countries (median 4, few chains);
- ``chains``: large multi-country chains (3-15 countries each, median ~25 outlets per country);
- ``tiny``: tiny merchants (median <= 3, almost no chains);
- ``regional``: 40,000 merchants, median 5, a few chains (the ``multiclock`` world's, about 15 times the
  default world's pairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Shape:
    merchants: int
    country_power: float        # country weight = population ** power
    extra_country_p: float      # P(a merchant trades in more than one country)
    extra_country_max: int      # most countries of a multi-country merchant
    site_median: float          # lognormal body of outlets per (merchant, country)
    site_sigma: float
    chain_share: float          # merchants that are chains
    chain_min: float            # chains: Pareto(chain_min, chain_alpha) outlets per country
    chain_alpha: float
    chain_cap: int


SHAPES = {
    "default_like": Shape(2100, 0.8, 0.20, 6, 6.0, 1.0, 0.007, 250.0, 1.3, 2000),
    "small_local": Shape(2600, 1.15, 0.03, 3, 4.0, 0.55, 0.002, 40.0, 2.0, 300),
    "chains": Shape(420, 0.7, 1.0, 15, 25.0, 0.9, 0.06, 150.0, 1.4, 2500),
    "tiny": Shape(3200, 1.0, 0.02, 2, 2.6, 0.5, 0.0005, 20.0, 2.5, 60),
    "regional": Shape(40000, 0.8, 0.15, 4, 5.0, 1.0, 0.004, 150.0, 1.3, 2000),
}


def _countries_for(rng: np.random.Generator, shape: Shape, weights: np.ndarray) -> list[np.ndarray]:
    p = weights / weights.sum()
    out = []
    for _ in range(shape.merchants):
        k = 1
        if rng.random() < shape.extra_country_p:
            k = int(rng.integers(2, shape.extra_country_max + 1)) if shape.extra_country_max >= 2 else 1
        k = min(k, len(p))
        out.append(rng.choice(len(p), size=k, replace=False, p=p))
    return out


def catalogue(kind: str, countries: list[str], population: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """One row per (merchant, country) with site_count: the pair-level form of the ``--outlets`` contract."""
    shape = SHAPES[kind]
    rng = np.random.default_rng([seed, sum(map(ord, kind))])
    weights = np.power(np.asarray(population, dtype=np.float64) + 1.0, shape.country_power)
    chains = rng.random(shape.merchants) < shape.chain_share
    rows = []
    for m, picks in enumerate(_countries_for(rng, shape, weights)):
        for c in picks:
            if chains[m]:
                sites = shape.chain_min * (1.0 - rng.random()) ** (-1.0 / shape.chain_alpha)
                sites = min(sites, shape.chain_cap)
            else:
                sites = np.exp(np.log(shape.site_median) + shape.site_sigma * rng.standard_normal())
            rows.append((7_000_000 + 13 * m, countries[c], max(1, int(round(sites)))))
    frame = pd.DataFrame(rows, columns=["merchant_id", "legal_country_iso", "site_count"])
    return frame.sort_values(["merchant_id", "legal_country_iso"]).reset_index(drop=True)


def shape_summary(frame: pd.DataFrame) -> dict:
    n = frame["site_count"].to_numpy()
    return {"pairs": int(len(frame)), "merchants": int(frame["merchant_id"].nunique()),
            "outlets": int(n.sum()), "median": float(np.median(n)), "p90": float(np.quantile(n, 0.9)),
            "p99": float(np.quantile(n, 0.99)), "max": int(n.max())}
