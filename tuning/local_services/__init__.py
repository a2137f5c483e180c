"""``python -m tuning.local_services``: a throw-away PostgreSQL + MLflow server pair."""
