"""An interactive segmentation session over one video: scribbles in, a mask for every frame out, round by round.

Round r (the released code's semantics, see DESIGN "Interactive inference"):
1. A-Net segments the annotated frame ``a_r`` for all objects at once (objects are the batch); its converter
   gives each object's features ``F_o`` for the global transfer.
2. T-Net propagates backward, then forward, from ``a_r`` and stops before the nearest previously annotated
   frame on each side. The previous map of the first step is A-Net's output, then T-Net's own (unblended)
   output. The global transfer averages over every annotated frame so far.
3. Each new probability is blended with the previous round's (eq. 6): ``p = alpha * p_new + (1 - alpha) * p_old``
   with alpha falling linearly from 1 at ``a_r`` to 0.5 at the previously annotated frame (1 where no
   annotated frame lies on that side).
4. Labels: ``argmax_k p_k`` where that probability exceeds 0.8, else background.

Real videos: the networks run on frames whose shorter side is at most ``size`` (480 by default, ATNet's
training size); probabilities are kept at that processing size and upsampled (bilinear) to the video's
size before the merge, so labels come at the video's own size. Probabilities and labels live in
file-backed stores (:mod:`atnet_jax.inference.store`) in a temporary folder removed by :meth:`Session.close`,
so memory stays flat in the video's length.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import shutil
import tempfile
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from atnet_jax.inference.store import FrameStore
from atnet_jax.models import AnnotationNet, ModelConfig, TransferNet
from atnet_jax.models.preprocess import (
    DEFAULT_PROCESSING_SIZE,
    PadInfo,
    normalize_frames,
    pad_info_for,
    processing_shape,
    reflect_pad,
    resize_frame,
    resize_maps,
)

MERGE_THRESHOLD = 0.8
ROUND1_PREVIOUS_MASK = 0.5


class Frames(Protocol):
    """Random access to a video's RGB frames: ``len(frames)`` and ``frames[i] -> [H, W, 3] uint8``."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray: ...


def blend_weight(t: int, annotated_now: int, annotated_before: int | None) -> float:
    """alpha of eq. (6) for frame ``t`` propagated from ``annotated_now`` towards ``annotated_before``.

    ``0.5 + 0.5 * |t - a_before| / |a_now - a_before|``: 1 at the new annotation, 0.5 at the old one;
    1 where no annotated frame lies on that side (``annotated_before`` is None).
    """
    if annotated_before is None:
        return 1.0
    return 0.5 + 0.5 * abs(t - annotated_before) / abs(annotated_now - annotated_before)


RELEASED_PROPAGATION_PROPORTION = 0.99
"""The released code's ``config.py`` ``test_propagation_proportion``."""


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


def _one_hot(labels: np.ndarray, num_objects: int) -> np.ndarray:
    """``[H, W]`` labels -> ``[K, H, W]`` float32 masks of objects 1..K (A-Net's previous-mask channel)."""
    return (labels[None] == np.arange(1, num_objects + 1)[:, None, None]).astype(np.float32)


@dataclasses.dataclass
class _Networks:
    """The jitted network calls of a session, with how often each was traced (compiled)."""

    anet: Callable[..., Any]
    encode: Callable[..., Any]
    fuse: Callable[..., Any]
    step: Callable[..., Any]
    traces: dict[str, int]
    warm: set[tuple[int, ...]] = dataclasses.field(default_factory=set)


