"""Frames as the networks see them (resized to the processing size, normalised, reflect-padded), read ahead of
the networks on a thread."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

import numpy as np

from atnet_jax.models.preprocess import PadInfo, normalize_frames, reflect_pad, resize_frame


class Frames(Protocol):
    """Random access to a video's RGB frames: ``len(frames)`` and ``frames[i] -> [H, W, 3] uint8``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


class FrameReader:
    """``image(t) -> [1, hp, wp, 3]`` float32 for frame ``t`` of ``frames`` (``[H, W, 3]`` uint8 each).

    ``read_ahead`` starts decoding frames on a reader thread (OpenCV and NumPy release the GIL, so it overlaps
    the networks' run); ``frames[i]`` must then be safe to call from another thread.
    """

    def __init__(self, frames: Frames, video_shape: tuple[int, int], processing_shape: tuple[int, int],
                 pad: PadInfo) -> None:
        self.frames = frames
        self.video_shape = video_shape
        self.processing_shape = processing_shape
        self.pad = pad
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atnet_jax_frames")
        self._ahead: dict[int, Future[np.ndarray]] = {}

    def image(self, t: int) -> np.ndarray:
        ahead = self._ahead.pop(t, None)
        return ahead.result() if ahead is not None else self._read(t)

    def read_ahead(self, indices: Sequence[int], skip: Callable[[int], bool]) -> None:
        """Start reading the frames among ``indices`` for which ``skip(t)`` is False."""
        for t in indices:
            if t not in self._ahead and not skip(t):
                self._ahead[t] = self._pool.submit(self._read, t)

    def _read(self, t: int) -> np.ndarray:
        frame = np.asarray(self.frames[t])
        if frame.shape != (*self.video_shape, 3):
            raise ValueError(f"frame {t} has shape {frame.shape}, expected {(*self.video_shape, 3)}")
        return reflect_pad(normalize_frames(resize_frame(frame, self.processing_shape)), self.pad)[None]

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._ahead.clear()
