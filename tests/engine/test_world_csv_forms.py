"""A world's CSV parts as teams write them: read as written or refused naming what is wrong (trailing separators,
ragged rows, repeated columns, broken links, padding and line endings, a country code in other letters, a part
named almost right, a line break in a code, text not in UTF-8, a file given as the world, another separator)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from engine.core.errors import EngineError
from engine.world.model import load_world
from engine.world.outlets import validate_outlets
from tests.engine.world_parts import OUTLETS, POPULATION, UNIVERSE, refused as _refused, write_world as _world


def test_a_csv_is_read_as_written_or_refused_naming_what_is_wrong(tmp_path):
    """Spreadsheet exports: a separator ending each row (pandas would take the ids for row labels and shift every
    column, so the error named merchant_id), a repeated column (pandas would rename it site_count.1 and use the
    first), a broken link (the world would fall back to the default's part). A BOM, CRLF, quoted fields and blanks
    around values (" US" and "US " alike) read as the same catalogue as the plain file."""
    header = "merchant_id,legal_country_iso,site_count"
    rows = ["1,US,40", "2,US,12", "2,FR,3", "3,US,7"]

    def world(name: str, text: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "outlets.csv").write_bytes(text.encode("utf-8"))
        return d

    _refused(world("trailing", "\n".join([header] + [r + "," for r in rows]) + "\n"),
             "rows hold more fields than the header's 3 columns")
    _refused(world("ragged", "\n".join([header] + rows[:3] + [rows[3] + ",9"]) + "\n"), "Expected 3 fields in line 5")
    _refused(world("twice", "\n".join([header + ",site_count"] + [r + ",9" for r in rows]) + "\n"),
             "column 'site_count' appears twice")
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / "outlets.csv").symlink_to(tmp_path / "nowhere.csv")
    _refused(tmp_path / "link", "a broken link (to ", code="E3A_WLD_002_INPUT_MISSING")
    plain = load_world(world("plain", "\n".join([header] + rows) + "\n"))
    exported = world("exported", "\ufeff" + "\r\n".join([header] + ['"' + r.replace(",", '","') + '"' for r in rows])
                     + "\r\n")
    assert load_world(exported).catalogue.equals(plain.catalogue)
    # a spreadsheet's blanks around a value, before or after it, plain or quoted, are not part of it
    for name, padded in (("leading", [" " + r.replace(",", ", ") for r in rows]),
                         ("trailing", [r.replace(",", " ,") + " " for r in rows]),
                         ("quoted", ['"' + r.replace(",", ' ","') + ' "' for r in rows])):
        for ending in ("\n", "\r\n"):
            padded_world = world(f"{name}{len(ending)}", ending.join([header] + padded) + ending)
            assert load_world(padded_world).catalogue.equals(plain.catalogue), (name, ending)


def test_a_country_code_written_otherwise_than_the_universe_is_refused_with_the_code_it_meant():
    for written in ("us", " us ", "Us "):
        frame = pd.DataFrame({"merchant_id": [1], "legal_country_iso": [written]})
        with pytest.raises(EngineError) as err:
            validate_outlets(frame, {"US", "FR"}, "outlets.csv")
        assert err.value.cause.endswith("two upper-case letters with no spaces: 'US')"), err.value.cause
    with pytest.raises(EngineError) as err:   # a code the universe does not hold: no guess
        validate_outlets(pd.DataFrame({"merchant_id": [1], "legal_country_iso": ["de"]}), {"US"}, "outlets.csv")
    assert err.value.cause == "outlets.csv: country 'de' is not in the zone universe"


@pytest.mark.parametrize("typo, part", [("outlet.csv", "outlets.csv"), ("Population.csv", "population.csv"),
                                        ("outlets.CSV", "outlets.csv"), ("country_zone_alpha.yaml",
                                                                         "country_zone_alphas.yaml")])
def test_a_part_named_almost_right_is_refused_not_replaced_by_the_default(tmp_path, typo, part):
    """Read as missing, a misnamed part silently became the default world's (a typo of the catalogue ran the
    synthetic one); a README, or a backup beside the part it backs up, is left alone."""
    world = _world(tmp_path, universe_csv=UNIVERSE, population_csv=POPULATION, outlets_parquet=OUTLETS)
    (world / "README.md").write_text("notes\n")
    (world / "outlets.parquet.bak").write_bytes((world / "outlets.parquet").read_bytes())
    load_world(world)
    target = world / part
    if target.exists():
        target.rename(world / typo)
    else:
        (world / typo).write_text("x: 1\n")
    if part.startswith("outlets"):   # the catalogue is parquet here: the CSV typo stands beside no outlets part
        (world / "outlets.parquet").unlink()
    _refused(world, f"{typo}: not a world part")
    _refused(world, f"did you mean {part}?")


@pytest.mark.parametrize("file", ["universe_csv", "universe_parquet"])
@pytest.mark.parametrize("code", ["US\n", "US\r\n", "us"])
def test_a_universe_country_code_with_a_line_break_is_refused(tmp_path, file, code):
    """``^[A-Z]{2}$`` matched "US\\n" ($ matches before a final line break): it ran as a country of its own, beside
    US, in S1 and S2. The universe is held to two upper-case letters exactly, as the population file is."""
    uni = UNIVERSE.assign(country_iso=[UNIVERSE["country_iso"].iloc[0], code, "US", "US"])
    _refused(_world(tmp_path, **{file: uni}), f"invalid country code {code!r}")


def test_a_csv_that_is_not_utf8_is_refused_naming_the_line(tmp_path):
    """A spreadsheet's cp1252 export ("Café" in an extra column): one line saying it is not UTF-8, where, and what to
    save it as (it was pandas' UnicodeDecodeError with an offset into its own buffer)."""
    d = tmp_path / "w"
    d.mkdir()
    (d / "outlets.csv").write_bytes(b"merchant_id,legal_country_iso,brand\n1,US,x\n2,FR,Caf\xe9\n")
    _refused(d, 'outlets.csv: not UTF-8 text (line 3: byte 0xe9); save it as UTF-8 (a spreadsheet\'s "CSV UTF-8")')


def test_a_file_given_as_the_world_names_its_folder(tmp_path):
    d = _world(tmp_path, outlets_csv=OUTLETS)
    _refused(d / "outlets.csv", f"outlets.csv: a file, not a world folder: --world takes the folder holding it ({d}); "
                                f"a catalogue alone is --outlets FILE")


@pytest.mark.parametrize("sep, label", [(";", "semicolons"), ("\t", "tabs"), ("|", "vertical bars")])
@pytest.mark.parametrize("file, frame", [("outlets.csv", "OUTLETS"), ("population.csv", "POPULATION"),
                                         ("universe.csv", "UNIVERSE")])
def test_a_csv_separated_otherwise_names_its_separator(tmp_path, sep, label, file, frame):
    """A spreadsheet's CSV export with semicolons (or a TSV named .csv) reads as one column: the coded error says
    which columns are missing and that the header looks separated by another character."""
    d = _world(tmp_path, universe_csv=UNIVERSE, population_csv=POPULATION, outlets_parquet=OUTLETS)
    table = globals()[frame]
    if file == "outlets.csv":
        (d / "outlets.parquet").unlink()
    table.to_csv(d / file, index=False, sep=sep)
    _refused(d, "lacks column(s) ")
    _refused(d, f"the file looks separated by {label}, and a CSV is read with commas")


def test_a_missing_column_of_a_comma_csv_gives_no_separator_hint(tmp_path):
    d = _world(tmp_path, universe_csv=UNIVERSE.rename(columns={"tzid": "zone"}), population_csv=POPULATION)
    with pytest.raises(EngineError) as err:
        load_world(d)
    assert "lacks column(s) ['tzid']" in err.value.cause and "separated by" not in err.value.cause
