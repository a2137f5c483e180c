"""What some tests need from the machine beyond the Python packages, and the one skip reason for each.

A test that cannot run here skips with a reason starting ``absent here:``; the suite's summary
(``tests/conftest.py``) repeats each such reason once, with how many tests it skipped, so a fresh clone
says what it did not test instead of skipping silently.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ABSENT = "absent here: "
SHARED_ANCHOR = REPO.parent / "shared" / "data" / "anchor_world"
NO_SHARED = ABSENT + "../shared/data/anchor_world (the shared data, a checkout beside this repository)"
NO_CHROMIUM = ABSENT + "chromium (Debian's package; .ci/run installs it)"
NO_POSTGRES = ABSENT + "PostgreSQL's initdb (Debian's postgresql package; .ci/run installs it)"

needs_shared = pytest.mark.skipif(not SHARED_ANCHOR.exists(), reason=NO_SHARED)
