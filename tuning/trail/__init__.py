"""The MLflow decision trail: the only package that imports MLflow (client, trail process, registry, UI view)."""
