"""Persistent Optuna storage for sweeps: the default journal file under ``.optuna/`` or any URL.

``--storage`` accepts an Optuna RDB URL (``sqlite:///x.db``, ``postgresql://...``) or a journal file
(``journal:PATH`` or a path ending in ``.journal``/``.log``). The default is
``.optuna/<study>.journal`` in the project root: an append-only log that survives a crash and is
shared by the processes of ``--workers K``. An RDB URL gets Optuna's heartbeat and the retry of stale
trials (:mod:`tuning.storage.budget`), which is what lets workers on many hosts share one study.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import optuna
from optuna.storages.journal import JournalFileOpenLock

from engine import EngineError
from tuning.common.errors import E_STORAGE, E_USAGE
from tuning.common.worlds import E_WORLD_MISMATCH
from tuning.storage.journal import GroupCommitJournalStorage, SafeJournalFileBackend, truncate_torn_tail
from tuning.storage.sampler_streams import stream_sampler
from tuning.common.limits import OPTUNA_DIR
from tuning.study.spec import StudySpec

LOCK_GRACE_SECONDS = 5  # the journal lock is held for microseconds; older than this it is stale


def default_storage_url(study_name: str) -> str:
    return f"journal:{OPTUNA_DIR / (study_name + '.journal')}"


def quiet_optuna() -> None:
    """Optuna's log at WARNING and its experimental-feature warnings off, set by the first storage a process
    opens (never at import: importing a module changes no global state)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def journal_path(url: str) -> str | None:
    """The journal file a storage URL names (``journal:PATH``, or a bare ``*.journal``/``*.log`` path), else None."""
    return url[len("journal:"):] if url.startswith("journal:") else (
        url if url.endswith((".journal", ".log")) and "://" not in url else None)


