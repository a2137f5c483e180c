"""Persistent Optuna storage for sweeps: the default journal file under ``.optuna/`` or any URL.

``--storage`` accepts an Optuna RDB URL (``sqlite:///x.db``, ``postgresql://...``) or a journal file
(``journal:PATH`` or a path ending in ``.journal``/``.log``). The default is
``.optuna/<study>.journal`` in the project root: an append-only log that survives a crash and is
shared by the processes of ``--workers K``. An RDB URL gets Optuna's heartbeat and the retry of stale
trials (:mod:`tuning.coordination`), which is what lets workers on many hosts share one study.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

from engine.errors import EngineError
from tuning.errors import E_STORAGE, E_USAGE
from tuning.study_spec import StudySpec

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
OPTUNA_DIR = Path(".optuna")
LOCK_GRACE_SECONDS = 5  # the journal lock is held for microseconds; older than this it is stale


def default_storage_url(study_name: str) -> str:
    return f"journal:{OPTUNA_DIR / (study_name + '.journal')}"


def open_storage(url: str | None, study_name: str):
    url = url or default_storage_url(study_name)
    path = url[len("journal:"):] if url.startswith("journal:") else (
        url if url.endswith((".journal", ".log")) and "://" not in url else None)
    try:
        if path is not None:
            # absolute path + open-file lock: a lock left by a killed process is stale after the grace
            # period (a relative symlink lock resolves against its own folder and is never released)
            target = Path(path).resolve()
            target.parent.mkdir(parents=True, exist_ok=True)
            lock = JournalFileOpenLock(str(target), grace_period=LOCK_GRACE_SECONDS)
            return JournalStorage(JournalFileBackend(str(target), lock_obj=lock))
        from tuning.coordination import rdb_storage

        return rdb_storage(url)  # heartbeat + retry of stale trials; hosts racing to create the schema retry
    except (ValueError, ImportError, OSError, optuna.exceptions.StorageInternalError) as exc:
        raise EngineError(E_STORAGE, f"cannot open Optuna storage {url!r}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # sqlalchemy.exc.ArgumentError & co: any unusable URL is one coded line
        raise EngineError(E_STORAGE, f"cannot open Optuna storage {url!r}: {type(exc).__name__}") from None


def lock_path(url: str | None, study_name: str) -> Path:
    """The budget lock shared by the workers of one study on one machine."""
    tag = hashlib.sha256(f"{url or default_storage_url(study_name)}|{study_name}".encode()).hexdigest()[:16]
    return OPTUNA_DIR / "locks" / f"{study_name}.{tag}.lock"


def make_sampler(spec: StudySpec, worker_index: int, trials_so_far: int) -> optuna.samplers.BaseSampler:
    """Seeded from the study's sampler seed, the worker and the study's size: reproducible for a given
    history, and two workers never draw the same random start-up points."""
    seed = (int(spec.sampler["seed"]) * 1_000_003 + 7919 * worker_index + trials_so_far) % (2 ** 32)
    if spec.sampler["name"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.sampler.get("n_startup_trials", 10),
                                      multivariate=spec.sampler.get("multivariate", True))


def open_study(spec: StudySpec, study_name: str, storage_url: str | None, seed: int, worker_index: int = 0,
               base_parameter_hash: str | None = None) -> optuna.Study:
    """Create or resume; a study resumed with a different seed or base is a usage error."""
    storage = open_storage(storage_url, study_name)
    probe = optuna.create_study(study_name=study_name, storage=storage, direction="maximize", load_if_exists=True)
    attrs = probe.user_attrs
    expected = {"phase": spec.phase, "seed": int(seed)}
    if base_parameter_hash:
        expected["base_parameter_hash"] = base_parameter_hash
    for key, value in expected.items():
        if key in attrs and attrs[key] != value:
            raise EngineError(E_USAGE, f"study {study_name} was created with {key}={attrs[key]}, not {value}; "
                                       f"pass --study NAME to start a new study")
    for key, value in expected.items():
        if key not in attrs:
            probe.set_user_attr(key, value)
    n = len(probe.get_trials(deepcopy=False))
    return optuna.load_study(study_name=study_name, storage=storage,
                             sampler=make_sampler(spec, worker_index, n))
