"""Overlays of label maps on frames, scribbles and captions, and image grids, for looking at results."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

STROKE_BACKGROUND = (255, 255, 255)  # background strokes (object_id 0) are drawn white


def overlay(frame: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``frame [H, W, 3] uint8`` RGB with objects of ``labels [H, W]`` tinted by ``palette [256, 3]`` and outlined.

    Background (0) and void (255) are left as they are.
    """
    out = frame.astype(np.float32)
    ids = [i for i in np.unique(labels) if i not in (0, 255)]
    for i in ids:
        mask = labels == i
        out[mask] = (1 - alpha) * out[mask] + alpha * palette[i].astype(np.float32)
    out = out.round().clip(0, 255).astype(np.uint8)
    for i in ids:
        contours, _ = cv2.findContours((labels == i).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        color = tuple(int(c) for c in palette[i])
        cv2.drawContours(out, contours, -1, color, thickness=2)
    return out


def write_overlay_video(path: Path, frames: Any, labels: Any, palette: np.ndarray, *, fps: float = 10.0,
                        hint: str = "") -> None:
    """The masks over the frames as an H.264 MP4 that browsers play (:func:`atnet_jax.io.mp4.write_h264`; odd
    sizes padded to even): ``labels`` has ``len`` and ``labels[t] -> [H, W]`` uint8, ``frames[t] -> [H, W, 3]``
    uint8 RGB. ``hint`` ends the error where the encoder fails."""
    from atnet_jax.io.mp4 import EncoderError, write_h264

    height, width = np.shape(labels[0])
    drawn = (overlay(np.asarray(frames[t]), np.asarray(labels[t]), palette) for t in range(len(labels)))
    try:
        write_h264(path, drawn, height, width, fps=fps)
    except EncoderError as err:
        raise EncoderError(f"{err}{hint}") from None


def draw_strokes(image: np.ndarray, strokes: Sequence[dict], palette: np.ndarray, thickness: int = 3) -> np.ndarray:
    """A copy of ``image [H, W, 3] uint8`` with DAVIS strokes (normalised ``path``, ``object_id``) drawn on it:
    each in its object's palette colour with a dark border, background strokes (id 0) white."""
    out = np.ascontiguousarray(image).copy()
    height, width = out.shape[:2]
    for stroke in strokes:
        points = np.round(np.asarray(stroke["path"], np.float64) * (width - 1, height - 1)).astype(np.int32)
        object_id = int(stroke["object_id"])
        color = STROKE_BACKGROUND if object_id == 0 else tuple(int(c) for c in palette[object_id])
        cv2.polylines(out, [points[:, None]], False, (0, 0, 0), thickness + 2, cv2.LINE_AA)
        cv2.polylines(out, [points[:, None]], False, color, thickness, cv2.LINE_AA)
    return out


def caption(image: np.ndarray, text: str, scale: float = 0.5) -> np.ndarray:
    """A copy of ``image [H, W, 3] uint8`` with ``text`` in white on a dark box in the top-left corner."""
    out = np.ascontiguousarray(image).copy()
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, 1
    (w, h), base = cv2.getTextSize(text, font, scale, thick)
    cv2.rectangle(out, (0, 0), (w + 8, h + base + 8), (0, 0, 0), thickness=-1)
    cv2.putText(out, text, (4, h + 4), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


def grid(rows: Sequence[Sequence[np.ndarray]], gap: int = 4, fill: int = 255) -> np.ndarray:
    """Images ``[H, W, 3] uint8`` (all of one size) laid out in rows, ``gap`` pixels of ``fill`` between them
    -> ``[R * H + (R - 1) * gap, C * W + (C - 1) * gap, 3] uint8``."""
    height, width = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (height + gap) - gap, cols * (width + gap) - gap, 3), fill, np.uint8)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            if image.shape[:2] != (height, width):
                raise ValueError(f"grid cell ({r}, {c}) is {image.shape[:2]}, expected {(height, width)}")
            y, x = r * (height + gap), c * (width + gap)
            out[y:y + height, x:x + width] = image
    return out
