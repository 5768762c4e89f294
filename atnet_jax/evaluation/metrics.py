"""The interactive DAVIS summary: the curve, AUC and the metric at 60 s.

A faithful reimplementation of `EvaluationService.summarize_report` of `davisinteractive`.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from atnet_jax.interaction.metrics import METRICS, Metric

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
