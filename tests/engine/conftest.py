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


def engine_here(cwd: Path, *args: str, program: bool = False, timeout: float = 240):
    """``python -m engine args`` in ``cwd``: as a program, or in this process through the same ``main`` and wrapper
    (stdout, stderr, exit status), for a command's many refusal cases."""
    import contextlib
    import io
    import subprocess
    import sys
    from types import SimpleNamespace

    if program:
        return subprocess.run([sys.executable, "-m", "engine", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=timeout)
    from engine.cli.main import main
    from engine.cli.wrap import invoke

    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = invoke(main, list(args))
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