def open_storage(url: str | None, study_name: str):
    quiet_optuna()
    url = url or default_storage_url(study_name)
    path = journal_path(url)
    try:
        if path is not None:
            # absolute path + open-file lock: a lock left by a killed process is stale after the grace
            # period (a relative symlink lock resolves against its own folder and is never released)
            target = Path(path).resolve()
            target.parent.mkdir(parents=True, exist_ok=True)
            lock = JournalFileOpenLock(str(target), grace_period=LOCK_GRACE_SECONDS)
            truncate_torn_tail(str(target), lock)  # tuning.storage.journal: a torn tail never blocks a resume
            return GroupCommitJournalStorage(SafeJournalFileBackend(str(target), lock_obj=lock))
        from tuning.storage.budget import rdb_storage

        return rdb_storage(url)  # heartbeat + retry of stale trials; hosts racing to create the schema retry
    except (ValueError, ImportError, OSError, optuna.exceptions.StorageInternalError) as exc:
        raise EngineError(E_STORAGE, f"cannot open Optuna storage {url!r}: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # sqlalchemy.exc.ArgumentError & co: any unusable URL is one coded line
        cause = (str(exc).strip().splitlines() or [""])[0][:200]
        raise EngineError(E_STORAGE, f"cannot open Optuna storage {url!r}: {type(exc).__name__}"
                                     + (f" ({cause})" if cause else "") + "; a storage is journal:PATH, "
                                     "sqlite:///PATH or postgresql://USER@HOST:PORT/DB") from None


def lock_path(url: str | None, study_name: str) -> Path:
    """The trial-budget lock shared by the workers of one study on one machine.

    Every worker counts the study's COMPLETE + RUNNING trials and asks for a new one inside this lock
    (:meth:`tuning.storage.budget.Coordinator.next_trial`). Without it, N workers on a shared storage
    could each see "one trial left" at the same moment and all ask, overshooting ``--trials`` by up to
    N - 1; recovering a dead worker's trial inside the same section also keeps two workers from
    retrying it twice. (PostgreSQL storage uses an advisory lock instead: workers on other hosts.)"""
    tag = hashlib.sha256(f"{url or default_storage_url(study_name)}|{study_name}".encode()).hexdigest()[:16]
    return OPTUNA_DIR / "locks" / f"{study_name}.{tag}.lock"


def trail_of(tracking_uri: str | None) -> str:
    """Where a process's MLflow trail goes, as a study records it: ``local`` for a store of its own machine
    (unset, ``sqlite:``, ``file:`` or a path), else the URI every host shares (a tracking server, a database)."""
    uri = (tracking_uri or "").strip()
    if not uri or uri.startswith(("sqlite:", "file:")) or ("://" not in uri and not uri.startswith("databricks")):
        return "local"
    return uri.rstrip("/")


def _refuse_another_trail(study_name: str, recorded: str, here: str) -> None:
    want = "MLFLOW_TRACKING_URI unset (its own store)" if recorded == "local" else f"MLFLOW_TRACKING_URI={recorded}"
    raise EngineError(E_USAGE, f"study {study_name} logs its trail to {recorded}, this process to {here}: its trials "
                               f"would be split between two trails; run it with {want}, or pass --study NAME")


def open_study(spec: StudySpec, study_name: str, storage, seeds,
               base_parameter_hash: str | None = None, pruner: optuna.pruners.BasePruner | None = None,
               trail: str | None = None, world: tuple[str, str] | None = None) -> optuna.Study:
    """Create or resume the study on ``storage`` (from :func:`open_storage`); a study resumed with other
    seeds, base or objectives is a usage error, and so is one joined by a host logging elsewhere (``trail``:
    :func:`trail_of` this process's tracking URI, recorded by the study's first process). ``pruner``: the
    multi-fidelity pruner (tuning.study.fidelity), which replaces the study's per-seed pruner. ``world``: the
    (fingerprint, name) of the world the trials are scored on, recorded by the study's first process; a process on
    another world is refused (``E3A_TUN_070``), whatever the study is named."""
    try:
        probe = optuna.create_study(study_name=study_name, storage=storage, directions=spec.directions,
                                    load_if_exists=True)
    except ValueError as exc:
        raise EngineError(E_USAGE, f"study {study_name}: {exc}; pass --study NAME to start a new study") from None
    if [d.name.lower() for d in probe.directions] != spec.directions:
        raise EngineError(E_USAGE, f"study {study_name} was created with other objectives; pass --study NAME")
    attrs = probe.user_attrs
    seeds = [int(s) for s in ([seeds] if isinstance(seeds, int) else seeds)]
    expected = {"phase": spec.phase, "seeds": seeds, "objective": objective_digest(spec),
                "scoring": scoring_digest(spec)}   # a study made before "scoring" existed records it on resume
    if base_parameter_hash:
        expected["base_parameter_hash"] = base_parameter_hash
    if world:
        recorded = attrs.get("world", world[0])
        if recorded != world[0]:
            raise EngineError(E_WORLD_MISMATCH, f"study {study_name} scores its trials on world "
                                                f"{attrs.get('world_name', '?')} ({recorded[:12]}), this sweep on world "
                                                f"{world[1]} ({world[0][:12]}): its sampler would learn from two "
                                                f"worlds; pass --study NAME")
        expected["world"] = world[0]
        expected["world_name"] = attrs.get("world_name", world[1])
    if trail:
        if attrs.get("trail", trail) != trail:
            _refuse_another_trail(study_name, attrs["trail"], trail)
        expected["trail"] = trail
    for key, value in expected.items():
        if key in attrs and attrs[key] != value:
            was = ("another objective (its J terms, second objective, vetoes or targets: its trials were scored on "
                   "another J)" if key == "objective" else
                   "another scoring (a guardrail's or target's value, or a fixed knob's value, differs: its trials "
                   "were scored another way)" if key == "scoring" else f"{key}={attrs[key]}, not {value}")
            raise EngineError(E_USAGE, f"study {study_name} was created with {was}; pass --study NAME to start a "
                                       f"new study")
    for key, value in expected.items():
        if key not in attrs:
            probe.set_user_attr(key, value)
    return optuna.load_study(study_name=study_name, storage=storage,
                             sampler=stream_sampler(spec),  # tuning.storage.sampler_streams: keyed per trial
                             pruner=pruner if pruner is not None else make_pruner(spec))


def _digest(doc: dict) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def objective_digest(spec: StudySpec) -> str:
    """What a trial's value and feasibility mean, as studies recorded it until 2026-12-06 (``objective``): the J
    terms, the second objective, the structural vetoes, and the guardrails and targets by their labels (a named
    condition's label is its name, not its value: :func:`scoring_digest` holds the values)."""
    return _digest({"name": spec.objective_name, "terms": list(spec.terms), "second": spec.second,
                    "structural": sorted(spec.structural),
                    "guardrails": [[c.label(), c.reason] for c in spec.guardrails],
                    "targets": [c.label() for c in spec.targets]})


def scoring_digest(spec: StudySpec) -> str:
    """Everything a trial's record depends on besides its searched knobs (``scoring``): the objective with every
    guardrail's and target's metric, operator, value or anchor offset, reason and name, and the fixed knobs' values
    (a trial scored under another fixed value is another policy). A study resumed under another is refused: its
    sampler and its ranking would mix trials scored two ways. A searched knob's range may change (narrowing a space
    is how a study is refined)."""
    conditions = lambda cs: [[c.metric, c.op, c.value, c.anchor, c.offset, c.reason, c.name] for c in cs]  # noqa: E731
    return _digest({"objective": objective_digest(spec), "guardrails": conditions(spec.guardrails),
                    "targets": conditions(spec.targets),
                    "fixed": {k.name: k.value for k in spec.knobs if k.fixed}})


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The study's pruner over per-seed intermediate values (none for multi-objective studies:
    Optuna prunes single-objective trials only)."""
    cfg = spec.pruner or {"name": "none"}
    if cfg["name"] == "none" or spec.multi_objective:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=cfg.get("n_startup_trials", 5),
                                       n_warmup_steps=cfg.get("n_warmup_steps", 0))


PRUNED_PER_TRIAL = 4   # a single-stage study's default cap: PRUNED trials per trial of its COMPLETE budget


def pruned_cap(spec: StudySpec, target: int) -> int | None:
    """The most PRUNED trials a single-stage study runs before it stops short of ``target`` COMPLETE trials (its
    budget counts COMPLETE trials only): the pruner's ``max_pruned``, else :data:`PRUNED_PER_TRIAL` x ``target``;
    None when nothing prunes. Optuna's median pruner compares a trial with the COMPLETE trials only, so once the
    sampler settles below the median of the first ones every later trial is pruned, and without a cap such a
    sweep never ends (seen on a user's world: 1,100 PRUNED trials for 11 COMPLETE of 40)."""
    cfg = spec.pruner or {"name": "none"}
    if cfg["name"] == "none" or spec.multi_objective:
        return None
    return int(cfg.get("max_pruned", PRUNED_PER_TRIAL * target))
