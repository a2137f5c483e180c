#!/usr/bin/env bash
# A local "cluster" for trying distributed sweeps: PostgreSQL + an MLflow tracking server on loopback.
#   eval "$(scripts/local_cluster.sh start)"   # exports MLFLOW_TRACKING_URI and SEG3A_STORAGE (a running cluster: its exports)
#   python -m tuning.sweep --phase P1.2 --trials 40 --storage "$SEG3A_STORAGE" --study demo &   # any number of these
#   scripts/local_cluster.sh stop    # keeps the studies and runs for the next start; purge deletes them
# State, artifacts and logs live in $SEG3A_CLUSTER_DIR (default .cluster/, not committed; as root the database
# lives in /var/tmp/seg3a-pgdata-<digest of that directory>, which the postgres user may enter).
# Needs Debian's postgresql package (initdb/pg_ctl) and `pip install -e ".[distributed]"`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
dir="${SEG3A_CLUSTER_DIR:-.cluster}"
case "${1:-}" in
    start|stop|status|purge) exec python -m tuning.local_services "$1" --dir "$dir" ;;
    *) echo "usage: $0 start|stop|status|purge" >&2; exit 2 ;;
esac
