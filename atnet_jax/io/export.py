"""The studio's exports: masks as DAVIS palette PNGs, an overlay video, COCO-style RLE, the rounds' scribble files
and the ``infer`` command that replays them."""
from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atnet_jax.io.masks import write_mask
from atnet_jax.io.visualize import write_overlay_video


def rle_encode(mask: np.ndarray) -> dict:
    """COCO-style uncompressed RLE of a binary ``mask: [H, W]``: ``{"size": [H, W], "counts": [...]}`` with
    run lengths in column-major order, starting with a run of zeros (possibly empty)."""
    flat = np.asarray(mask, bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": [int(c) for c in counts]}


def rle_decode(rle: dict) -> np.ndarray:
    """Inverse of :func:`rle_encode` -> ``[H, W]`` bool."""
    height, width = rle["size"]
    values = np.zeros(len(rle["counts"]), bool)
    values[1::2] = True
    flat = np.repeat(values, rle["counts"])
    return flat.reshape((height, width), order="F")


def write_export(folder: Path, *, name: str, frames: Any, labels: Any, object_names: Sequence[str],
                 palette: np.ndarray, scribble_files: Sequence[Path],
                 replay: dict) -> list[str]:
    """Write into ``folder``: ``<name>/%05d.png`` (``labels[t] -> [H, W]`` uint8 as DAVIS palette PNGs, at the
    video's size), ``<name>_rle.json`` (per frame and object, :func:`rle_encode`), ``<name>_overlay.mp4`` (the
    masks over ``frames`` in ``palette``'s colours), ``scribbles/`` (copies of ``scribble_files``) and
    ``replay.json`` (``replay``). Returns what was written, relative to ``folder``."""
    first = labels[0]
    rle: dict[str, Any] = {"name": name, "height": int(first.shape[0]), "width": int(first.shape[1]),
                           "objects": [{"id": i + 1, "name": n} for i, n in enumerate(object_names)], "frames": []}
    for t in range(len(labels)):
        frame_labels = labels[t]
        write_mask(folder / name / f"{t:05d}.png", frame_labels)
        rle["frames"].append({"frame": t, "objects": {str(k + 1): rle_encode(frame_labels == k + 1)
                                                      for k in range(len(object_names))}})
    (folder / f"{name}_rle.json").write_text(json.dumps(rle))
    write_overlay_video(folder / f"{name}_overlay.mp4", frames, labels, palette)
    scribbles = folder / "scribbles"
    scribbles.mkdir()
    for path in scribble_files:
        shutil.copyfile(path, scribbles / path.name)
    (folder / "replay.json").write_text(json.dumps(replay, indent=1))
    return [f"{name}/", f"{name}_rle.json", f"{name}_overlay.mp4", *[f"scribbles/{p.name}" for p in scribble_files],
            "replay.json"]
