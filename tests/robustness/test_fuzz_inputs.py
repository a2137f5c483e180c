"""Fuzz suite: generated bad inputs across policies, studies, outlets, reference files and CLI
arguments. Every input is classified: a coded refusal (an ``E3A_`` EngineError) or an acceptance;
anything else (a traceback) fails. Inputs that are bad by construction (NaN, inf, duplicate keys,
ids beyond uint64, ...) must be refused; an accepted input must be a correct one.

In-process calls keep it quick; derandomized so a failure reproduces. The last test checks that at
least 500 inputs were classified.
"""

from __future__ import annotations

import copy
import io
import math
import tempfile
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.errors import EngineError
from engine.policies import PolicySet
from engine.core.strict import non_finite_path
from tests.tuning.conftest import SMALL_STUDY

REPO = Path(__file__).resolve().parents[2]
BASE = PolicySet.from_dir(REPO / "policies")
SEEN: Counter = Counter()
FUZZ = settings(max_examples=130, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

BAD_NUMBERS = [math.nan, math.inf, -math.inf]
ODD_VALUES = [None, "", "x", [], {}, True, -1, 0, 10 ** 30, 2 ** 64, -(2 ** 64), 1e308, 0.5, 3]


def classify(area: str, fn) -> tuple[str, object]:
    """("refused", code) for a coded refusal, ("accepted", result) otherwise; a traceback propagates."""
    try:
        result = fn()
    except EngineError as exc:
        assert exc.code.startswith("E3A_") and "\n" not in exc.one_line(), exc.one_line()
        SEEN[area, "refused"] += 1
        return "refused", exc.code
    SEEN[area, "accepted"] += 1
    return "accepted", result


def _leaves(doc, path=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _leaves(v, path + (i,))
    else:
        yield path


def _set(doc, path, value):
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


# ------------------------------------------------------------------ policies
SMALL_POLICIES = ("zone_mixture_policy", "zone_floor_policy")


@st.composite
def policy_mutation(draw):
    pid = draw(st.sampled_from(SMALL_POLICIES + ("country_zone_alphas",)))
    doc = copy.deepcopy(BASE.doc(pid))
    leaves = list(_leaves(doc))
    kind = draw(st.sampled_from(["non_finite", "odd_value", "dup_key", "truncate", "garbage", "drop_key",
                                 "bool_key", "extreme_alpha"]))
    if kind == "bool_key":   # Norway unquoted (YAML 1.1 reads NO as false), and its cousins
        pid = "country_zone_alphas"
        key = draw(st.sampled_from(["NO", "no", "On", "OFF", "yes", "True", "~", "null"]))
        return pid, kind, BASE.raw[pid].replace(b"\n  'NO':\n", b"\n  " + key.encode() + b":\n", 1)
    if kind == "extreme_alpha":
        pid, doc = "country_zone_alphas", copy.deepcopy(BASE.doc("country_zone_alphas"))
        country = draw(st.sampled_from(sorted(doc["countries"])))
        doc["countries"][country]["tzid_alphas"][0]["alpha"] = draw(st.sampled_from([1e154, 1e300, 1.7e308, 2e6]))
        return pid, kind, yaml.safe_dump(doc, sort_keys=False).encode()
    if kind in ("non_finite", "odd_value"):
        path = leaves[draw(st.integers(0, min(len(leaves), 400) - 1))]
        value = draw(st.sampled_from(BAD_NUMBERS if kind == "non_finite" else ODD_VALUES))
        _set(doc, path, value)
        raw = yaml.safe_dump(doc, sort_keys=False).encode()
    elif kind == "drop_key":
        key = draw(st.sampled_from(sorted(doc)))
        del doc[key]
        raw = yaml.safe_dump(doc, sort_keys=False).encode()
    else:
        raw = BASE.raw[pid]
        if kind == "dup_key":
            first = raw.split(b"\n", 1)[0]
            raw = raw + first + b"\n"
        elif kind == "truncate":
            raw = raw[: draw(st.integers(0, len(raw) - 1))]
        else:
            raw = draw(st.binary(min_size=1, max_size=200)) + raw[:100]
    return pid, kind, raw


@FUZZ
@given(policy_mutation())
def test_fuzz_policies(case):
    pid, kind, raw = case
    outcome, result = classify("policies", lambda: PolicySet({**BASE.raw, pid: raw}, "fuzz"))
    if kind in ("non_finite", "dup_key", "bool_key", "extreme_alpha") or \
            (kind == "truncate" and not raw.endswith(b"\n")):
        assert outcome == "refused", (pid, kind)     # a file cut mid-line lacks its final newline
    if kind in ("bool_key", "extreme_alpha"):       # a policy's own code, never an I/O or a state's code
        assert result in ("E3A_POL_001_MALFORMED_YAML", "E3A_POL_002_SCHEMA_INVALID"), (kind, result)
    if outcome == "accepted":
        assert non_finite_path(result.doc(pid)) is None


# ------------------------------------------------------------------ studies
STUDY = yaml.safe_load(SMALL_STUDY)


@st.composite
def study_mutation(draw):
    doc = copy.deepcopy(STUDY)
    leaves = list(_leaves(doc))
    kind = draw(st.sampled_from(["non_finite", "odd_value", "seed", "step", "text"]))
    if kind == "non_finite":
        _set(doc, draw(st.sampled_from(leaves)), draw(st.sampled_from(BAD_NUMBERS)))
    elif kind == "odd_value":
        _set(doc, draw(st.sampled_from(leaves)), draw(st.sampled_from(ODD_VALUES)))
    elif kind == "seed":
        where = draw(st.sampled_from(["seeds", "sampler"]))
        value = draw(st.sampled_from([2 ** 64, 2 ** 70, -1, -(2 ** 63), "twice"]))
        if value == "twice":   # a seed listed twice would count twice in J
            seed = draw(st.sampled_from([0, 42, 2 ** 64 - 1]))
            doc["seeds"] = [seed, 7, seed] if seed != 7 else [7, 7]
        elif where == "seeds":
            doc["seeds"] = [value]
        else:
            doc["sampler"]["seed"] = value
    elif kind == "step":
        doc["knobs"][0]["step"] = draw(st.floats(0.91, 1e6))
    else:
        text = SMALL_STUDY.encode()
        variant = draw(st.sampled_from(["dup", "deep", "bomb", "binary", "cut"]))
        if variant == "dup":
            text += b"trials: 9\n"
        elif variant == "deep":
            text += b"description: " + b"[" * 60_000 + b"]" * 60_000 + b"\n"
        elif variant == "bomb":
            text += b"x1: &a [1,1,1,1,1,1,1,1,1,1]\n" + b"".join(
                b"x%d: &%s [%s]\n" % (i, chr(97 + i).encode(), b",".join([b"*" + chr(96 + i).encode()] * 10))
                for i in range(2, 9))
        elif variant == "binary":
            text = b"\x00\x01\xff" + text
        else:
            text = text[: draw(st.integers(0, len(text) - 1))]
        return kind, variant, text
    return kind, None, yaml.safe_dump(doc, sort_keys=False).encode()


def _load_study_bytes(raw: bytes):
    from tuning.study.spec import load_study

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "fuzz.yaml")
        path.write_bytes(raw)
        return load_study(str(path))


@FUZZ
@given(study_mutation())
def test_fuzz_studies(case):
    kind, variant, raw = case
    outcome, result = classify("studies", lambda: _load_study_bytes(raw))
    if kind in ("non_finite", "seed", "step") or variant in ("dup", "deep", "bomb", "binary"):
        assert outcome == "refused", (kind, variant)
    if outcome == "accepted":
        assert all(0 <= s < 2 ** 64 for s in result.seeds) and 0 <= result.sampler["seed"] < 2 ** 64
        assert len(set(result.seeds)) == len(result.seeds)
        assert all(c.value is None or math.isfinite(c.value) for c in result.guardrails)


# ------------------------------------------------------------------ outlets
UNIVERSE = {"DE", "FR", "NA", "US"}
GOOD_IDS = [0, 100_000, 2 ** 53 + 1, 2 ** 64 - 1]
BAD_IDS = [-1, 2 ** 64, 10 ** 30, "abc", "1.5", "", "18446744073709551616", math.nan]
BAD_COUNTS = [0, -3, math.inf, math.nan, 1.5, 10 ** 12, "x", ""]


@st.composite
def outlet_case(draw):
    n = draw(st.integers(1, 6))
    ids = draw(st.lists(st.sampled_from(GOOD_IDS) | st.integers(0, 2 ** 64 - 1), min_size=n, max_size=n,
                        unique=True))
    countries = draw(st.lists(st.sampled_from(sorted(UNIVERSE)), min_size=n, max_size=n))
    counts = draw(st.lists(st.integers(1, 50), min_size=n, max_size=n))
    kind = draw(st.sampled_from(["good", "bad_id", "bad_count", "bad_country"]))
    i = draw(st.integers(0, n - 1))
    ids, counts, countries = list(map(str, ids)), list(map(str, counts)), list(countries)
    if kind == "bad_id":
        ids[i] = str(draw(st.sampled_from(BAD_IDS)))
    elif kind == "bad_count":
        counts[i] = str(draw(st.sampled_from(BAD_COUNTS)))
    elif kind == "bad_country":
        countries[i] = draw(st.sampled_from(["ZZ", "", "na", "N A"]))
    csv = "merchant_id,legal_country_iso,site_count\n" + "".join(
        f"{a},{b},{c}\n" for a, b, c in zip(ids, countries, counts))
    return kind, csv


def _outlets_from_csv(text: str):
    from engine.world.model import _read_table
    from engine.world.outlets import validate_outlets

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "outlets.csv")
        path.write_text(text)
        return validate_outlets(_read_table(path), UNIVERSE, str(path))


