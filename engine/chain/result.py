"""What a chain run returns: the scoring outputs now, the published bytes when somebody asks.

A :class:`ChainResult` holds the lineage-free *core* tables of S1-S4, the RNG events, the S0 identity,
the metric pack and gates, and the in-memory structural status of S0-S4. Everything that costs bytes
(the published tables with their lineage columns, S5's egress and universe hash, S6's report and
receipt, S7's members, index and flag) is built by :func:`engine.publish.bundle.build_bundle` the first time one
of those attributes is read, then kept. A trial that only needs scores never pays for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:  # annotations only: engine.publish.bundle is imported when the bytes are asked for
    from engine.publish.bundle import Bundle


@dataclass
class PublishInputs:
    """What S5 -> S7 read besides the cores: the policy set, the universe, the realism block and S6's
    findings on S0-S4 (made while scoring)."""

    policies: object
    universe: pd.DataFrame
    realism: dict
    realism_blocks: bool
    s6_core: object


@dataclass
class ChainResult:
    identity: dict
    cores: dict                       # "s1".."s4", "zone_alloc": lineage-free core tables
    events: pd.DataFrame
    seconds: dict
    reused: set
    receipt: dict
    sealed: list
    counters: dict = field(default_factory=dict)
    pack: dict | None = None
    gates: dict | None = None
    structural_status: str = "PASS"   # S0-S4 checks (in memory) and, in block mode, the hard realism gates
    publish_inputs: PublishInputs | None = None
    run_dir: Path | None = None
    _bundle: "Bundle | None" = None
    _tables: dict | None = None

    @classmethod
    def from_bundle(cls, bundle: "Bundle", **fields) -> "ChainResult":
        """A result whose bytes already exist (a run read back from the store)."""
        return cls(cores=bundle.tables, _bundle=bundle,
                   structural_status=bundle.s6_report.get("overall_status", "FAIL"), **fields)

    @property
    def bundle(self) -> "Bundle":
        if self._bundle is None:
            from engine.publish.bundle import build_bundle  # the byte-producing half: only when asked
            self._bundle = build_bundle(self)
        return self._bundle

    @property
    def bundled(self) -> bool:
        return self._bundle is not None

    # the published view (each builds the bundle on first use)
    @property
    def tables(self) -> dict:
        """The published tables (lineage attached), built on first read; no member bytes are needed."""
        if self._tables is None:
            if self._bundle is not None and self._bundle.tables is not None:
                self._tables = self._bundle.tables
            else:
                from engine.publish.bundle import published_tables
                self._tables = published_tables(self)
        return self._tables

    universe_doc = property(lambda self: self.bundle.universe_doc)
    s6_report = property(lambda self: self.bundle.s6_report)
    s6_issues = property(lambda self: self.bundle.s6_issues)
    s6_receipt = property(lambda self: self.bundle.s6_receipt)
    members = property(lambda self: self.bundle.members)
    index = property(lambda self: self.bundle.index)
    flag = property(lambda self: self.bundle.flag)
    s7 = property(lambda self: self.bundle.s7)

    @property
    def s6_status(self) -> str:
        """S6's overall status: the full report's when the bundle exists, else the in-memory checks'."""
        return self._bundle.s6_report["overall_status"] if self._bundle is not None else self.structural_status

    @property
    def s7_status(self) -> str:
        """S7 seals exactly when S6 passes."""
        return self._bundle.s7.get("status", "FAIL") if self._bundle is not None else (
            "PASS" if self.structural_status == "PASS" else "FAIL")
