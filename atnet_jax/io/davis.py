"""DAVIS dataset folders, and :func:`open_frames` for any video a command is given.

Layout read by :class:`DavisFolder` (DAVIS-2016 and DAVIS-2017 alike)::

    root/JPEGImages/<resolution>/<seq>/00000.jpg ...
    root/Annotations/<resolution>/<seq>/00000.png ...   palette PNGs (2017, void = 255) or 0/255 grayscale (2016)
    root/ImageSets/2017/<subset>.txt                     one sequence per line (2016: ImageSets/<resolution>/)
    root/Scribbles/<seq>/001.json ...                    DAVIS interactive scribbles (optional)
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from atnet_jax.io.frames import (
    IMAGE_SUFFIXES,
    FrameSource,
    ImageFolderSource,
    VideoFileSource,
    image_size,
    list_images,
    natural_key,
    read_frame,
    stack_same_size,
)
from atnet_jax.io.masks import VOID_LABEL, read_mask


class DavisFolder:
    """A DAVIS-format dataset folder (see the module docstring for the layout).

    Either ``JPEGImages/<resolution>`` or ``Annotations/<resolution>`` must exist (a folder of masks alone is
    enough for evaluation); errors name the missing folder or file.
    """

    def __init__(self, root: str | os.PathLike, resolution: str = "480p"):
        self.root = Path(root)
        self.resolution = resolution
        if not self.root.is_dir():
            raise FileNotFoundError(f"DAVIS folder not found: {self.root}")
        self.images_dir = self.root / "JPEGImages" / resolution
        self.annotations_dir = self.root / "Annotations" / resolution
        self.scribbles_dir = self.root / "Scribbles"
        if not self.images_dir.is_dir() and not self.annotations_dir.is_dir():
            raise FileNotFoundError(
                f"{self.root} is not a DAVIS folder: neither {self.images_dir} nor {self.annotations_dir} exists"
            )

    def __repr__(self) -> str:
        return f"DavisFolder({str(self.root)!r}, resolution={self.resolution!r})"

    def sequences(self, subset: str | None = None) -> list[str]:
        """Sequence names: from ``ImageSets/2017/<subset>.txt`` (else ``ImageSets/<resolution>/``, then
        ``ImageSets/2016/``) when ``subset`` is given, in file order; else the ``JPEGImages`` sub-folders that
        hold frames, sorted. DAVIS-2016 lines (``/JPEGImages/480p/bear/00000.jpg /Annotations/...``) give
        their sequence folder. Listed sequences are not checked for presence."""
        if subset is None:
            if not self.images_dir.is_dir():
                return []
            return sorted(d.name for d in self.images_dir.iterdir() if d.is_dir() and list_images(d))
        candidates = [self.root / "ImageSets" / year / f"{subset}.txt" for year in ("2017", self.resolution, "2016")]
        for path in candidates:
            if path.is_file():
                break
        else:
            raise FileNotFoundError(f"subset {subset!r} not found: tried {', '.join(map(str, candidates))}")
        names: list[str] = []
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            token = line.split()[0]
            name = Path(token).parent.name if "/" in token else token
            if name and name not in names:
                names.append(name)
        return names

    def frame_paths(self, seq: str) -> list[Path]:
        """Frame files of ``seq``, sorted by name; error if the folder is missing or empty."""
        folder = self.images_dir / seq
        if not folder.is_dir():
            raise FileNotFoundError(f"no frames for sequence {seq!r}: {folder} not found")
        paths = list_images(folder)
        if not paths:
            raise FileNotFoundError(f"no frames for sequence {seq!r}: {folder} holds no .jpg/.png files")
        return paths

    def mask_paths(self, seq: str) -> list[Path]:
        """Mask files (``*.png``) of ``seq``, sorted by name; error if the folder is missing or empty."""
        folder = self.annotations_dir / seq
        if not folder.is_dir():
            raise FileNotFoundError(f"no masks for sequence {seq!r}: {folder} not found")
        paths = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png"), key=natural_key)
        if not paths:
            raise FileNotFoundError(f"no masks for sequence {seq!r}: {folder} holds no .png files")
        return paths

    def frames(self, seq: str) -> ImageFolderSource:
        """A lazy :class:`FrameSource` over the frames of ``seq``."""
        return ImageFolderSource(self.frame_paths(seq))

    def read_frames(self, seq: str, indices: Sequence[int] | None = None) -> np.ndarray:
        """Frames of ``seq`` (all, or those at ``indices``) -> ``[T, H, W, 3] uint8`` RGB; every frame must have
        the first frame's size (error naming the first that does not)."""
        paths = self.frame_paths(seq)
        if indices is not None:
            try:
                paths = [paths[i] for i in indices]
            except IndexError:
                raise IndexError(
                    f"frame indices {list(indices)} out of range for {seq!r} ({len(paths)} frames)"
                ) from None
        return stack_same_size([read_frame(p) for p in paths], paths)

    def read_masks(self, seq: str, *, allow_missing: bool = False) -> np.ndarray:
        """Masks of ``seq`` -> ``[T, H, W] uint8`` labels (void 255; DAVIS-2016 0/255 -> 0/1).

        With frames present there is one mask per frame, matched by file stem (``00012.jpg`` <-> ``00012.png``):
        a frame without a mask is an error, unless ``allow_missing`` (its mask is then all 255 = void). Without
        frames (masks-only sequences) every mask file is read. Mask sizes must match the frames'.
        """
        mask_dir = self.annotations_dir / seq
        frame_dir = self.images_dir / seq
        if frame_dir.is_dir() and list_images(frame_dir):
            frame_paths = self.frame_paths(seq)
            height, width = image_size(frame_paths[0])
            if not mask_dir.is_dir() and not allow_missing:
                raise FileNotFoundError(f"no masks for sequence {seq!r}: {mask_dir} not found")
            masks, paths = [], []
            for frame_path in frame_paths:
                mask_path = mask_dir / f"{frame_path.stem}.png"
                if mask_path.is_file():
                    masks.append(read_mask(mask_path))
                elif allow_missing:
                    masks.append(np.full((height, width), VOID_LABEL, np.uint8))
                else:
                    raise FileNotFoundError(f"frame {frame_path} has no mask {mask_path}")
                paths.append(mask_path)
            for mask, path in zip(masks, paths):
                if mask.shape != (height, width):
                    raise ValueError(f"mask {path} is {mask.shape[0]}x{mask.shape[1]}, frames are {height}x{width}")
            return np.stack(masks)
        paths = self.mask_paths(seq)
        return stack_same_size([read_mask(p) for p in paths], paths)

    def num_objects(self, seq: str, *, all_frames: bool = False) -> int:
        """Number of objects of ``seq``: the largest id in the first mask, void (255) ignored.

        This is DAVIS-2017's rule (davis2017-evaluation ``get_all_masks``: ``max(masks[0])`` after void -> 0);
        every DAVIS-2017 object is present in the first frame. ``all_frames`` takes the max over all masks.
        """
        paths = self.mask_paths(seq)
        top = 0
        for path in paths if all_frames else paths[:1]:
            labels = read_mask(path)
            top = max(top, int(np.where(labels == VOID_LABEL, 0, labels).max(initial=0)))
        return top

    def scribble_paths(self, seq: str) -> list[Path]:
        """``Scribbles/<seq>/*.json`` sorted by name; ``[]`` where there are none."""
        folder = self.scribbles_dir / seq
        if not folder.is_dir():
            return []
        return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".json"), key=natural_key)


