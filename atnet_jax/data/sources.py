"""Random-access training data: DAVIS-2017, YouTube-VOS, SBD and tfds ``davis/480p`` behind two small interfaces.

:class:`VideoSource` (videos with per-object masks; ``i`` a video, ``t`` one of its *annotated* frames)::

    len(src) -> int                      number of videos
    src.name(i) -> str                   the video's name
    src.num_frames(i) -> int             number of annotated frames T (only frames that have a mask are indexed)
    src.frame(i, t) -> [H, W, 3] uint8   RGB
    src.labels(i, t) -> [H, W] uint8     0 background, 1..K objects (same id = same object across the video),
                                         255 void / ignore
    src.object_ids(i) -> list[int]       the object ids of the video, sorted
    src.clip(i, ts) -> ([T, H, W, 3] uint8, [T, H, W] uint8)   several frames at once

:class:`ImageSource` (still images with instance masks, e.g. SBD)::

    len(src) -> int;  src.name(i) -> str;  src.image(i) -> [H, W, 3] uint8;  src.labels(i) -> [H, W] uint8
    (instances 1..K, 0 background, 255 ignore);  src.object_ids(i) -> list[int]

Indices are non-negative (IndexError otherwise). Indexing is deterministic: the order of videos/images is fixed
at construction (split-file order, else sorted names) and every access re-reads the same files. Folders are
checked at construction: a missing or malformed dataset raises FileNotFoundError / ValueError naming the file
or folder that was expected.

:class:`ConcatVideoSource` mixes video sources; :class:`ImagesAsVideos` turns an image source into one-frame
videos so SBD can join them.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atnet_jax.io.davis import DavisFolder
from atnet_jax.io.frames import list_images, read_frame
from atnet_jax.io.frames import natural_key as _natural_key
from atnet_jax.io.masks import VOID_LABEL, read_mask

__all__ = [
    "VideoSource",
    "ImageSource",
    "DavisVideos",
    "YouTubeVOSVideos",
    "SBDImages",
    "TfdsDavisVideos",
    "ConcatVideoSource",
    "ImagesAsVideos",
    "present_ids",
]


def present_ids(labels: np.ndarray) -> list[int]:
    """Object ids in a label map or stack (``[..., H, W]`` uint8): unique values other than 0 and 255, sorted."""
    values = np.unique(np.asarray(labels))
    return [int(v) for v in values if v != 0 and v != VOID_LABEL]


def _check_index(i: int, n: int, what: str) -> int:
    if not isinstance(i, (int, np.integer)):
        raise TypeError(f"{what} index must be an int, got {type(i).__name__}")
    if not 0 <= i < n:
        raise IndexError(f"{what} {i} out of range ({n} {what}s)")
    return int(i)


# ----------------------------------------------------------------------------------------------- interfaces


class VideoSource:
    """Videos with per-object masks (see the module docstring). Subclasses implement the five methods."""

    def __len__(self) -> int:
        raise NotImplementedError

    def name(self, i: int) -> str:
        raise NotImplementedError

    def num_frames(self, i: int) -> int:
        raise NotImplementedError

    def frame(self, i: int, t: int) -> np.ndarray:
        """``[H, W, 3] uint8`` RGB of annotated frame ``t`` of video ``i``."""
        raise NotImplementedError

    def labels(self, i: int, t: int) -> np.ndarray:
        """``[H, W] uint8``: 0 background, 1..K objects, 255 void."""
        raise NotImplementedError

    def object_ids(self, i: int) -> list[int]:
        raise NotImplementedError

    def clip(self, i: int, ts: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Frames ``ts`` of video ``i`` -> (``[T, H, W, 3] uint8``, ``[T, H, W] uint8``); sizes must agree."""
        frames = [self.frame(i, t) for t in ts]
        labels = [self.labels(i, t) for t in ts]
        for t, f, m in zip(ts, frames, labels):
            if f.shape[:2] != m.shape or f.shape[:2] != frames[0].shape[:2]:
                raise ValueError(
                    f"video {self.name(i)!r} frame {t}: image {f.shape[:2]} and mask {m.shape} disagree "
                    f"(first frame {frames[0].shape[:2]})"
                )
        return np.stack(frames), np.stack(labels)