def _build_networks(config: ModelConfig) -> _Networks:
    anet, tnet = AnnotationNet(config), TransferNet(config)
    traces = {"anet": 0, "encode": 0, "fuse": 0, "step": 0}

    def anet_fn(variables, image, interaction):
        traces["anet"] += 1
        logits, aux = anet.apply(variables, image, interaction)
        return jax.nn.sigmoid(logits), aux["indicator"]

    def encode_fn(variables, image):
        # With conv1x1's target half: it depends on the frame alone, so it is cached with the features.
        traces["encode"] += 1
        feats = tnet.apply(variables, image, method=TransferNet.encode)
        fused = tnet.apply(variables, feats["r5"], method=TransferNet.fuse_target)
        return {"r2": feats["r2"], "r3": feats["r3"], "r5": feats["r5"], "r5_fused": fused}

    def fuse_fn(variables, indicator):
        traces["fuse"] += 1
        return tnet.apply(variables, indicator, method=TransferNet.fuse_global)

    def step_fn(variables, target, annotated_r5, fused_indicators, frame_mask, prev_r2, prev_prob):
        traces["step"] += 1
        logits, _ = tnet.apply(variables, target, annotated_r5, fused_indicators, prev_r2, prev_prob, frame_mask,
                               method=TransferNet.decode_split)
        return jax.nn.sigmoid(logits)

    return _Networks(jax.jit(anet_fn), jax.jit(encode_fn), jax.jit(fuse_fn), jax.jit(step_fn), traces)


class FeatureCache:
    """T-Net encoder features per frame, computed once per video.

    ``compute(indices)`` encodes several frames at once (a batch on accelerators). Up to ``memory_bytes``
    stay in host memory (least recently used first out); the rest is spilled to ``.npz`` files in
    ``folder`` (a temporary folder where None), so long videos keep a bounded footprint.
    """

    def __init__(self, compute: Callable[[Sequence[int]], list[dict[str, np.ndarray]]], memory_bytes: int,
                 *, folder: Path | None = None) -> None:
        self._compute = compute
        self._memory_bytes = memory_bytes
        self._ram: OrderedDict[int, dict[str, np.ndarray]] = OrderedDict()
        self._ram_bytes = 0
        self._disk: dict[int, Path] = {}
        self._folder = folder
        self._tmp: Path | None = None
        self.computed = 0

    def has(self, index: int) -> bool:
        return index in self._ram or index in self._disk

    def get(self, index: int, upcoming: Sequence[int] = ()) -> dict[str, np.ndarray]:
        """The features of frame ``index``; where they must be computed, those of the ``upcoming`` frames not
        cached yet are computed in the same batch."""
        if index in self._ram:
            self._ram.move_to_end(index)
            return self._ram[index]
        if index in self._disk:
            with np.load(self._disk[index]) as data:
                feats = {k: data[k] for k in data.files}
            self._keep(index, feats)
            return feats
        batch = [index, *(t for t in upcoming if not self.has(t) and t != index)]
        computed = self._compute(batch)
        self.computed += len(batch)
        for t, feats in reversed(list(zip(batch, computed))):  # the requested frame last: most recently used
            self._keep(t, feats)
        return computed[0]

    def _keep(self, index: int, feats: dict[str, np.ndarray]) -> None:
        self._ram[index] = feats
        self._ram_bytes += sum(v.nbytes for v in feats.values())
        while self._ram_bytes > self._memory_bytes and len(self._ram) > 1:
            old, old_feats = self._ram.popitem(last=False)
            self._ram_bytes -= sum(v.nbytes for v in old_feats.values())
            if old not in self._disk:
                if self._tmp is None:
                    if self._folder is not None:
                        self._folder.mkdir(parents=True, exist_ok=True)
                    self._tmp = Path(tempfile.mkdtemp(prefix="atnet_jax_features_", dir=self._folder))
                path = self._tmp / f"{old:06d}.npz"
                np.savez(path, **old_feats)
                self._disk[old] = path

    def close(self) -> None:
        self._ram.clear()
        self._ram_bytes = 0
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
            self._disk.clear()

    def __del__(self) -> None:
        self.close()