def open_frames(
    path_or_davis_root: str | os.PathLike,
    sequence: str | None = None,
    *,
    resolution: str = "480p",
    cache_dir: str | os.PathLike | None = None,
) -> FrameSource:
    """Open frames from a DAVIS root + ``sequence``, a plain folder of images, a video file or one image.

    A folder holding ``JPEGImages/`` needs ``sequence``; a plain folder gives its *.jpg/*.jpeg/*.png files in
    natural name order; a file with an image suffix is a one-frame source; any other file is opened as a video.
    """
    path = Path(path_or_davis_root)
    if not path.exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    if path.is_dir():
        if sequence is not None:
            return DavisFolder(path, resolution).frames(sequence)
        if (path / "JPEGImages").is_dir():
            available = DavisFolder(path, resolution).sequences() if (path / "JPEGImages" / resolution).is_dir() else []
            raise ValueError(f"{path} is a DAVIS folder: pass sequence= (available: {', '.join(available) or 'none'})")
        paths = list_images(path)
        if not paths:
            raise FileNotFoundError(f"no frames in {path}: expected .jpg, .jpeg or .png files")
        return ImageFolderSource(paths)
    if sequence is not None:
        raise ValueError(f"sequence={sequence!r} given, but {path} is a file, not a DAVIS folder")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFolderSource([path])
    return VideoFileSource(path, cache_dir=cache_dir)