class ImageSource:
    """Still images with instance masks (see the module docstring)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def name(self, i: int) -> str:
        raise NotImplementedError

    def image(self, i: int) -> np.ndarray:
        """``[H, W, 3] uint8`` RGB."""
        raise NotImplementedError

    def labels(self, i: int) -> np.ndarray:
        """``[H, W] uint8``: 0 background, 1..K instances, 255 ignore."""
        raise NotImplementedError

    def object_ids(self, i: int) -> list[int]:
        raise NotImplementedError


class _FileVideos(VideoSource):
    """Videos given as lists of (frame path, mask path) pairs; object ids from all masks unless overridden."""

    _names: list[str]
    _pairs: list[list[tuple[Path, Path]]]

    def __init__(self) -> None:
        self._ids_cache: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self._names)

    def name(self, i: int) -> str:
        return self._names[_check_index(i, len(self), "video")]

    def num_frames(self, i: int) -> int:
        return len(self._pairs[_check_index(i, len(self), "video")])

    def _pair(self, i: int, t: int) -> tuple[Path, Path]:
        pairs = self._pairs[_check_index(i, len(self), "video")]
        return pairs[_check_index(t, len(pairs), "frame")]

    def frame(self, i: int, t: int) -> np.ndarray:
        return read_frame(self._pair(i, t)[0])

    def labels(self, i: int, t: int) -> np.ndarray:
        return read_mask(self._pair(i, t)[1])

    def object_ids(self, i: int) -> list[int]:
        """Ids present in any mask of the video (read once, then cached)."""
        i = _check_index(i, len(self), "video")
        if i not in self._ids_cache:
            ids: set[int] = set()
            for _, mask_path in self._pairs[i]:
                ids.update(present_ids(read_mask(mask_path)))
            self._ids_cache[i] = sorted(ids)
        return list(self._ids_cache[i])


def _annotated_pairs(frame_dir: Path, mask_dir: Path, video: str) -> list[tuple[Path, Path]]:
    """(frame, mask) pairs matched by file stem, in natural frame order; errors name the missing folder."""
    for folder in (frame_dir, mask_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"video {video!r}: folder {folder} not found")
    masks = {p.stem: p for p in mask_dir.iterdir() if p.suffix.lower() == ".png"}
    pairs = [(f, masks[f.stem]) for f in list_images(frame_dir) if f.stem in masks]
    if not pairs:
        raise ValueError(f"video {video!r}: no frame in {frame_dir} has a mask (<stem>.png) in {mask_dir}")
    return pairs


# ----------------------------------------------------------------------------------------------- folders


class DavisVideos(_FileVideos):
    """DAVIS-2017 (or 2016) sequences of ``ImageSets/2017/<subset>.txt`` in a DAVIS folder (see
    :class:`~atnet_jax.io.davis.DavisFolder`); frames without a mask (same stem, ``.png``) are not indexed.
    Object ids: every id found in the sequence's masks (DAVIS-2017 has them all in frame 0)."""

    def __init__(self, root: str | os.PathLike, subset: str = "train", resolution: str = "480p"):
        super().__init__()
        self.folder = DavisFolder(root, resolution)
        self._names = self.folder.sequences(subset)
        if not self._names:
            raise ValueError(f"DAVIS subset {subset!r} in {self.folder.root} lists no sequences")
        self._pairs = [
            _annotated_pairs(self.folder.images_dir / s, self.folder.annotations_dir / s, s) for s in self._names
        ]

    def __repr__(self) -> str:
        return f"DavisVideos({str(self.folder.root)!r}, {len(self)} videos)"


