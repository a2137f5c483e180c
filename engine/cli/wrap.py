"""The one CLI wrapper of every entry point (``python -m engine`` and every ``python -m tuning.*``).

A failure a user can cause reaches them the same way everywhere: one line ``E3A_...: cause`` on
stderr, exit status 2, no traceback. That includes argparse usage errors (:class:`CodedParser`) and
refusals by the operating system (a run root that is a file, a read-only mount, a full disk).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from typing import Callable, Iterator, Sequence

from engine.core.errors import E_USAGE, EngineError

E_OS = "E3A_IO_003_OS_REFUSED"
E_INTERRUPTED = "E3A_CLI_002_INTERRUPTED"
E_TERMINATED = "E3A_CLI_005_TERMINATED"

Translator = Callable[[BaseException], "EngineError | None"]


class CodedParser(argparse.ArgumentParser):
    """argparse whose usage errors are coded (``usage_code``) instead of printing usage and exiting."""

    usage_code = E_USAGE

    def error(self, message: str) -> None:  # type: ignore[override]
        raise EngineError(self.usage_code, message)


def _os_error(exc: OSError) -> EngineError:
    where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
    return EngineError(E_OS, f"{where}{exc.strerror or type(exc).__name__}")


class Terminated(BaseException):
    """SIGTERM (``kill``, ``timeout``, a container's stop), raised in the main thread as Ctrl-C raises
    KeyboardInterrupt: the same clean-up runs (a half-written run folder is removed, a sweep's run is ended)."""


def guard_start() -> None:
    """Called where ``engine`` and ``tuning`` are imported: while ``python -m engine|tuning.X`` locates its module
    (``sys.argv[0]`` is ``-m`` then, as Python documents) and until :func:`invoke` runs ``main``, Ctrl-C and
    SIGTERM end the program with their coded line and status, not a traceback from the middle of an import
    (nothing is written before ``main``). A program or a test that imports the packages is left alone."""
    if sys.argv[:1] != ["-m"] or threading.current_thread() is not threading.main_thread():
        return

    def before_main(signum, frame) -> None:
        line, status = ((f"{E_INTERRUPTED}: interrupted", 130) if signum == signal.SIGINT else
                        (f"{E_TERMINATED}: terminated (SIGTERM)", 143))
        os.write(2, f"{line}\n".encode())
        os._exit(status)

    signal.signal(signal.SIGINT, before_main)
    signal.signal(signal.SIGTERM, before_main)


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """While ``main`` runs in this process's main thread, Ctrl-C raises KeyboardInterrupt and SIGTERM
    :class:`Terminated`; a process forked from this one (a ``--workers`` process) keeps SIGTERM's default action,
    dying at once as before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def handler(signum, frame) -> None:
        if os.getpid() != owner:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise Terminated()

    previous = {sig: signal.signal(sig, new) for sig, new in ((signal.SIGINT, signal.default_int_handler),
                                                               (signal.SIGTERM, handler))}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


def _stop_inside(exc: BaseException) -> BaseException | None:
    """Ctrl-C's or SIGTERM's exception where another one wraps it: raised inside ``__set_name__`` while an import
    builds a class, Python reraises it as the ``__cause__`` of a RuntimeError."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, (KeyboardInterrupt, Terminated)):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _stopped(stop: BaseException, signal_lines: bool) -> int:
    """The status of a command stopped by Ctrl-C (130) or SIGTERM (143), with its one coded line."""
    line, status = ((f"{E_INTERRUPTED}: interrupted", 130) if isinstance(stop, KeyboardInterrupt) else
                    (f"{E_TERMINATED}: terminated (SIGTERM)", 143))
    if signal_lines:
        print(line, file=sys.stderr)
    return status


def invoke(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None,
           translate: Translator | None = None, signal_lines: bool = True) -> int:
    """Call ``main(argv)``; return its exit status, a coded failure printed as one line (status 2); Ctrl-C is
    status 130, SIGTERM 143 (128 + the signal), each one coded line (none with ``signal_lines=False``: a helper
    process whose parent says it, as a ``--workers`` process's coordinator does)."""
    try:
        with _signals_raise():
            return int(main(argv) or 0)
    except EngineError as exc:
        error = exc
    except (KeyboardInterrupt, Terminated) as stop:
        return _stopped(stop, signal_lines)
    except OSError as exc:
        error = _os_error(exc)
    except (RecursionError, MemoryError) as exc:
        error = EngineError(E_USAGE, f"input too large or too deep ({type(exc).__name__})")
    except Exception as exc:  # noqa: BLE001 - a caller-known failure (e.g. a tracking store) may be coded
        stop = _stop_inside(exc)
        if stop is not None:   # the signal's exception, wrapped by what it interrupted (a class being built)
            return _stopped(stop, signal_lines)
        coded = translate(exc) if translate is not None else None
        if coded is None:
            raise
        error = coded
    print(error.one_line(), file=sys.stderr)
    return 2


def run_cli(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None,
            translate: Translator | None = None) -> None:
    """``sys.exit(invoke(...))`` for a module's ``if __name__ == "__main__"``."""
    sys.exit(invoke(main, argv, translate))