@FUZZ
@given(outlet_case())
def test_fuzz_outlets(case):
    kind, text = case
    outcome, result = classify("outlets", lambda: _outlets_from_csv(text))
    assert (outcome == "accepted") == (kind == "good"), (kind, text)
    if outcome == "accepted":
        source = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        assert len(result) == sum(int(c) for c in source["site_count"])
        assert sorted(set(result["merchant_id"].tolist())) == sorted({int(m) for m in source["merchant_id"]})
        assert set(result["legal_country_iso"]) == set(source["legal_country_iso"])   # NA stays Namibia


# ------------------------------------------------------------------ reference files
GOOD_ROWS = [("NA", "Africa/Windhoek"), ("DE", "Europe/Berlin"), ("US", "America/New_York"), ("FR", "Europe/Paris")]
BAD_ROWS = [("ZZZ", "Europe/Berlin"), ("DE", "Mars/Olympus"), ("", "Europe/Paris"), ("FR", ""), ("de", "Europe/Berlin")]


@st.composite
def reference_case(draw):
    rows = draw(st.lists(st.sampled_from(GOOD_ROWS), min_size=0, max_size=4, unique=True))
    kind = draw(st.sampled_from(["good", "bad_row", "header_only", "no_header", "dup"]))
    header = "country_iso,tzid\n"
    if kind == "bad_row":
        rows = rows + [draw(st.sampled_from(BAD_ROWS))]
    elif kind == "header_only":
        rows = []
    elif kind == "dup" and rows:
        rows = rows + [rows[0]]
    elif kind == "no_header":
        header = ""
    if kind == "good" and not rows:
        kind = "header_only"
    return kind, header + "".join(f"{a},{b}\n" for a, b in rows)


