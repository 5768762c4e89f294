"""DAVIS region similarity J and boundary F, per frame and object.

Faithful NumPy-2 reimplementations of `db_eval_iou` / `db_eval_boundary` of the DAVIS-2017 toolkit (void pixels
optional), which with `void=None` equal `batched_jaccard` / `batched_f_measure` of the official `davisinteractive`
package.
"""
from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from skimage.morphology import disk

from atnet_jax.io.masks import VOID_LABEL

Metric = Literal["J", "F", "J_AND_F"]
METRICS: tuple[str, ...] = ("J", "F", "J_AND_F")


def _void_keep(void: np.ndarray | None) -> np.ndarray | bool:
    return True if void is None else ~np.asarray(void, dtype=bool)


def jaccard(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> np.ndarray:
    """Region similarity J = |pred & gt| / |pred | gt| over the last two axes.

    Args:
      pred, gt: `[..., H, W]` bool masks (broadcastable against each other).
      void: optional bool `[H, W]` (or broadcastable) of pixels left out of both counts, as the
        DAVIS-2017 toolkit does; `None` counts every pixel (the `davisinteractive` behaviour).
    Returns:
      `[...]` float64 in [0, 1]; an empty union gives 1.
    """
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    keep = _void_keep(void)
    inter = np.sum(pred & gt & keep, axis=(-2, -1))
    union = np.sum((pred | gt) & keep, axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        j = inter / union
    return np.where(union == 0, 1.0, j)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary map of `[..., H, W]` masks (D. Martin's `seg2bmap`, as in DAVIS).

    A pixel is a boundary pixel when it differs from its east, south or south-east neighbour
    (outside the image counts as background); the last row compares only eastwards, the last column
    only southwards, and the bottom-right pixel is never a boundary.
    """
    seg = np.asarray(seg, dtype=bool)
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[..., :, :-1] = seg[..., :, 1:]
    s[..., :-1, :] = seg[..., 1:, :]
    se[..., :-1, :-1] = seg[..., 1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[..., -1, :] = seg[..., -1, :] ^ e[..., -1, :]
    b[..., :, -1] = seg[..., :, -1] ^ s[..., :, -1]
    b[..., -1, -1] = False
    return b


def boundary_tolerance(height: int, width: int, bound_th: float = 0.008) -> int:
    """Dilation radius in pixels: `bound_th` itself if >= 1, else ceil(bound_th * diagonal)."""
    if bound_th >= 1:
        return int(bound_th)
    return int(np.ceil(bound_th * np.hypot(height, width)))


def boundary_f(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None,
               bound_th: float = 0.008) -> np.ndarray:
    """DAVIS boundary F measure (`db_eval_boundary`), batched over leading axes.

    Both masks are cut by `void` (pixels set to background), turned into `seg2bmap` boundaries, and each
    boundary is dilated by a disk of radius `boundary_tolerance(H, W, bound_th)`; precision = fraction of
    predicted boundary pixels within the dilated GT boundary, recall the converse, F their harmonic mean.
    Both boundaries empty -> 1; exactly one empty -> 0 (P, R = 1, 0 or 0, 1 in DAVIS).

    Args:
      pred, gt: `[..., H, W]` bool masks of the same shape.
      void: optional bool `[H, W]` (or broadcastable) void pixels.
    Returns:
      `[...]` float64 in [0, 1].
    """
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    pred, gt = np.broadcast_arrays(pred, gt)
    if void is not None:
        keep = _void_keep(void)
        pred, gt = pred & keep, gt & keep
    h, w = pred.shape[-2:]
    kernel = disk(boundary_tolerance(h, w, bound_th)).astype(np.uint8)
    fg_b = seg2bmap(pred).reshape(-1, h, w)
    gt_b = seg2bmap(gt).reshape(-1, h, w)
    out = np.empty(fg_b.shape[0], dtype=np.float64)
    for i, (fb, gb) in enumerate(zip(fg_b, gt_b)):
        n_fg, n_gt = int(fb.sum()), int(gb.sum())
        if n_fg == 0 or n_gt == 0:
            out[i] = 1.0 if n_fg == n_gt else 0.0
            continue
        fg_dil = cv2.dilate(fb.astype(np.uint8), kernel).astype(bool)
        gt_dil = cv2.dilate(gb.astype(np.uint8), kernel).astype(bool)
        precision = np.sum(fb & gt_dil) / n_fg
        recall = np.sum(gb & fg_dil) / n_gt
        out[i] = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return out.reshape(pred.shape[:-2])


def per_object_masks(labels: np.ndarray, num_objects: int) -> np.ndarray:
    """Label map `[..., H, W]` (0 background, 1..K objects, 255 void) -> bool `[..., K, H, W]`."""
    labels = np.asarray(labels)
    ids = np.arange(1, num_objects + 1).reshape(-1, 1, 1)
    return labels[..., None, :, :] == ids


def per_object_scores(pred_labels: np.ndarray, gt_labels: np.ndarray, num_objects: int,
                      metric: Metric = "J", exclude_void: bool = False) -> np.ndarray:
    """Per-frame, per-object J, F or (J + F) / 2 of label maps.

    Args:
      pred_labels, gt_labels: `[T, H, W]` int label maps (gt may hold 255 = void).
      exclude_void: leave the GT's void pixels out (DAVIS-2017 toolkit); `False` matches
        `davisinteractive`, whose robot and service count every pixel.
    Returns:
      `[T, K]` float64.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    gt_labels = np.asarray(gt_labels)
    void = (gt_labels == VOID_LABEL)[..., None, :, :] if exclude_void else None
    pred_m = per_object_masks(pred_labels, num_objects)
    gt_m = per_object_masks(gt_labels, num_objects)
    if metric == "J":
        return jaccard(pred_m, gt_m, void)
    f = boundary_f(pred_m, gt_m, void)
    if metric == "F":
        return f
    return 0.5 * jaccard(pred_m, gt_m, void) + 0.5 * f
