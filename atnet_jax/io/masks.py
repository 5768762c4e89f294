"""Masks as DAVIS palette PNGs: label ids 0 (background), 1..K (objects), 255 (void).

Masks are read with Pillow, which keeps palette indices (OpenCV would turn a palette into colours).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from atnet_jax.io.safe import atomic_write

VOID_LABEL = 255


def _voc_palette() -> np.ndarray:
    """The PASCAL VOC colour map DAVIS uses: the bits of an index spread over the high bits of R, G and B."""
    palette = np.zeros((256, 3), np.uint8)
    for index in range(256):
        c, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[index] = (r, g, b)
    return palette


DAVIS_PALETTE: np.ndarray = _voc_palette()
"""[256, 3] uint8: 0 black, 1 (128, 0, 0), 2 (0, 128, 0), ..., 255 (224, 224, 192) = void."""


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask PNG -> ``[H, W] uint8`` labels.

    Palette ('P', DAVIS-2017): the indices, void stays 255. Grayscale ('L'/'1', DAVIS-2016): value > 127 -> 1,
    else 0. A grayscale mask holding only small values (1..127, a label map saved without palette) is refused
    rather than read as empty; so is any other mode (RGB colours, 16-bit).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            labels = np.array(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot decode mask {path}: {e}") from e
    if mode == "P":
        return labels.astype(np.uint8, copy=False)
    if mode == "1":
        return labels.astype(np.uint8)
    if mode == "L":
        top = int(labels.max(initial=0))
        if 0 < top <= 127:
            raise ValueError(
                f"mask {path} is grayscale with values up to {top}: expected 0/255 (DAVIS-2016) "
                "or a palette PNG (DAVIS-2017); save label maps with write_mask"
            )
        return (labels > 127).astype(np.uint8)
    raise ValueError(f"mask {path} has image mode {mode!r}: expected a palette ('P') or 0/255 grayscale ('L') PNG")


def write_mask(path: str | os.PathLike, labels: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write ``labels: [H, W]`` integer ids in 0..255 as a palette PNG with :data:`DAVIS_PALETTE`, atomically."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be [H, W], got shape {labels.shape} for {path}")
    if labels.dtype != np.uint8:
        if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
            raise ValueError(f"labels must be integers, got {labels.dtype} for {path}")
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise ValueError(f"labels must lie in 0..255 for {path}, got {labels.min()}..{labels.max()}")
        labels = labels.astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(labels))
    image.putpalette(DAVIS_PALETTE.tobytes())  # turns the 'L' image into 'P'
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"), overwrite=overwrite)
