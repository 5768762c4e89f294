"""Which frames a round updates and how: the propagation plan, the blending of eq. (6), the merge into labels."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np

from atnet_jax.errors import UsageError

Direction = Literal["both", "forward", "backward"]
DIRECTIONS: tuple[str, ...] = ("both", "forward", "backward")

MERGE_THRESHOLD = 0.8
"""An object claims a pixel where its probability is the highest and above this (the released code's)."""

RELEASED_PROPAGATION_PROPORTION = 0.99
"""The released code's ``config.py`` ``test_propagation_proportion``."""


def blend_weight(t: int, annotated_now: int, annotated_before: int | None) -> float:
    """alpha of eq. (6) for frame ``t`` propagated from ``annotated_now`` towards ``annotated_before``.

    ``0.5 + 0.5 * |t - a_before| / |a_now - a_before|``: 1 at the new annotation, 0.5 at the old one;
    1 where no annotated frame lies on that side (``annotated_before`` is None).
    """
    if annotated_before is None:
        return 1.0
    return 0.5 + 0.5 * abs(t - annotated_before) / abs(annotated_now - annotated_before)


def propagation_plan(
    frame: int, previous: Sequence[int], num_frames: int, proportion: float = RELEASED_PROPAGATION_PROPORTION
) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """The frames a round updates, with their eq.-(6) weights, as (backward, forward) lists in order.

    The range runs from ``frame`` towards the nearest previously annotated frame on each side (excluded), as
    the released ``libs/utils.py:get_prop_list``: where an annotated frame lies on a side, that side's gap is
    scaled by ``proportion`` and rounded half up (``a_now - int((a_now - start) * proportion + 0.5)``, in
    float64), so that with the released 0.99 a gap of 51-150 frames leaves the frame next to the earlier
    annotation as it was. ``proportion=1.0`` propagates up to the annotated frames.
    """
    before = max((a for a in previous if a < frame), default=None)
    after = min((a for a in previous if a > frame), default=None)
    start = 0 if before is None else before + 1
    end = num_frames - 1 if after is None else after - 1
    if proportion != 1.0:
        if before is not None:
            start = frame - int((frame - start) * proportion + 0.5)
        if after is not None:
            end = frame + int((end - frame) * proportion + 0.5)
    backward = range(frame - 1, start - 1, -1)
    forward = range(frame + 1, end + 1)
    return ([(t, blend_weight(t, frame, before)) for t in backward],
            [(t, blend_weight(t, frame, after)) for t in forward])


@dataclasses.dataclass(frozen=True)
class RoundPlan:
    """A round on ``frame``: the frames it updates, in order (the annotated frame, then backward, then forward),
    with their eq.-(6) weights."""

    frame: int
    backward: tuple[tuple[int, float], ...]
    forward: tuple[tuple[int, float], ...]

    @classmethod
    def make(cls, frame: int, previous: Sequence[int], num_frames: int,
             proportion: float = RELEASED_PROPAGATION_PROPORTION) -> RoundPlan:
        backward, forward = propagation_plan(frame, previous, num_frames, proportion)
        return cls(frame, tuple(backward), tuple(forward))

    def limited(self, direction: Direction = "both", until: int | None = None) -> RoundPlan:
        """This plan restricted to ``direction`` ("both", "forward" or "backward") and, where ``until`` is given,
        stopped at frame ``until`` (inclusive) on its side of ``frame`` (``until == frame``: no propagation).
        The frames kept keep their eq.-(6) weights; a :class:`UsageError` for a bad direction, or an ``until``
        that is not an integer frame >= 0 or lies on a side that ``direction`` leaves out."""
        if direction not in DIRECTIONS:
            raise UsageError(f"direction must be one of {', '.join(DIRECTIONS)}, got {str(direction)[:20]!r}")
        backward = self.backward if direction != "forward" else ()
        forward = self.forward if direction != "backward" else ()
        if until is not None:
            if isinstance(until, bool) or not isinstance(until, int) or until < 0:
                raise UsageError(f"until must be a frame index (an integer >= 0), got {str(until)[:20]!r}")
            if (until < self.frame and direction == "forward") or (until > self.frame and direction == "backward"):
                side = "before" if until < self.frame else "after"
                raise UsageError(f"until frame {until} lies {side} frame {self.frame}, against direction {direction}")
            if until <= self.frame:
                backward = tuple((t, a) for t, a in backward if t >= until)
            if until >= self.frame:
                forward = tuple((t, a) for t, a in forward if t <= until)
        return dataclasses.replace(self, backward=tuple(backward), forward=tuple(forward))

    @property
    def frames(self) -> list[int]:
        return [self.frame, *(t for t, _ in self.backward), *(t for t, _ in self.forward)]

    @property
    def total(self) -> int:
        return 1 + len(self.backward) + len(self.forward)


def merge_objects(probs: np.ndarray, threshold: float = MERGE_THRESHOLD) -> np.ndarray:
    """``probs: [K, ..., H, W]`` -> labels ``[..., H, W]`` uint8: ``argmax + 1`` where the max exceeds
    ``threshold``, else 0 (background). Ties go to the lower id, as ``np.argmax``."""
    probs = np.asarray(probs)
    best = probs[0]
    ids = np.zeros(best.shape, np.uint8)
    for k in range(1, probs.shape[0]):  # one pass per object: faster than argmax over axis 0 at 1080p
        better = probs[k] > best
        ids[better] = k
        best = np.where(better, probs[k], best)
    return np.where(best > threshold, ids + np.uint8(1), np.uint8(0)).astype(np.uint8)


def blend(new: np.ndarray, old: np.ndarray | None, alpha: float) -> np.ndarray:
    """Eq. (6): ``alpha * new + (1 - alpha) * old`` (``old`` None: zeros); ``new`` itself where alpha is 1."""
    if alpha >= 1.0:
        return new
    if old is None:
        old = np.zeros_like(new)
    return alpha * new + (1.0 - alpha) * old
