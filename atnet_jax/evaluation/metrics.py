"""DAVIS metrics: region similarity J, boundary F, and the interactive AUC / @60s summary.

Faithful NumPy-2 reimplementations of
- `db_eval_iou` / `db_eval_boundary` of the DAVIS-2017 toolkit (void pixels optional), which with
  `void=None` equal `batched_jaccard` / `batched_f_measure` of the official `davisinteractive` package;
- `EvaluationService.summarize_report` of `davisinteractive` (the curve, AUC and metric at 60 s).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import cv2
import numpy as np
from skimage.morphology import disk

Metric = Literal["J", "F", "J_AND_F"]
VOID_LABEL = 255
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


# --- curve, AUC and metric at a time threshold (davisinteractive `summarize_report`) ---

def timeout_curve(times: np.ndarray, metric: np.ndarray, max_time: float | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The official evaluation curve from per-round values.

    `times[i]` is the cumulative (mean) time after round i+1 and `metric[i]` the (mean) metric after it.
    As `summarize_report` does, a point (0 s, 0) is put first (nothing segmented yet) and, when `max_time`
    (the global timeout) is given, the last metric is held up to it: a run that ends early is extended
    as a step to the timeout. No sorting is done: cumulative times beyond `max_time` are kept where they
    are, like the official code.

    Returns:
      `(time, metric)`, each `[N + 1]` or `[N + 2]` float64.
    """
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    metric = np.asarray(metric, dtype=np.float64).reshape(-1)
    if times.shape != metric.shape:
        raise ValueError(f"times {times.shape} and metric {metric.shape} differ")
    t = np.concatenate(([0.0], times))
    m = np.concatenate(([0.0], metric))
    if max_time is not None:
        t = np.concatenate((t, [max_time]))
        m = np.concatenate((m, m[-1:]))
    return t, m


def auc(times: np.ndarray, metric: np.ndarray, max_time: float) -> float:
    """Normalised area under the metric-vs-time curve of `timeout_curve(times, metric, max_time)`.

    AUC = trapezoid(metric, time) / max(time), as `summarize_report`; max(time) is the global timeout
    `max_time` (avg objects per sequence * time budget per object, e.g. 240 s) unless the cumulative times
    overran it. 0 when every time is 0.
    """
    t, m = timeout_curve(times, metric, max_time)
    if t.max() == 0:
        return 0.0
    return float(np.trapezoid(m, x=t) / t.max())


def metric_at(times: np.ndarray, metric: np.ndarray, threshold: float = 60.0,
              max_time: float | None = None) -> float:
    """Metric at `threshold` seconds: linear interpolation (`np.interp`) on `timeout_curve`.

    Before the first round the curve rises linearly from (0, 0); after the last round it stays flat.
    """
    t, m = timeout_curve(times, metric, max_time)
    return float(np.interp(threshold, t, m))


_METRIC_COLUMN = {"J": 0, "F": 1, "J_AND_F": 2}


def summary(records: Iterable[Mapping[str, Any]], metric: Metric = "J",
            max_time: float | None = None, max_interactions: int | None = None,
            time_threshold: float = 60.0) -> dict[str, Any]:
    """The official global summary (`EvaluationService.summarize_report`) of an interactive run.

    Args:
      records: one mapping per (sequence, scribble_idx, interaction, object_id) or per frame of it, with
        keys `sequence`, `scribble_idx`, `interaction` (1-based round), `object_id`, `timing` (seconds the
        round took, the same for every object of a sample), `jaccard` and, for F / J_AND_F, `contour`.
        Entries sharing a key are averaged (frames -> one value per object, as the official groupby).
      metric: which metric the curve follows ("J", "F", "J_AND_F" = (J + F) / 2).
      max_time: time budget per object (`max_t`, e.g. 8 * 30 s); the global timeout is then
        avg objects per sequence * max_time. Without it the timeout is max_interactions * (longest round).
      max_interactions: rounds per sample; default the largest round seen.

    Semantics (as the official code):
      1. a sample (sequence, scribble) that stopped early (timeout) gets, for each missing round, the
         metrics of its last evaluated round with timing 0 (zeros when round 1 is missing);
      2. metric curve = mean over all (sample, object) entries per round; time curve = cumulative sum
         over rounds of the mean over samples of the round's timing;
      3. curve = `timeout_curve` (0 first, last value held to the global timeout), AUC and
         value at `time_threshold` as in `auc` / `metric_at`.
    Sequences, their scribbles and objects are those present in `records` (the official code takes them
    from the dataset's metadata).

    Returns:
      `{"auc", "metric_at_threshold": {"threshold", "value", <metric>}, "curve": {"time", "metric",
      <metric>}}`; the official dict names values by the metric (e.g. "J"), kept alongside "value".
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    sums: dict[tuple, np.ndarray] = defaultdict(lambda: np.zeros(4))
    counts: dict[tuple, int] = defaultdict(int)
    objects: dict[str, set[int]] = defaultdict(set)
    samples: set[tuple[str, int]] = set()
    for r in records:
        key = (int(r["interaction"]), str(r["sequence"]), int(r["scribble_idx"]), int(r["object_id"]))
        j = float(r["jaccard"])
        c = float(r.get("contour", np.nan))
        sums[key] += (j, c, 0.5 * j + 0.5 * c, float(r["timing"]))
        counts[key] += 1
        objects[key[1]].add(key[3])
        samples.add(key[1:3])
    table = {k: v / counts[k] for k, v in sums.items()}

    max_i = max_interactions or max((k[0] for k in table), default=1)
    # Rebuild each sample's rounds, [rounds, objects, (jaccard, contour, j_and_f, timing)].
    per_sample = []
    for seq, scr in sorted(samples):
        objs = sorted(objects[seq])
        prev = np.zeros((len(objs), 4))
        filled = np.zeros((max_i, len(objs), 4))
        for it in range(1, max_i + 1):
            rows = [table.get((it, seq, scr, o)) for o in objs]
            if any(row is None for row in rows):
                prev[:, 3] = 0.0  # a round not played: previous metrics, no time
            else:
                prev = np.stack(rows)
            filled[it - 1] = prev
        per_sample.append(filled)
    if per_sample:
        metric_curve = np.concatenate(per_sample, axis=1)[..., _METRIC_COLUMN[metric]].mean(axis=1)
        # Timing is shared by a sample's objects: average per sample, then over samples, then cumsum.
        time_curve = np.cumsum(np.mean([f[..., 3].mean(axis=1) for f in per_sample], axis=0))
    else:
        metric_curve = time_curve = np.zeros(max_i)

    if max_time:
        avg_objects = np.mean([len(o) for o in objects.values()]) if objects else 0.0
        global_timeout = float(avg_objects * max_time)
    else:
        global_timeout = float(max_i * max((v[3] for v in table.values()), default=0.0))

    t, m = timeout_curve(time_curve, metric_curve, global_timeout)
    value = float(np.interp(time_threshold, t, m))
    area = 0.0 if t.max() == 0 else float(np.trapezoid(m, x=t) / t.max())
    return {
        "auc": area,
        "metric_at_threshold": {"threshold": time_threshold, "value": value, metric: value},
        "curve": {"time": t.tolist(), "metric": m.tolist(), metric: m.tolist()},
    }
