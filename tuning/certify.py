"""``python -m tuning.certify [--authority | --run MLFLOW_RUN_ID] [--seeds 42,7,101,202] [--json]``

The command line of :mod:`tuning.authority.certification`."""

from tuning.authority.certification import main
from tuning.common.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