class _UndoLog:
    """The probabilities a round replaced, in a file beside the session's store, to restore on cancel.

    Frames that held nothing yet (``old`` None: zeros) are only listed, not written: round 1 saves no file.
    """

    def __init__(self, path: Path, like: FrameStore) -> None:
        self._path, self._like = path, like
        self._store: FrameStore | None = None
        self.frames: list[int] = []
        self._empty: set[int] = set()

    def save(self, t: int, old: np.ndarray | None) -> None:
        if t in self.frames:
            return
        self.frames.append(t)
        if old is None:
            self._empty.add(t)
            return
        if self._store is None:
            self._store = FrameStore(self._path, len(self._like), self._like.frame_shape, self._like.dtype)
        self._store[t] = old

    def saved(self, t: int) -> np.ndarray | None:
        """Frame ``t`` as it was, None where it held nothing."""
        if t in self._empty:
            return None
        assert self._store is not None
        return self._store[t]

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


class RoundCancelled(Exception):
    """A round was cancelled; the session is as it was before the round."""


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


class Session:
    """Interactive segmentation of one video with one set of A-Net/T-Net weights.

    Args:
      frames: the video (``len`` and ``frames[i] -> [H, W, 3] uint8 RGB``); read lazily, frame by frame, and
        ahead of the networks in a reader thread (so ``frames[i]`` must be safe to call from another thread).
      variables: ``{"anet": ..., "tnet": ...}`` Flax variables (``atnet_jax.io.weights.load_weights``).
      config: the networks' :class:`ModelConfig`.
      num_objects: K, the objects to segment (ids 1..K).
      size: the processing size: the networks see frames whose shorter side is at most ``size`` pixels
        (shrunk with area averaging where larger; 480 by default, the size ATNet was trained at; None for
        the video's full size). Labels always come at the video's own size.
      max_annotations: annotated frames the global transfer holds before it recompiles for more (the
        DAVIS protocol has 8 rounds).
      feature_cache_bytes: host memory for cached encoder features; the rest is spilled to disk.
      progress: show a progress bar while propagating.
      propagation_proportion: how far a round propagates towards an earlier annotation (see
        :func:`propagation_plan`; the released code's 0.99 by default, 1.0 up to the annotated frame).
      encoder_batch: frames T-Net's encoder runs at once in round 1 (default: 8 on accelerators, 1 on CPU).

    State: ``labels[t] -> [H, W]`` uint8 at the video's size and ``probabilities[t] -> [K, h, w]`` float32 at
    the processing size ``processing_shape = (h, w)`` (:meth:`video_probabilities` upsamples them), both
    file-backed :class:`FrameStore` objects; ``annotated``, ``strokes``. :meth:`close` removes the files.
    """

    def __init__(
        self,
        frames: Frames,
        variables: dict[str, Any],
        config: ModelConfig,
        num_objects: int,
        *,
        size: int | None = DEFAULT_PROCESSING_SIZE,
        max_annotations: int = 8,
        feature_cache_bytes: int = 2 << 30,
        progress: bool = False,
        propagation_proportion: float = RELEASED_PROPAGATION_PROPORTION,
        encoder_batch: int | None = None,
    ) -> None:
        if num_objects < 1:
            raise ValueError(f"num_objects must be at least 1, got {num_objects}")
        if len(frames) < 1:
            raise ValueError("the video has no frames")
        first = np.asarray(frames[0])
        if first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
            raise ValueError(f"frames must be [H, W, 3] uint8 RGB, got frame 0 {first.shape} {first.dtype}")
        self.frames = frames
        self.num_frames = len(frames)
        self.num_objects = num_objects
        self.height, self.width = first.shape[:2]
        self.size = size
        self.processing_shape: tuple[int, int] = processing_shape(self.height, self.width, size)
        self.pad: PadInfo = pad_info_for(*self.processing_shape)
        self._variables = jax.device_put(variables)
        self._config = config
        self._nets = _networks_for(config)
        self._max_annotations = max_annotations
        self._progress = progress
        self.propagation_proportion = propagation_proportion
        self.encoder_batch = encoder_batch or (1 if jax.default_backend() == "cpu" else 8)
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atnet_jax_frames")
        self._images: dict[int, Future[np.ndarray]] = {}  # frames read ahead while the networks run
        self._workdir = Path(tempfile.mkdtemp(prefix="atnet_jax_session_"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._workdir, True)
        self._files = itertools.count()
        self.features = FeatureCache(self._encode_frames, feature_cache_bytes, folder=self._workdir)
        # Per frame and object, the blended probability, in float32 as the released code keeps it.
        self.probabilities = self._new_store((num_objects, *self.processing_shape), np.float32)
        self.labels = FrameStore(self._workdir / "labels.u8", self.num_frames, (self.height, self.width), np.uint8)
        self._written = np.zeros(self.num_frames, bool)  # frames whose probabilities were stored (the rest: zeros)
        self.annotated: list[int] = []
        self.strokes: dict[int, list[dict]] = {}
        self._annotated_r5: list[jax.Array] = []
        self._indicators: list[jax.Array] = []
        self._fused_indicators: list[jax.Array] = []
        self.last_round_seconds = 0.0

    def _new_store(self, frame_shape: tuple[int, ...], dtype: Any) -> FrameStore:
        return FrameStore(self._workdir / f"probabilities-{next(self._files)}.f32", self.num_frames, frame_shape,
                          dtype)

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
        """How often each jitted network call was traced (compiled) so far, shared by sessions of a config."""
        return dict(self._nets.traces)

    def warmup(self) -> None:
        """Compile the network calls for this video's shapes now, on zeros, so that round timings hold
        only the model's run time. Nothing is done where the shapes were compiled before."""
        (top, bottom), (left, right) = self.pad
        h, w = self.processing_shape
        hp, wp = h + top + bottom, w + left + right
        key = (hp, wp, self.num_objects, self._max_annotations, self.encoder_batch)
        if key in self._nets.warm:
            return
        k, m = self.num_objects, self._max_annotations
        image = np.zeros((1, hp, wp, 3), np.float32)
        prob, indicator = self._nets.anet(
            self._variables["anet"], np.broadcast_to(image, (k, hp, wp, 3)), np.zeros((k, hp, wp, 3), np.float32)
        )
        feats = jax.device_get(self._nets.encode(self._variables["tnet"], image))
        if self.encoder_batch > 1:
            self._nets.encode(self._variables["tnet"], np.broadcast_to(image, (self.encoder_batch, hp, wp, 3)))
        fused = self._nets.fuse(self._variables["tnet"], indicator)
        # The same eager array ops as a round (each compiles once per shape), so that rounds compile nothing.
        r5 = jnp.asarray(feats["r5"])
        annotated_r5 = jnp.stack([r5] + [jnp.zeros_like(r5)] * (m - 1))
        fused_indicators = jnp.stack([fused] + [jnp.zeros_like(fused)] * (m - 1))
        frame_mask = jnp.arange(m) < 1
        out = self._nets.step(self._variables["tnet"], feats, annotated_r5, fused_indicators, frame_mask, feats["r2"],
                              prob)
        result = self._crop_device(out)
        result.copy_to_host_async()
        np.asarray(result)
        self._nets.warm.add(key)

    def _image(self, index: int) -> np.ndarray:
        """Frame ``index`` as the networks see it: ``[1, hp, wp, 3]`` float32 (resized, normalised, padded)."""
        ahead = self._images.pop(index, None)
        return ahead.result() if ahead is not None else self._read_image(index)

    def _read_ahead(self, indices: Sequence[int]) -> None:
        """Start reading the frames among ``indices`` whose features are not cached yet (decoding overlaps the
        networks' run: OpenCV and NumPy release the GIL)."""
        for t in indices:
            if t not in self._images and not self.features.has(t):
                self._images[t] = self._reader.submit(self._read_image, t)

    def _read_image(self, index: int) -> np.ndarray:
        frame = np.asarray(self.frames[index])
        if frame.shape != (self.height, self.width, 3):
            raise ValueError(f"frame {index} has shape {frame.shape}, expected {(self.height, self.width, 3)}")
        return reflect_pad(normalize_frames(resize_frame(frame, self.processing_shape)), self.pad)[None]

    def _encode_frames(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
        """T-Net encoder features of ``indices``, ``encoder_batch`` frames per call (one compile: a short last
        batch is filled with repeats)."""
        out: list[dict[str, np.ndarray]] = []
        b = self.encoder_batch
        for i in range(0, len(indices), b):
            chunk = list(indices[i : i + b])
            images = np.concatenate([self._image(t) for t in chunk])
            if b > 1 and len(chunk) < b:
                images = np.concatenate([images, np.repeat(images[-1:], b - len(chunk), axis=0)])
            feats = jax.device_get(self._nets.encode(self._variables["tnet"], images))
            # Copies where batched: a view would keep the whole batch in memory while the cache counts one frame.
            out.extend({k: v[j : j + 1] if b == 1 else v[j : j + 1].copy() for k, v in feats.items()}
                       for j in range(len(chunk)))
        return out

    def _annotate(self, t: int, previous_mask: np.ndarray, positive: np.ndarray,
                  negative: np.ndarray) -> tuple[jax.Array, jax.Array]:
        """A-Net on frame ``t`` for the objects of the ``[K, h, w]`` maps -> (probabilities ``[K, hp, wp, 1]``,
        converter features)."""
        interaction = reflect_pad(np.stack([previous_mask, positive, negative], axis=-1).astype(np.float32), self.pad)
        image = self._image(t)
        return self._nets.anet(self._variables["anet"], np.broadcast_to(image, (len(positive), *image.shape[1:])),
                               interaction)

    def _crop_device(self, x: jax.Array) -> jax.Array:
        (top, _), (left, _) = self.pad
        h, w = self.processing_shape
        return x[..., top : top + h, left : left + w, 0]

    def _crop(self, x: jax.Array) -> np.ndarray:
        """``[K, hp, wp, 1]`` network output -> ``[K, h, w]`` at the processing size."""
        return np.asarray(self._crop_device(x))

    def _merge(self, probabilities: np.ndarray) -> np.ndarray:
        """``[K, h, w]`` probabilities -> ``[H, W]`` labels: upsampled (bilinear) to the video's size, then merged."""
        return merge_objects(resize_maps(probabilities, (self.height, self.width), mode="linear"))

    def video_probabilities(self, t: int) -> np.ndarray:
        """Frame ``t``'s object probabilities at the video's size, ``[K, H, W]`` float32 (bilinear upsampling)."""
        return resize_maps(self.probabilities[t], (self.height, self.width), mode="linear")

    def _processing_labels(self, t: int) -> np.ndarray:
        """Frame ``t``'s labels at the processing size (A-Net's previous mask, negative scribbles)."""
        return self.labels[t] if not self.resized else merge_objects(self.probabilities[t])

    def interaction_maps(self, frame_index: int, strokes: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
        """A-Net's scribble channels ``(positive, negative)``, each ``[K, h, w]`` at the processing size, for a
        round on ``frame_index`` that adds ``strokes``: every stroke placed on that frame so far is rasterised
        together (davisinteractive's ``fuse_scribbles``, then the released ``scribble_to_image(scribbles[frame])``)."""
        from atnet_jax.interaction.scribbles import interaction_maps

        prev = self._processing_labels(frame_index) if self.annotated else None
        return interaction_maps([*self.strokes.get(frame_index, []), *strokes], *self.processing_shape,
                                self.num_objects, prev)

    def interact(
        self,
        frame_index: int,
        strokes: Sequence[dict],
        *,
        on_frame: Callable[[int, str], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> FrameStore:
        """One round from DAVIS-style strokes on ``frame_index`` (``{"path", "object_id", ...}`` dicts with
        normalised coordinates) -> labels ``[T, H, W]`` uint8 (:attr:`labels`). The strokes add to those placed
        on that frame in earlier rounds. ``on_frame`` and ``cancel``: as :meth:`interact_maps`."""
        if not 0 <= frame_index < self.num_frames:
            raise ValueError(f"frame {frame_index} is outside the video (0..{self.num_frames - 1})")
        positive, negative = self.interaction_maps(frame_index, strokes)
        labels = self.interact_maps(frame_index, positive, negative, on_frame=on_frame, cancel=cancel)
        self.strokes.setdefault(frame_index, []).extend(strokes)
        return labels

    def interact_maps(
        self,
        frame_index: int,
        positive: np.ndarray,
        negative: np.ndarray,
        *,
        on_frame: Callable[[int, str], None] | None = None,
        cancel: Callable[[], bool] | None = None,
    ) -> FrameStore:
        """One round from rasterised interaction maps ``positive, negative: [K, H, W]`` in [0, 1] on
        ``frame_index`` -> labels ``[T, H, W]`` uint8 for the whole video (:attr:`labels`). Maps at the video's
        size are shrunk (area averaging) to the processing size; maps at the processing size are used as given.

        ``on_frame(t, kind)`` is called after frame ``t``'s result is stored (``kind``: "annotated" for A-Net's
        frame, then "propagated"). ``cancel()`` is polled before each frame; when it returns True the round stops,
        the session returns to its state before the round exactly, and :class:`RoundCancelled` is raised.
        """
        if not 0 <= frame_index < self.num_frames:
            raise ValueError(f"frame {frame_index} is outside the video (0..{self.num_frames - 1})")
        shape = (self.num_objects, *self.processing_shape)
        video_shape = (self.num_objects, self.height, self.width)
        if positive.shape == video_shape and negative.shape == video_shape and self.resized:
            positive = resize_maps(np.asarray(positive, np.float32), self.processing_shape, mode="area")
            negative = resize_maps(np.asarray(negative, np.float32), self.processing_shape, mode="area")
        if positive.shape != shape or negative.shape != shape:
            raise ValueError(f"interaction maps must be [K, H, W] = {video_shape} (or {shape}, the processing "
                             f"size), got {positive.shape}, {negative.shape}")
        start = time.perf_counter()
        undo = _UndoLog(self._workdir / "undo.f32", self.probabilities)
        annotated_before = len(self.annotated)
        try:
            if self.annotated:
                previous_mask = _one_hot(self._processing_labels(frame_index), self.num_objects)
            else:
                previous_mask = np.full(shape, ROUND1_PREVIOUS_MASK, np.float32)
            prob, indicator = self._annotate(frame_index, previous_mask, positive, negative)
            # A-Net's mask is stored and announced before the frame's encoder features are computed.
            self._store(frame_index, self._crop(prob), 1.0, undo)
            if on_frame is not None:
                on_frame(frame_index, "annotated")
            target = self.features.get(frame_index)
            previous = list(self.annotated)
            backward, forward = propagation_plan(frame_index, previous, self.num_frames, self.propagation_proportion)
            if cancel is not None and cancel():
                raise RoundCancelled(f"round on frame {frame_index} cancelled")
            self.annotated.append(frame_index)
            self._annotated_r5.append(jnp.asarray(target["r5"]))
            self._indicators.append(indicator)
            self._fused_indicators.append(self._nets.fuse(self._variables["tnet"], indicator))
            annotated_r5, fused_indicators, frame_mask = self._global_inputs()
            bar = None
            if self._progress:
                from tqdm import tqdm

                bar = tqdm(total=len(backward) + len(forward), unit="frame", leave=False,
                           desc=f"round {len(self.annotated)}: propagating from frame {frame_index}")

            def finish(t: int, alpha: float, result: jax.Array) -> None:
                self._store(t, np.asarray(result), alpha, undo)
                if on_frame is not None:
                    on_frame(t, "propagated")
                if bar is not None:
                    bar.update()

            try:
                for direction in (backward, forward):
                    # Each direction starts from A-Net's map, then follows T-Net's own unblended output.
                    prev_prob, prev_r2 = prob, target["r2"]
                    order = [t for t, _ in direction]
                    # Frame t's result is fetched and stored while the device computes frame t + 1.
                    pending: tuple[int, float, jax.Array] | None = None
                    for i, (t, alpha) in enumerate(direction):
                        if cancel is not None and cancel():
                            raise RoundCancelled(f"round on frame {frame_index} cancelled")
                        feats = self.features.get(t, order[i + 1 : i + self.encoder_batch])
                        self._read_ahead(order[i + self.encoder_batch : i + 2 * self.encoder_batch])
                        prev_prob = self._nets.step(self._variables["tnet"], feats, annotated_r5, fused_indicators,
                                                    frame_mask, prev_r2, prev_prob)
                        prev_r2 = feats["r2"]
                        result = self._crop_device(prev_prob)
                        result.copy_to_host_async()
                        if pending is not None:
                            finish(*pending)
                        pending = (t, alpha, result)
                    if pending is not None:
                        finish(*pending)
            finally:
                if bar is not None:
                    bar.close()
        except BaseException:
            for t in undo.frames:
                old = undo.saved(t)
                self._written[t] = old is not None
                if old is None:
                    old = np.zeros(self.probabilities.frame_shape, np.float32)
                self.probabilities[t] = old
                self.labels[t] = self._merge(old)
            undo.close()
            del self.annotated[annotated_before:]
            del self._annotated_r5[annotated_before:]
            del self._indicators[annotated_before:]
            del self._fused_indicators[annotated_before:]
            raise
        undo.close()
        self.last_round_seconds = time.perf_counter() - start
        return self.labels

    def _global_inputs(self) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Annotated-frame r5 and fused indicators padded to a fixed count (one compile for every round)."""
        n = len(self._annotated_r5)
        while self._max_annotations < n:
            self._max_annotations *= 2
        pad = self._max_annotations - n
        r5 = jnp.stack(self._annotated_r5 + [jnp.zeros_like(self._annotated_r5[0])] * pad)
        ind = jnp.stack(self._fused_indicators + [jnp.zeros_like(self._fused_indicators[0])] * pad)
        return r5, ind, jnp.arange(self._max_annotations) < n

    def _set_indicators(self, indicators: list[jax.Array]) -> None:
        self._indicators = indicators
        self._fused_indicators = [self._nets.fuse(self._variables["tnet"], i) for i in indicators]

    def _store(self, t: int, new: np.ndarray, alpha: float, undo: _UndoLog | None = None) -> None:
        """Blend frame ``t``'s new ``[K, h, w]`` probabilities with the stored ones (eq. 6) and update its labels."""
        old = self.probabilities[t] if self._written[t] else None
        if undo is not None:
            undo.save(t, old)
        if alpha < 1.0:
            if old is None:
                old = np.zeros(self.probabilities.frame_shape, np.float32)
            new = alpha * new + (1.0 - alpha) * old
        self.probabilities[t] = new
        self.labels[t] = self._merge(new)
        self._written[t] = True

    # ------------------------------------------------------------------------------------ state and objects

    def snapshot(self, *, copy: bool = True) -> SessionState:
        """A copy of the session's state (:meth:`restore` brings it back exactly); its probabilities are a
        file-backed copy, not an array in RAM. ``copy=False`` gives the live probability store instead, for a
        caller that reads it before the session changes (no copy of every frame)."""
        probabilities = self.probabilities.temporary_copy(prefix="atnet_jax_snapshot_") if copy else self.probabilities
        return SessionState(probabilities, list(self.annotated),
                            {t: [dict(s) for s in strokes] for t, strokes in self.strokes.items()},
                            [np.asarray(jax.device_get(i), np.float32) for i in self._indicators])

    def restore(self, state: SessionState) -> None:
        """Return to ``state`` (from :meth:`snapshot`, or saved and read back), the number of objects included."""
        probabilities = state.probabilities
        shape = tuple(probabilities.shape)
        if len(shape) != 4 or shape[0] != self.num_frames or shape[2:] != self.processing_shape:
            raise ValueError(f"the state's probabilities {shape} do not fit this video ({self.num_frames} frames "
                             f"processed at {self.processing_shape[0]}x{self.processing_shape[1]})")
        if len(state.indicators) != len(state.annotated):
            raise ValueError(f"the state has {len(state.annotated)} annotated frames but "
                             f"{len(state.indicators)} indicators")
        if isinstance(probabilities, FrameStore) and probabilities.dtype == np.float32:
            store = probabilities.copy_to(self._workdir / f"probabilities-{next(self._files)}.f32")
        else:
            store = self._new_store(shape[1:], np.float32)
            for t in range(self.num_frames):
                store[t] = np.asarray(probabilities[t], np.float32)
        self.probabilities.close()
        self.probabilities = store
        self._written[:] = True
        self.num_objects = shape[1]
        for t in range(self.num_frames):
            self.labels[t] = self._merge(self.probabilities[t])
        self.annotated = list(state.annotated)
        self.strokes = {int(t): [dict(s) for s in strokes] for t, strokes in state.strokes.items()}
        self._set_indicators([jnp.asarray(i) for i in state.indicators])
        self._annotated_r5 = [jnp.asarray(self.features.get(t)["r5"]) for t in self.annotated]

    def _map_objects(self, num_objects: int, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        """Rewrite the probability store frame by frame with ``fn: [K, h, w] -> [num_objects, h, w]``."""
        store = self.probabilities.mapped(self._workdir / f"probabilities-{next(self._files)}.f32",
                                          (num_objects, *self.processing_shape), fn)
        self.probabilities.close()
        self.probabilities = store
        self.num_objects = num_objects

    def add_object(self) -> int:
        """Add an object that is empty on every frame; returns its id (K + 1).

        Its converter features at the frames annotated so far come from A-Net on each such frame with the
        object absent (previous mask 0, no strokes of its own), so that its global transfer averages over every
        annotated frame as the others' does.
        """
        from atnet_jax.interaction.scribbles import interaction_maps

        k = self.num_objects + 1
        indicators = []
        for i, t in enumerate(self.annotated):
            prev = self._processing_labels(t)
            positive, negative = interaction_maps(self.strokes.get(t, []), *self.processing_shape, k, prev)
            _, indicator = self._annotate(t, _one_hot(prev, k), positive, negative)
            indicators.append(jnp.concatenate([self._indicators[i], indicator[-1:]], axis=0))
        self._set_indicators(indicators)
        zeros = np.zeros((1, *self.processing_shape), np.float32)
        self._map_objects(k, lambda p: np.concatenate([p, zeros]))  # labels do not change: the new object is 0
        return k

    def remove_object(self, object_id: int) -> None:
        """Remove object ``object_id`` (its masks, strokes and features); objects above it move down one id."""
        if not 1 <= object_id <= self.num_objects:
            raise ValueError(f"object {object_id} does not exist (objects 1..{self.num_objects})")
        if self.num_objects == 1:
            raise ValueError("the only object cannot be removed")
        keep = [k for k in range(self.num_objects) if k != object_id - 1]
        self._set_indicators([i[np.asarray(keep)] for i in self._indicators])
        self._map_objects(len(keep), lambda p: p[keep])
        strokes = {}
        for t, frame_strokes in self.strokes.items():
            moved = []
            for s in frame_strokes:
                oid = int(s["object_id"])
                if oid == object_id:
                    continue
                moved.append({**s, "object_id": oid - 1 if oid > object_id else oid})
            strokes[t] = moved
        self.strokes = strokes
        for t in range(self.num_frames):
            self.labels[t] = self._merge(self.probabilities[t])

    def close(self) -> None:
        """Remove the session's files: spilled features, probabilities and labels (read results first)."""
        self._reader.shutdown(wait=True, cancel_futures=True)
        self._images.clear()
        self.features.close()
        self.probabilities.close()
        self.labels.close()
        self._cleanup()


@functools.lru_cache(maxsize=4)
def _networks_for(config: ModelConfig) -> _Networks:
    return _build_networks(config)
