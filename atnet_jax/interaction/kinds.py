"""Typed interactions: what a person (or the simulated user) does on one frame, and A-Net's input from it.

An interaction is placed on a frame and turns into A-Net's two interaction channels (positive and negative maps
per object). Every kind also says which DAVIS strokes it amounts to, so that a session records one history per
frame and a round can be written as a scribble file and replayed. A new kind is one class: subclass
:class:`Interaction`, give ``to_strokes`` and, where strokes do not describe it, override ``maps``.
"""
from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Iterable, Sequence

import numpy as np

from atnet_jax.errors import UsageError
from atnet_jax.interaction.scribbles import interaction_maps

ROUND1_PREVIOUS_MASK = 0.5
"""A-Net's previous-mask channel on a frame that no round has segmented yet (the released code's round 1)."""


class Interaction(abc.ABC):
    """An interaction on frame ``frame``."""

    frame: int

    @abc.abstractmethod
    def to_strokes(self) -> list[dict]:
        """The DAVIS strokes (``{"path": [[x / W, y / H], ...], "object_id", "start_time", "end_time"}``) it
        amounts to: what the session records on the frame and a scribble file holds."""

    def object_ids(self) -> set[int]:
        """The ids it names (0 = background)."""
        return {int(s["object_id"]) for s in self.to_strokes()}

    def maps(self, earlier: Sequence[dict], height: int, width: int, num_objects: int,
             previous: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """A-Net's ``(positive, negative)`` channels, ``[K, height, width]`` each, for this interaction on a frame
        that already holds the strokes ``earlier``: every stroke on the frame is rasterised together
        (davisinteractive's ``fuse_scribbles``, then the released ``scribble_to_image``). ``previous``: the
        frame's labels before the round (``[height, width]``), None where no round segmented it yet."""
        return interaction_maps([*earlier, *self.to_strokes()], height, width, num_objects, previous)


@dataclasses.dataclass(frozen=True)
class Scribble(Interaction):
    """Strokes drawn on ``frame`` (DAVIS stroke dicts; ``object_id`` 0 is background)."""

    frame: int
    strokes: tuple[dict, ...]

    def __init__(self, frame: int, strokes: Iterable[dict]) -> None:
        object.__setattr__(self, "frame", _frame_index(frame))
        object.__setattr__(self, "strokes", tuple(dict(s) for s in strokes))
        if not self.strokes:
            raise UsageError(f"a scribble on frame {frame} needs at least one stroke")

    def to_strokes(self) -> list[dict]:
        return [dict(s) for s in self.strokes]


@dataclasses.dataclass(frozen=True)
class Click:
    """One click at ``(x / W, y / H)`` for ``object_id`` (0: a background, or negative, click)."""

    x: float
    y: float
    object_id: int

    def __post_init__(self) -> None:
        for name in ("x", "y"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not 0.0 <= value <= 1.0:
                raise UsageError(f"click {name} must be a number in [0, 1] (a fraction of the frame), got {value!r}")
        if isinstance(self.object_id, bool) or not isinstance(self.object_id, int) or self.object_id < 0:
            raise UsageError(f"click object_id must be an integer >= 0, got {self.object_id!r}")


@dataclasses.dataclass(frozen=True)
class Clicks(Interaction):
    """Clicks on ``frame``. Each is rasterised as a one-point stroke: a dot (the 5x5 ellipse blurred, peaking
    at ~0.69), as the released code rasterises a stroke of one point."""

    frame: int
    clicks: tuple[Click, ...]
    time: float = 0.0

    def __init__(self, frame: int, clicks: Iterable[Click], time: float = 0.0) -> None:
        object.__setattr__(self, "frame", _frame_index(frame))
        object.__setattr__(self, "clicks", tuple(clicks))
        object.__setattr__(self, "time", float(time))
        if not self.clicks:
            raise UsageError(f"clicks on frame {frame}: at least one click is needed")

    def to_strokes(self) -> list[dict]:
        return [{"path": [[float(c.x), float(c.y)]], "object_id": int(c.object_id), "start_time": self.time,
                 "end_time": self.time} for c in self.clicks]


def _frame_index(frame: object) -> int:
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)) or frame < 0:
        raise UsageError(f"frame must be an integer >= 0, got {frame!r}")
    return int(frame)
