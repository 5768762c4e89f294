"""Ctrl-C for the commands: a KeyboardInterrupt that is never lost or disguised, and a clean exit with 130.

:func:`atnet_jax.cli.run` holds an :class:`InterruptGuard` while a command runs and leaves an interrupted
command-line run with :func:`exit_interrupted`; :func:`guard_command_line` (called when ``atnet_jax.cli`` is
imported by ``python -m atnet_jax.<command>``) covers the command's own imports before that.
"""
from __future__ import annotations

import _thread
import gc
import os
import signal
import sys
import threading
import weakref
from typing import Any

from atnet_jax.errors import EXIT_INTERRUPTED


class InterruptGuard:
    """Ctrl-C as a KeyboardInterrupt in the main thread that is never lost or disguised.

    Python raises the KeyboardInterrupt of SIGINT wherever the main thread is: inside a garbage-collector
    callback (JAX registers one) or a ``__del__`` it is printed as "Exception ignored" and dropped (the run goes
    on to the end); inside an import it can come out as another error (``RuntimeError: Error calling
    __set_name__``) or leave a half-imported module behind. There the handler defers the interrupt and
    delivers it again a moment later, once the main thread is back in ordinary code. Before
    :func:`atnet_jax.cli.run` has started the command (``raising`` False: the command's imports, building its
    parser), a Ctrl-C is kept ``pending`` and :func:`atnet_jax.cli.run` stops at its start.

    Library code can also swallow the interrupt where it lands: JAX's tracing has bare ``except:`` clauses
    (``operator.index`` of a dimension, for one). So once raised, the interrupt is checked every
    ``CHECK_EVERY`` s until code that acts on it calls :func:`handled`: while it propagates (it, or an
    exception raised while handling it, is being handled: cleanup runs undisturbed) nothing happens; once it is
    gone without that, it is raised again.
    """

    CHECK_EVERY = 0.2

    def __init__(self) -> None:
        self.previous: Any = None
        self.raising = True
        self.pending = False
        self._owed = False  # deferred from an unsafe place: the next delivery raises
        self._checking = False  # the next delivery is a check, not a new Ctrl-C
        self._check_scheduled = False

    def __enter__(self) -> InterruptGuard:
        if threading.current_thread() is threading.main_thread() \
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None

    def _handle(self, signum: int, frame: Any) -> None:
        global _unhandled
        if not self.raising:
            self.pending = True
            return
        checking, self._checking = self._checking, False
        if checking and not self._owed:
            if _unhandled is None:
                return
            if _in_flight(_unhandled):
                self._schedule(self.CHECK_EVERY, check=True)
                return
            # swallowed where it was raised: raise it again
        if _unsafe_to_raise(frame):
            self._owed = True
            self._schedule(0.05)
            return
        self._owed = False
        _unhandled = KeyboardInterrupt()
        self._schedule(self.CHECK_EVERY, check=True)
        raise _unhandled

    def _schedule(self, seconds: float, *, check: bool = False) -> None:
        if check:
            if self._check_scheduled:
                return
            self._check_scheduled = True
        timer = threading.Timer(seconds, self._deliver_again, kwargs={"check": check})
        timer.daemon = True
        timer.start()

    def _deliver_again(self, check: bool = False) -> None:
        if check:
            self._check_scheduled = False
        if signal.getsignal(signal.SIGINT) == self._handle:
            if check:
                self._checking = True
            _thread.interrupt_main(signal.SIGINT)


_unhandled: KeyboardInterrupt | None = None
"""The KeyboardInterrupt a guard raised last, until :func:`handled` is called."""


def handled() -> None:
    """The KeyboardInterrupt (or an error it caused) reached the code that acts on it: stop checking that it
    propagates (:class:`InterruptGuard`)."""
    global _unhandled
    _unhandled = None


def caused_by_interrupt(err: BaseException) -> bool:
    """``err`` is a KeyboardInterrupt or was raised while one was handled (library code that turned Ctrl-C into
    another error)."""
    return _in_chain(err, lambda e: isinstance(e, KeyboardInterrupt))


def _in_flight(interrupt: KeyboardInterrupt) -> bool:
    """``interrupt`` is being handled in the main thread (an ``except`` or ``finally`` block, a context manager's
    exit, on the way up), or an exception raised while it was handled is."""
    current = sys.exc_info()[1]
    return current is not None and _in_chain(current, lambda e: e is interrupt)


def _in_chain(err: BaseException, test: Any) -> bool:
    seen: set[int] = set()
    todo = [err]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        if test(e):
            return True
        seen.add(id(e))
        todo += [e.__cause__, e.__context__]
    return False


def _unsafe_to_raise(frame: Any) -> bool:
    """``frame`` or one of its callers is a ``__del__``, a weakref or gc callback (where an exception is printed
    and dropped) or an import."""
    callbacks = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        code = frame.f_code
        if code in callbacks or code.co_name == "__del__" or code.co_filename == weakref.__file__ \
                or code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def guard_command_line() -> None:
    """Run as ``python -m atnet_jax.<command>``: guard Ctrl-C from here on, so that the command's own imports
    (seconds, before :func:`atnet_jax.cli.run`) are covered too. Imported as a library, nothing changes."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if getattr(spec, "name", "").startswith("atnet_jax."):
        COMMAND_LINE.raising = False
        COMMAND_LINE.__enter__()


COMMAND_LINE = InterruptGuard()


def exit_interrupted() -> None:
    """Leave the process now with exit code 130, once the message is out and the outputs are safe.

    After Ctrl-C, XLA may still be compiling on its own threads; the interpreter's shutdown then races them and
    can crash (a segfault, exit 139). Temporary folders (frame caches) are removed first, as at a normal exit.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not start a traceback now
    weakref.finalize._exitfunc()  # type: ignore[attr-defined]  (the finalizers a normal exit runs)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(EXIT_INTERRUPTED)


guard_command_line()
