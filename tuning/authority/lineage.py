"""``policies/lineage.yaml``, read: the promotions (and authored installs) that made the authority what it is.

Light on purpose (YAML only): a sweep process reads it before its trials, and a sweep never imports MLflow.
"""

from __future__ import annotations

from pathlib import Path

from engine import EngineError, load_yaml
from tuning.common.errors import E_ARTIFACTS

LINEAGE_FILE = "lineage.yaml"


def read_lineage(policies_dir: Path) -> list[dict]:
    path = policies_dir / LINEAGE_FILE
    if not path.exists():
        return []
    doc = load_yaml(path, E_ARTIFACTS) or {}
    promotions = doc.get("promotions", []) if isinstance(doc, dict) else None
    if not isinstance(promotions, list):
        raise EngineError(E_ARTIFACTS, f"{path}: expected a mapping with a 'promotions' list")
    for i, entry in enumerate(promotions):   # what _lineage_entry and an authored install write, and is read
        if not isinstance(entry, dict):
            problem = f"is {type(entry).__name__} {str(entry)[:40]!r}, not a mapping (a lineage entry)"
        elif not isinstance(entry.get("parameter_hash"), str):
            problem = f"has no text 'parameter_hash' (got {entry.get('parameter_hash')!r:.40})"
        elif not isinstance(entry.get("previous_authority", {}), dict):
            problem = "has a 'previous_authority' that is not a mapping"
        elif not isinstance(entry.get("mlflow_run_id"), (str, type(None))):
            problem = f"has an 'mlflow_run_id' that is not text (got {entry.get('mlflow_run_id')!r:.40})"
        elif not isinstance(entry.get("witness", {}), dict):
            problem = "has a 'witness' that is not a mapping"
        else:
            continue
        raise EngineError(E_ARTIFACTS, f"{path}: promotions[{i}] {problem}")
    return list(promotions)
