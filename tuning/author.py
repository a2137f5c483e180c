"""``python -m tuning.author (--into-authority | --into DIR) [--reason TEXT] [--world DIR | --reference FILE]``

The command line of :mod:`tuning.authority.authoring`."""

from tuning.authority.authoring import main
from tuning.common.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
