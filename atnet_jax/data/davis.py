"""DAVIS folders, palette PNG masks and frame sources (DAVIS sequences, plain frame folders, video files).

Layout read by :class:`DavisFolder` (DAVIS-2016 and DAVIS-2017 alike)::

    root/JPEGImages/<resolution>/<seq>/00000.jpg ...
    root/Annotations/<resolution>/<seq>/00000.png ...   palette PNGs (2017, void = 255) or 0/255 grayscale (2016)
    root/ImageSets/2017/<subset>.txt                     one sequence per line (2016: ImageSets/<resolution>/)
    root/Scribbles/<seq>/001.json ...                    DAVIS interactive scribbles (optional)

Frames are read with OpenCV as the released code does (``cv2.imread`` then BGR -> RGB), so JPEG decoding matches
it; masks with Pillow, which keeps palette indices (OpenCV would turn a palette into colours).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

VOID_LABEL = 255
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


def _voc_palette() -> np.ndarray:
    """The PASCAL VOC colour map DAVIS uses: the bits of an index spread over the high bits of R, G and B."""
    palette = np.zeros((256, 3), np.uint8)
    for index in range(256):
        c, r, g, b = index, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[index] = (r, g, b)
    return palette


DAVIS_PALETTE: np.ndarray = _voc_palette()
"""[256, 3] uint8: 0 black, 1 (128, 0, 0), 2 (0, 128, 0), ..., 255 (224, 224, 192) = void."""


# ----------------------------------------------------------------------------------------------- file I/O


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (``/proc/self/status``), so that
    threads creating files meanwhile are not affected; else set and restored at once."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def output_mode(*, folder: bool = False) -> int:
    """The mode a new output file (``0o666``) or folder (``0o777``) gets under the umask: 0644 / 0755 under 022.

    ``tempfile.mkstemp`` and ``mkdtemp`` create 0600 / 0700 whatever the umask; outputs made from them are
    chmod-ed to this before they are moved into place, so that other users can read results as usual.
    """
    return (0o777 if folder else 0o666) & ~current_umask()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], *, overwrite: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path`` and move it into place atomically.

    Without ``overwrite`` an existing ``path`` raises FileExistsError, also when it appears while writing (the
    move is then a hard link, which never replaces). The parent folder is created if needed. The file gets
    the usual mode under the umask (:func:`output_mode`), not ``mkstemp``'s 0600.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, output_mode())
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)") from None
            except OSError:  # file systems without hard links: check-then-replace
                if path.exists():
                    raise FileExistsError(f"{path} exists (pass overwrite=True to replace it)") from None
                os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def staging_dir(target: str | os.PathLike) -> Path:
    """A new empty folder beside ``target`` (same file system, so it can be renamed into place), with the
    usual folder mode under the umask; the parent folder is created if needed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(tmp, output_mode(folder=True))
    return tmp


def replace_entries(staged: str | os.PathLike, folder: str | os.PathLike, names: Sequence[str]) -> list[Path]:
    """Swap the entries ``names`` of ``folder`` for those in ``staged`` as a whole, and remove ``staged``.

    Every name is first moved out of ``folder`` (whether or not ``staged`` has a new one, so that no result of
    an earlier run is left beside the new ones), then the staged entries are moved in; both are renames on
    one file system. If a move fails, the earlier entries are put back. Returns the paths now in ``folder``.
    """
    staged, folder = Path(staged), Path(folder)
    old = Path(tempfile.mkdtemp(prefix=".replaced.", suffix=".tmp", dir=folder))
    moved_out: list[str] = []
    moved_in: list[str] = []
    try:
        for name in names:
            if (folder / name).exists() or (folder / name).is_symlink():
                os.rename(folder / name, old / name)
                moved_out.append(name)
        for name in names:
            if (staged / name).exists():
                os.rename(staged / name, folder / name)
                moved_in.append(name)
    except BaseException:
        for name in moved_in:
            os.rename(folder / name, staged / name)
        for name in moved_out:
            os.rename(old / name, folder / name)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(staged, ignore_errors=True)
    return [folder / name for name in moved_in]


