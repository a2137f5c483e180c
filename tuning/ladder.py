"""The decision ladder: every phase closure (P0, POPT.0, P1.2 ... P6) as one step of the trail.

The command line of :mod:`tuning.authority.ladder`."""

from tuning.authority.ladder import build_parser, main  # noqa: F401 (the CLI surface)
from tuning.common.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
