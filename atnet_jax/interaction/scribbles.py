"""Rasterising DAVIS strokes to A-Net's interaction maps, as the released code does; clicks as one-point strokes.

Rasterising follows the released IVOS-ATNet code (``libs/utils.py`` ``scribble_to_image`` + ``scrimg_postprocess``):
points ``round(x * W), round(y * H)`` (NumPy rounding, half to even), joined by davisinteractive's Bresenham lines,
drawn one pixel up-left (``mask[y - 1, x - 1]``), then dilated with a 5x5 ellipse and blurred with a 5x5 Gaussian
of sigma 6. A click is a one-point path: a dot.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import cv2
import numpy as np

from atnet_jax.io.scribbles import ScribbleError, validate_scribbles

Convention = Literal["atnet", "davisinteractive"]


def clicks_to_strokes(
    points: Iterable[tuple[int, int, float, float]],
    *,
    num_frames: int | None = None,
    sequence: str | None = None,
    time: float = 0.0,
) -> dict:
    """Clicks ``(frame, object_id, x / W, y / H)`` -> a scribble dict in which each click is a one-point stroke.

    Rasterised like any stroke, a click is a dot: the 5x5 ellipse (17 pixels) blurred, peaking at ~0.69
    rather than 1 (the 5x5 blur window is not filled). The frame list is ``num_frames`` long (default:
    up to the last clicked frame); ``time`` fills ``start_time`` and ``end_time``.
    """
    points = list(points)
    length = num_frames if num_frames is not None else max((int(p[0]) + 1 for p in points), default=0)
    frames: list[list[dict]] = [[] for _ in range(length)]
    for i, (frame, object_id, x, y) in enumerate(points):
        if not 0 <= frame < length:
            raise ScribbleError(f"click {i}: frame {frame} outside 0..{length - 1}")
        click = {"path": [[float(x), float(y)]], "object_id": int(object_id), "start_time": time, "end_time": time}
        frames[frame].append(click)
    return validate_scribbles({"scribbles": frames, "sequence": sequence}, source="clicks", num_frames=num_frames)


# ----------------------------------------------------------------------------------------------- rasterising


def bresenham(points: np.ndarray) -> np.ndarray:
    """Integer ``points: [N, 2]`` (x, y) -> every pixel of the polyline through them, ``[M, 2]``.

    Pixel-for-pixel the davisinteractive ``bresenham`` the released code calls (each segment from its first to
    its last point inclusive; shared points repeat). Closed form of its error-term loop: along the major axis
    step t, the minor offset is ``floor((2 * minor * t + major) / (2 * major))`` (ties round up, as ``D >= 0``).
    Diagonals (|dx| == |dy|) count as y-major, as there. Vectorised over all segments.
    """
    points = np.asarray(points, dtype=np.int64).reshape(-1, 2)
    if len(points) < 2:
        return points
    start, end = points[:-1], points[1:]
    delta = end - start
    sign = np.where(delta > 0, 1, -1)
    absd = np.abs(delta)
    x_major = absd[:, 0] > absd[:, 1]
    major = np.where(x_major, absd[:, 0], absd[:, 1])
    minor = np.where(x_major, absd[:, 1], absd[:, 0])
    counts = major + 1
    seg = np.repeat(np.arange(len(start)), counts)
    t = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    m = major[seg]
    offset = (2 * minor[seg] * t + m) // np.maximum(2 * m, 1)
    along_x = np.where(x_major[seg], t, offset)
    along_y = np.where(x_major[seg], offset, t)
    return np.stack([start[seg, 0] + sign[seg, 0] * along_x, start[seg, 1] + sign[seg, 1] * along_y], axis=1)


def stroke_pixels(
    path: Sequence[Sequence[float]], height: int, width: int, convention: Convention = "atnet"
) -> np.ndarray:
    """Pixels ``[M, 2]`` (x, y), inside the image, covered by the 1-px line through normalised ``path`` points.

    ``"atnet"`` (default, the released code): ``round(x * W) - 1``, ``round(y * H) - 1``; a point on the left or
    top border (index -1) is clipped to 0, where the released code's NumPy indexing wrapped it to the opposite
    border. ``"davisinteractive"`` (its ``scribbles2mask``): ``floor(x * (W - 1))``, ``floor(y * (H - 1))``.
    """
    xy = np.asarray(path, dtype=np.float64).reshape(-1, 2)
    if convention == "atnet":
        pts = bresenham(np.round(xy * (width, height)).astype(np.int64)) - 1
    elif convention == "davisinteractive":
        pts = bresenham((xy * (width - 1, height - 1)).astype(np.int64))
    else:
        raise ValueError(f"unknown convention {convention!r}: 'atnet' or 'davisinteractive'")
    return np.clip(pts, 0, (width - 1, height - 1))


def _draw(strokes: Iterable[dict], height: int, width: int, convention: Convention) -> np.ndarray:
    canvas = np.zeros((height, width), np.uint8)
    for stroke in strokes:
        pts = stroke_pixels(stroke["path"], height, width, convention)
        canvas[pts[:, 1], pts[:, 0]] = 1
    return canvas


def _soften(lines: np.ndarray, dilation: int, blur_size: int, blur_sigma: float) -> np.ndarray:
    """[H, W] uint8 0/1 -> float32 map: dilate (ellipse), then Gaussian blur, in float64 as the released code."""
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (dilation, dilation))
    grown = cv2.dilate(lines, kernel).astype(np.float64)
    if blur_size > 0:
        grown = cv2.GaussianBlur(grown, ksize=(blur_size, blur_size), sigmaX=blur_sigma)
    return grown.astype(np.float32)


def rasterize_strokes(
    strokes: Sequence[dict],
    height: int,
    width: int,
    *,
    dilation: int = 5,
    blur_size: int = 5,
    blur_sigma: float = 6.0,
    convention: Convention = "atnet",
) -> dict[int, np.ndarray]:
    """One frame's strokes -> ``{object_id: [H, W] float32 map in [0, 1]}`` for every id present.

    1-px lines (:func:`stroke_pixels`), dilated with a ``dilation`` ellipse, blurred ``blur_size`` x
    ``blur_size`` with ``blur_sigma`` (``blur_size=0``: no blur). Along a horizontal or vertical stroke the value
    is 1; dots and diagonal lines peak lower.
    """
    by_id: dict[int, list[dict]] = {}
    for stroke in strokes:
        by_id.setdefault(int(stroke["object_id"]), []).append(stroke)
    return {
        object_id: _soften(_draw(group, height, width, convention), dilation, blur_size, blur_sigma)
        for object_id, group in sorted(by_id.items())
    }


def interaction_maps(
    strokes: Sequence[dict],
    height: int,
    width: int,
    num_objects: int,
    prev_labels: np.ndarray | None = None,
    *,
    dilation: int = 5,
    blur_size: int = 5,
    blur_sigma: float = 6.0,
    convention: Convention = "atnet",
) -> tuple[np.ndarray, np.ndarray]:
    """A-Net's scribble channels for objects 1..K -> ``(positive, negative)``, each ``[K, H, W]`` float32.

    positive[k-1] = object k's strokes, rasterised. negative[k-1] = the strokes of every other id (background 0
    included), drawn together, dilated and blurred, then zeroed wherever ``prev_labels: [H, W]`` (the previous
    round's labels on this frame) is not k: a negative stroke only matters where the object was wrongly
    predicted (the released code's rule). ``prev_labels=None`` (round 1): negative = 0.
    """
    ids = [int(s["object_id"]) for s in strokes]
    bad = sorted({i for i in ids if i < 0 or i > num_objects})
    if bad:
        raise ScribbleError(f"strokes with object_id {bad}, but there are {num_objects} objects")
    if prev_labels is not None and np.shape(prev_labels) != (height, width):
        raise ValueError(f"prev_labels must be [H, W] = {(height, width)}, got {np.shape(prev_labels)}")
    lines = {i: _draw([s for s in strokes if s["object_id"] == i], height, width, convention) for i in set(ids)}
    positive = np.zeros((num_objects, height, width), np.float32)
    negative = np.zeros((num_objects, height, width), np.float32)
    for k in range(1, num_objects + 1):
        if k in lines:
            positive[k - 1] = _soften(lines[k], dilation, blur_size, blur_sigma)
        if prev_labels is None:
            continue
        others = [m for i, m in lines.items() if i != k]
        if not others:
            continue
        inside = np.asarray(prev_labels) == k
        if not inside.any():
            continue
        union = np.maximum.reduce(others) if len(others) > 1 else others[0]
        negative[k - 1] = np.where(inside, _soften(union, dilation, blur_size, blur_sigma), 0)
    return positive, negative
