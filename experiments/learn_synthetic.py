"""Learning check: train the tiny config on synthetic videos (both stages), then evaluate with the robot.

    python experiments/learn_synthetic.py --workdir runs/learn_synthetic

1. generates training videos and held-out videos (another seed) with ``python -m atnet_jax.data.synthetic``;
2. trains stage 1 (A-Net) and stage 2 (T-Net) with ``python -m atnet_jax.train --config
   experiments/configs/tiny.py``, each limited to ``--minutes`` of training;
3. evaluates ``WORKDIR/tnet/weights`` with ``python -m atnet_jax.evaluate --metric J --max-rounds 3`` on the
   held-out videos and prints the mean J after each round (the target: at least 0.80 after round 3) and
   the training-loss curves. Exits 1 when the target is missed.

Every step is a command a user can run; a rerun resumes or reuses what is already there.
"""
from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_J = 0.80


def run(cmd: list[str]) -> float:
    print("$", " ".join(cmd), flush=True)
    start = time.monotonic()
    subprocess.run(cmd, check=True, cwd=ROOT)
    return time.monotonic() - start


def mean_j_per_round(report: Path, rounds: int) -> list[float]:
    """Mean J over samples, objects and frames after each round; a sample that stopped early (nothing
    left for the robot to correct) keeps its last round's masks, as the official summary does."""
    per = defaultdict(lambda: defaultdict(list))  # (sequence, scribble, object) -> round -> J per frame
    with report.open() as f:
        for row in csv.DictReader(f):
            per[(row["sequence"], row["scribble_idx"], row["object_id"])][int(row["interaction"])].append(
                float(row["jaccard"]))
    curve = []
    for r in range(1, rounds + 1):
        values = []
        for by_round in per.values():
            last = max(k for k in by_round if k <= r)
            values.append(sum(by_round[last]) / len(by_round[last]))
        curve.append(sum(values) / len(values))
    return curve


def loss_curve(metrics: Path, points: int = 8) -> list[tuple[int, float]]:
    with metrics.open() as f:
        rows = [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]
    if not rows:
        return []
    stride = max(1, len(rows) // points)
    picked = rows[::stride]
    return picked if picked[-1] == rows[-1] else picked + [rows[-1]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("runs/learn_synthetic"))
    parser.add_argument("--minutes", type=float, default=30.0, help="training time limit per stage")
    parser.add_argument("--train-videos", type=int, default=60)
    parser.add_argument("--eval-videos", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--set", nargs="*", default=[], dest="overrides", help="extra config overrides")
    args = parser.parse_args(argv)
    work = args.workdir.resolve()
    py = sys.executable
    train_data, eval_data = work / "data" / "train", work / "data" / "heldout"
    if not train_data.exists():
        run([py, "-m", "atnet_jax.data.synthetic", "--output", str(train_data), "--videos", str(args.train_videos),
             "--seed", "0"])
    if not eval_data.exists():
        run([py, "-m", "atnet_jax.data.synthetic", "--output", str(eval_data), "--videos", str(args.eval_videos),
             "--seed", "1"])
    seconds = {}
    for stage in ("anet", "tnet"):
        if (work / stage / "weights").exists():
            print(f"{stage}: {work / stage / 'weights'} exists, not retrained")
            continue
        seconds[stage] = run([py, "-m", "atnet_jax.train", "--config", str(ROOT / "experiments/configs/tiny.py"),
                              "--workdir", str(work), "--stage", stage, "--no-progress", "--set",
                              f"data.synthetic={train_data}", f"{stage}.time_limit_minutes={args.minutes}",
                              *args.overrides])
    evaluation = work / "eval"
    run([py, "-m", "atnet_jax.evaluate", "--checkpoint", str(work / "tnet" / "weights"), "--input", str(eval_data),
         "--metric", "J", "--max-rounds", str(args.rounds), "--output", str(evaluation), "--overwrite"])

    print("\ntraining (wall time incl. compile and data start-up):",
          ", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items()) or "reused")
    for stage in ("anet", "tnet"):
        curve = loss_curve(work / stage / "metrics.csv")
        print(f"{stage} loss: " + ", ".join(f"step {s}: {loss:.4f}" for s, loss in curve))
    curve = mean_j_per_round(evaluation / "report.csv", args.rounds)
    print(f"mean J on {args.eval_videos} held-out videos: " +
          ", ".join(f"round {r}: {j:.3f}" for r, j in enumerate(curve, start=1)))
    ok = curve[-1] >= TARGET_J
    print(f"after round {args.rounds}: {curve[-1]:.3f} ({'meets' if ok else 'misses'} the {TARGET_J:.2f} target)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
