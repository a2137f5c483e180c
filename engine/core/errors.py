"""Coded engine errors: every failure a user can cause carries an ``E3A_...`` code."""

from __future__ import annotations


class EngineError(Exception):
    """A failure with a stable code and a one-line cause.

    ``code`` is an ``E3A_*`` identifier (for example ``E3A_S2_005_ZONE_UNIVERSE_MISMATCH``);
    ``cause`` is a single human-readable line. The CLI prints ``code: cause`` and exits non-zero.
    """

    def __init__(self, code: str, cause: str, **context: object) -> None:
        self.code = code
        self.cause = " ".join(str(cause).split())
        self.context = context
        super().__init__(f"{code}: {self.cause}")

    def one_line(self) -> str:
        return f"{self.code}: {self.cause}"


# Codes that are not owned by one state.
E_POLICY_YAML = "E3A_POL_001_MALFORMED_YAML"
E_POLICY_SCHEMA = "E3A_POL_002_SCHEMA_INVALID"
E_POLICY_SANITY = "E3A_POL_003_SANITY_CHECK_FAILED"
E_POLICY_MISSING = "E3A_POL_004_POLICY_MISSING"
E_POLICY_VALUES = "E3A_POL_005_VALUES_OUT_OF_RANGE"   # valid policy values the engine cannot compute with
E_WORLD_INPUT = "E3A_WLD_001_INPUT_INVALID"
E_WORLD_MISSING = "E3A_WLD_002_INPUT_MISSING"
E_BUNDLE_TAMPERED = "E3A_VER_001_BUNDLE_TAMPERED"
E_BUNDLE_MISSING = "E3A_VER_002_BUNDLE_MEMBER_MISSING"
E_PUBLISH = "E3A_IO_001_PUBLISH_FAILED"
E_USAGE = "E3A_CLI_001_USAGE"
E_CLUSTER = "E3A_CLI_004_CLUSTER_UNREACHABLE"   # a Dask scheduler that does not answer (not a usage error)
