import functools
from pathlib import Path

import pytest

from engine.chain.runner import ChainCache, run_chain
from engine.policies import PolicySet

ROOT = Path(__file__).resolve().parents[2]
ANCHOR = ROOT.parent / "shared" / "data" / "anchor_world"


@functools.lru_cache(maxsize=1)
def _baseline():
    return run_chain(PolicySet.from_dir(ROOT / "policies"), 42)


@pytest.fixture(scope="session")
def policies():
    return PolicySet.from_dir(ROOT / "policies")


@pytest.fixture(scope="session")
def baseline():
    return _baseline()


@pytest.fixture
def cache():
    return ChainCache()
