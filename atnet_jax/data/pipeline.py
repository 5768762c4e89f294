"""Training input pipelines (grain): A-Net and T-Net examples, batched, sharded, checkpointable.

Two random-access sources build one training example from an integer key, with every random choice drawn
from ``np.random.default_rng([seed, key])``; they are therefore deterministic and independent of the order
or the process in which keys are read:

* :class:`AnetExamples` — one (video frame | image), one object, a random affine view (scale, rotation,
  flip, crop to the training size) of image and labels together, then the simulated user input of
  :func:`~atnet_jax.data.interactions.anet_training_input`.
* :class:`TnetExamples` — one video, a 5-frame mini-sequence (:func:`~atnet_jax.data.interactions.
  tnet_mini_sequence`), one object, the same affine view for the 5 frames, and the A-Net input of frame 0.

Key ``k = epoch * len(examples) + i`` is element ``i`` seen in epoch ``epoch``: a fresh augmentation per epoch.

:func:`make_loader` turns a source into a grain ``IterDataset`` of stacked numpy batches::

    range(...)                                       # position p in this host's stream
      .map_with_index(p -> key)                      # host rows of global batches, epoch-wise shuffle
      .map(examples.__getitem__).batch(B)            # batches formed before the workers: any
      .to_iter_dataset().mp_prefetch(worker_count)   # worker_count gives the same batches, in order

Checkpointing (the training loop): ``it = iter(make_loader(...))``; save ``it.get_state()`` (a small
JSON-able dict) next to the model state at step ``s`` (with orbax: ``ocp.args.JsonSave(it.get_state())``
in a ``Composite`` beside the ``StandardSave`` of the train state); to resume, build the same loader (same
examples, seed, batch size, shard and worker count: the state of a ``worker_count > 0`` iterator holds
one entry per worker and does not restore into another count), ``it = iter(loader)`` and
``it.set_state(saved)``: the next batch is the one that followed the save.
"""
from __future__ import annotations

import math
import signal
from collections.abc import Sequence
from typing import Any

import cv2
import grain
import numpy as np
from absl import flags

from atnet_jax.data.interactions import anet_training_input, tnet_mini_sequence
from atnet_jax.data.sources import ImageSource, VideoSource, present_ids
from atnet_jax.io.masks import VOID_LABEL
from atnet_jax.models.preprocess import IMAGENET_MEAN, normalize_frames

__all__ = ["AnetExamples", "TnetExamples", "VideoSource", "ImageSource", "Augment", "make_loader"]

_PAD_RGB = tuple(float(v) for v in np.round(IMAGENET_MEAN * 255))  # normalises to ~0
_OBJECT_RETRIES = 8


# ----------------------------------------------------------------------------------------------- augmentation


