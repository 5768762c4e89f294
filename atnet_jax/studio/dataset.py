"""A dataset in the studio: the sequences of a DAVIS root, each with its own workspace ``<root>/<sequence>/`` (the
layout of single-sequence workspaces), listed with their state, one open at a time.

Opening a sequence builds its :class:`~atnet_jax.studio.controller.Controller` through the ``opener`` the command
passes in (video, weights, session, resume); opening another closes the one before (refused while it runs a step).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from atnet_jax.errors import ConflictError, NotFoundError, UsageError
from atnet_jax.studio.controller import Controller
from atnet_jax.studio.history import read_meta

EXPORT_FOLDER = "export"


def state_text(rounds: int, exported: bool, started: bool) -> str:
    """What the start page says of a sequence: ``not started``, ``N round(s)``, with ``, exported``."""
    text = "not started" if not started else f"{rounds} round" + ("" if rounds == 1 else "s")
    return f"{text}, exported" if exported else text


class Dataset:
    """The sequences of the DAVIS root ``source``, their workspaces under ``workspaces``, the open one."""

    def __init__(self, source: Path, workspaces: Path, opener: Callable[[str, Path], Controller],
                 closer: Callable[[Controller], None] | None = None) -> None:
        from atnet_jax.io.davis import DavisFolder

        self.source = Path(source)
        self.workspaces = Path(workspaces)
        self.davis = DavisFolder(self.source)
        self.names = self.davis.sequences()
        if not self.names:
            raise UsageError(f"--input {self.source}: no sequences in {self.davis.images_dir}")
        self._opener = opener
        self._closer = closer
        self._opening = threading.Lock()
        self.current: Controller | None = None

    def listing(self) -> dict:
        """The start page's list: each sequence's name, frame count, rounds and state, and the open one."""
        sequences = []
        for name in self.names:
            folder = self.workspaces / name
            try:
                meta = read_meta(folder) if folder.is_dir() else None
            except (OSError, ValueError):  # an unreadable workspace: shown, and opening it says why
                meta = None
            steps = meta.steps if meta is not None else []
            rounds = sum(s.kind == "round" for s in steps)
            exported = (folder / EXPORT_FOLDER).is_dir()
            sequences.append({"name": name, "frames": len(self.davis.frame_paths(name)), "rounds": rounds,
                              "steps": len(steps), "exported": exported,
                              "state": state_text(rounds, exported, bool(steps))})
        return {"input": str(self.source), "workspaces": str(self.workspaces),
                "open": None if self.current is None else self.current.name, "sequences": sequences}

    def check_name(self, body: object) -> str:
        if not isinstance(body, dict) or set(body) != {"sequence"} or not isinstance(body["sequence"], str):
            raise UsageError('expected a JSON object {"sequence": NAME}')
        name = body["sequence"]
        if name not in self.names:
            raise NotFoundError(f"no sequence {name[:60]!r} in {self.source}")
        return name

    def open(self, name: str) -> Controller:
        """Make ``name`` the open sequence (a no-op if it is); the one open before is closed first. A
        :class:`ConflictError` while a step of the open one runs or another sequence is being opened."""
        if not self._opening.acquire(blocking=False):
            raise ConflictError("a sequence is being opened: wait for it")
        try:
            current = self.current
            if current is not None and current.name == name:
                return current
            if current is not None:
                if not current.busy.acquire(blocking=False):
                    raise ConflictError(f"a round of {current.name} is running: wait for it or cancel it")
                self.current = None
                try:
                    current.close()
                    if self._closer is not None:
                        self._closer(current)
                finally:
                    current.busy.release()
            self.current = self._opener(name, self.workspaces / name)
            return self.current
        finally:
            self._opening.release()

    def close(self) -> None:
        current, self.current = self.current, None
        if current is not None:
            current.close()
            if self._closer is not None:
                self._closer(current)
