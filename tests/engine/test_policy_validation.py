"""The fast structural validators never accept what the JSON schemas reject (when they reject,
the schema validator decides and writes the message)."""

import copy

import jsonschema
import yaml
from hypothesis import given, settings, strategies as st

from engine.policies.policy_set import _valid_alphas, _valid_floors
from engine.policies.schemas import COUNTRY_ZONE_ALPHAS, ZONE_FLOOR_POLICY
from tests.engine.conftest import ROOT

ALPHAS = yaml.safe_load((ROOT / "policies" / "country_zone_alphas.yaml").read_text())
FLOORS = yaml.safe_load((ROOT / "policies" / "zone_floor_policy.yaml").read_text())
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-2, 2), st.just(float("nan")), st.just(1e-300), st.text(max_size=3),
                   st.just([]), st.just({}), st.just("US"), st.just("us"), st.just("Europe/Paris"))


def _schema_ok(doc, schema) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(doc)


def _mutate(doc, path, value):
    doc = copy.deepcopy(doc)
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value == "__delete__":
        target.pop(path[-1], None) if isinstance(target, dict) else target.pop(0)
    else:
        target[path[-1]] = value
    return doc


ALPHA_PATHS = [("version",), ("countries",), ("notes",), ("extra",), ("countries", "US"), ("countries", "us"),
               ("countries", "US", "tzid_alphas"), ("countries", "US", "notes"), ("countries", "US", "x"),
               ("countries", "US", "tzid_alphas", 0), ("countries", "US", "tzid_alphas", 0, "alpha"),
               ("countries", "US", "tzid_alphas", 0, "tzid"), ("countries", "US", "tzid_alphas", 0, "x")]
FLOOR_PATHS = [("version",), ("floors",), ("notes",), ("x",), ("floors", 0), ("floors", 0, "tzid"),
               ("floors", 0, "floor_value"), ("floors", 0, "bump_threshold"), ("floors", 0, "notes"), ("floors", 0, "x")]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(ALPHA_PATHS), st.one_of(VALUES, st.just("__delete__")))
def test_alpha_validator_agrees_with_schema(path, value):
    doc = _mutate(ALPHAS, path, value)
    if _valid_alphas(doc):
        assert _schema_ok(doc, COUNTRY_ZONE_ALPHAS)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FLOOR_PATHS), st.one_of(VALUES, st.just("__delete__")))
def test_floor_validator_agrees_with_schema(path, value):
    doc = _mutate(FLOORS, path, value)
    if _valid_floors(doc):
        assert _schema_ok(doc, ZONE_FLOOR_POLICY)


def test_committed_policies_are_valid():
    assert _valid_alphas(ALPHAS) and _valid_floors(FLOORS)


def test_non_finite_alpha_is_rejected_with_a_code():
    import pytest

    from engine.core.errors import EngineError
    from engine.policies.authoring import dump_yaml
    from engine.policies.policy_set import parse_policy

    doc = _mutate(ALPHAS, ("countries", "US", "tzid_alphas", 0, "alpha"), float("nan"))
    with pytest.raises(EngineError) as err:
        parse_policy("country_zone_alphas", dump_yaml(doc), "x.yaml")
    assert err.value.code == "E3A_POL_002_SCHEMA_INVALID" and "finite" in err.value.cause


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(1e-6, 1e9), st.sampled_from([1e-6, 1e-5, 1e17, 0.1, 2.0, 123456789.0])),
                min_size=1, max_size=40))
def test_fast_alpha_writer_is_byte_identical_to_dump_yaml(values):
    from engine.policies.alpha_writer import AlphaPackWriter
    from engine.policies.authoring import dump_yaml

    writer = AlphaPackWriter(ALPHAS)
    doc = copy.deepcopy(ALPHAS)
    entries = [e for block in doc["countries"].values() for e in block["tzid_alphas"]]
    for i, e in enumerate(entries):
        e["alpha"] = values[i % len(values)]
    assert writer.dump(doc) == dump_yaml(doc)


def test_fast_alpha_writer_quotes_versions_and_falls_back_on_another_layout():
    """The version strings YAML would read as something else (a boolean, a number, a mapping) or fold; a layout
    the writer does not know is written by dump_yaml itself (the alphas' values are the property test's)."""
    from engine.policies.alpha_writer import AlphaPackWriter
    from engine.policies.authoring import dump_yaml

    writer = AlphaPackWriter(ALPHAS)
    doc = copy.deepcopy(ALPHAS)
    for version in ("v1.0.0+tuned.0a1b2c3d", "NO", "yes", "1.5", "a: b", "'q'", "x" * 39, "y" * 60):
        doc["version"] = version
        assert writer.dump(doc) == dump_yaml(doc)
    doc["countries"]["US"]["notes"] = "changed layout"  # another layout falls back to dump_yaml
    assert writer.dump(doc) == dump_yaml(doc)


def test_an_integer_too_large_for_a_float_is_refused_naming_its_field(tmp_path):
    """YAML reads ``999...9`` (400 digits) as an exact int: the schema has no maximum for a floor, and
    ``math.isfinite`` then raised OverflowError, a traceback. It is refused like NaN, naming the field."""
    import shutil

    import pytest

    from engine import EngineError, PolicySet

    folder = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", folder)
    floors = folder / "zone_floor_policy.yaml"
    floors.write_text(floors.read_text().replace("floor_value: 0.1", "floor_value: " + "9" * 400, 1))
    with pytest.raises(EngineError) as err:
        PolicySet.from_dir(folder)
    assert err.value.code == "E3A_POL_002_SCHEMA_INVALID"
    assert err.value.cause.endswith("zone_floor_policy.yaml: floors[0].floor_value: number is not finite (NaN, inf, "
                                    "or an integer too large for a float)"), err.value.cause
