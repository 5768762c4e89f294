"""Scores against ground truth, where the studio's video has it (a DAVIS root with ``Annotations`` for the
sequence, as the generated demo video has): per-frame J&F of the current masks on the frames that have a ground
truth mask, their mean, and the mean after each step of the history, as MiVOS shows IoU.

J and F are the DAVIS definitions (:mod:`atnet_jax.interaction.metrics`, every pixel counted as the
``davisinteractive`` service does); a frame's score is the mean over the ground truth's objects of (J + F) / 2, an
object the studio lacks scoring 0. Per-frame scores are cached by the frame's mask version, so only changed frames
are scored again. A step's mean is measured the first time the scores are asked for after it (the page asks after
every step) and kept in ``scores.json`` in the workspace.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from atnet_jax.interaction.metrics import per_object_scores
from atnet_jax.io.masks import read_mask
from atnet_jax.io.safe import write_json

SCORES_FILE = "scores.json"


class GroundTruth:
    """The ground-truth mask files of a video: ``paths[t]`` for the frames that have one, ``num_objects`` ids."""

    def __init__(self, paths: dict[int, Path], num_objects: int) -> None:
        self.paths = paths
        self.num_objects = num_objects

    @property
    def frames(self) -> list[int]:
        return sorted(self.paths)

    def read(self, t: int) -> np.ndarray:
        """Frame ``t``'s ground truth ``[H, W]`` uint8 (0 background, k object k, 255 void)."""
        return read_mask(self.paths[t])

    @classmethod
    def find(cls, source: str | Path, sequence: str | None, num_frames: int, height: int,
             width: int) -> GroundTruth | None:
        """The ground truth of ``sequence`` in the DAVIS root ``source`` (480p), matched to the frames by file
        name; None where there is none, or where it does not fit the video (frame count, mask size)."""
        from atnet_jax.io.davis import DavisFolder
        from atnet_jax.io.frames import image_size

        root = Path(source)
        if sequence is None or not (root / "Annotations" / "480p" / sequence).is_dir():
            return None
        try:
            davis = DavisFolder(root)
            frame_paths = davis.frame_paths(sequence)
            masks = davis.annotations_dir / sequence
            paths = {t: masks / f"{p.stem}.png" for t, p in enumerate(frame_paths)
                     if (masks / f"{p.stem}.png").is_file()}
            if len(frame_paths) != num_frames or not paths:
                return None
            if image_size(next(iter(paths.values()))) != (height, width):
                return None
            num_objects = davis.num_objects(sequence, all_frames=False)
        except (OSError, ValueError):
            return None
        return cls(paths, num_objects) if num_objects > 0 else None


def frame_score(labels: np.ndarray, gt: np.ndarray, num_objects: int) -> float:
    """Mean over the ground truth's ``num_objects`` objects of (J + F) / 2 of ``labels [H, W]`` against ``gt``."""
    return float(per_object_scores(labels[None], gt[None], num_objects, "J_AND_F")[0].mean())


class ScoreBoard:
    """Per-frame J&F of a workspace's masks against its ground truth, and the mean after each step."""

    def __init__(self, root: Path, truth: GroundTruth | None) -> None:
        self.file = Path(root) / SCORES_FILE
        self.truth = truth
        self._lock = threading.Lock()
        self._cache: dict[int, tuple[int, float]] = {}  # t -> (mask version, score)

    def _read_steps(self) -> list[list]:
        try:
            data = json.loads(self.file.read_text())
            return [list(s) for s in data["steps"]]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def report(self, labels: Callable[[int], np.ndarray], versions: Sequence[int], step_keys: Sequence[str],
               settled: bool) -> dict:
        """``{"available": False}`` without ground truth; else the GT ``frames``, ``per_frame`` (a score or None
        for each frame of the video), their ``mean``, and ``steps`` (the mean after each step; None where it was
        not measured). ``labels(t)``: frame t's masks now; ``versions``: their versions; ``step_keys``: an
        identity per step of the history; ``settled``: no step is running, so the mean belongs to the last step
        and is recorded."""
        if self.truth is None:
            return {"available": False}
        with self._lock:
            scores: dict[int, float] = {}
            for t in self.truth.frames:
                cached = self._cache.get(t)
                if cached is None or cached[0] != versions[t]:
                    cached = (versions[t], frame_score(np.asarray(labels(t)), self.truth.read(t),
                                                       self.truth.num_objects))
                    self._cache[t] = cached
                scores[t] = cached[1]
            mean = float(np.mean(list(scores.values())))
            recorded = self._read_steps()
            keep = 0
            while keep < min(len(recorded), len(step_keys)) and recorded[keep][0] == step_keys[keep]:
                keep += 1
            steps = recorded[:keep]
            if settled and step_keys and len(steps) < len(step_keys):
                steps += [[k, None] for k in step_keys[len(steps):-1]] + [[step_keys[-1], round(mean, 5)]]
            if steps != recorded:
                write_json(self.file, {"steps": steps}, overwrite=True)
        per_frame = [None] * len(versions)
        for t, s in scores.items():
            per_frame[t] = round(s, 5)
        return {"available": True, "objects": self.truth.num_objects, "frames": self.truth.frames,
                "per_frame": per_frame, "mean": round(mean, 5),
                "steps": [s[1] for s in steps] + [None] * (len(step_keys) - len(steps))}
