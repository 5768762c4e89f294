"""Several processes (hosts) training together: start-up, agreement, and failing fast together.

JAX's distributed runtime (``jax.distributed.initialize``) connects the processes through a coordination
service in process 0; collectives then run over the devices of all of them. Left alone, a Python error in one
process leaves the others blocked in the next collective or in the shutdown barrier until a timeout aborts
them with a C++ stack trace. Here:

* a process that fails records a one-line reason in the coordination service's key-value store
  (:func:`report_failure`) and exits at once (:func:`exit_now`, no shutdown barrier);
* every process runs a watchdog thread that polls that store: when another process has failed it prints
  ``process I failed: REASON`` on one line and exits with code 1, within about a second; process 0 (whose
  exit ends the service) waits up to a few seconds for the others to go first, so that they read the reason
  instead of losing the service under them;
* :func:`max_over_processes` lets a stop request that only one process received (SIGTERM on a preempted node, a
  time limit) stop every process at the same step.

With one process every function here is a no-op (or the identity).
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Any

import jax
import numpy as np

_FAILED = "atnet_jax/failed/"  # key prefix: process index -> one-line reason
_GONE = "atnet_jax/gone/"  # key prefix: processes that stopped after another one failed
_POLL_S = 0.25
_COORDINATOR_WAIT_S = 3.0

_exiting = threading.Lock()


def initialize(coordinator_address: str | None, num_processes: int | None, process_id: int | None, *,
               heartbeat_timeout_s: int, prog: str) -> None:
    """``jax.distributed.initialize`` (arguments left ``None`` are detected: SLURM, TPU pod slices, ...),
    then the failure watchdog. ``heartbeat_timeout_s``: a process silent this long counts as dead."""
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, heartbeat_timeout_seconds=heartbeat_timeout_s,
                               shutdown_timeout_seconds=max(30, 2 * heartbeat_timeout_s))
    if jax.process_count() > 1:
        _Watchdog(prog).start()


def _client() -> Any | None:
    from jax._src import distributed

    return distributed.global_state.client if jax.process_count() > 1 else None


def is_main_process() -> bool:
    """True in process 0, the one that writes logs, metrics and weights."""
    return jax.process_index() == 0


def max_over_processes(value: int) -> int:
    """The largest of the processes' ``value`` s, in every process (a collective: all processes call it)."""
    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return int(np.max(multihost_utils.process_allgather(np.asarray([value], np.int32))))


def barrier(name: str) -> None:
    """Wait until every process reaches this point."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def other_failure(wait_s: float = 0.0) -> str | None:
    """The reason another process recorded for failing (waiting up to ``wait_s`` for one), else None."""
    client = _client()
    if client is None:
        return None
    deadline = time.monotonic() + wait_s
    while True:
        try:
            entries = client.key_value_dir_get(_FAILED)
        except Exception:  # noqa: BLE001 (the service is gone: process 0 failed)
            return "process 0 (the coordinator) stopped"
        for key, reason in sorted(entries):
            index = int(key.rsplit("/", 1)[-1])
            if index != jax.process_index():
                return f"process {index} failed: {reason}"
        if time.monotonic() >= deadline:
            return None
        time.sleep(_POLL_S)


def is_lost_peer(err: BaseException) -> bool:
    """Whether ``err`` is a collective that failed because a peer process vanished (no reason recorded)."""
    text = str(err)
    return any(s in text for s in ("Gloo", "NCCL", "Connection reset by peer", "UNAVAILABLE"))


def report_failure(reason: str) -> None:
    """Record this process's one-line failure ``reason`` for the others (best effort)."""
    client = _client()
    if client is None:
        return
    with contextlib.suppress(Exception):  # the service is gone already: the others notice by themselves
        client.key_value_set(f"{_FAILED}{jax.process_index()}", reason)


def exit_now(code: int) -> None:
    """Leave the process without JAX's shutdown barrier (which would wait for processes that are gone).

    Process 0 hosts the coordination service: it first gives the others a few seconds to read the failure
    and go, so that none of them is cut off from the service (which aborts it with a C++ trace).
    """
    client = _client()
    if client is not None and jax.process_index() == 0:
        others = set(range(1, jax.process_count()))
        deadline = time.monotonic() + _COORDINATOR_WAIT_S
        while time.monotonic() < deadline:
            try:
                done = {int(k.rsplit("/", 1)[-1]) for k, _ in client.key_value_dir_get(_GONE)
                        + client.key_value_dir_get(_FAILED)}
            except Exception:  # noqa: BLE001
                break
            if others <= done:
                break
            time.sleep(_POLL_S)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


class _Watchdog(threading.Thread):
    """Ends this process (code 1, one line on stderr) as soon as another process records a failure."""

    def __init__(self, prog: str) -> None:
        super().__init__(name="atnet_jax-watchdog", daemon=True)
        self.prog = prog
        self._stop = threading.Event()
        import atexit

        atexit.register(self._stop.set)  # runs before JAX's own shutdown (registered earlier)

    def run(self) -> None:
        while not self._stop.wait(_POLL_S):
            reason = other_failure()
            if reason is None or self._stop.is_set():
                continue
            if not _exiting.acquire(blocking=False):
                return  # the main thread is already reporting a failure
            print(f"{self.prog}: error: {reason}; stopping this process ({jax.process_index()})", file=sys.stderr)
            with contextlib.suppress(Exception):
                _client().key_value_set(f"{_GONE}{jax.process_index()}", "1")
            exit_now(1)


def claim_exit() -> bool:
    """True for the first caller: the main thread's failure report and the watchdog's must not both print."""
    return _exiting.acquire(blocking=False)
