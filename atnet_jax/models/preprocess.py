"""Frame pre-processing as the released code does it: normalise, reflect-pad to a multiple of 32, crop back."""
from __future__ import annotations

import numpy as np

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

PadInfo = tuple[tuple[int, int], tuple[int, int]]


def normalize_frames(frames: np.ndarray) -> np.ndarray:
    """``frames: [..., H, W, 3] uint8 RGB`` -> float32 ``(x / 255 - mean) / std`` (ImageNet statistics).

    Each step is one float32 operation in the released code's order, so the result is bit-identical to it.
    """
    x = np.asarray(frames).astype(np.float32)
    x = x / np.float32(255.0)
    x = x - IMAGENET_MEAN
    return x / IMAGENET_STD


def pad_info_for(height: int, width: int, multiple: int = 32) -> PadInfo:
    """Reflect padding that brings each side to the next multiple *strictly larger* than it.

    ``480 -> 512`` (16/16), ``854 -> 864`` (5/5), ``427 -> 448`` (10/11): top/left get the floor of half.
    """
    pads = []
    for size in (height, width):
        total = multiple - size % multiple
        pads.append((total // 2, total - total // 2))
    return pads[0], pads[1]


def reflect_pad(x: np.ndarray, pad_info: PadInfo) -> np.ndarray:
    """Reflect-pad the H and W axes of ``x: [..., H, W, C]`` (mirror without repeating the edge pixel)."""
    (top, bottom), (left, right) = pad_info
    widths = [(0, 0)] * (x.ndim - 3) + [(top, bottom), (left, right), (0, 0)]
    return np.pad(x, widths, mode="reflect")


def crop_padding(x: np.ndarray, pad_info: PadInfo) -> np.ndarray:
    """Undo :func:`reflect_pad` on ``x: [..., H, W, C]``."""
    (top, bottom), (left, right) = pad_info
    h, w = x.shape[-3], x.shape[-2]
    return x[..., top : h - bottom, left : w - right, :]


DEFAULT_PROCESSING_SIZE = 480
"""Shorter side of the frames the networks see by default: ATNet was trained and evaluated on 480p."""


def processing_shape(height: int, width: int, size: int | None = DEFAULT_PROCESSING_SIZE) -> tuple[int, int]:
    """``(h, w)`` the networks run at for a ``height x width`` video: where the shorter side exceeds ``size``,
    the frame shrinks so that it is ``size`` (the other side rounded, aspect kept); smaller videos and
    ``size=None`` (full size) keep their own size. ``1920x1080 -> 853x480``, ``854x480 -> 854x480``."""
    if size is not None and size < 1:
        raise ValueError(f"the processing size must be at least 1 (or None for full size), got {size}")
    short = min(height, width)
    if size is None or short <= size:
        return height, width
    scale = size / short
    h = size if height == short else max(int(round(height * scale)), 1)
    w = size if width == short and height != short else max(int(round(width * scale)), 1)
    return h, w


def parse_processing_size(value: str) -> int | None:
    """``--size`` on the command line: a positive number of pixels, or ``full`` (None)."""
    import argparse

    if value.strip().lower() == "full":
        return None
    try:
        size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of pixels or 'full', got {value!r}") from None
    if size < 32:
        raise argparse.ArgumentTypeError(f"must be at least 32 pixels (or 'full'), got {size}")
    return size


def resize_frame(frame: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``frame: [H, W, C]`` -> ``[h, w, C]`` with area averaging (antialiased shrinking); unchanged at its size."""
    import cv2

    if frame.shape[:2] == tuple(shape):
        return frame
    out = cv2.resize(frame, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return out.reshape(*shape, *frame.shape[2:])


def resize_maps(maps: np.ndarray, shape: tuple[int, int], *, mode: str = "linear") -> np.ndarray:
    """``maps: [K, H, W]`` -> ``[K, h, w]``, each map resized with ``mode``: "linear" (bilinear, half-pixel
    centres), "area" (area averaging, for shrinking) or "nearest". Returned unchanged at its own size."""
    import cv2

    if maps.shape[1:] == tuple(shape):
        return maps
    interpolation = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}[mode]
    size = (shape[1], shape[0])
    if 1 <= maps.shape[0] <= 512:  # OpenCV resizes up to 512 channels in one call
        out = cv2.resize(np.ascontiguousarray(np.moveaxis(maps, 0, -1)), size, interpolation=interpolation)
        return np.ascontiguousarray(np.moveaxis(out.reshape(*shape, maps.shape[0]), -1, 0))
    return np.stack([cv2.resize(m, size, interpolation=interpolation) for m in maps])
