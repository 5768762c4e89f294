"""Inputs of the stored robot cases, rebuilt from the real DAVIS masks by a recipe (NumPy, SciPy, Pillow only).

A case's recipe names a sequence of `tests/data/davis_mini`, a frame range, and how the prediction is
made from the ground truth, so the stored expectations stay small (no masks in the repo). The one-off
generator `experiments/make_official_robot_data.py` imports this module too, so both sides rebuild the same
arrays. Stroke pixel paths are stored as a chain code: the first pixel, then one digit per 8-neighbour step.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import binary_dilation, binary_erosion

VOID = 255
# Chain-code digit -> (dx, dy).
STEPS = ((1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1))


def load_gt(davis_root: Path, sequence: str, frames: tuple[int, int]) -> np.ndarray:
    """Masks `frames[0]:frames[1]` of `sequence` as `[T, H, W]` int64 ids (255 void; 0/255 grayscale -> 0/1)."""
    folder = Path(davis_root) / "Annotations" / "480p" / sequence
    masks = []
    for i in range(*frames):
        path = folder / f"{i:05d}.png"
        with Image.open(path) as im:
            mode, array = im.mode, np.array(im)
        if mode == "P":
            masks.append(array.astype(np.int64))
        elif mode == "L":
            masks.append((array > 127).astype(np.int64))
        else:
            raise ValueError(f"mask {path} has image mode {mode!r}: expected 'P' or 'L'")
    return np.stack(masks)


def _disks(shape: tuple[int, int], centres: np.ndarray, radii: np.ndarray) -> list[np.ndarray]:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return [(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r for (cy, cx), r in zip(centres, radii)]


def _apply(frame: np.ndarray, op: dict, nb_objects: int) -> np.ndarray:
    kind = op["op"]
    out = frame.copy()
    if kind == "erode":  # every object shrinks by `r` 4-connected steps, the rim goes to background
        for k in range(1, nb_objects + 1):
            mask = frame == k
            out[mask & ~binary_erosion(mask, iterations=op["r"])] = 0
    elif kind == "dilate":  # objects 1..K in turn grow by `r` steps into the background
        for k in range(1, nb_objects + 1):
            out[binary_dilation(out == k, iterations=op["r"]) & (out == 0)] = k
    elif kind == "shift":  # move the whole map by (dy, dx), zero fill
        dy, dx = op["dy"], op["dx"]
        out = np.zeros_like(frame)
        h, w = frame.shape
        out[max(dy, 0): h + min(dy, 0), max(dx, 0): w + min(dx, 0)] = \
            frame[max(-dy, 0): h - max(dy, 0), max(-dx, 0): w - max(dx, 0)]
    elif kind == "remove":
        out[frame == op["id"]] = 0
    elif kind == "swap":
        out[frame == op["a"]] = op["b"]
        out[frame == op["b"]] = op["a"]
    elif kind == "blobs":  # `n` random disks of random label 0..K (label 0 cuts holes)
        rs = np.random.RandomState(op["seed"])
        h, w = frame.shape
        centres = np.stack([rs.randint(0, h, op["n"]), rs.randint(0, w, op["n"])], axis=1)
        radii = rs.randint(4, 40, op["n"])
        labels = rs.randint(0, nb_objects + 1, op["n"])
        for disk, label in zip(_disks(frame.shape, centres, radii), labels):
            out[disk] = label
    else:
        raise ValueError(f"unknown recipe op {kind!r}")
    return out


def build_prediction(gt: np.ndarray, recipe: dict, nb_objects: int) -> np.ndarray:
    """Prediction `[T, H, W]` int64 from the ground truth `gt` by `recipe`.

    recipe: {"base": "gt" (void -> 0) or "empty", "ops": [{"op": ..., "frames": [i, ...] or absent = all}]},
    frame indices relative to the loaded range.
    """
    pred = np.where(gt == VOID, 0, gt) if recipe["base"] == "gt" else np.zeros_like(gt)
    for op in recipe.get("ops", []):
        for t in op.get("frames", range(len(pred))):
            pred[t] = _apply(pred[t], op, nb_objects)
    return pred


def encode_chain(pixels: np.ndarray) -> str:
    """`[L, 2]` int xy path whose consecutive pixels are 8-neighbours -> "x,y:digits"."""
    pixels = np.asarray(pixels, dtype=np.int64)
    digits = []
    for step in np.diff(pixels, axis=0).tolist():
        if tuple(step) not in STEPS:
            raise ValueError(f"path step {step} is not an 8-neighbour move")
        digits.append(str(STEPS.index(tuple(step))))
    return f"{pixels[0, 0]},{pixels[0, 1]}:" + "".join(digits)


def decode_chain(code: str) -> np.ndarray:
    """Inverse of `encode_chain`: `[L, 2]` int64 xy."""
    start, digits = code.split(":")
    steps = np.array([STEPS[int(d)] for d in digits], dtype=np.int64).reshape(-1, 2)
    return np.concatenate([[np.array(start.split(","), dtype=np.int64)], steps]).cumsum(axis=0)
