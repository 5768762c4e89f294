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
