"""The chain declared as data: each state's name, what it reads, what it writes, and its function.

A state's cache key is derived from the content digests of exactly what it declares it reads (the
world's tables, the seed, named sections of named policies, upstream outputs); nothing is typed by
hand and nothing is keyed on object identity. A state can only see what it declares: its
:class:`Reads` view raises on an undeclared input or policy section, so a forgotten read fails loudly
instead of serving a stale cache entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from engine.core.errors import EngineError
from engine.core.hashing import canonical_json, sha256_hex

E_UNDECLARED = "E3A_CHAIN_001_UNDECLARED_READ"


@dataclass(frozen=True)
class PolicyRead:
    """A policy a state reads: whole (``sections=()``) or only the named top-level sections."""

    policy: str
    sections: tuple[str, ...] = ()

    def digest(self, policies) -> str:
        if not self.sections:
            return policies.digests[self.policy]
        return policies.section_digest(self.policy, *self.sections)

    def label(self) -> str:
        return self.policy + (f"[{', '.join(self.sections)}]" if self.sections else "")


@dataclass(frozen=True)
class State:
    """One row of the state table."""

    name: str                                # the state (and its name in ``ChainResult.reused``)
    reads: tuple[str, ...]                   # run inputs and upstream outputs
    policies: tuple[PolicyRead, ...]         # policy files / sections
    outputs: tuple[str, ...]
    fn: Callable                             # fn(reads: Reads) -> tuple of outputs, in ``outputs`` order
    cached: bool = True                      # kept in the ChainCache under its derived key
    runtime: tuple[str, ...] = ()            # execution settings that never change the output (partitions)
    doc: str = ""

    def key(self, digests: dict, policies) -> str:
        """The content key: this state's name and the digests of everything it declares it reads."""
        parts = {"state": self.name, "reads": {r: digests[r] for r in self.reads},
                 "policies": {p.label(): p.digest(policies) for p in self.policies}}
        return sha256_hex(canonical_json(parts))


class _SectionView(dict):
    """A policy document restricted to the declared sections (reading any other key raises)."""

    def __init__(self, doc: dict, sections: tuple[str, ...], state: str, policy: str) -> None:
        super().__init__({k: doc[k] for k in sections if k in doc})
        self._allowed, self._where = set(sections), f"{state} reads {policy}"

    def _check(self, key) -> None:
        if key not in self._allowed:
            raise EngineError(E_UNDECLARED, f"{self._where} section {key!r} without declaring it")

    def __getitem__(self, key):
        self._check(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        self._check(key)
        return super().get(key, default)

    def __contains__(self, key) -> bool:
        self._check(key)
        return super().__contains__(key)


class Reads:
    """What a state sees: its declared inputs, its runtime settings and its declared policy sections."""

    def __init__(self, state: State, values: dict, policies) -> None:
        self._state, self._values, self._policies = state, values, policies

    def __getitem__(self, name: str):
        if name not in self._state.reads and name not in self._state.runtime:
            raise EngineError(E_UNDECLARED, f"{self._state.name} reads {name!r} without declaring it")
        return self._values[name]

    def _declared(self, policy_id: str) -> PolicyRead:
        decl = next((p for p in self._state.policies if p.policy == policy_id), None)
        if decl is None:
            raise EngineError(E_UNDECLARED, f"{self._state.name} reads policy {policy_id!r} without declaring it")
        return decl

    def policy(self, policy_id: str) -> dict:
        """The declared view of a policy: the whole document, or a view holding only its declared sections."""
        decl = self._declared(policy_id)
        doc = self._policies.doc(policy_id)
        return doc if not decl.sections else _SectionView(doc, decl.sections, self._state.name, policy_id)

    def section(self, policy_id: str, key: str, default: dict) -> dict:
        """One declared section of a policy, with its disabled default where the policy omits it."""
        decl = self._declared(policy_id)
        if decl.sections and key not in decl.sections:
            raise EngineError(E_UNDECLARED, f"{self._state.name} reads {policy_id} section {key!r} without declaring it")
        return self._policies.section(policy_id, key, default)


def state_table_md(states: tuple[State, ...]) -> str:
    """The state table as Markdown (docs/ARCHITECTURE.md embeds it; a test keeps the two equal)."""
    rows = ["| state | reads | policy sections | writes | cached |", "|---|---|---|---|---|"]
    for s in states:
        reads = ", ".join(s.reads) + (f" (runtime: {', '.join(s.runtime)})" if s.runtime else "")
        rows.append(f"| {s.name} | {reads or '-'} | {', '.join(p.label() for p in s.policies) or '-'} | "
                    f"{', '.join(s.outputs)} | {'yes' if s.cached else 'no'} |")
    return "\n".join(rows) + "\n"
