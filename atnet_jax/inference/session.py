"""An interactive segmentation session over one video: an interaction on a frame in, masks for every frame out.

A round (the released code's semantics, see DESIGN "Interactive inference"):
1. :meth:`Session.add` places an interaction (scribbles, clicks) on frame ``a_r``: A-Net segments it for all
   objects at once (objects are the batch) and the frame's result comes back at once. Its converter gives each
   object's features ``F_o`` for the global transfer. Adding more on the same frame before propagating refines it.
2. :meth:`Session.propagate` is a generator of frame updates: T-Net propagates backward and forward from
   ``a_r`` and stops before the nearest previously annotated frame on each side (:class:`RoundPlan`). The previous
   map of the first step is A-Net's output, then T-Net's own (unblended) output. The two directions are
   independent chains, stepped together (one batch per step; once one ends the other goes on alone), so the
   updates alternate: ``a_r - 1, a_r + 1, a_r - 2, a_r + 2, ...`` (the released code runs one direction, then
   the other; the results are the same up to float rounding). The global transfer averages over
   every annotated frame so far. Stopping between yields (closing the generator, or :meth:`Session.cancel`) puts
   the session back exactly as it was before the round.
3. Each new probability is blended with the previous round's (eq. 6): ``p = alpha * p_new + (1 - alpha) * p_old``
   with alpha falling linearly from 1 at ``a_r`` to 0.5 at the previously annotated frame (1 where no
   annotated frame lies on that side).
4. Labels: ``argmax_k p_k`` where that probability exceeds 0.8, else background.

Example (the README runs it)::

    session = Session(frames, load_predictor(weights), num_objects=2)
    first = session.add(Scribble(0, strokes))          # frame 0's masks, at once
    for update in session.propagate():                 # then every other frame of the round
        print(update.frame, update.kind, update.done, "/", update.total)
    labels = session.labels[10]                        # a read-only copy of frame 10's labels

Real videos: the networks run on frames whose shorter side is at most ``size`` (480 by default, ATNet's
training size); probabilities are kept at that processing size and upsampled (bilinear) to the video's
size before the merge, so labels come at the video's own size. Where the predictor gives its logits before the
last upsampling (ATNet's, at 1/4), the session finishes them on the host with
:func:`~atnet_jax.models.expand.expand_logits`, the same bits on any machine, and keeps the last round's
(:attr:`Session.last_round`), from which the studio recomputes a round exactly. Probabilities and labels live in
file-backed stores (:mod:`atnet_jax.inference.store`) in a temporary folder removed by :meth:`Session.close`,
so memory stays flat in the video's length.
"""
from __future__ import annotations

import itertools
import shutil
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

from atnet_jax.errors import ConflictError, UsageError
from atnet_jax.inference.features import FeatureCache
from atnet_jax.inference.plan import (
    RELEASED_PROPAGATION_PROPORTION,
    Direction,
    RoundPlan,
    blend,
    merge_objects,
)
from atnet_jax.inference.reader import FrameReader, Frames
from atnet_jax.inference.rounds import (
    FrameUpdate,
    PendingRound,
    Propagation,
    RoundInfo,
    RoundLogits,
    SessionState,
    frame_crc,
)
from atnet_jax.inference.store import FrameStore, ReadOnlyFrames
from atnet_jax.inference.undo import UndoLog
from atnet_jax.interaction.kinds import ROUND1_PREVIOUS_MASK, Interaction, Scribble
from atnet_jax.interaction.scribbles import interaction_maps
from atnet_jax.models.expand import expand_logits
from atnet_jax.models.predictor import Predictor
from atnet_jax.models.preprocess import (
    DEFAULT_PROCESSING_SIZE,
    PadInfo,
    pad_info_for,
    processing_shape,
    reflect_pad,
    resize_maps,
)

__all__ = ["FrameUpdate", "Propagation", "RoundInfo", "Session", "SessionState"]


def _one_hot(labels: np.ndarray, num_objects: int) -> np.ndarray:
    """``[H, W]`` labels -> ``[K, H, W]`` float32 masks of objects 1..K (A-Net's previous-mask channel)."""
    return (labels[None] == np.arange(1, num_objects + 1)[:, None, None]).astype(np.float32)


def _to_host_async(x: Any) -> None:
    copy = getattr(x, "copy_to_host_async", None)
    if copy is not None:
        copy()


