"""The DAVIS interactive protocol: rounds of robot scribbles per sequence and scribble file, reports, plot.

For each sequence and each of its human scribble files (or, where a folder has none, a first scribble
drawn by the robot on an empty prediction): up to ``max_rounds`` rounds; after each round the robot
scribbles on the worst frame. Only the model's time counts; a sample stops once its cumulative time
exceeds ``time_per_object * max_rounds * objects``. Scores are per frame and object (void pixels count
as the official service does); the summary follows ``davisinteractive``'s ``summarize_report``.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atnet_jax.evaluation.metrics import per_object_scores, summary
from atnet_jax.interactive.robot import InteractiveRobot
from atnet_jax.interactive.session import Session

REPORT_COLUMNS = ("sequence", "scribble_idx", "interaction", "object_id", "frame", "jaccard", "contour",
                  "j_and_f", "timing")


@dataclasses.dataclass(frozen=True)
class ProtocolConfig:
    """Settings of the interactive benchmark (defaults: the DAVIS challenge)."""

    max_rounds: int = 8
    time_per_object: float = 30.0  # seconds per round per object
    metric: str = "J_AND_F"  # what the robot minimises and the summary follows: "J" or "J_AND_F"
    kernel_size: float = 0.2
    max_kernel_radius: float = 16
    min_nb_nodes: int = 4  # ATNet's published numbers used 2
    time_threshold: float = 60.0


def run_sample(
    session: Session,
    gt: np.ndarray,
    first_scribbles: dict[str, Any] | None,
    robot: InteractiveRobot,
    config: ProtocolConfig,
    sequence: str,
) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray, float]]:
    """Play one sample; yields ``(round, J [T, K], F [T, K], labels [T, H, W], model seconds)`` per round."""
    num_objects = session.num_objects
    budget = config.time_per_object * config.max_rounds * num_objects
    scribbles = first_scribbles
    if scribbles is None:
        scribbles = robot.interact(sequence, session.labels, gt, [], config.metric, num_objects)
    spent = 0.0
    for round_index in range(1, config.max_rounds + 1):
        marked = [t for t, strokes in enumerate(scribbles["scribbles"]) if strokes]
        if not marked:
            return  # nothing left to correct
        frame = marked[0]
        session.interact(frame, scribbles["scribbles"][frame])
        seconds = session.last_round_seconds
        spent += seconds
        j = per_object_scores(session.labels, gt, num_objects, "J")
        f = per_object_scores(session.labels, gt, num_objects, "F")
        yield round_index, j, f, session.labels, seconds
        if spent > budget or round_index == config.max_rounds:
            return
        scribbles = robot.interact(sequence, session.labels, gt, session.annotated, config.metric, num_objects)


@dataclasses.dataclass
class SequenceData:
    """What the protocol needs of one sequence."""

    name: str
    frames: Any  # len / __getitem__ -> [H, W, 3] uint8
    gt: np.ndarray  # [T, H, W] uint8, 255 void
    num_objects: int
    scribbles: list[dict[str, Any] | None]  # human first scribbles, or [None] for a robot start


class _AtomicCsv:
    """A CSV written to a ``.partial`` file and renamed into place only when complete."""

    def __init__(self, path: Path) -> None:
        self.path = path
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
        self._tmp = Path(tmp)
        self._file = os.fdopen(fd, "w", newline="")
        self.writer = csv.writer(self._file)
        self.writer.writerow(REPORT_COLUMNS)

    def commit(self) -> None:
        self._file.close()
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)


def _write_json(path: Path, data: Any) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def evaluate(
    sequences: Sequence[SequenceData],
    make_session: Callable[[SequenceData], Session],
    config: ProtocolConfig,
    output: Path,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the protocol over ``sequences`` and write ``report.csv``, ``summary.json`` and ``curve.png`` to
    ``output``. Returns the summary dict."""
    from tqdm import tqdm

    output.mkdir(parents=True, exist_ok=True)
    robot = InteractiveRobot(config.kernel_size, config.max_kernel_radius, config.min_nb_nodes)
    samples = [(seq, idx, s) for seq in sequences for idx, s in enumerate(seq.scribbles, start=1)]
    report = _AtomicCsv(output / "report.csv")
    records: list[dict[str, Any]] = []
    bar = tqdm(samples, unit="sample", disable=not progress, desc="evaluating")
    try:
        for seq, idx, first in bar:
            session = make_session(seq)
            try:
                session.warmup()  # compiles are not the model's interaction time
                for round_index, j, f, _, seconds in run_sample(session, seq.gt, first, robot, config, seq.name):
                    jf = 0.5 * (j + f)
                    for t in range(j.shape[0]):
                        for k in range(j.shape[1]):
                            report.writer.writerow((seq.name, idx, round_index, k + 1, t, f"{j[t, k]:.6f}",
                                                    f"{f[t, k]:.6f}", f"{jf[t, k]:.6f}", f"{seconds:.4f}"))
                    for k in range(j.shape[1]):
                        records.append({"sequence": seq.name, "scribble_idx": idx, "interaction": round_index,
                                        "object_id": k + 1, "timing": seconds, "jaccard": float(j[:, k].mean()),
                                        "contour": float(f[:, k].mean())})
                    bar.set_postfix({"seq": seq.name, "round": round_index, "J&F": f"{jf.mean():.3f}"})
            finally:
                session.close()
    except BaseException:
        report.abort()
        raise
    report.commit()
    result = summary(records, config.metric, max_time=config.time_per_object * config.max_rounds,
                     max_interactions=config.max_rounds, time_threshold=config.time_threshold)
    _write_json(output / "summary.json", result)
    plot_curve(records, result, config, output / "curve.png")
    return result


def plot_curve(records: list[dict[str, Any]], result: dict[str, Any], config: ProtocolConfig, path: Path) -> None:
    """Metric vs time (the summary's curve) and metric vs round, side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    column = {"J": "jaccard", "J_AND_F": None}[config.metric]
    by_round: dict[int, list[float]] = {}
    for r in records:
        value = r[column] if column else 0.5 * (r["jaccard"] + r["contour"])
        by_round.setdefault(r["interaction"], []).append(value)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot(result["curve"]["time"], result["curve"]["metric"], marker="o")
    left.axvline(config.time_threshold, color="gray", linestyle="--", linewidth=1)
    left.set(xlabel="time [s]", ylabel=config.metric, title=f"AUC {result['auc']:.3f}, "
             f"@{config.time_threshold:.0f}s {result['metric_at_threshold']['value']:.3f}", ylim=(0, 1))
    rounds = sorted(by_round)
    right.plot(rounds, [np.mean(by_round[i]) for i in rounds], marker="o")
    right.set(xlabel="round", ylabel=config.metric, title="mean per round (samples still running)", ylim=(0, 1))
    fig.tight_layout()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)
