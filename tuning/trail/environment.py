"""What a process's environment must hold before MLflow is imported: its telemetry is off.

MLflow 3 starts a telemetry client when it is imported: a thread fetches the client's configuration
from the network and, when that fails (this harness runs where only the package registries are
reachable), removes ``_MLFLOW_TELEMETRY_SESSION_ID`` from ``os.environ``. A request running at that
moment reads the environment too (requests looks up proxies by iterating ``os.environ``), and a key
removed under it is a ``KeyError``: a sweep's ``log_batch`` failed so ("API request ... failed with
exception '_MLFLOW_TELEMETRY_SESSION_ID'") and stopped the sweep. With telemetry off (MLflow's own
``MLFLOW_DISABLE_TELEMETRY``) there is no such thread. An operator who sets the variable keeps their
value. Applied where a process starts (:func:`tuning.common.errors.run_cli`, the trail process, the
local tracking server), never when a module is imported.
"""

from __future__ import annotations

import os
from typing import MutableMapping

BEFORE_MLFLOW_IMPORT = {"MLFLOW_DISABLE_TELEMETRY": "true"}


def prepare_for_mlflow(env: MutableMapping[str, str] | None = None) -> MutableMapping[str, str]:
    """Set :data:`BEFORE_MLFLOW_IMPORT` in ``env`` (default: this process's environment) where unset;
    returns ``env``."""
    env = os.environ if env is None else env
    for key, value in BEFORE_MLFLOW_IMPORT.items():
        env.setdefault(key, value)
    return env
