"""Overlays of label maps on frames, for looking at results."""
from __future__ import annotations

import cv2
import numpy as np


def overlay(frame: np.ndarray, labels: np.ndarray, palette: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """``frame [H, W, 3] uint8`` RGB with objects of ``labels [H, W]`` tinted by ``palette [256, 3]`` and outlined.

    Background (0) and void (255) are left as they are.
    """
    out = frame.astype(np.float32)
    ids = [i for i in np.unique(labels) if i not in (0, 255)]
    for i in ids:
        mask = labels == i
        out[mask] = (1 - alpha) * out[mask] + alpha * palette[i].astype(np.float32)
    out = out.round().clip(0, 255).astype(np.uint8)
    for i in ids:
        contours, _ = cv2.findContours((labels == i).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        color = tuple(int(c) for c in palette[i])
        cv2.drawContours(out, contours, -1, color, thickness=2)
    return out
