"""Every round's segmentation of an evaluation, as DAVIS palette PNGs (``evaluate --save-masks``).

Layout, inside the evaluation's output folder::

    masks/<sequence>/<scribble_idx>/round_<r>/<frame:05d>.png    0 = background, k = object k

``<scribble_idx>`` is the sample's scribble file (1, 2, 3 for DAVIS), as in ``samples/<sequence>/<idx>.json``;
``round_<r>`` counts the scored rounds from 1. Each round's folder is written aside and renamed into place, so
it is complete or absent; a sample run again (``--resume`` after an interruption inside it) starts its folder
afresh. Samples finished by an earlier run are not run again, so their masks are those that run wrote.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from atnet_jax.io.masks import write_mask
from atnet_jax.io.safe import replace_dir, staging_dir

MASKS_DIR = "masks"


def round_dir(output: Path, sequence: str, scribble_idx: int, interaction: int) -> Path:
    """The folder of one round's masks."""
    return Path(output) / MASKS_DIR / sequence / str(scribble_idx) / f"round_{interaction}"


class MaskWriter:
    """``on_round`` for :func:`atnet_jax.evaluation.protocol.evaluate`: writes each scored round's labels."""

    def __init__(self, output: Path) -> None:
        self.output = Path(output)

    def __call__(self, sequence: str, scribble_idx: int, result: Any) -> None:
        """Write ``result.labels: [T, H, W]`` (a ``RoundResult``) as round ``result.interaction``'s folder."""
        target = round_dir(self.output, sequence, scribble_idx, result.interaction)
        if result.interaction == 1:  # the sample starts (again): no round of an earlier, interrupted try stays
            shutil.rmtree(target.parent, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = staging_dir(target)
        try:
            labels = np.asarray(result.labels)
            for t in range(labels.shape[0]):
                write_mask(staged / f"{t:05d}.png", labels[t])
            replace_dir(staged, target)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