def _reference(text: str):
    from engine.world.model import _read_table
    from engine.world.universe import validate_universe

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "reference.csv")
        path.write_text(text)
        return validate_universe(_read_table(path), str(path))


@FUZZ
@given(reference_case())
def test_fuzz_reference_files(case):
    kind, text = case
    outcome, result = classify("reference", lambda: _reference(text))
    assert (outcome == "accepted") == (kind == "good"), (kind, text)
    if outcome == "accepted":
        expected = {tuple(line.split(",")) for line in text.splitlines()[1:]}
        assert set(map(tuple, result[["country_iso", "tzid"]].to_numpy().tolist())) == expected


# ------------------------------------------------------------------ CLI arguments
TOKENS = ["run", "verify", "author", "bench", "--seed", "--run-root", "--repeats", "--scale", "--trials", "--workers",
          "--stale-after", "--max-failures", "--study", "--phase", "--bogus", "-x", "42", "-1", "0", "1e3", "nan",
          str(2 ** 64), str(2 ** 64 - 1), "/abs/path", "../up", "P1.2", "name.ok", "inf", "-inf", "",
          "--partitions", "-3", "--top", "--decision", "--reason", "--note", " ", "record", "UNLOCK_P2"]


def _engine_args(argv):
    from engine.cli.main import build_parser

    return build_parser().parse_args(argv)


