"""The benchmark's reports from finished sample records: ``report.csv`` (per sample, round, frame and object, as
``davisinteractive``'s report), ``summary.json`` (the curve, AUC and the metric at the time threshold) and
``curve.png``."""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from atnet_jax.evaluation.metrics import summary
from atnet_jax.io.safe import atomic_write, write_json

if TYPE_CHECKING:
    from atnet_jax.evaluation.protocol import ProtocolConfig

REPORT_COLUMNS = ("sequence", "scribble_idx", "interaction", "object_id", "frame", "jaccard", "contour",
                  "j_and_f", "timing")


def report_rows(records: Iterable[dict[str, Any]]) -> Iterable[tuple]:
    """``report.csv`` rows (per sample, round, frame and object, as ``davisinteractive``'s report)."""
    for rec in records:
        for rnd in rec["rounds"]:
            j, f = np.asarray(rnd["jaccard"], np.float64), np.asarray(rnd["contour"], np.float64)
            jf = 0.5 * (j + f)
            for t in range(j.shape[0]):
                for k in range(j.shape[1]):
                    yield (rec["sequence"], rec["scribble_idx"], rnd["interaction"], k + 1, t, f"{j[t, k]:.6f}",
                           f"{f[t, k]:.6f}", f"{jf[t, k]:.6f}", f"{rnd['timing']:.4f}")


def summary_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per sample, round and object (frame means) for :func:`metrics.summary`."""
    out = []
    for rec in records:
        for rnd in rec["rounds"]:
            j, f = np.asarray(rnd["jaccard"], np.float64), np.asarray(rnd["contour"], np.float64)
            for k in range(j.shape[1]):
                out.append({"sequence": rec["sequence"], "scribble_idx": rec["scribble_idx"],
                            "interaction": rnd["interaction"], "object_id": k + 1, "timing": rnd["timing"],
                            "jaccard": float(j[:, k].mean()), "contour": float(f[:, k].mean())})
    return out


def write_outputs(records: Sequence[dict[str, Any]], config: ProtocolConfig, output: Path) -> dict[str, Any]:
    """``report.csv``, ``summary.json`` and ``curve.png`` in ``output`` from finished sample records."""

    def write_csv(tmp: Path) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(REPORT_COLUMNS)
        writer.writerows(report_rows(records))
        tmp.write_text(buffer.getvalue())

    atomic_write(output / "report.csv", write_csv, overwrite=True)
    entries = summary_records(records)
    result = summary(entries, config.metric, max_time=config.time_per_object * config.max_rounds,
                     max_interactions=config.max_rounds, time_threshold=config.time_threshold)
    write_json(output / "summary.json", result)
    plot_curve(entries, result, config, output / "curve.png")
    return result


def curve_xlim(result: dict[str, Any], config: ProtocolConfig) -> tuple[float, float]:
    """The time axis of ``curve.png``: the measured rounds (not the budget the summary holds the curve to),
    widened to show the ``time_threshold`` mark when it lies up to twice the measured range away."""
    times = result["curve"]["time"]
    measured = max(times[:-1]) if len(times) > 1 else 0.0  # the last point is the global timeout
    end = measured if measured > 0 else config.time_threshold
    if config.time_threshold <= 2 * end:
        end = max(end, config.time_threshold)
    return 0.0, 1.05 * end


def plot_curve(records: list[dict[str, Any]], result: dict[str, Any], config: ProtocolConfig, path: Path) -> None:
    """Metric vs time (the summary's curve over the measured range, the threshold marked) and metric vs
    round, side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    column = {"J": "jaccard", "J_AND_F": None}[config.metric]
    by_round: dict[int, list[float]] = {}
    for r in records:
        value = r[column] if column else 0.5 * (r["jaccard"] + r["contour"])
        by_round.setdefault(r["interaction"], []).append(value)
    times, values = result["curve"]["time"], result["curve"]["metric"]
    threshold, at_threshold = config.time_threshold, result["metric_at_threshold"]["value"]
    lo, hi = curve_xlim(result, config)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(times[:-1], values[:-1], marker="o", label="mean over samples, per round")
    left.plot(times[-2:], values[-2:], linestyle=":", color="C0", label=f"held to the budget ({times[-1]:g} s)")
    if threshold <= hi:
        left.axvline(threshold, color="gray", linestyle="--", linewidth=1)
        left.plot([threshold], [at_threshold], marker="s", color="gray", label=f"@{threshold:g} s: {at_threshold:.3f}")
    else:
        note = f"the {threshold:g} s threshold lies beyond this range\n(value there: {at_threshold:.3f})"
        left.text(0.02, 0.97, note, transform=left.transAxes, va="top", fontsize=8, color="gray")
    left.set(xlabel="model time [s]", ylabel=config.metric, xlim=(lo, hi), ylim=(0, 1),
             title=f"AUC {result['auc']:.3f}, @{threshold:g}s {at_threshold:.3f}")
    left.legend(loc="lower right", fontsize=8)
    rounds = sorted(by_round)
    right.plot(rounds, [np.mean(by_round[i]) for i in rounds], marker="o")
    right.set(xlabel="round", ylabel=config.metric, title="mean per round (samples still running)", ylim=(0, 1))
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"), overwrite=True)
    plt.close(fig)