def replace_dir(staged: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Put the folder ``staged`` (from :func:`staging_dir`) in place of ``target``, which may exist: the old
    folder is renamed aside first and removed only once the new one is in place."""
    staged, target = Path(staged), Path(target)
    if not (target.exists() or target.is_symlink()):
        os.rename(staged, target)
        return target
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.rename(target, old / target.name)
    try:
        os.rename(staged, target)
    except BaseException:
        os.rename(old / target.name, target)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
    return target


def read_frame(path: str | os.PathLike) -> np.ndarray:
    """Read an image file -> ``[H, W, 3] uint8`` RGB (grayscale is replicated, alpha dropped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"frame not found: {path}")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None or bgr.ndim != 3 or bgr.size == 0:
        raise ValueError(f"cannot decode frame {path} (corrupt or not an image)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a mask PNG -> ``[H, W] uint8`` labels.

    Palette ('P', DAVIS-2017): the indices, void stays 255. Grayscale ('L'/'1', DAVIS-2016): value > 127 -> 1,
    else 0. A grayscale mask holding only small values (1..127, a label map saved without palette) is refused
    rather than read as empty; so is any other mode (RGB colours, 16-bit).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            labels = np.array(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot decode mask {path}: {e}") from e
    if mode == "P":
        return labels.astype(np.uint8, copy=False)
    if mode == "1":
        return labels.astype(np.uint8)
    if mode == "L":
        top = int(labels.max(initial=0))
        if 0 < top <= 127:
            raise ValueError(
                f"mask {path} is grayscale with values up to {top}: expected 0/255 (DAVIS-2016) "
                "or a palette PNG (DAVIS-2017); save label maps with write_mask"
            )
        return (labels > 127).astype(np.uint8)
    raise ValueError(f"mask {path} has image mode {mode!r}: expected a palette ('P') or 0/255 grayscale ('L') PNG")


def write_mask(path: str | os.PathLike, labels: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write ``labels: [H, W]`` integer ids in 0..255 as a palette PNG with :data:`DAVIS_PALETTE`, atomically."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be [H, W], got shape {labels.shape} for {path}")
    if labels.dtype != np.uint8:
        if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
            raise ValueError(f"labels must be integers, got {labels.dtype} for {path}")
        if labels.size and (labels.min() < 0 or labels.max() > 255):
            raise ValueError(f"labels must lie in 0..255 for {path}, got {labels.min()}..{labels.max()}")
        labels = labels.astype(np.uint8)
    image = Image.fromarray(np.ascontiguousarray(labels))
    image.putpalette(DAVIS_PALETTE.tobytes())  # turns the 'L' image into 'P'
    return atomic_write(path, lambda tmp: image.save(tmp, format="PNG"), overwrite=overwrite)


def write_frame(path: str | os.PathLike, rgb: np.ndarray, *, overwrite: bool = False) -> Path:
    """Write ``rgb: [H, W, 3] uint8`` as JPEG (quality 95) or PNG, chosen by the suffix, atomically."""
    path = Path(path)
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"frame must be [H, W, 3] uint8, got {rgb.shape} {rgb.dtype} for {path}")
    suffix = path.suffix.lower()
    if suffix in (".jpg", ".jpeg"):
        save_kwargs = {"format": "JPEG", "quality": 95}
    elif suffix == ".png":
        save_kwargs = {"format": "PNG"}
    else:
        raise ValueError(f"cannot tell the image format of {path}: use .jpg, .jpeg or .png")
    image = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    return atomic_write(path, lambda tmp: image.save(tmp, **save_kwargs), overwrite=overwrite)


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files (*.jpg, *.jpeg, *.png, any case) of ``folder``, in natural name order (frame2 < frame10)."""
    folder = Path(folder)
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=_natural_key)


def _image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the file header."""
    try:
        with Image.open(path) as im:
            width, height = im.size
    except (OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"cannot decode {path}: {e}") from e
    return height, width


# ----------------------------------------------------------------------------------------------- DAVIS folder


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
        paths = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".png"), key=_natural_key)
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
        return _stack_same_size([read_frame(p) for p in paths], paths)

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
            height, width = _image_size(frame_paths[0])
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
        return _stack_same_size([read_mask(p) for p in paths], paths)

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
        return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".json"), key=_natural_key)


