"""Per-frame arrays of a video kept in a file instead of RAM: memory stays flat in the video's length.

A :class:`FrameStore` holds ``[T, *frame_shape]`` values in one file. Each access maps only the frame it
reads or writes (``np.memmap`` at that frame's offset) and unmaps it afterwards, so a process's resident
memory does not grow with the frames it has visited; the operating system's page cache keeps recent
frames fast. The file starts sparse (all zeros, no disk used until written).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np


class FrameStore:
    """``[T, *frame_shape]`` values of one dtype in the file ``path``; ``store[t]`` reads and
    ``store[t] = x`` writes one frame.

    Array-like enough for callers written for an ndarray: ``shape``, ``dtype``, ``len``, ``store[t, ...]``,
    ``np.asarray(store)`` (reads every frame into RAM: for short videos and tests), ``copy()`` and
    ``astype()`` (ndarrays). ``owner_dir`` is removed with the store when it is closed or collected.
    """

    def __init__(self, path: Path, num_frames: int, frame_shape: tuple[int, ...], dtype: Any,
                 *, owner_dir: Path | None = None, create: bool = True) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.num_frames = int(num_frames)
        self.frame_bytes = int(np.prod(self.frame_shape, dtype=np.int64)) * self.dtype.itemsize
        if create:
            with open(self.path, "wb") as f:
                f.truncate(max(self.num_frames * self.frame_bytes, 1))
        elif self.path.stat().st_size < self.num_frames * self.frame_bytes:
            raise ValueError(f"{self.path} holds {self.path.stat().st_size} bytes, expected "
                             f"{self.num_frames * self.frame_bytes} for {self.shape} {self.dtype}")
        self._file = open(self.path, "r+b")
        self._finalizer = weakref.finalize(self, _release, self._file, self.path, owner_dir)

    @classmethod
    def temporary(cls, num_frames: int, frame_shape: tuple[int, ...], dtype: Any, *,
                  prefix: str = "atnet_jax_store_") -> FrameStore:
        """A zero store in a folder of its own, removed with the store."""
        folder = Path(tempfile.mkdtemp(prefix=prefix))
        return cls(folder / "frames.bin", num_frames, frame_shape, dtype, owner_dir=folder)

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.num_frames, *self.frame_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.frame_shape)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def __len__(self) -> int:
        return self.num_frames

    def _frame_index(self, t: Any) -> int:
        t = int(t)
        if t < 0:
            t += self.num_frames
        if not 0 <= t < self.num_frames:
            raise IndexError(f"frame {t} is outside the store's {self.num_frames} frames")
        if self.closed:
            raise ValueError(f"the store {self.path} was closed")
        return t

    def _map(self, t: int, mode: str) -> np.memmap:
        return np.memmap(self._file, self.dtype, mode, offset=t * self.frame_bytes, shape=self.frame_shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        if isinstance(index, tuple) and index and isinstance(index[0], (int, np.integer)):
            return self[index[0]][index[1:]]
        if isinstance(index, (int, np.integer)):
            view = self._map(self._frame_index(index), "r")
            try:
                return np.array(view)
            finally:
                del view
        return np.asarray(self)[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"a store is written one frame at a time (store[t] = frame), got index {index!r}")
        value = np.asarray(value)
        if value.shape != self.frame_shape:
            raise ValueError(f"frame of shape {value.shape} written to a store of frames {self.frame_shape}")
        view = self._map(self._frame_index(index), "r+")
        view[...] = value  # into the page cache; unmapping does not wait for the disk
        del view

    def __iter__(self) -> Iterator[np.ndarray]:
        for t in range(self.num_frames):
            yield self[t]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        out = np.empty(self.shape, self.dtype)
        for t in range(self.num_frames):
            out[t] = self[t]
        return out if dtype is None else out.astype(dtype)

    def copy(self) -> np.ndarray:
        """Every frame, in RAM."""
        return np.asarray(self)

    def astype(self, dtype: Any) -> np.ndarray:
        return np.asarray(self).astype(dtype)

    def copy_to(self, path: Path, *, owner_dir: Path | None = None) -> FrameStore:
        """A new store in ``path`` holding the same frames (a file copy, no RAM)."""
        self._file.flush()
        shutil.copyfile(self.path, path)
        return FrameStore(path, self.num_frames, self.frame_shape, self.dtype, owner_dir=owner_dir, create=False)

    def temporary_copy(self, *, prefix: str = "atnet_jax_store_") -> FrameStore:
        """:meth:`copy_to` a folder of its own, removed with the copy."""
        folder = Path(tempfile.mkdtemp(prefix=prefix))
        return self.copy_to(folder / "frames.bin", owner_dir=folder)

    def mapped(self, path: Path, frame_shape: tuple[int, ...], fn: Callable[[np.ndarray], np.ndarray],
               *, owner_dir: Path | None = None) -> FrameStore:
        """A new store in ``path`` with frames ``fn(self[t])`` of ``frame_shape``, frame by frame."""
        out = FrameStore(path, self.num_frames, frame_shape, self.dtype, owner_dir=owner_dir)
        for t in range(self.num_frames):
            out[t] = fn(self[t])
        return out

    def close(self) -> None:
        """Close and delete the file (and ``owner_dir``)."""
        self._finalizer()

    def __repr__(self) -> str:
        return f"FrameStore({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"


def _release(file: Any, path: Path, owner_dir: Path | None) -> None:
    file.close()
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    if owner_dir is not None:
        shutil.rmtree(owner_dir, ignore_errors=True)


class ReadOnlyFrames:
    """A read-only view of a session's current :class:`FrameStore` (labels or probabilities).

    ``view[t]`` is a copy of frame ``t`` as it is now (marked read-only); ``np.asarray(view)`` and ``view.copy()``
    copy every frame. Nothing written through it reaches the session, and arrays handed out never change when a
    later round runs.
    """

    def __init__(self, store: Callable[[], FrameStore]) -> None:
        self._store = store

    def __len__(self) -> int:
        return len(self._store())

    @property
    def shape(self) -> tuple[int, ...]:
        return self._store().shape

    @property
    def dtype(self) -> np.dtype:
        return self._store().dtype

    @property
    def path(self) -> Path:
        """The file the values live in (for reading its size; it changes when the session replaces its store)."""
        return self._store().path

    @property
    def ndim(self) -> int:
        return self._store().ndim

    def __getitem__(self, index: Any) -> np.ndarray:
        out = self._store()[index]
        if isinstance(out, np.ndarray):
            out.flags.writeable = False
        return out

    def __iter__(self) -> Iterator[np.ndarray]:
        for t in range(len(self)):
            yield self[t]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return self._store().__array__(dtype)

    def copy(self) -> np.ndarray:
        """Every frame, in RAM (a writable copy)."""
        return np.asarray(self._store())

    def astype(self, dtype: Any) -> np.ndarray:
        return self.copy().astype(dtype)
