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
    """

    def __init__(self) -> None:
        self.previous: Any = None
        self.raising = True
        self.pending = False

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
        if not self.raising:
            self.pending = True
            return
        if _unsafe_to_raise(frame):
            timer = threading.Timer(0.05, self._deliver_again)
            timer.daemon = True
            timer.start()
            return
        raise KeyboardInterrupt

    def _deliver_again(self) -> None:
        if signal.getsignal(signal.SIGINT) == self._handle:
            _thread.interrupt_main(signal.SIGINT)


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
