"""``python -m tuning.freeze [--policies policies] [--target PASS_BPLUS]``: P6, freeze the certified authority.

The command line of :mod:`tuning.authority.freeze`."""

from tuning.authority.freeze import main
from tuning.common.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
