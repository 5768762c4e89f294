"""A first scribble from ground truth: the DAVIS robot on an empty prediction.

The DAVIS interactive benchmark starts a sequence that has no human scribble (DAVIS-2016, a user's own video)
this way: the robot scribbles on the frame where an empty prediction is worst (the first frame where every
object shows) along each object's skeleton. ``python -m atnet_jax.scribble`` and the synthetic videos' first
scribbles both come from here.
"""
from __future__ import annotations

import numpy as np

from atnet_jax.interaction.metrics import VOID_LABEL
from atnet_jax.interaction.robot import InteractiveRobot


def first_scribble(
    sequence: str,
    labels: np.ndarray,
    *,
    frame: int | None = None,
    num_objects: int | None = None,
    robot: InteractiveRobot | None = None,
) -> dict:
    """The robot's scribbles for an empty prediction of ``labels: [T, H, W] uint8`` (0 background, 1..K objects,
    255 void) -> a DAVIS scribble dict with ``T`` frame lists, strokes on one frame.

    ``frame`` draws on that frame instead of the robot's choice; ``num_objects`` defaults to the largest label
    below 255. Timestamps are 1 s per stroke from 0 (the robot's are wall-clock times), so files are
    reproducible.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be [T, H, W], got shape {labels.shape}")
    robot = robot or InteractiveRobot()
    scribbles = robot.interact(sequence, np.zeros(labels.shape, np.uint8), labels, nb_objects=num_objects,
                               frame=frame)
    for strokes in scribbles["scribbles"]:
        for i, stroke in enumerate(strokes):
            stroke["start_time"], stroke["end_time"] = float(i), float(i + 1)
    return scribbles


def first_scribble_from_mask(
    sequence: str,
    mask: np.ndarray,
    *,
    frame: int,
    num_frames: int,
    num_objects: int | None = None,
    robot: InteractiveRobot | None = None,
) -> dict:
    """:func:`first_scribble` for a video of ``num_frames`` frames of which only frame ``frame`` has a mask
    (``mask: [H, W]``): the strokes on that frame, the other frames' lists empty."""
    if not 0 <= frame < num_frames:
        raise ValueError(f"frame {frame} is outside the video's {num_frames} frames (0..{num_frames - 1})")
    one = first_scribble(sequence, np.asarray(mask)[None], frame=0, num_objects=num_objects, robot=robot)
    frames: list[list[dict]] = [[] for _ in range(num_frames)]
    frames[frame] = one["scribbles"][0]
    return {"scribbles": frames, "sequence": sequence}


def object_ids(labels: np.ndarray) -> list[int]:
    """The object ids present in ``labels`` (void and background left out)."""
    ids = np.unique(np.asarray(labels))
    return [int(i) for i in ids if i not in (0, VOID_LABEL)]