class Session:
    """Interactive segmentation of one video with one predictor (the networks).

    Args:
      frames: the video (``len`` and ``frames[i] -> [H, W, 3] uint8 RGB``); read lazily, frame by frame, and
        ahead of the networks in a reader thread (so ``frames[i]`` must be safe to call from another thread).
      predictor: the compiled networks (:class:`~atnet_jax.models.predictor.ATNetPredictor`, from a weights
        folder with ``atnet_jax.io.weights.load_predictor``), or another :class:`Predictor`.
      num_objects: K, the objects to segment (ids 1..K).
      size: the processing size: the networks see frames whose shorter side is at most ``size`` pixels
        (shrunk with area averaging where larger; 480 by default, the size ATNet was trained at; None for
        the video's full size). Labels always come at the video's own size.
      max_annotations: annotated frames the global transfer holds before it recompiles for more (the
        DAVIS protocol has 8 rounds).
      feature_cache_bytes: host memory for cached encoder features (with T-Net's per-frame decoder work: 88 MiB
        per 480p frame in float32, see :class:`FeatureCache`); the rest is spilled to disk.
      progress: show a progress bar while propagating.
      propagation_proportion: how far a round propagates towards an earlier annotation (see
        :class:`RoundPlan`; the released code's 0.99 by default, 1.0 up to the annotated frame).
      encoder_batch: frames T-Net's encoder runs at once in round 1 (default: 8 on accelerators, 1 on CPU).

    Results: ``labels[t] -> [H, W]`` uint8 at the video's size and ``probabilities[t] -> [K, h, w]`` float32 at
    the processing size ``processing_shape = (h, w)`` (:meth:`video_probabilities` upsamples them) are
    read-only views whose items are copies; ``annotated`` and ``strokes`` are copies. :meth:`close` removes the
    session's files.
    """

    def __init__(
        self,
        frames: Frames,
        predictor: Predictor,
        num_objects: int,
        *,
        size: int | None = DEFAULT_PROCESSING_SIZE,
        max_annotations: int = 8,
        feature_cache_bytes: int = 2 << 30,
        progress: bool = False,
        propagation_proportion: float = RELEASED_PROPAGATION_PROPORTION,
        encoder_batch: int | None = None,
    ) -> None:
        if not isinstance(predictor, Predictor):
            raise TypeError(f"predictor must be a Predictor (e.g. ATNetPredictor), got {type(predictor).__name__}")
        if num_objects < 1:
            raise UsageError(f"num_objects must be at least 1, got {num_objects}")
        if len(frames) < 1:
            raise UsageError("the video has no frames")
        first = np.asarray(frames[0])
        if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
            raise UsageError(f"frames must be [H, W, 3] uint8 RGB, got frame 0 {first.shape} {first.dtype}")
        self.frames = frames
        self.predictor = predictor
        self.num_frames = len(frames)
        self.num_objects = num_objects
        self.height, self.width = first.shape[:2]
        self.size = size
        self.processing_shape: tuple[int, int] = processing_shape(self.height, self.width, size)
        self.pad: PadInfo = pad_info_for(*self.processing_shape)
        self._max_annotations = max_annotations
        self._progress = progress
        self.propagation_proportion = propagation_proportion
        self.encoder_batch = encoder_batch or (1 if jax.default_backend() == "cpu" else 8)
        self._reader = FrameReader(frames, (self.height, self.width), self.processing_shape, self.pad)
        self._workdir = Path(tempfile.mkdtemp(prefix="atnet_jax_session_"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._workdir, True)
        self._files = itertools.count()
        self.features = FeatureCache(self._encode_frames, feature_cache_bytes, folder=self._workdir)
        # Per frame and object, the blended probability, in float32 as the released code keeps it.
        self._probabilities = self._new_store((num_objects, *self.processing_shape))
        self._labels = FrameStore(self._workdir / "labels.u8", self.num_frames, (self.height, self.width), np.uint8)
        self._written = np.zeros(self.num_frames, bool)  # frames whose probabilities were stored (the rest: zeros)
        self._annotated: list[int] = []
        self._strokes: dict[int, list[dict]] = {}
        self._annotated_r5: list[Any] = []
        self._indicators: list[Any] = []
        self._fused_indicators: list[Any] = []
        self._round: PendingRound | None = None
        self._last_round: RoundLogits | None = None
        self._batch_chains = True  # False: one direction after the other (the released order), for comparison
        self.last_round_seconds = 0.0
        self.labels = ReadOnlyFrames(lambda: self._labels)
        self.probabilities = ReadOnlyFrames(lambda: self._probabilities)

    # ------------------------------------------------------------------------------------------------ state

    def _new_store(self, frame_shape: tuple[int, ...]) -> FrameStore:
        return FrameStore(self._workdir / f"probabilities-{next(self._files)}.f32", self.num_frames, frame_shape,
                          np.float32)

    @property
    def annotated(self) -> list[int]:
        """The frames annotated so far, in round order (a copy)."""
        return list(self._annotated)

    @property
    def strokes(self) -> dict[int, list[dict]]:
        """Every stroke placed so far, per frame (a copy)."""
        return {t: [dict(s) for s in strokes] for t, strokes in self._strokes.items()}

    @property
    def workdir(self) -> Path:
        """The temporary folder of the session's files (removed by :meth:`close`)."""
        return self._workdir

    @property
    def resized(self) -> bool:
        """Whether the networks run at another size than the video's."""
        return self.processing_shape != (self.height, self.width)

    @property
    def trace_counts(self) -> dict[str, int]:
        """How often each network call was traced (compiled) so far (shared by the predictors of a config)."""
        return self.predictor.trace_counts

    @property
    def last_round(self) -> RoundLogits | None:
        """The logits of the round finished last, from which its probabilities are recomputed exactly; None
        where the predictor gives none, before the first round, and after anything else changed the session
        (a restore, an object edit). Valid until the next change."""
        return self._last_round

    def _set_last_round(self, record: RoundLogits | None) -> None:
        if self._last_round is not None and self._last_round is not record:
            self._last_round.close()
        self._last_round = record

    @property
    def window(self) -> tuple[int, int, int, int]:
        """``(top, left, h, w)``: the processing-size frame inside the padded one the networks see."""
        (top, _), (left, _) = self.pad
        return top, left, *self.processing_shape

    @property
    def pending(self) -> RoundPlan | None:
        """The plan of the round added and not yet propagated to its end, or None."""
        return None if self._round is None else self._round.plan

    def plan(self, frame: int) -> RoundPlan:
        """The frames a round on ``frame`` would update now, in order."""
        self._check_frame(frame)
        return RoundPlan.make(frame, self._annotated, self.num_frames, self.propagation_proportion)

    def warmup(self) -> None:
        """Compile the network calls for this video's shapes now, on zeros, so that round timings hold
        only the model's run time. Nothing is done where the shapes were compiled before."""
        (top, bottom), (left, right) = self.pad
        h, w = self.processing_shape
        hp, wp = h + top + bottom, w + left + right
        key = (hp, wp, self.num_objects, self._max_annotations, self.encoder_batch)
        if key in self.predictor.warmed:
            return
        k, m = self.num_objects, self._max_annotations
        image = np.zeros((1, hp, wp, 3), np.float32)
        outputs, indicator = self.predictor.annotate(np.broadcast_to(image, (k, hp, wp, 3)),
                                                     np.zeros((k, hp, wp, 3), np.float32))
        prob = self.predictor.probabilities(outputs)
        feats = jax.device_get(self.predictor.encode(image))
        if self.encoder_batch > 1:
            self.predictor.encode(np.broadcast_to(image, (self.encoder_batch, hp, wp, 3)))
        fused = self.predictor.fuse(indicator)
        # The same eager array ops as a round (each compiles once per shape), so that rounds compile nothing.
        r5 = jnp.asarray(feats["r5"])
        annotated_r5 = jnp.stack([r5] + [jnp.zeros_like(r5)] * (m - 1))
        fused_indicators = jnp.stack([jnp.asarray(fused)] + [jnp.zeros_like(jnp.asarray(fused))] * (m - 1))
        frame_mask = jnp.arange(m) < 1
        out = self.predictor.step(feats, annotated_r5, fused_indicators, frame_mask, feats["r2"], prob)
        if self.num_frames > 2:  # a round inside the video steps its backward and forward chains together
            self.predictor.step_chains([feats, feats], annotated_r5, fused_indicators, frame_mask,
                                       [feats["r2"]] * 2, [prob, self.predictor.probabilities(out)])
        result = self._fetchable(out)
        _to_host_async(result)
        self._host_probabilities(result)
        self.predictor.warmed.add(key)

    # ------------------------------------------------------------------------------------------------ rounds

    def add(self, interaction: Interaction) -> FrameUpdate:
        """Place ``interaction`` on its frame and segment that frame (A-Net) -> the frame's result, at once.

        This starts a round (see :meth:`propagate`); adding more on the same frame before propagating runs A-Net
        again with everything placed there. The interaction adds to the strokes placed on that frame in earlier
        rounds.
        """
        frame = self._check_frame(interaction.frame)
        ids = sorted(i for i in interaction.object_ids() if not 0 <= i <= self.num_objects)
        if ids:
            raise UsageError(f"object id(s) {ids} on frame {frame}: there are {self.num_objects} objects (0 is "
                             "background)")
        pending = self._round
        if pending is not None and (pending.plan.frame != frame or pending.propagating):
            raise ConflictError(f"a round on frame {pending.plan.frame} is under way: propagate or cancel it first")
        start = time.perf_counter()
        if pending is None:
            pending = self._new_round(frame)
        earlier = [*self._strokes.get(frame, []), *pending.strokes]
        positive, negative = interaction.maps(earlier, *self.processing_shape, self.num_objects, pending.previous)
        update = self._annotate_round(pending, positive, negative, start)
        pending.strokes.extend(interaction.to_strokes())
        return update

    def add_maps(self, frame: int, positive: np.ndarray, negative: np.ndarray) -> FrameUpdate:
        """:meth:`add` from rasterised interaction maps ``positive, negative: [K, H, W]`` in [0, 1] (no strokes
        are recorded). Maps at the video's size are shrunk (area averaging) to the processing size; maps at the
        processing size are used as given."""
        frame = self._check_frame(frame)
        if self._round is not None:
            raise ConflictError(f"a round on frame {self._round.plan.frame} is under way: propagate or cancel it "
                                "first")
        shape = (self.num_objects, *self.processing_shape)
        video_shape = (self.num_objects, self.height, self.width)
        if np.shape(positive) == video_shape and np.shape(negative) == video_shape and self.resized:
            positive = resize_maps(np.asarray(positive, np.float32), self.processing_shape, mode="area")
            negative = resize_maps(np.asarray(negative, np.float32), self.processing_shape, mode="area")
        if np.shape(positive) != shape or np.shape(negative) != shape:
            raise UsageError(f"interaction maps must be [K, H, W] = {video_shape} (or {shape}, the processing "
                             f"size), got {np.shape(positive)}, {np.shape(negative)}")
        start = time.perf_counter()
        return self._annotate_round(self._new_round(frame), positive, negative, start)

    def _new_round(self, frame: int) -> PendingRound:
        """A round on ``frame`` (not yet the session's: :meth:`_annotate_round` makes it so once A-Net ran)."""
        previous = self._processing_labels(frame) if self._annotated else None
        pending = PendingRound(self.plan(frame), UndoLog(self._workdir / "undo.f32", self._probabilities), previous,
                               [], annotated_before=len(self._annotated))
        stride = self.predictor.logits_stride
        if stride:
            (top, bottom), (left, right) = self.pad
            h, w = self.processing_shape
            shape = (self.num_objects, (h + top + bottom) // stride, (w + left + right) // stride)
            store = FrameStore(self._workdir / f"logits-{next(self._files)}.f32", self.num_frames, shape, np.float32)
            pending.logits = RoundLogits(stride, self.window, store)
        return pending

    def _annotate_round(self, pending: PendingRound, positive: np.ndarray, negative: np.ndarray,
                        start: float) -> FrameUpdate:
        """A-Net on the round's frame, stored -> the frame's update; the model time counts from ``start``. Where
        A-Net fails on a round that was not yet the session's, what it stored is undone."""
        frame = pending.plan.frame
        if pending.previous is not None:
            previous_mask = _one_hot(pending.previous, self.num_objects)
        else:
            previous_mask = np.full((self.num_objects, *self.processing_shape), ROUND1_PREVIOUS_MASK, np.float32)
        try:
            pending.outputs, pending.indicator = self._annotate(frame, previous_mask, positive, negative)
            # A-Net's mask is stored before the frame's encoder features are computed.
            self._store(frame, self._fetchable(pending.outputs), 1.0, pending)
        except BaseException:
            if self._round is not pending:
                self._undo(pending)
            raise
        self._round = pending
        pending.seconds += time.perf_counter() - start
        return self._update(frame, "annotated", 1, pending.plan.total)

    def propagate(self, direction: Direction = "both", until: int | None = None) -> Propagation:
        """Propagate the round added last -> a generator of the round's other frames, each :class:`FrameUpdate`
        after its result is stored. Both directions step together, so the frames come nearest first, alternating:
        per step the backward chain's frame, then the forward one's, and the longer chain's rest alone.

        ``direction``: "both" (the paper's round), "forward" or "backward" only; ``until``: the last frame to
        update on its side of the annotated frame (:meth:`RoundPlan.limited`). The frames left out keep their
        results; those updated are blended with the same eq.-(6) weights as in a whole round.

        Stopping early (``close()`` on what it returns, or :meth:`cancel`) and any error put the session back
        exactly as it was before the round.
        """
        pending = self._round
        if pending is None:
            raise UsageError("nothing to propagate: add an interaction first")
        if pending.updates is not None:
            raise ConflictError(f"the round on frame {pending.plan.frame} is already propagating")
        if until is not None:
            self._check_frame(until)
        pending.plan = pending.plan.limited(direction, until)
        pending.updates = self._propagate(pending)
        return Propagation(self, pending)

    def _propagate(self, pending: PendingRound) -> Iterator[FrameUpdate]:
        pending.propagating = True
        plan, frame = pending.plan, pending.plan.frame
        bar = None
        clock = time.perf_counter()
        try:
            target = self.features.get(frame)
            self._annotated.append(frame)
            self._annotated_r5.append(jnp.asarray(target["r5"]))
            self._indicators.append(pending.indicator)
            self._fused_indicators.append(self.predictor.fuse(pending.indicator))
            global_inputs = self._global_inputs()
            if self._progress:
                from tqdm import tqdm

                bar = tqdm(total=plan.total - 1, unit="frame", leave=False,
                           desc=f"round {len(self._annotated)}: propagating from frame {frame}")
            done = 1
            chains = [d for d in (plan.backward, plan.forward) if d]
            # Both directions step together (one batch per step); the sequential order is kept for comparison.
            groups = [chains] if self._batch_chains else [[d] for d in chains]
            for group in groups:
                # Each chain starts from A-Net's map, then follows T-Net's own unblended output.
                start = self.predictor.probabilities(pending.outputs)
                for t, alpha, result in self._chains(start, target, group, global_inputs):
                    done += 1
                    update = self._finish(pending, t, alpha, result, done, bar)
                    # The clock stops while the caller holds an update: only the model's time counts.
                    pending.seconds += time.perf_counter() - clock
                    yield update
                    clock = time.perf_counter()
        except BaseException:
            self._rollback(pending)
            raise
        finally:
            if bar is not None:
                bar.close()
        pending.seconds += time.perf_counter() - clock
        pending.undo.close()
        if pending.strokes:
            self._strokes.setdefault(frame, []).extend(pending.strokes)
        self._round = None
        self._set_last_round(pending.logits)
        self.last_round_seconds = pending.seconds

    def _chains(self, start_prob: Any, target: dict[str, Any], directions: Sequence[Sequence[tuple[int, float]]],
                global_inputs: tuple[Any, Any, Any]) -> Iterator[tuple[int, float, Any]]:
        """T-Net's chains over ``directions`` (each a list of frames with their eq.-(6) weights), all from
        ``start_prob``, stepped together: one network call per step for every chain still running (a chain that
        ends leaves the others to go on alone) -> each frame's ``(t, alpha, result)``, a step's frames in the
        order of ``directions``, handed out once the next step is dispatched: step i's results are fetched while
        the device computes step i + 1."""
        annotated_r5, fused_indicators, frame_mask = global_inputs
        orders = [[t for t, _ in d] for d in directions]
        probs = [start_prob] * len(directions)
        r2s = [target["r2"]] * len(directions)
        b = self.encoder_batch
        waiting: list[tuple[int, float, Any]] = []
        for i in range(max((len(d) for d in directions), default=0)):
            live = [c for c, d in enumerate(directions) if i < len(d)]
            feats = [self.features.get(orders[c][i], orders[c][i + 1 : i + b]) for c in live]
            for c in live:
                self._reader.read_ahead(orders[c][i + b : i + 2 * b], self.features.has)
            if len(live) == 1:
                c = live[0]
                out = [self.predictor.step(feats[0], annotated_r5, fused_indicators, frame_mask, r2s[c], probs[c])]
            else:
                out = self.predictor.step_chains(feats, annotated_r5, fused_indicators, frame_mask,
                                                 [r2s[c] for c in live], [probs[c] for c in live])
            results = []
            for c, f, outputs in zip(live, feats, out, strict=True):
                probs[c], r2s[c] = self.predictor.probabilities(outputs), f["r2"]
                result = self._fetchable(outputs)
                _to_host_async(result)
                results.append((*directions[c][i], result))
            yield from waiting
            waiting = results
        yield from waiting

    def _finish(self, pending: PendingRound, t: int, alpha: float, result: Any, done: int, bar: Any) -> FrameUpdate:
        self._store(t, result, alpha, pending)
        if bar is not None:
            bar.update()
        return self._update(t, "propagated", done, pending.plan.total)

    def cancel(self) -> None:
        """Drop the round under way (added, or propagating between two updates): the session goes back exactly
        to its state before it. Nothing happens where no round is under way."""
        pending = self._round
        if pending is None:
            return
        if pending.updates is not None:
            pending.updates.close()  # a started generator rolls the round back as it stops
        if self._round is pending:
            self._rollback(pending)

    def _rollback(self, pending: PendingRound) -> None:
        self._undo(pending)
        annotated_before = pending.annotated_before
        del self._annotated[annotated_before:]
        del self._annotated_r5[annotated_before:]
        del self._indicators[annotated_before:]
        del self._fused_indicators[annotated_before:]
        self._round = None

    def _undo(self, pending: PendingRound) -> None:
        if pending.logits is not None:
            pending.logits.close()
        undo = pending.undo
        for t in undo.frames:
            old = undo.saved(t)
            self._written[t] = old is not None
            if old is None:
                old = np.zeros(self._probabilities.frame_shape, np.float32)
            self._probabilities[t] = old
            self._labels[t] = self._merge(old)
        undo.close()

    def interact(self, interaction: Interaction | int, strokes: Sequence[dict] | None = None, *,
                 direction: Direction = "both", until: int | None = None) -> RoundInfo:
        """A whole round: :meth:`add` then :meth:`propagate` (with ``direction`` and ``until``) to the end.
        ``interact(Scribble(t, strokes))``, or ``interact(t, strokes)`` for DAVIS strokes on frame ``t``. A
        range that does not fit is refused before A-Net runs."""
        if not isinstance(interaction, Interaction):
            interaction = Scribble(interaction, strokes or ())
        if until is not None:
            self._check_frame(until)
        self.plan(interaction.frame).limited(direction, until)
        return self._run(self.add(interaction), direction, until)

    def interact_maps(self, frame: int, positive: np.ndarray, negative: np.ndarray) -> RoundInfo:
        """A whole round from rasterised maps (:meth:`add_maps`, then :meth:`propagate` to the end)."""
        return self._run(self.add_maps(frame, positive, negative))

    def _run(self, first: FrameUpdate, direction: Direction = "both", until: int | None = None) -> RoundInfo:
        try:
            updates = self.propagate(direction, until)
        except BaseException:
            self.cancel()
            raise
        frames = [first.frame, *(u.frame for u in updates)]
        return RoundInfo(first.frame, tuple(frames), self.last_round_seconds)

    # ------------------------------------------------------------------------------------------- networks

    def _check_frame(self, frame: object) -> int:
        if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
            raise UsageError(f"frame must be an integer, got {frame!r}")
        if not 0 <= frame < self.num_frames:
            raise UsageError(f"frame {frame} is outside the video (0..{self.num_frames - 1})")
        return int(frame)

    def _encode_frames(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
        """T-Net encoder features of ``indices``, ``encoder_batch`` frames per call (one compile: a short last
        batch is filled with repeats)."""
        out: list[dict[str, np.ndarray]] = []
        b = self.encoder_batch
        for i in range(0, len(indices), b):
            chunk = list(indices[i : i + b])
            images = np.concatenate([self._reader.image(t) for t in chunk])
            if b > 1 and len(chunk) < b:
                images = np.concatenate([images, np.repeat(images[-1:], b - len(chunk), axis=0)])
            feats = jax.device_get(self.predictor.encode(images))
            # Copies where batched: a view would keep the whole batch in memory while the cache counts one frame.
            out.extend({k: v[j : j + 1] if b == 1 else v[j : j + 1].copy() for k, v in feats.items()}
                       for j in range(len(chunk)))
        return out

    def _annotate(self, t: int, previous_mask: np.ndarray, positive: np.ndarray,
                  negative: np.ndarray) -> tuple[Any, Any]:
        """A-Net on frame ``t`` for the objects of the ``[K, h, w]`` maps -> (probabilities ``[K, hp, wp, 1]``,
        converter features)."""
        interaction = reflect_pad(np.stack([previous_mask, positive, negative], axis=-1).astype(np.float32), self.pad)
        image = self._reader.image(t)
        return self.predictor.annotate(np.broadcast_to(image, (len(positive), *image.shape[1:])), interaction)

    def _global_inputs(self) -> tuple[Any, Any, Any]:
        """Annotated-frame r5 and fused indicators padded to a fixed count (one compile for every round)."""
        n = len(self._annotated_r5)
        while self._max_annotations < n:
            self._max_annotations *= 2
        pad = self._max_annotations - n
        fused = [jnp.asarray(f) for f in self._fused_indicators]
        r5 = jnp.stack(self._annotated_r5 + [jnp.zeros_like(self._annotated_r5[0])] * pad)
        ind = jnp.stack(fused + [jnp.zeros_like(fused[0])] * pad)
        return r5, ind, jnp.arange(self._max_annotations) < n

    def _set_indicators(self, indicators: list[Any]) -> None:
        self._indicators = indicators
        self._fused_indicators = [self.predictor.fuse(i) for i in indicators]

    def _crop_device(self, x: Any) -> Any:
        (top, _), (left, _) = self.pad
        h, w = self.processing_shape
        return x[..., top : top + h, left : left + w, 0]

    def _fetchable(self, outputs: Any) -> Any:
        """What the host needs of a network call's outputs: the logits where the predictor gives them, else the
        probabilities cropped to the processing size."""
        logits = self.predictor.logits(outputs)
        return logits if logits is not None else self._crop_device(self.predictor.probabilities(outputs))

    def _host_probabilities(self, fetched: Any) -> np.ndarray:
        """:meth:`_fetchable`'s array -> ``[K, h, w]`` float32 probabilities at the processing size."""
        fetched = np.asarray(fetched, np.float32)
        stride = self.predictor.logits_stride
        return expand_logits(fetched[..., 0], stride, self.window) if stride else fetched

    # ------------------------------------------------------------------------------------------------ stores

    def _store(self, t: int, fetched: Any, alpha: float, pending: PendingRound) -> None:
        """Blend frame ``t``'s new probabilities (from :meth:`_fetchable`'s array) with the stored ones (eq. 6),
        update its labels and record what the round replaced (and its logits)."""
        old = self._probabilities[t] if self._written[t] else None
        pending.undo.save(t, old)
        fetched = np.asarray(fetched, np.float32)
        record = pending.logits
        if record is not None:
            record.logits[t] = fetched[..., 0]
            record.alphas[t] = alpha
            if alpha < 1.0:
                before = old if old is not None else np.zeros(self._probabilities.frame_shape, np.float32)
                record.before_crc[t] = frame_crc(before)
        new = blend(self._host_probabilities(fetched), old, alpha)
        self._probabilities[t] = new
        self._labels[t] = self._merge(new)
        self._written[t] = True

    def _update(self, t: int, kind: Literal["annotated", "propagated"], done: int, total: int) -> FrameUpdate:
        labels = self._labels[t]
        labels.flags.writeable = False
        return FrameUpdate(t, kind, done, total, labels)

    def _merge(self, probabilities: np.ndarray) -> np.ndarray:
        """``[K, h, w]`` probabilities -> ``[H, W]`` labels: upsampled (bilinear) to the video's size, then merged."""
        return merge_objects(resize_maps(probabilities, (self.height, self.width), mode="linear"))

    def video_probabilities(self, t: int) -> np.ndarray:
        """Frame ``t``'s object probabilities at the video's size, ``[K, H, W]`` float32 (bilinear upsampling)."""
        return resize_maps(self._probabilities[t], (self.height, self.width), mode="linear")

    def _processing_labels(self, t: int) -> np.ndarray:
        """Frame ``t``'s labels at the processing size (A-Net's previous mask, negative scribbles)."""
        return self._labels[t] if not self.resized else merge_objects(self._probabilities[t])

    # ------------------------------------------------------------------------------------ state and objects

    def _check_idle(self, what: str) -> None:
        if self._round is not None:
            raise ConflictError(f"cannot {what} while the round on frame {self._round.plan.frame} is under way")

    def snapshot(self, *, copy: bool = True) -> SessionState:
        """A copy of the session's state (:meth:`restore` brings it back exactly); its probabilities are a
        file-backed copy, not an array in RAM. ``copy=False`` gives the live probability store instead, for a
        caller that reads it at once, before the session changes (no copy of every frame)."""
        self._check_idle("take a snapshot")
        probabilities = (self._probabilities.temporary_copy(prefix="atnet_jax_snapshot_") if copy
                         else self._probabilities)
        return SessionState(probabilities, self.annotated, self.strokes,
                            [np.asarray(jax.device_get(i), np.float32) for i in self._indicators])

    def restore(self, state: SessionState) -> None:
        """Return to ``state`` (from :meth:`snapshot`, or saved and read back), the number of objects included."""
        self._check_idle("restore a state")
        probabilities = state.probabilities
        shape = tuple(probabilities.shape)
        if len(shape) != 4 or shape[0] != self.num_frames or shape[2:] != self.processing_shape:
            raise UsageError(f"the state's probabilities {shape} do not fit this video ({self.num_frames} frames "
                             f"processed at {self.processing_shape[0]}x{self.processing_shape[1]})")
        if len(state.indicators) != len(state.annotated):
            raise UsageError(f"the state has {len(state.annotated)} annotated frames but "
                             f"{len(state.indicators)} indicators")
        if isinstance(probabilities, FrameStore) and probabilities.dtype == np.float32:
            store = probabilities.copy_to(self._workdir / f"probabilities-{next(self._files)}.f32")
        else:
            store = self._new_store(shape[1:])
            for t in range(self.num_frames):
                store[t] = np.asarray(probabilities[t], np.float32)
        self._probabilities.close()
        self._probabilities = store
        self._set_last_round(None)
        self._written[:] = True
        self.num_objects = shape[1]
        for t in range(self.num_frames):
            self._labels[t] = self._merge(self._probabilities[t])
        self._annotated = list(state.annotated)
        self._strokes = {int(t): [dict(s) for s in strokes] for t, strokes in state.strokes.items()}
        self._set_indicators([jnp.asarray(i) for i in state.indicators])
        self._annotated_r5 = [jnp.asarray(self.features.get(t)["r5"]) for t in self._annotated]

    def _map_objects(self, num_objects: int, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        """Rewrite the probability store frame by frame with ``fn: [K, h, w] -> [num_objects, h, w]``."""
        store = self._probabilities.mapped(self._workdir / f"probabilities-{next(self._files)}.f32",
                                           (num_objects, *self.processing_shape), fn)
        self._probabilities.close()
        self._probabilities = store
        self._set_last_round(None)
        self.num_objects = num_objects

    def add_object(self) -> int:
        """Add an object that is empty on every frame; returns its id (K + 1).

        Its converter features at the frames annotated so far come from A-Net on each such frame with the
        object absent (previous mask 0, no strokes of its own), so that its global transfer averages over every
        annotated frame as the others' does.
        """
        self._check_idle("add an object")
        k = self.num_objects + 1
        indicators = []
        for i, t in enumerate(self._annotated):
            prev = self._processing_labels(t)
            positive, negative = interaction_maps(self._strokes.get(t, []), *self.processing_shape, k, prev)
            _, indicator = self._annotate(t, _one_hot(prev, k), positive, negative)
            indicators.append(jnp.concatenate([jnp.asarray(self._indicators[i]), jnp.asarray(indicator)[-1:]],
                                              axis=0))
        self._set_indicators(indicators)
        zeros = np.zeros((1, *self.processing_shape), np.float32)
        self._map_objects(k, lambda p: np.concatenate([p, zeros]))  # labels do not change: the new object is 0
        return k

    def remove_object(self, object_id: int) -> None:
        """Remove object ``object_id`` (its masks, strokes and features); objects above it move down one id."""
        self._check_idle("remove an object")
        if not 1 <= object_id <= self.num_objects:
            raise UsageError(f"object {object_id} does not exist (objects 1..{self.num_objects})")
        if self.num_objects == 1:
            raise ConflictError("the only object cannot be removed")
        keep = [k for k in range(self.num_objects) if k != object_id - 1]
        self._set_indicators([jnp.asarray(i)[np.asarray(keep)] for i in self._indicators])
        self._map_objects(len(keep), lambda p: p[keep])
        strokes = {}
        for t, frame_strokes in self._strokes.items():
            moved = []
            for s in frame_strokes:
                oid = int(s["object_id"])
                if oid == object_id:
                    continue
                moved.append({**s, "object_id": oid - 1 if oid > object_id else oid})
            strokes[t] = moved
        self._strokes = strokes
        for t in range(self.num_frames):
            self._labels[t] = self._merge(self._probabilities[t])

    def close(self) -> None:
        """Remove the session's files: spilled features, probabilities and labels (read results first)."""
        self._reader.close()
        self._set_last_round(None)
        self.features.close()
        self._probabilities.close()
        self._labels.close()
        self._cleanup()