class YouTubeVOSVideos(_FileVideos):
    """YouTube-VOS: ``root/<split>/{JPEGImages,Annotations}/<vid>/`` and ``root/<split>/meta.json``.

    Videos come from ``meta.json`` (``{"videos": {vid: {"objects": {"1": {...}, ...}}}}``), sorted by name; only
    frames with an annotation PNG are indexed (train annotates every 5th frame). Object ids are the keys of
    ``objects``; an object may be absent from some frames.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train"):
        super().__init__()
        self.root = Path(root) / split
        meta_path = self.root / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"YouTube-VOS metadata not found: {meta_path}")
        try:
            videos = json.loads(meta_path.read_text())["videos"]
            ids = {v: sorted(int(k) for k in info["objects"]) for v, info in videos.items()}
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(
                f"{meta_path} is malformed ({type(e).__name__}: {e}): expected "
                '{"videos": {vid: {"objects": {"1": {...}}}}}'
            ) from e
        self._names = sorted(ids)
        if not self._names:
            raise ValueError(f"{meta_path} lists no videos")
        self._pairs = [
            _annotated_pairs(self.root / "JPEGImages" / v, self.root / "Annotations" / v, v) for v in self._names
        ]
        self._ids_cache = {i: ids[v] for i, v in enumerate(self._names)}

    def __repr__(self) -> str:
        return f"YouTubeVOSVideos({str(self.root)!r}, {len(self)} videos)"


class SBDImages(ImageSource):
    """SBD instances: ``root/img/<id>.jpg``, ``root/inst/<id>.mat`` (struct ``GTinst`` with ``Segmentation``,
    ``[H, W]`` uint8, 0 background, 255 boundary/ignore); ids from ``root/<split>.txt`` (file order), or every
    ``inst/*.mat`` (sorted) when that file is absent."""

    def __init__(self, root: str | os.PathLike, split: str = "train"):
        self.root = Path(root)
        self.img_dir, self.inst_dir = self.root / "img", self.root / "inst"
        for folder in (self.root, self.img_dir, self.inst_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"SBD folder not found: {folder}")
        split_path = self.root / f"{split}.txt"
        mats = {p.stem for p in self.inst_dir.iterdir() if p.suffix == ".mat"}
        if split_path.is_file():
            self._ids = list(dict.fromkeys(s for line in split_path.read_text().splitlines() if (s := line.strip())))
        else:
            self._ids = sorted(mats, key=lambda s: _natural_key(Path(s)))
        if not self._ids:
            raise ValueError(f"SBD in {self.root}: no ids in {split_path} and no .mat files in {self.inst_dir}")
        jpgs = {p.stem for p in self.img_dir.iterdir() if p.suffix == ".jpg"}
        for sid in self._ids:
            if sid not in mats:
                raise FileNotFoundError(f"SBD id {sid!r}: {self.inst_dir / (sid + '.mat')} not found")
            if sid not in jpgs:
                raise FileNotFoundError(f"SBD id {sid!r}: {self.img_dir / (sid + '.jpg')} not found")
        self._ids_cache: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def name(self, i: int) -> str:
        return self._ids[_check_index(i, len(self), "image")]

    def image(self, i: int) -> np.ndarray:
        return read_frame(self.img_dir / f"{self.name(i)}.jpg")

    def labels(self, i: int) -> np.ndarray:
        import scipy.io

        path = self.inst_dir / f"{self.name(i)}.mat"
        try:
            seg = scipy.io.loadmat(str(path), struct_as_record=False, squeeze_me=True)["GTinst"].Segmentation
        except (KeyError, AttributeError, ValueError, OSError, TypeError) as e:
            raise ValueError(f"cannot read GTinst.Segmentation from {path}: {type(e).__name__}: {e}") from e
        seg = np.asarray(seg)
        integer = np.issubdtype(seg.dtype, np.integer)
        if seg.ndim != 2 or not integer or seg.min(initial=0) < 0 or seg.max(initial=0) > 255:
            raise ValueError(
                f"{path}: GTinst.Segmentation must be an [H, W] map of ids 0..255, got {seg.shape} {seg.dtype}"
            )
        return seg.astype(np.uint8)

    def object_ids(self, i: int) -> list[int]:
        i = _check_index(i, len(self), "image")
        if i not in self._ids_cache:
            self._ids_cache[i] = present_ids(self.labels(i))
        return list(self._ids_cache[i])

    def __repr__(self) -> str:
        return f"SBDImages({str(self.root)!r}, {len(self)} images)"


# ----------------------------------------------------------------------------------------------- tfds


class TfdsDavisVideos(VideoSource):
    """tfds ``davis/480p`` through ``tfds.data_source`` (ArrayRecord; no TensorFlow needed).

    Each example holds a whole video (``video/frames [T, H, W, 3] uint8``, ``video/segmentations [T, H, W, 1]``
    with ids 0..K, ``metadata/video_name``); the last decoded example is cached, so reading a video frame by
    frame decodes it once. Object ids: those present in any frame. ``num_frames`` is the decoded length.
    """

    def __init__(self, split: str = "train", data_dir: str | os.PathLike | None = None):
        try:
            import tensorflow_datasets as tfds
            import tensorflow_datasets.video.davis.davis  # noqa: F401  (registers davis/480p)
        except ImportError as e:
            raise ImportError(
                "TfdsDavisVideos needs tensorflow-datasets (pip install tensorflow-datasets; TensorFlow itself "
                f"is not needed): {e}"
            ) from e
        self.split = split
        self._ds = tfds.data_source("davis/480p", split=split, data_dir=None if data_dir is None else str(data_dir))
        self._cache: tuple[int, str, np.ndarray, np.ndarray] | None = None
        self._ids_cache: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self._ds)

    def _video(self, i: int) -> tuple[str, np.ndarray, np.ndarray]:
        i = _check_index(i, len(self), "video")
        if self._cache is None or self._cache[0] != i:
            ex: Any = self._ds[i]
            name = ex["metadata"]["video_name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            frames = np.asarray(ex["video"]["frames"])
            segs = np.asarray(ex["video"]["segmentations"])
            if segs.ndim == 4 and segs.shape[-1] == 1:
                segs = segs[..., 0]
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
                raise ValueError(f"tfds davis {self.split}[{i}] ({name}): frames {frames.shape} {frames.dtype}, "
                                 "expected [T, H, W, 3] uint8")
            if segs.shape != frames.shape[:3]:
                raise ValueError(f"tfds davis {self.split}[{i}] ({name}): segmentations {segs.shape} do not match "
                                 f"frames {frames.shape}")
            self._cache = (i, name, frames, segs.astype(np.uint8, copy=False))
        return self._cache[1:]

    def name(self, i: int) -> str:
        return self._video(i)[0]

    def num_frames(self, i: int) -> int:
        return self._video(i)[1].shape[0]

    def frame(self, i: int, t: int) -> np.ndarray:
        frames = self._video(i)[1]
        return frames[_check_index(t, frames.shape[0], "frame")].copy()

    def labels(self, i: int, t: int) -> np.ndarray:
        segs = self._video(i)[2]
        return segs[_check_index(t, segs.shape[0], "frame")].copy()

    def object_ids(self, i: int) -> list[int]:
        i = _check_index(i, len(self), "video")
        if i not in self._ids_cache:
            self._ids_cache[i] = present_ids(self._video(i)[2])
        return list(self._ids_cache[i])

    def __repr__(self) -> str:
        return f"TfdsDavisVideos(split={self.split!r}, {len(self)} videos)"


# ----------------------------------------------------------------------------------------------- combinators


class ConcatVideoSource(VideoSource):
    """Several video sources as one: videos of ``sources[0]``, then ``sources[1]``, ... (order kept)."""

    def __init__(self, sources: Sequence[VideoSource]):
        self.sources = list(sources)
        if not self.sources:
            raise ValueError("ConcatVideoSource needs at least one source")
        self._offsets = np.cumsum([0] + [len(s) for s in self.sources])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def locate(self, i: int) -> tuple[VideoSource, int]:
        """Global video index -> (its source, the index inside it)."""
        i = _check_index(i, len(self), "video")
        k = int(np.searchsorted(self._offsets, i, side="right")) - 1
        return self.sources[k], i - int(self._offsets[k])

    def name(self, i: int) -> str:
        src, j = self.locate(i)
        return src.name(j)

    def num_frames(self, i: int) -> int:
        src, j = self.locate(i)
        return src.num_frames(j)

    def frame(self, i: int, t: int) -> np.ndarray:
        src, j = self.locate(i)
        return src.frame(j, t)

    def labels(self, i: int, t: int) -> np.ndarray:
        src, j = self.locate(i)
        return src.labels(j, t)

    def object_ids(self, i: int) -> list[int]:
        src, j = self.locate(i)
        return src.object_ids(j)

    def __repr__(self) -> str:
        return f"ConcatVideoSource({', '.join(map(repr, self.sources))})"


class ImagesAsVideos(VideoSource):
    """An :class:`ImageSource` as one-frame videos (``num_frames == 1``), to mix SBD into video training."""

    def __init__(self, images: ImageSource):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def name(self, i: int) -> str:
        return self.images.name(i)

    def num_frames(self, i: int) -> int:
        _check_index(i, len(self), "video")
        return 1

    def frame(self, i: int, t: int) -> np.ndarray:
        _check_index(t, 1, "frame")
        return self.images.image(i)

    def labels(self, i: int, t: int) -> np.ndarray:
        _check_index(t, 1, "frame")
        return self.images.labels(i)

    def object_ids(self, i: int) -> list[int]:
        return self.images.object_ids(i)

    def __repr__(self) -> str:
        return f"ImagesAsVideos({self.images!r})"
