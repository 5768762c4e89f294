"""What a round hands out and keeps while it runs: frame updates, the finished round's summary, the state a session
can be saved to and restored from, and the round under way (with the iterator that propagates it)."""
from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from atnet_jax.inference.plan import RoundPlan
from atnet_jax.inference.store import FrameStore
from atnet_jax.inference.undo import UndoLog

if TYPE_CHECKING:
    from atnet_jax.inference.session import Session


@dataclasses.dataclass(frozen=True)
class FrameUpdate:
    """A frame a round updated: ``kind`` "annotated" (A-Net's frame) or "propagated"; ``done`` of ``total``
    frames of the round so far; ``labels [H, W]`` uint8, a read-only copy at the video's size."""

    frame: int
    kind: Literal["annotated", "propagated"]
    done: int
    total: int
    labels: np.ndarray


@dataclasses.dataclass(frozen=True)
class RoundInfo:
    """A finished round: its annotated frame, the frames it updated in order, the model seconds it took."""

    frame: int
    frames: tuple[int, ...]
    seconds: float


@dataclasses.dataclass
class SessionState:
    """Everything a session's results depend on besides the video and the weights (see :meth:`Session.snapshot`).

    ``probabilities: [T, K, h, w]`` float32 at the session's processing size (a :class:`FrameStore` in a
    temporary folder of its own from :meth:`Session.snapshot`, removed when the state is collected; an
    ndarray is accepted by :meth:`Session.restore` too), ``annotated`` frames in round order, ``strokes`` per
    frame (every stroke placed there so far, DAVIS format), ``indicators``: A-Net's converter output per
    annotated frame, ``[K, h, w, C]`` float32 each.
    """

    probabilities: FrameStore | np.ndarray
    annotated: list[int]
    strokes: dict[int, list[dict]]
    indicators: list[np.ndarray]


def frame_crc(probabilities: np.ndarray) -> int:
    """zlib's CRC-32 of a frame's ``[K, h, w]`` probabilities as float32 bytes in C order."""
    return zlib.crc32(np.ascontiguousarray(probabilities, np.float32))


@dataclasses.dataclass
class RoundLogits:
    """A finished round's network outputs before their last upsampling: what its probabilities are recomputed
    from exactly (:attr:`Session.last_round`).

    For each frame ``t`` the round updated: ``logits[t] -> [K, hc, wc]`` float32 and its eq.-(6) weight
    ``alphas[t]``; the frame's probabilities are ``blend(expand_logits(logits[t], stride, window), before,
    alphas[t])`` (:func:`atnet_jax.models.expand.expand_logits`, :func:`atnet_jax.inference.plan.blend`), with
    ``before`` the frame's probabilities before the round, whose :func:`frame_crc` is ``before_crc[t]`` (for frames with
    a weight below 1). ``window = (top, left, h, w)``: the processing-size frame in the upsampled map.
    """

    stride: int
    window: tuple[int, int, int, int]
    logits: FrameStore
    alphas: dict[int, float] = dataclasses.field(default_factory=dict)
    before_crc: dict[int, int] = dataclasses.field(default_factory=dict)

    def close(self) -> None:
        self.logits.close()


@dataclasses.dataclass
class PendingRound:
    """The round in progress: added on ``plan.frame``, not yet (or not fully) propagated."""

    plan: RoundPlan
    undo: UndoLog
    previous: np.ndarray | None  # the frame's labels at the processing size before the round (None: round 1)
    strokes: list[dict]  # what this round placed on the frame
    outputs: Any = None  # A-Net's outputs (the predictor's: probabilities [K, hp, wp, 1], maybe logits)
    indicator: Any = None
    annotated_before: int = 0  # how many frames were annotated before the round
    seconds: float = 0.0
    propagating: bool = False
    updates: Iterator[FrameUpdate] | None = None  # the propagation generator, once propagate() was called
    logits: RoundLogits | None = None  # where the predictor gives logits


class Propagation(Iterator[FrameUpdate]):
    """The frames of a round as they are computed (what :meth:`Session.propagate` returns): iterate for
    :class:`FrameUpdate` items; ``close()`` before the end cancels the round (the session goes back exactly to
    its state before it)."""

    def __init__(self, session: Session, pending: PendingRound) -> None:
        self._session, self._pending = session, pending
        self.plan = pending.plan

    def __next__(self) -> FrameUpdate:
        assert self._pending.updates is not None
        return next(self._pending.updates)

    def close(self) -> None:
        if self._session._round is self._pending:
            self._session.cancel()
