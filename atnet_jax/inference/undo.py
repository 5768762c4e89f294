"""What a running round replaced, kept on disk so that a cancelled or failed round is undone exactly."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from atnet_jax.inference.store import FrameStore


class UndoLog:
    """The probabilities a round replaced, in a file beside the session's store, to restore on cancel.

    Frames that held nothing yet (``old`` None: zeros) are only listed, not written: round 1 saves no file.
    """

    def __init__(self, path: Path, like: FrameStore) -> None:
        self._path, self._like = path, like
        self._store: FrameStore | None = None
        self.frames: list[int] = []
        self._empty: set[int] = set()

    def save(self, t: int, old: np.ndarray | None) -> None:
        """Keep frame ``t``'s probabilities before the round changes them. ``t`` is listed only once they are
        kept: a save that stops half-way (Ctrl-C) leaves nothing to restore, and the frame is not changed yet."""
        if t in self.frames:
            return
        if old is None:
            self._empty.add(t)
        else:
            if self._store is None:
                self._store = FrameStore(self._path, len(self._like), self._like.frame_shape, self._like.dtype)
            self._store[t] = old
        self.frames.append(t)

    def saved(self, t: int) -> np.ndarray | None:
        """Frame ``t`` as it was, None where it held nothing."""
        if t in self._empty:
            return None
        assert self._store is not None
        return self._store[t]

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
