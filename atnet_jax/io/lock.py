"""Exclusive locks on output folders, so that two runs never write the same results at once.

A lock is ``fcntl.flock`` on a file inside the folder (``.atnet_lock``, or ``.atnet_lock.<part>`` for one part
of it, e.g. one sequence's results) that also holds the holder's JSON (pid, host, start time, command), so the
second run can say who holds it. The kernel releases a flock when its process dies, however it dies: a lock
left by a dead process is simply taken over. (On network file systems flock is as good as the file system's
locking: NFSv4 and Lustre lock across hosts.)

Locks are held per process: :func:`hold` again on a folder this process holds returns the same lock. The
commands release every lock when they end (:func:`release_all`, called by ``atnet_jax.cli.run``).
"""
from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

from atnet_jax.errors import ConflictError

LOCK_NAME = ".atnet_lock"


class OutputLock:
    """An exclusive lock on ``folder`` (or on ``part`` of it) held by this process; :meth:`release` ends it."""

    def __init__(self, folder: Path, part: str | None, flag: str) -> None:
        self.folder, self.part, self.flag = folder, part, flag
        self.path = folder / (LOCK_NAME if part is None else f"{LOCK_NAME}.{part}")
        self.made = [p for p in (folder, *folder.parents) if not p.exists()]  # the folders mkdir will make
        self._fd: int | None = None

    def acquire(self) -> OutputLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ConflictError(self._in_use()) from None
            except BaseException:
                os.close(fd)
                raise
            try:  # the holder before us may have removed the file between our open and our flock: try again
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                  "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else ""}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(holder) + "\n").encode())
        self._fd = fd
        return self

    def _in_use(self) -> str:
        what = f"{self.folder}" + (f" (the results of {self.part})" if self.part else "")
        try:
            holder = json.loads(self.path.read_text())
            who = f"pid {holder['pid']} on {holder['host']}, started {holder['started']}: {holder['command']}"
        except (OSError, ValueError, KeyError, TypeError):
            who = "a process that has not said who it is yet"
        return f"{self.flag} {what} is in use by another run ({who}); wait for it to end or stop it"

    def release(self) -> None:
        """Remove the lock file and unlock; remove the folders the lock made too, where they stayed empty."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked, so that no one locks a file about to go
        finally:
            os.close(self._fd)
            self._fd = None
            _HELD.pop(self.path, None)
        for folder in self.made:
            try:
                folder.rmdir()
            except OSError:  # not empty: results were written
                break


_HELD: dict[Path, OutputLock] = {}


def hold(folder: str | os.PathLike, part: str | None = None, *, flag: str = "--output") -> OutputLock:
    """Lock ``folder`` (created if missing), or ``part`` of it, for this process until :func:`release_all`.

    Raises :class:`ConflictError` naming ``flag``, the folder and the holder (pid, host, start time, command)
    where another process holds it. Holding it already in this process is not a conflict.
    """
    lock = OutputLock(Path(folder).absolute(), part, flag)
    if lock.path in _HELD:
        return _HELD[lock.path]
    _HELD[lock.path] = lock.acquire()
    return lock


def other_entries(folder: str | os.PathLike) -> list[Path]:
    """The entries of ``folder`` other than lock files (whether it holds anything of the user's)."""
    return [p for p in Path(folder).iterdir() if not p.name.startswith(LOCK_NAME)]


def release_all() -> None:
    """Release every lock this process holds (the end of a command)."""
    for lock in reversed(list(_HELD.values())):  # the newest first: the first may remove a folder it made
        lock.release()