def _sweep_args(argv):
    from tuning.sweep.__main__ import parse_args

    return parse_args(argv)


def _tuning_args(name: str, argv):
    import importlib

    import importlib.util

    module = f"tuning.{name}"
    if importlib.util.find_spec(module).submodule_search_locations:   # a CLI package: python -m runs its __main__
        module += ".__main__"
    return importlib.import_module(module).build_parser().parse_args(argv)


def _recorded_texts_hold(cli: str, argv, args) -> None:
    """What a promotion or a ladder step records is never empty; a ranking shows at least one row."""
    if cli == "rank":
        assert args.top >= 1
    for name in ("phase", "decision", "note", "reason", "reopen", "ladder_phase"):
        value = getattr(args, name, None)
        assert value is None or value.strip(), (cli, argv, name)


@FUZZ
@given(st.sampled_from(["engine", "sweep", "certify", "rank", "ladder", "promote"]),
       st.lists(st.sampled_from(TOKENS), max_size=7))
def test_fuzz_cli_arguments(cli, argv):
    if cli in ("rank", "ladder", "promote"):
        argv = {"rank": ["--phase", "P1.2"], "ladder": ["record"], "promote": ["0" * 32]}[cli] + argv
        outcome, args = classify("cli", lambda: _tuning_args(cli, argv))
        if outcome == "accepted":
            _recorded_texts_hold(cli, argv, args)
        return
    if cli == "certify":
        from tuning.certify import parse_seeds

        outcome, seeds = classify("cli", lambda: parse_seeds(",".join(argv)))
        if outcome == "accepted":
            assert seeds and all(isinstance(s, int) and 0 <= s < 2 ** 64 for s in seeds)
        return
    outcome, args = classify("cli", lambda: (_engine_args if cli == "engine" else _sweep_args)(argv))
    if outcome == "accepted" and getattr(args, "seed", None) is not None:
        assert 0 <= args.seed < 2 ** 64
    if outcome == "accepted" and getattr(args, "partitions", None) is not None:
        assert args.partitions >= 1
    if outcome == "accepted" and cli == "sweep":
        assert args.stale_after >= 0 and math.isfinite(args.stale_after) and args.max_failures >= 0
        assert args.study is None or "/" not in args.study


def test_zz_at_least_500_inputs_were_classified():
    areas = {a for a, _ in SEEN}
    if areas != {"policies", "studies", "outlets", "reference", "cli"}:
        pytest.skip("runs after the whole fuzz module")
    print(f"fuzz: {sum(SEEN.values())} inputs classified: {dict(SEEN)}")
    assert sum(SEEN.values()) >= 500, SEEN
    assert all(SEEN[a, "refused"] > 0 for a in areas), SEEN
