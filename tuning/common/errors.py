"""Coded harness errors (``E3A_TUN_*``) and the one CLI wrapper every ``python -m tuning.*`` uses.

The codes ride on :class:`engine.core.errors.EngineError`, so a harness failure and an engine failure
reach the user the same way: one line ``CODE: cause`` on stderr, exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from engine import CodedParser, invoke as _invoke
from engine import EngineError, decimal_integer

E_KNOB_RANGE = "E3A_TUN_001_KNOB_OUT_OF_RANGE"
E_KNOB_UNKNOWN = "E3A_TUN_002_UNKNOWN_KNOB"
E_KNOB_TARGET = "E3A_TUN_003_KNOB_TARGET_MISSING"
E_STUDY_INVALID = "E3A_TUN_010_STUDY_INVALID"
E_STUDY_MISSING = "E3A_TUN_011_STUDY_NOT_FOUND"
E_RUN_VETOED = "E3A_TUN_020_RUN_VETOED"
E_WITNESS = "E3A_TUN_021_WITNESS_MISMATCH"
E_NOT_FAITHFUL = "E3A_TUN_026_CANDIDATE_NOT_FAITHFUL"
E_RUN_MISSING = "E3A_TUN_022_RUN_NOT_FOUND"
E_ARTIFACTS = "E3A_TUN_023_RUN_ARTIFACTS_INVALID"
E_CERTIFY = "E3A_TUN_030_CERTIFY_INPUT"
E_DISAGREE = "E3A_TUN_028_AUTHORITY_DISAGREES"   # the folder, its lineage, its ladder and the store disagree
E_NOT_CERTIFIED = "E3A_TUN_031_NOT_CERTIFIED"   # certify --require-certified: measured, and not certified
E_STORAGE = "E3A_TUN_040_STORAGE"
E_TRIALS_FAILING = "E3A_TUN_041_TRIALS_FAILING"
E_USAGE = "E3A_TUN_050_USAGE"
E_TRACKING = "E3A_TUN_042_TRACKING_STORE"
E_TRAIL = "E3A_TUN_043_TRAIL"               # the MLflow trail process ended before answering


class TuningParser(CodedParser):
    """The argument parser of every ``python -m tuning.*``: usage errors are ``E3A_TUN_050_USAGE`` lines."""

    usage_code = E_USAGE


def text(value: str) -> str:
    """An argument type: text with something in it (a phase, a decision, a reason, a note is recorded)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def decimal(value: str) -> int:
    """An argument type: an integer in ASCII decimal digits (``int`` would also read ``1_0`` and other scripts'
    digits): a seed, a count."""
    try:
        return decimal_integer(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None


def at_least_one(value: str) -> int:
    """An argument type: an integer >= 1 (a count of rows, trials, repeats)."""
    number = decimal(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} must be >= 1")
    return number


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def _storage_error(exc: BaseException) -> EngineError | None:
    """Optuna's storage failing under a sweep (its database server stopped or restarted mid-run: Optuna's
    StorageInternalError, SQLAlchemy's connection errors) as the storage's code, with the first cause in the chain
    that names the database's own failure, not a chain of tracebacks."""
    optuna_exc, sa_exc = sys.modules.get("optuna.exceptions"), sys.modules.get("sqlalchemy.exc")
    kinds = tuple(k for k in (getattr(optuna_exc, "StorageInternalError", None),
                              getattr(sa_exc, "OperationalError", None), getattr(sa_exc, "InterfaceError", None))
                  if k is not None)
    if not kinds or not isinstance(exc, kinds):
        return None
    cause = exc
    while cause.__cause__ is not None or cause.__context__ is not None:
        nxt = cause.__cause__ or cause.__context__
        if sa_exc is not None and isinstance(nxt, sa_exc.SQLAlchemyError):
            cause = nxt
            continue
        break
    return EngineError(E_STORAGE, f"the study's storage failed mid-run (its database server stopped or restarted?): "
                                  f"{type(cause).__name__}: {_first_line(cause)}; run the sweep again once it "
                                  f"answers: it resumes the study")


REFUSALS = ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "INVALID_STATE",
            "BAD_REQUEST", "PERMISSION_DENIED", "UNAUTHENTICATED")   # MLflow's codes for a request it turns down


def _tracking_error(exc: BaseException) -> EngineError | None:
    exceptions = sys.modules.get("mlflow.exceptions")   # never imports MLflow: not loaded, not its exception
    if exceptions is None or not isinstance(exc, exceptions.MlflowException):
        return None
    code = str(getattr(exc, "error_code", "") or "")
    if code in REFUSALS:   # the store answered and refused this request: it did not fail
        said = _first_line(exc).removeprefix(f"{code}: ")   # a RestException's text starts with its code
        return EngineError(E_TRACKING, f"the MLflow tracking store refused a request ({code}): {said}")
    return EngineError(E_TRACKING, f"MLflow tracking store failed: {_first_line(exc)}")



def _coded_failure(exc: BaseException) -> EngineError | None:
    return _tracking_error(exc) or _storage_error(exc)


def invoke(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None,
           signal_lines: bool = True) -> int:
    """engine.cli.wrap.invoke with MLflow failures coded as ``E3A_TUN_042_TRACKING_STORE`` and an Optuna storage
    that fails mid-run as ``E3A_TUN_040_STORAGE``."""
    return _invoke(main, argv, _coded_failure, signal_lines)


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> None:
    """Run a CLI entry point through the one wrapper shared with the engine (engine.cli.wrap). As a program
    (``argv`` None: ``python -m tuning.X``) it exits without the heap's teardown (:func:`exit_now`); called
    with ``argv`` (a test, another program) it raises SystemExit like any CLI, so its caller lives on."""
    from tuning.trail.environment import prepare_for_mlflow

    prepare_for_mlflow()   # before any MLflow import of this program
    code = invoke(main, argv)
    if argv is not None:
        sys.exit(code)
    exit_now(code)


def exit_now(code: int | None) -> None:
    """``sys.exit(code)`` without the interpreter's teardown of the heap (about 1 s after a sweep: the chain
    cache's tables, MLflow and SQLAlchemy state). What a normal exit guarantees still happens first, in the
    interpreter's own order (:func:`_stop_threads`): executors registered with ``threading._register_atexit``
    (MLflow's artifact download pool, any ``ThreadPoolExecutor``) are shut down, then the other non-daemon
    threads are joined; then every ``atexit`` handler runs (log handlers, MLflow's own) and the standard
    streams are flushed. Under a profiler or a tracer (cProfile, coverage) the exit is the ordinary one."""
    import atexit

    if sys.getprofile() is not None or sys.gettrace() is not None:  # a profiler or coverage writes at exit
        sys.exit(code)
    _stop_threads()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to deliver
            pass
    os._exit(code if isinstance(code, int) else (0 if code is None else 1))


def _stop_threads() -> None:
    """What ``Py_FinalizeEx`` does before the ``atexit`` handlers: ``threading._shutdown`` first calls the
    callbacks registered with ``threading._register_atexit`` (``concurrent.futures`` stops its executors'
    workers there; joining one of those workers before that call waits forever), then joins the non-daemon
    threads. Without that private function (another interpreter), only executors are stopped: a thread
    nobody asked to stop is never waited for."""
    import threading

    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None and threading.current_thread() is threading.main_thread():
        shutdown()
        return
    for callback in reversed(list(getattr(threading, "_threading_atexits", []))):
        callback()
