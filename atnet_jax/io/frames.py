"""Frames and videos: reading and writing images, frame folders and video files as lazy frame sources.

Frames are read with OpenCV as the released code does (``cv2.imread`` then BGR -> RGB), so JPEG decoding matches it.
OpenCV decodes a truncated JPEG without an error (libjpeg fills the rest with grey), so :func:`read_frame` first
checks that the file is complete (:func:`check_complete`).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from atnet_jax.errors import InputError
from atnet_jax.io.safe import atomic_write

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"
_PNG_START, _PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
_TAIL_BYTES = 4096


def check_complete(path: Path) -> None:
    """InputError naming ``path`` where a JPEG or PNG file is truncated (a half-downloaded dataset).

    A complete JPEG ends with the EOI marker (FFD9) and a PNG with its IEND chunk, possibly followed by zero
    padding: only the file's first and last bytes are read. A file that ends otherwise (data appended after
    the image, as some cameras do) is decoded once with Pillow, which raises on truncation.
    """
    with open(path, "rb") as f:
        head = f.read(8)
        if head.startswith(_JPEG_START):
            end = _JPEG_END
        elif head.startswith(_PNG_START):
            end = _PNG_END
        else:
            return  # not a JPEG or PNG: left to the decoder
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - _TAIL_BYTES))
        tail = f.read()
    if tail.rstrip(b"\x00").endswith(end):
        return
    try:
        with Image.open(path) as im:
            im.load()  # ImageFile.LOAD_TRUNCATED_IMAGES is False: a truncated file raises OSError
    except (OSError, SyntaxError, ValueError):
        raise InputError(f"frame {path} is truncated or corrupt (an incomplete download or copy?)") from None


def read_frame(path: str | os.PathLike) -> np.ndarray:
    """Read an image file -> ``[H, W, 3] uint8`` RGB (grayscale is replicated, alpha dropped), decoded as
    ``cv2.imread`` decodes it. InputError naming the file where it is truncated or cannot be decoded."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"frame not found: {path}")
    check_complete(path)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3 or bgr.size == 0:
        raise InputError(f"cannot decode frame {path} (corrupt or not an image)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_frame(path: str | os.PathLike, rgb: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write ``rgb: [H, W, 3] uint8`` as JPEG (quality 95) or PNG, chosen by the suffix, atomically."""
    path = Path(path)
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"frame must be [H, W, 3] uint8, got {rgb.shape} {rgb.dtype} for {path}")
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        save_kwargs = {"format": "JPEG", "quality": 95}
    elif suffix == ".png":
        save_kwargs = {"format": "PNG"}
    else:
        raise ValueError(f"cannot tell the image format of {path}: use .jpg, .jpeg or .png")
    image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    return atomic_write(path, lambda tmp: image.save(tmp, **save_kwargs), overwrite=overwrite)


def natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files (*.jpg, *.jpeg, *.png, any case) of ``folder``, in natural name order (frame2 < frame10)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=natural_key)


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the file header."""
    try:
        with Image.open(path) as im:
            width, height = im.size
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"cannot decode {path} (truncated or corrupt): {e}") from e
    return height, width


def stack_same_size(arrays: list[np.ndarray], paths: Sequence[Path]) -> np.ndarray:
    first = arrays[0].shape
    for array, path in zip(arrays, paths):
        if array.shape != first:
            raise ValueError(
                f"{path} is {array.shape[0]}x{array.shape[1]}, but {paths[0]} is {first[0]}x{first[1]}: "
                "all frames of a sequence must have the same size"
            )
    return np.stack(arrays)


# ----------------------------------------------------------------------------------------------- frame sources


class FrameSource:
    """A video as a lazy sequence of frames: ``len(src)``, ``src.shape = (H, W)``, ``src[i] -> [H, W, 3] uint8``
    RGB, read from disk on each access (nothing is held in memory). Iterable; a context manager."""

    names: list[str]
    """One name per frame (the file stem; ``%05d`` for videos), for writing results beside the inputs."""
    paths: list[Path]
    """One image file per frame, read by ``_read``."""
    _shape: tuple[int, int]

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    def _read(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, index: int) -> np.ndarray:
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"frame index must be an int, got {type(index).__name__}")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"frame {index} out of range ({n} frames)")
        return self._read(int(index) % n)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def read_all(self) -> np.ndarray:
        """All frames -> ``[T, H, W, 3] uint8`` (for short videos)."""
        return np.stack(list(self))

    def close(self) -> None:
        """Release what the source holds on disk (a no-op for image folders)."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ImageFolderSource(FrameSource):
    """Frames from image files (given in order). The size comes from the first file's header; a frame of
    another size raises ValueError naming it when read."""

    def __init__(self, paths: Sequence[str | os.PathLike]):
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("no frames given")
        self.names = [p.stem for p in self.paths]
        self._shape = image_size(self.paths[0])

    def _read(self, index: int) -> np.ndarray:
        frame = read_frame(self.paths[index])
        if frame.shape[:2] != self._shape:
            raise ValueError(
                f"frame {self.paths[index]} is {frame.shape[0]}x{frame.shape[1]}, but {self.paths[0]} is "
                f"{self._shape[0]}x{self._shape[1]}: all frames must have the same size"
            )
        return frame

    def __repr__(self) -> str:
        return f"ImageFolderSource({len(self)} frames from {self.paths[0].parent}, {self._shape[0]}x{self._shape[1]})"


class VideoFileSource(FrameSource):
    """Frames of a video file, decoded once with OpenCV (BGR -> RGB) into lossless PNGs in a temporary cache
    folder, then read lazily like an image folder. Seeking is avoided on purpose: OpenCV's frame seeking and
    frame counts are inexact for many codecs. The cache (under ``cache_dir``, default the system temp folder)
    is removed by :meth:`close` or when the source is garbage-collected.
    """

    def __init__(self, path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video not found: {self.path}")
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            raise InputError(f"cannot open video {self.path} (not a video, or an unknown container or codec)")
        self.cache_dir = Path(tempfile.mkdtemp(prefix="atnet_frames_", dir=cache_dir))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.cache_dir, ignore_errors=True)
        paths: list[Path] = []
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                if paths and bgr.shape[:2] != self._shape:
                    raise ValueError(
                        f"frame {len(paths)} of {self.path} is {bgr.shape[0]}x{bgr.shape[1]}, "
                        f"earlier frames are {self._shape[0]}x{self._shape[1]}"
                    )
                self._shape = bgr.shape[:2]
                frame_path = self.cache_dir / f"{len(paths):06d}.png"
                if not cv2.imwrite(str(frame_path), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
                    raise OSError(f"cannot write the frame cache {frame_path}")
                paths.append(frame_path)
        except BaseException:
            self.close()
            raise
        finally:
            capture.release()
        if not paths:
            self.close()
            raise InputError(f"no frames could be decoded from video {self.path}")
        self.paths = paths
        self.names = [f"{i:05d}" for i in range(len(paths))]

    def _read(self, index: int) -> np.ndarray:
        if not self._finalizer.alive:
            raise ValueError(f"video source {self.path} is closed")
        return read_frame(self.paths[index])

    def close(self) -> None:
        self._finalizer()

    def __repr__(self) -> str:
        return f"VideoFileSource({str(self.path)!r}, {len(self)} frames, {self._shape[0]}x{self._shape[1]})"