class Augment:
    """A random affine view of a frame, shared by a frame stack: output ``size = (H, W)``.

    The frame is scaled to cover the output (``max(H / h, W / w)``) times a factor from ``scale_range``,
    rotated by up to ``max_rotation`` degrees, flipped left-right with probability ``flip_probability``; the
    window is placed at random but keeps the object's centroid inside its inner ``keep`` fraction (and inside
    the frame where the frame is large enough). Image: bilinear, padding the ImageNet mean colour; labels:
    nearest, padding void (255), so ``valid`` is 0 there.
    """

    def __init__(self, size: tuple[int, int], *, scale_range: tuple[float, float] = (0.8, 1.25),
                 max_rotation: float = 15.0, flip_probability: float = 0.5, keep: float = 0.8):
        self.size = (int(size[0]), int(size[1]))
        self.scale_range = scale_range
        self.max_rotation = max_rotation
        self.flip_probability = flip_probability
        self.keep = keep

    def matrix(self, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``mask: [h, w] bool`` (the object; may be empty) -> a ``[2, 3]`` float64 source -> output map."""
        out_h, out_w = self.size
        h, w = mask.shape
        zoom = max(out_h / h, out_w / w) * rng.uniform(*self.scale_range)
        angle = math.radians(rng.uniform(-self.max_rotation, self.max_rotation))
        flip = -1.0 if rng.random() < self.flip_probability else 1.0
        ys, xs = np.nonzero(mask)
        centroid = np.array([xs.mean(), ys.mean()]) if len(xs) else np.array([(w - 1) / 2, (h - 1) / 2])
        half = np.array([out_w, out_h]) / (2 * zoom)  # window half-size in source pixels (before rotation)
        centre = centroid + rng.uniform(-1, 1, size=2) * self.keep * half
        for d, extent in enumerate((w, h)):  # keep the window inside the frame where it fits
            centre[d] = np.clip(centre[d], half[d], extent - half[d]) if extent >= 2 * half[d] else extent / 2
        cos, sin = math.cos(angle) * zoom, math.sin(angle) * zoom
        linear = np.array([[cos, -sin], [sin, cos]]) @ np.diag([flip, 1.0])
        offset = np.array([(out_w - 1) / 2, (out_h - 1) / 2]) - linear @ centre
        return np.concatenate([linear, offset[:, None]], axis=1)

    def apply(self, matrix: np.ndarray, image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``image: [h, w, 3] uint8``, ``labels: [h, w] uint8`` -> ``[H, W, 3] uint8``, ``[H, W] uint8``."""
        out_h, out_w = self.size
        image = cv2.warpAffine(np.ascontiguousarray(image), matrix, (out_w, out_h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=_PAD_RGB)
        labels = cv2.warpAffine(np.ascontiguousarray(labels), matrix, (out_w, out_h), flags=cv2.INTER_NEAREST,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=VOID_LABEL)
        return image, labels


def _target_valid(labels: np.ndarray, object_id: int) -> tuple[np.ndarray, np.ndarray]:
    """``[..., H, W] uint8`` -> target, valid ``[..., H, W, 1]`` float32 in {0, 1}."""
    return ((labels == object_id).astype(np.float32)[..., None], (labels != VOID_LABEL).astype(np.float32)[..., None])


def _interaction(target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``target: [H, W] bool`` -> A-Net's ``[H, W, 3]`` float32 (prev, pos, neg)."""
    return np.stack(anet_training_input(target, rng), axis=-1).astype(np.float32)


# ----------------------------------------------------------------------------------------------- sources


class AnetExamples:
    """A-Net training examples over every (video, frame) pair of ``videos`` and every image of ``images``.

    ``examples[key]`` (``key >= 0``; element ``key % len``, randomness from ``(seed, key)``) -> dict:
    ``image [H, W, 3]`` float32 normalised as at inference, ``interaction [H, W, 3]`` float32
    (prev, pos, neg), ``target [H, W, 1]`` float32 {0, 1}, ``valid [H, W, 1]`` float32 (0 on void and padding).
    The object is drawn among those present in the frame (for videos, up to 8 other frames of the video
    are tried when it has none; failing that the target is empty).
    """

    def __init__(self, videos: VideoSource | None, images: ImageSource | None, *, size: tuple[int, int],
                 seed: int, augment: Augment | None = None):
        self.videos, self.images, self.seed = videos, images, int(seed)
        self.augment = augment or Augment(size)
        self.size = self.augment.size
        pairs = [(i, t) for i in range(len(videos) if videos is not None else 0) for t in range(videos.num_frames(i))]
        self._pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
        self._num_images = len(images) if images is not None else 0
        if len(self) == 0:
            raise ValueError("AnetExamples needs at least one video frame or image")

    def __len__(self) -> int:
        return len(self._pairs) + self._num_images

    def _read(self, element: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
        if element >= len(self._pairs):
            j = element - len(self._pairs)
            labels = np.asarray(self.images.labels(j))
            ids = present_ids(labels)
            return np.asarray(self.images.image(j)), labels, int(rng.choice(ids)) if ids else 1
        i, t = (int(v) for v in self._pairs[element])
        labels = np.asarray(self.videos.labels(i, t))
        ids = present_ids(labels)
        for _ in range(_OBJECT_RETRIES):
            if ids:
                break
            t = int(rng.integers(self.videos.num_frames(i)))
            labels = np.asarray(self.videos.labels(i, t))
            ids = present_ids(labels)
        return np.asarray(self.videos.frame(i, t)), labels, int(rng.choice(ids)) if ids else 1

    def __getitem__(self, key: int) -> dict[str, np.ndarray]:
        key = int(key)
        rng = np.random.default_rng([self.seed, key])
        image, labels, object_id = self._read(key % len(self), rng)
        matrix = self.augment.matrix(labels == object_id, rng)
        image, labels = self.augment.apply(matrix, image, labels)
        target, valid = _target_valid(labels, object_id)
        return {"image": normalize_frames(image), "interaction": _interaction(target[..., 0] > 0, rng),
                "target": target, "valid": valid}


class TnetExamples:
    """T-Net training examples, one per video of at least 5 frames.

    ``examples[key]`` -> dict: ``frames [5, H, W, 3]`` float32 normalised, ``targets [5, H, W, 1]``,
    ``valid [5, H, W, 1]`` float32, frame 0 the annotated frame then 4 frames in propagation order
    (:func:`~atnet_jax.data.interactions.tnet_mini_sequence`), one object present in frame 0 (up to 8
    mini-sequences are drawn to find one), one affine view for all 5 frames; ``interaction [H, W, 3]`` the
    A-Net input (prev, pos, neg) for frame 0.
    """

    length = 5

    def __init__(self, videos: VideoSource, *, size: tuple[int, int], seed: int, augment: Augment | None = None):
        self.videos, self.seed = videos, int(seed)
        self.augment = augment or Augment(size)
        self.size = self.augment.size
        self._videos = np.asarray([i for i in range(len(videos)) if videos.num_frames(i) >= self.length], np.int64)
        if len(self._videos) == 0:
            raise ValueError(f"TnetExamples needs a video of at least {self.length} frames")

    def __len__(self) -> int:
        return len(self._videos)

    def __getitem__(self, key: int) -> dict[str, np.ndarray]:
        key = int(key)
        rng = np.random.default_rng([self.seed, key])
        i = int(self._videos[key % len(self)])
        num_frames = self.videos.num_frames(i)
        for _ in range(_OBJECT_RETRIES):
            ts = tnet_mini_sequence(num_frames, rng, picks=self.length - 1)
            first = np.asarray(self.videos.labels(i, ts[0]))
            ids = present_ids(first)
            if ids:
                break
        object_id = int(rng.choice(ids)) if ids else 1
        matrix = self.augment.matrix(first == object_id, rng)
        frames, labels = zip(*(self.augment.apply(matrix, self.videos.frame(i, t), self.videos.labels(i, t))
                               for t in ts))
        targets, valid = _target_valid(np.stack(labels), object_id)
        return {"frames": normalize_frames(np.stack(frames)), "targets": targets, "valid": valid,
                "interaction": _interaction(targets[0, ..., 0] > 0, rng)}


# ----------------------------------------------------------------------------------------------- loader


class _StreamKey:
    """Position ``p`` in one host's stream -> example key ``epoch * n + i``.

    One global stream, cut into global batches of ``batch_size * shard_count``: host ``shard_index`` takes
    rows ``[shard_index * batch_size, (shard_index + 1) * batch_size)`` of each, so the hosts' batches,
    stacked in host order, are the batches one host would read alone with the global batch size. Global
    position ``q`` is element ``order[q]`` of epoch ``q // n``: epoch ``e`` visits a permutation of
    ``range(n)`` (grain's index shuffle, seeded ``seed + e``), and global batches run on across epochs.
    """

    def __init__(self, n: int, *, seed: int, shuffle: bool, batch_size: int, shard_index: int, shard_count: int):
        self.n, self.batch_size, self.shard_index, self.shard_count = n, batch_size, shard_index, shard_count
        self.order = grain.MapDataset.range(n).shuffle(seed=seed) if shuffle else None

    def __call__(self, position: int, _: Any) -> int:
        batch, row = divmod(int(position), self.batch_size)
        q = (batch * self.shard_count + self.shard_index) * self.batch_size + row
        i = int(self.order[q]) if self.order is not None else q % self.n  # order[q]: the epoch-(q // n) permutation
        return q // self.n * self.n + i


def _ignore_interrupts(worker_index: int, worker_count: int) -> None:
    """In each worker: Ctrl-C reaches the whole process group; the training process handles it and closes
    the iterator (which stops the workers), so a worker ignores it instead of dying with a traceback."""
    del worker_index, worker_count
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stack(examples: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def make_loader(
    examples: AnetExamples | TnetExamples,
    *,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    worker_count: int = 0,
    shard_index: int = 0,
    shard_count: int = 1,
    drop_remainder: bool = True,
    read_threads: int = 1,
    worker_buffer_size: int = 2,
) -> grain.IterDataset:
    """A grain ``IterDataset`` of batches: dicts of ``[batch_size, ...]`` numpy arrays (see the examples).

    ``num_epochs=None`` repeats forever (each epoch reshuffled and re-augmented). ``shard_index`` /
    ``shard_count``: this host's rows of every global batch of ``batch_size * shard_count`` (``batch_size``
    is per host; the shards' batches stacked in shard order are the one-host batches of the global size;
    with ``num_epochs``, whole global batches only, so every host reads as many); ``worker_count`` processes build
    whole batches (0: in this process, ``read_threads`` threads), with the same batches in the same order
    for any worker count. ``iter(loader)`` has ``get_state()`` / ``set_state()`` (module docstring; a state
    restores into a loader with the same arguments, ``worker_count`` included).
    Worker processes are spawned: the program needs a ``__main__`` guard; unparsed absl flags are marked
    parsed (defaults) as grain reads its flags. Workers ignore SIGINT; call ``close()`` on the iterator
    to stop them (and free their shared memory).
    """
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"need 0 <= shard_index < shard_count, got {shard_index}, {shard_count}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(examples)
    key = _StreamKey(n, seed=seed, shuffle=shuffle, batch_size=batch_size, shard_index=shard_index,
                     shard_count=shard_count)
    if num_epochs is None:
        ds = grain.MapDataset.range(batch_size).repeat(None)
    else:
        length = n * num_epochs if shard_count == 1 else n * num_epochs // (batch_size * shard_count) * batch_size
        if length == 0:
            raise ValueError(f"{n} examples x {num_epochs} epoch(s) cannot fill one global batch of "
                             f"{batch_size} x {shard_count} shards")
        ds = grain.MapDataset.range(length)
    ds = ds.map_with_index(key).map(examples.__getitem__)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder, batch_fn=_stack)
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=read_threads, prefetch_buffer_size=2 * read_threads))
    if worker_count > 0:
        if not flags.FLAGS.is_parsed():  # grain reads its absl flags; outside absl.app, use their defaults
            flags.FLAGS.mark_as_parsed()
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=worker_count,
                                                         per_worker_buffer_size=worker_buffer_size),
                            worker_init_fn=_ignore_interrupts)
    return it
