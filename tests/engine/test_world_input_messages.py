"""What a team's spreadsheet export gets from a world directory (helper 52's audit): a misnamed count column or a part
in a form the world does not read is refused, never read as something else; a refusal names the value and its row;
rows of separators alone are no rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from engine.core.errors import EngineError
from engine.world.model import load_world

PEOPLE = "country_iso,tzid,population\nUS,America/New_York,120000000\nUS,America/Chicago,90000000\n"


def _world(tmp_path: Path, outlets: str, **other: str) -> Path:
    d = tmp_path / "w"
    d.mkdir()
    (d / "population.csv").write_text(PEOPLE)
    if outlets:
        (d / "outlets.csv").write_text(outlets)
    for name, text in other.items():
        (d / name).write_text(text)
    return d


def _refusal(world: Path) -> str:
    with pytest.raises(EngineError) as err:
        load_world(world).catalogue
    assert err.value.code == "E3A_WLD_001_INPUT_INVALID"
    return err.value.cause


@pytest.mark.parametrize("column", ["Site_Count", "site count", "site_counts", "sites", "n_sites", "outlet_count",
                                    "NumberOfSites"])
def test_a_count_column_named_otherwise_than_site_count_is_refused(tmp_path, column):
    """It was ignored: every pair read as one outlet (2,180 outlets for 3,720,302)."""
    cause = _refusal(_world(tmp_path, f"merchant_id,legal_country_iso,{column}\n1,US,40\n2,US,7\n"))
    assert f"column {column!r} reads as a count of sites" in cause and "name it site_count" in cause


@pytest.mark.parametrize("column", ["site_id", "site", "website", "store_name", "stores", "sites"])
def test_a_column_naming_a_site_is_left_alone_in_a_catalogue_of_one_row_per_outlet(tmp_path, column):
    """Its values name sites (not all whole numbers): a catalogue of one row per outlet, as written."""
    world = load_world(_world(tmp_path, f"merchant_id,legal_country_iso,{column}\n1,US,a\n1,US,b 2\n2,US,7\n"))
    assert len(world.catalogue) == 3


@pytest.mark.parametrize("name", ["population.xlsx", "population.txt", "population (1).csv", "population_2026.csv",
                                  "population.csv.zip"])
def test_a_part_in_a_form_the_world_does_not_read_is_refused_not_replaced_by_the_default(tmp_path, name):
    """Read as no part, fidelity was graded against the built-in people, not the team's."""
    d = tmp_path / "w"
    d.mkdir()
    (d / "outlets.csv").write_text("merchant_id,legal_country_iso,site_count\n1,US,4\n")
    (d / name).write_text(PEOPLE)
    cause = _refusal(d)   # named almost as the part: "did you mean population.csv?"; else the forms it reads
    assert cause.startswith(f"{d / name}: ") and ("population.csv or population.parquet" in cause or
                                                   cause.endswith("did you mean population.csv?"))


def test_a_copy_beside_the_part_it_copies_is_left_alone(tmp_path):
    world = load_world(_world(tmp_path, "merchant_id,legal_country_iso,site_count\n1,US,4\n",
                              **{"outlets (old).csv": "merchant_id,legal_country_iso\n9,US\n"}))
    assert len(world.catalogue) == 4


@pytest.mark.parametrize("rows,says", [
    ("1,US,3\n2,US,0\n3,US,x\n", "site_count must be an integer >= 1, not '0' on data row 2 (2 such rows)"),
    ('1,US,3\n2,US,"1,234,567"\n', "site_count must be an integer >= 1, not '1,234,567' on data row 2 (1 such row)"),
    ("1,US,3\n-5,US,2\n", "merchant_id must be an integer in [0, 2**64-1], not '-5' on data row 2 (1 such row)"),
    ("1.8E+19,US,3\n", "merchant_id must be an integer in [0, 2**64-1], not '1.8E+19' on data row 1 (1 such row)"),
    ("18446744073709551616,US,3\n", "not '18446744073709551616' on data row 1 (1 such row)"),
])
def test_a_bad_value_is_named_with_its_row(tmp_path, rows, says):
    assert says in _refusal(_world(tmp_path, "merchant_id,legal_country_iso,site_count\n" + rows))


def test_a_header_written_in_other_capitals_is_named(tmp_path):
    cause = _refusal(_world(tmp_path, "Merchant_ID,legal_country_iso,site_count\n1,US,3\n"))
    assert cause.endswith("lacks column(s) ['merchant_id']; its header has 'Merchant_ID': name it merchant_id "
                          "(column names are read as written)")


def test_a_spreadsheets_rows_of_separators_alone_are_no_rows(tmp_path):
    """An export's trailing ``,,,`` rows were read as outlets of merchant '' (refused as a bad merchant_id)."""
    plain = load_world(_world(tmp_path, "merchant_id,legal_country_iso,site_count\r\n1,US,3\r\n2,US,5\r\n"))
    other = tmp_path / "other"
    other.mkdir()
    exported = _world(other, "merchant_id,legal_country_iso,site_count\r\n1,US,3\r\n2,US,5\r\n,,\r\n\r\n,,\r\n")
    assert load_world(exported).catalogue.equals(plain.catalogue)
    assert pd.api.types.is_integer_dtype(plain.catalogue["site_order"])
