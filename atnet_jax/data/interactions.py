"""Simulated user input for training (paper sec. 3.4; the authors never released their training code).

* A-Net, round 1: a point map, one point per P object pixels, P in 100..3000 (:func:`sample_points`),
  rasterised like inference rasterises clicks (:func:`points_to_map`).
* A-Net, later rounds: the GT deformed by a random affine transform plays the previous round's mask
  (:func:`random_affine`); positive / negative scribbles are drawn by the DAVIS robot along the
  false-negative / false-positive regions (:func:`scribbles_from_error`) and rasterised by
  :func:`~atnet_jax.interaction.scribbles.interaction_maps`, as at inference (:func:`anet_training_input`).
* T-Net: a 5-frame mini-sequence, an annotated frame and 4 of the 7 frames on one side of it
  (:func:`tnet_mini_sequence`).

All NumPy; randomness only from the ``np.random.Generator`` passed in, so a seed fixes every output.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from atnet_jax.interaction.kinds import ROUND1_PREVIOUS_MASK
from atnet_jax.interaction.robot import InteractiveRobot
from atnet_jax.interaction.scribbles import interaction_maps, rasterize_strokes

__all__ = [
    "ROUND1_PREVIOUS_MASK",
    "anet_training_input",
    "num_points",
    "points_to_map",
    "random_affine",
    "sample_points",
    "scribbles_from_error",
    "tnet_mini_sequence",
]

def _check_mask(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"{name} must be [H, W], got shape {mask.shape}")
    return mask.astype(bool)


# ----------------------------------------------------------------------------------------------- points


def num_points(area: int, pixels_per_point: float) -> int:
    """Points for a mask of ``area`` pixels at one point per ``pixels_per_point``: ``max(1, ceil(area / P))``,
    0 for an empty mask (never more than ``area``)."""
    if area <= 0:
        return 0
    return min(area, max(1, math.ceil(area / pixels_per_point)))


def sample_points(
    mask: np.ndarray, rng: np.random.Generator, *, pixels_per_point_range: tuple[float, float] = (100, 3000)
) -> np.ndarray:
    """Random positive clicks on ``mask: [H, W] bool`` -> ``[N, 2]`` int64 ``(y, x)``, distinct mask pixels.

    P (pixels per point) is drawn log-uniformly from ``pixels_per_point_range`` (the paper: "one point for every
    100 ~ 3000 object pixels"; log-uniform so sparse and dense inputs are equally common), then
    ``N = num_points(area, P)`` pixels are drawn uniformly without replacement. Empty mask: ``[0, 2]``.
    """
    mask = _check_mask(mask)
    low, high = pixels_per_point_range
    if not 0 < low <= high:
        raise ValueError(f"pixels_per_point_range must be 0 < low <= high, got {pixels_per_point_range}")
    pixels_per_point = math.exp(rng.uniform(math.log(low), math.log(high)))
    ys, xs = np.nonzero(mask)
    pick = rng.choice(len(ys), size=num_points(len(ys), pixels_per_point), replace=False)
    return np.stack([ys[pick], xs[pick]], axis=1).astype(np.int64).reshape(-1, 2)


def _pixel_to_path(x: np.ndarray, y: np.ndarray, height: int, width: int) -> list[list[float]]:
    # The "atnet" rasteriser draws round(x * W) - 1: normalise x + 1 so the dot lands on pixel x itself.
    return [[(float(px) + 1) / width, (float(py) + 1) / height] for px, py in zip(x, y)]


def points_to_map(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """``points: [N, 2] (y, x)`` -> ``[H, W]`` float32 positive map, each point a one-point stroke (a click)
    rasterised by :func:`~atnet_jax.interaction.scribbles.rasterize_strokes` (dot peaking ~0.69 on the point)."""
    points = np.asarray(points, dtype=np.int64).reshape(-1, 2)
    if len(points) == 0:
        return np.zeros((height, width), np.float32)
    strokes = [{"path": [p], "object_id": 1} for p in _pixel_to_path(points[:, 1], points[:, 0], height, width)]
    return rasterize_strokes(strokes, height, width)[1]


# ----------------------------------------------------------------------------------------------- deformation


def random_affine(
    mask: np.ndarray,
    rng: np.random.Generator,
    *,
    max_rotation: float = 20.0,
    scale_range: tuple[float, float] = (0.8, 1.2),
    max_shift: float = 0.15,
) -> np.ndarray:
    """A randomly deformed ``mask: [H, W] bool`` -> ``[H, W] bool``, a stand-in for an inaccurate prediction.

    Rotation by up to ``max_rotation`` degrees and isotropic scaling by a factor from ``scale_range``, both
    about the mask's centroid, then a shift of up to ``max_shift`` times the mask's bounding-box height / width
    (relative to the object, so small objects are not pushed out of frame). ``cv2.warpAffine`` with nearest
    neighbour; pixels leaving the image are lost. The area scales by ``scale**2`` unless clipped by the border.
    An empty mask is returned as is.
    """
    mask = _check_mask(mask)
    if not mask.any():
        return mask.copy()
    height, width = mask.shape
    ys, xs = np.nonzero(mask)
    angle = rng.uniform(-max_rotation, max_rotation)
    scale = rng.uniform(*scale_range)
    shift = rng.uniform(-max_shift, max_shift, size=2) * [np.ptp(xs) + 1, np.ptp(ys) + 1]
    matrix = cv2.getRotationMatrix2D((float(xs.mean()), float(ys.mean())), angle, scale)
    matrix[:, 2] += shift
    warped = cv2.warpAffine(mask.astype(np.uint8), matrix, (width, height), flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return warped.astype(bool)


# ----------------------------------------------------------------------------------------------- scribbles


def _pick_strokes(paths: list[np.ndarray], rng: np.random.Generator, max_strokes: int) -> list[np.ndarray]:
    """The longest path (by arc length) always, each other one with probability 1/2, at most ``max_strokes``."""
    if len(paths) <= 1:
        return paths
    lengths = [float(np.linalg.norm(np.diff(p, axis=0), axis=1).sum()) for p in paths]
    order = np.argsort(lengths, kind="stable")[::-1]
    rest = [int(i) for i in order[1:] if rng.random() < 0.5]
    return [paths[int(order[0])]] + [paths[i] for i in rest[: max_strokes - 1]]


def scribbles_from_error(
    gt: np.ndarray,
    prev: np.ndarray,
    rng: np.random.Generator,
    *,
    max_strokes: int = 3,
    robot: InteractiveRobot | None = None,
) -> tuple[list[dict], list[dict]]:
    """Scribbles correcting ``prev`` towards ``gt`` (both ``[H, W] bool``) -> ``(positive, negative)`` strokes.

    Positive strokes (``object_id`` 1) run inside the false negatives ``gt & ~prev``, negative ones
    (``object_id`` 0) inside the false positives ``prev & ~gt``: the DAVIS robot's skeleton strokes
    (:meth:`InteractiveRobot.strokes`, one per skeleton tree, i.e. roughly per error region), of which the
    longest is kept and each other with probability 1/2, at most ``max_strokes`` per sign. Paths are
    normalised ``[[x / W, y / H], ...]`` exactly as the robot's JSON output, so
    :func:`~atnet_jax.interaction.scribbles.interaction_maps` rasterises them as it does at inference.
    No error, no stroke.
    """
    gt, prev = _check_mask(gt, "gt"), _check_mask(prev, "prev")
    if gt.shape != prev.shape:
        raise ValueError(f"gt {gt.shape} and prev {prev.shape} differ in shape")
    if max_strokes < 1:
        raise ValueError(f"max_strokes must be >= 1, got {max_strokes}")
    robot = InteractiveRobot() if robot is None else robot
    height, width = gt.shape
    scale = np.array([width, height], dtype=np.float64)
    out = []
    for error, object_id in ((gt & ~prev, 1), (prev & ~gt, 0)):
        paths = _pick_strokes(robot.strokes(error), rng, max_strokes)
        out.append([{"path": (p / scale).tolist(), "object_id": object_id} for p in paths])
    return out[0], out[1]


def anet_training_input(
    gt: np.ndarray,
    rng: np.random.Generator,
    *,
    round1_probability: float = 0.5,
    pixels_per_point_range: tuple[float, float] = (100, 3000),
    max_rotation: float = 20.0,
    scale_range: tuple[float, float] = (0.8, 1.2),
    max_shift: float = 0.15,
    max_strokes: int = 3,
    robot: InteractiveRobot | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A-Net's interaction channels for one object, ``gt: [H, W] bool`` -> ``(prev, pos, neg)``, each
    ``[H, W]`` float32 in [0, 1].

    With probability ``round1_probability`` (the mix of first-round and later-round samples, which the paper
    does not state) a round-1 input: ``prev`` = 0.5 everywhere, ``pos`` = :func:`points_to_map` of
    :func:`sample_points`, ``neg`` = 0. Otherwise a later-round input: ``prev`` = :func:`random_affine` of
    the GT as {0, 1}, ``pos`` / ``neg`` = :func:`scribbles_from_error` rasterised by
    :func:`~atnet_jax.interaction.scribbles.interaction_maps` with ``prev`` as the previous labels (negatives kept
    only where ``prev`` is the object, the released code's rule).
    """
    gt = _check_mask(gt, "gt")
    height, width = gt.shape
    if rng.random() < round1_probability:
        prev = np.full((height, width), ROUND1_PREVIOUS_MASK, np.float32)
        pos = points_to_map(sample_points(gt, rng, pixels_per_point_range=pixels_per_point_range), height, width)
        return prev, pos, np.zeros((height, width), np.float32)
    deformed = random_affine(gt, rng, max_rotation=max_rotation, scale_range=scale_range, max_shift=max_shift)
    positive, negative = scribbles_from_error(gt, deformed, rng, max_strokes=max_strokes, robot=robot)
    pos, neg = interaction_maps(positive + negative, height, width, 1, deformed.astype(np.int64))
    return deformed.astype(np.float32), pos[0], neg[0]


# ----------------------------------------------------------------------------------------------- T-Net


def tnet_mini_sequence(num_frames: int, rng: np.random.Generator, *, span: int = 7, picks: int = 4) -> list[int]:
    """Frame indices of a T-Net training sample: ``[annotated, t1, ..., t_picks]``.

    The direction (forward / backward) is drawn first, then the annotated frame uniformly among those with at
    least ``picks`` frames on that side; ``picks`` of the next ``span`` frames that way (fewer near the end of
    the video or in videos shorter than ``span + 1`` frames: the window is clamped) are drawn without
    replacement and listed in propagation order (nearest to the annotated frame first).
    Raises ValueError when the video has fewer than ``picks + 1`` frames.
    """
    if picks < 1 or span < picks:
        raise ValueError(f"need 1 <= picks <= span, got picks={picks}, span={span}")
    if num_frames < picks + 1:
        raise ValueError(f"a {picks + 1}-frame mini-sequence needs a video of >= {picks + 1} frames, got {num_frames}")
    step = 1 if rng.random() < 0.5 else -1
    # Forward: annotated in [0, T-1-picks]; backward: in [picks, T-1].
    annotated = int(rng.integers(0, num_frames - picks)) + (picks if step < 0 else 0)
    room = (num_frames - 1 - annotated) if step > 0 else annotated
    offsets = np.sort(rng.choice(np.arange(1, min(span, room) + 1), size=picks, replace=False))
    return [annotated] + [annotated + step * int(d) for d in offsets]