def _stack_same_size(arrays: list[np.ndarray], paths: Sequence[Path]) -> np.ndarray:
    first = arrays[0].shape
    for array, path in zip(arrays, paths):
        if array.shape != first:
            raise ValueError(
                f"{path} is {array.shape[0]}x{array.shape[1]}, but {paths[0]} is {first[0]}x{first[1]}: "
                "all frames of a sequence must have the same size"
            )
    return np.stack(arrays)


# ----------------------------------------------------------------------------------------------- frame sources


class FrameSource:
    """A video as a lazy sequence of frames: ``len(src)``, ``src.shape = (H, W)``, ``src[i] -> [H, W, 3] uint8``
    RGB, read from disk on each access (nothing is held in memory). Iterable; a context manager."""

    names: list[str]
    """One name per frame (the file stem; ``%05d`` for videos), for writing results beside the inputs."""
    paths: list[Path]
    """One image file per frame, read by ``_read``."""
    _shape: tuple[int, int]

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    def _read(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, index: int) -> np.ndarray:
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"frame index must be an int, got {type(index).__name__}")
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"frame {index} out of range ({n} frames)")
        return self._read(int(index) % n)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def read_all(self) -> np.ndarray:
        """All frames -> ``[T, H, W, 3] uint8`` (for short videos)."""
        return np.stack(list(self))

    def close(self) -> None:
        """Release what the source holds on disk (a no-op for image folders)."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ImageFolderSource(FrameSource):
    """Frames from image files (given in order). The size comes from the first file's header; a frame of
    another size raises ValueError naming it when read."""

    def __init__(self, paths: Sequence[str | os.PathLike]):
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("no frames given")
        self.names = [p.stem for p in self.paths]
        self._shape = _image_size(self.paths[0])

    def _read(self, index: int) -> np.ndarray:
        frame = read_frame(self.paths[index])
        if frame.shape[:2] != self._shape:
            raise ValueError(
                f"frame {self.paths[index]} is {frame.shape[0]}x{frame.shape[1]}, but {self.paths[0]} is "
                f"{self._shape[0]}x{self._shape[1]}: all frames must have the same size"
            )
        return frame

    def __repr__(self) -> str:
        return f"ImageFolderSource({len(self)} frames from {self.paths[0].parent}, {self._shape[0]}x{self._shape[1]})"


class VideoFileSource(FrameSource):
    """Frames of a video file, decoded once with OpenCV (BGR -> RGB) into lossless PNGs in a temporary cache
    folder, then read lazily like an image folder. Seeking is avoided on purpose: OpenCV's frame seeking and
    frame counts are inexact for many codecs. The cache (under ``cache_dir``, default the system temp folder)
    is removed by :meth:`close` or when the source is garbage-collected.
    """

    def __init__(self, path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video not found: {self.path}")
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            raise ValueError(f"cannot open video {self.path} (unknown container or codec)")
        self.cache_dir = Path(tempfile.mkdtemp(prefix="atnet_frames_", dir=cache_dir))
        self._finalizer = weakref.finalize(self, shutil.rmtree, self.cache_dir, ignore_errors=True)
        paths: list[Path] = []
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                if paths and bgr.shape[:2] != self._shape:
                    raise ValueError(
                        f"frame {len(paths)} of {self.path} is {bgr.shape[0]}x{bgr.shape[1]}, "
                        f"earlier frames are {self._shape[0]}x{self._shape[1]}"
                    )
                self._shape = bgr.shape[:2]
                frame_path = self.cache_dir / f"{len(paths):06d}.png"
                if not cv2.imwrite(str(frame_path), bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
                    raise OSError(f"cannot write the frame cache {frame_path}")
                paths.append(frame_path)
        except BaseException:
            self.close()
            raise
        finally:
            capture.release()
        if not paths:
            self.close()
            raise ValueError(f"no frames could be decoded from video {self.path}")
        self.paths = paths
        self.names = [f"{i:05d}" for i in range(len(paths))]

    def _read(self, index: int) -> np.ndarray:
        if not self._finalizer.alive:
            raise ValueError(f"video source {self.path} is closed")
        return read_frame(self.paths[index])

    def close(self) -> None:
        self._finalizer()

    def __repr__(self) -> str:
        return f"VideoFileSource({str(self.path)!r}, {len(self)} frames, {self._shape[0]}x{self._shape[1]})"


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
