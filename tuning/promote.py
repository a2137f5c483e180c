"""``python -m tuning.promote MLFLOW_RUN_ID [--policies policies] [--decision UNLOCK_P2] [--runs-root runs]``

The command line of :mod:`tuning.authority.promotion`."""

from tuning.authority.promotion import build_parser, main  # noqa: F401 (the CLI surface)
from tuning.common.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
