"""Synthetic DAVIS-format videos: textured objects moving over a textured background, deterministic from a seed.

Each video has a smooth random colour field with stripes and noise as background (slowly panning), and 1..K
objects (ellipses, polygons, star-shaped blobs), each with its own colour and texture (stripes, checks or
noise, attached to the object so it moves with it), following smooth trajectories while rotating and scaling,
drawn back to front (a fixed depth order, so they occlude each other) and free to leave the frame partially.
Every object is visible in frame 0 (DAVIS-2017 counts objects on the first mask) and in most frames.

``python -m atnet_jax.data.synthetic --output DIR --videos N`` writes a DAVIS folder (see :func:`write_dataset`)
that the other commands read as they read DAVIS, for CPU demos and tests. Defaults: 12 frames of 240x432
(sizes divisible by 16, the networks' stride), up to 3 objects.
"""
from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

NUM_FRAMES, HEIGHT, WIDTH, MAX_OBJECTS = 12, 240, 432, 3
MAX_SIDE, MAX_FRAMES = 4096, 10_000  # beyond any real video (4K is 3840x2160); a frame is drawn in float64 layers
_SHAPES = ("ellipse", "polygon", "blob")
_TEXTURES = ("stripes", "checks", "noise")
_SUBPIXEL_BITS = 4  # cv2.fillPoly fixed-point shift


@dataclass(frozen=True)
class _Object:
    """One object: outline in its own frame (unit size), texture, and a smooth trajectory."""

    outline: np.ndarray  # [N, 2] float64 xy, radius about 1
    colour: np.ndarray  # [3] float64 base RGB
    colour2: np.ndarray  # [3] float64 second RGB of the texture
    texture: str
    frequency: float  # texture cycles per unit length (object frame)
    noise_seed: int
    centre0: np.ndarray  # [2] xy pixels
    velocity: np.ndarray  # [2] pixels per frame
    wobble: np.ndarray  # [2] amplitude, pixels
    wobble_freq: float
    wobble_phase: float
    size: float  # radius in pixels
    scale_amp: float
    angle0: float
    spin: float  # radians per frame

    def pose(self, t: int) -> tuple[np.ndarray, float, float]:
        """Centre [2] xy, radius in pixels and angle at frame ``t``."""
        centre = self.centre0 + self.velocity * t + self.wobble * np.sin(self.wobble_freq * t + self.wobble_phase)
        radius = self.size * (1.0 + self.scale_amp * np.sin(0.5 * t + self.wobble_phase))
        return centre, radius, self.angle0 + self.spin * t


def _rng(rng: np.random.Generator | int) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _outline(rng: np.random.Generator, shape: str) -> np.ndarray:
    """A closed outline of radius about 1 -> [N, 2] float64 xy."""
    if shape == "ellipse":
        theta = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        a, b = 1.0, rng.uniform(0.45, 1.0)
        return np.stack([a * np.cos(theta), b * np.sin(theta)], axis=1)
    if shape == "polygon":
        n = int(rng.integers(3, 8))
        theta = (np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(-0.3, 0.3, n)) + rng.uniform(0, 2 * np.pi)
        r = rng.uniform(0.7, 1.0, n)
        return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    theta = np.linspace(0, 2 * np.pi, 96, endpoint=False)  # blob: star-shaped, smooth radius
    r = np.ones_like(theta)
    for k in range(2, 6):
        r += rng.uniform(0.0, 0.35 / k * 2) * np.sin(k * theta + rng.uniform(0, 2 * np.pi))
    r = 0.3 + 0.7 * (r - r.min()) / max(r.max() - r.min(), 1e-6)
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)


def _sample_object(rng: np.random.Generator, num_frames: int, height: int, width: int) -> _Object:
    side = min(height, width)
    size = rng.uniform(0.12, 0.24) * side
    centre0 = np.array([rng.uniform(0.15, 0.85) * width, rng.uniform(0.2, 0.8) * height])
    speed = rng.uniform(0.15, 0.45) * side / max(num_frames - 1, 1)  # crosses 15-45% of the frame
    direction = rng.uniform(0, 2 * np.pi)
    colour = rng.uniform(20, 235, 3)
    return _Object(
        outline=_outline(rng, _SHAPES[int(rng.integers(len(_SHAPES)))]),
        colour=colour,
        colour2=np.clip(colour + rng.uniform(-90, 90, 3), 0, 255),
        texture=_TEXTURES[int(rng.integers(len(_TEXTURES)))],
        frequency=rng.uniform(1.0, 3.0),
        noise_seed=int(rng.integers(2**31)),
        centre0=centre0,
        velocity=speed * np.array([np.cos(direction), np.sin(direction)]),
        wobble=rng.uniform(0, 0.05, 2) * side,
        wobble_freq=rng.uniform(0.2, 0.6),
        wobble_phase=rng.uniform(0, 2 * np.pi),
        size=size,
        scale_amp=rng.uniform(0.0, 0.2),
        angle0=rng.uniform(0, 2 * np.pi),
        spin=rng.uniform(-0.12, 0.12),
    )


def _object_mask(obj: _Object, t: int, height: int, width: int) -> np.ndarray:
    """Unoccluded mask of ``obj`` at frame ``t`` -> [H, W] bool."""
    centre, radius, angle = obj.pose(t)
    c, s = np.cos(angle), np.sin(angle)
    points = obj.outline @ np.array([[c, s], [-s, c]]) * radius + centre
    fixed = np.round(points * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [fixed], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    return mask.astype(bool)


def _object_texture(obj: _Object, t: int, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Colours of the pixels (``ys``, ``xs``) of ``obj`` at frame ``t`` -> [N, 3] float64 (texture in object frame)."""
    centre, radius, angle = obj.pose(t)
    dx, dy = (xs - centre[0]) / radius, (ys - centre[1]) / radius
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy  # object coordinates
    f = obj.frequency * np.pi
    if obj.texture == "stripes":
        w = 0.5 + 0.5 * np.sin(f * 2 * u)
    elif obj.texture == "checks":
        w = 0.5 + 0.5 * np.sign(np.sin(f * 2 * u) * np.sin(f * 2 * v))
    else:  # smooth noise: a few random sinusoids
        g = np.random.default_rng(obj.noise_seed)
        w = np.zeros_like(u)
        for _ in range(4):
            k = g.normal(0, f, 2)
            w += np.sin(k[0] * u + k[1] * v + g.uniform(0, 2 * np.pi))
        w = 0.5 + 0.125 * w
    shade = 1.0 - 0.25 * np.clip(u * u + v * v, 0, 1)  # a little shading towards the rim
    colour = obj.colour[None] * (1 - w[:, None]) + obj.colour2[None] * w[:, None]
    return colour * shade[:, None]


def _background(rng: np.random.Generator, num_frames: int, height: int, width: int) -> np.ndarray:
    """Panning textured background -> [T, H, W, 3] float32."""
    margin = max(height, width) // 6
    big_h, big_w = height + 2 * margin, width + 2 * margin
    coarse = rng.uniform(30, 225, (int(rng.integers(3, 6)), int(rng.integers(4, 8)), 3)).astype(np.float32)
    field = cv2.resize(coarse, (big_w, big_h), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:big_h, 0:big_w].astype(np.float32)
    theta, period = rng.uniform(0, np.pi), rng.uniform(12, 40)
    stripes = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period)
    field += rng.uniform(8, 25) * stripes[..., None]
    field += cv2.GaussianBlur(rng.normal(0, 18, (big_h, big_w, 3)).astype(np.float32), (0, 0), 1.5)
    start = rng.uniform(0, 2 * margin, 2)
    end = np.clip(start + rng.uniform(-margin, margin, 2), 0, 2 * margin)
    frames = np.empty((num_frames, height, width, 3), np.float32)
    for t in range(num_frames):
        ox, oy = np.round(start + (end - start) * t / max(num_frames - 1, 1)).astype(int)
        frames[t] = field[oy:oy + height, ox:ox + width]
    return frames


def _render(objects: Sequence[_Object], background: np.ndarray, rng: np.random.Generator
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``objects`` back to front (list order) -> frames [T, H, W, 3] uint8, labels [T, H, W] uint8 (object
    ``k`` = ``objects[k - 1]``) and unoccluded masks [T, K, H, W] bool. ``rng`` adds the sensor noise."""
    num_frames, height, width, _ = background.shape
    frames = background.copy()
    labels = np.zeros((num_frames, height, width), np.uint8)
    amodal = np.zeros((num_frames, len(objects), height, width), bool)
    for t in range(num_frames):
        for k, obj in enumerate(objects):
            mask = _object_mask(obj, t, height, width)
            amodal[t, k] = mask
            ys, xs = np.nonzero(mask)
            frames[t, ys, xs] = _object_texture(obj, t, ys.astype(np.float64), xs.astype(np.float64))
            labels[t, ys, xs] = k + 1
        frames[t] = cv2.GaussianBlur(frames[t], (3, 3), 0.6)  # soft edges, as a camera
    frames += rng.normal(0, 3.0, frames.shape).astype(np.float32)
    return np.clip(np.round(frames), 0, 255).astype(np.uint8), labels, amodal


def _acceptable(labels: np.ndarray, amodal: np.ndarray) -> bool:
    """Every object clearly visible in frame 0 and present in at least 75% of the frames."""
    num_frames, num_objects = amodal.shape[:2]
    for k in range(num_objects):
        visible = (labels == k + 1).sum(axis=(1, 2))
        if visible[0] < max(100, 0.4 * amodal[0, k].sum()) or (visible >= 20).sum() < 0.75 * num_frames:
            return False
    return True


def generate_video(
    rng: np.random.Generator | int = 0,
    *,
    num_frames: int = NUM_FRAMES,
    height: int = HEIGHT,
    width: int = WIDTH,
    num_objects: int | None = None,
    max_objects: int = MAX_OBJECTS,
    return_amodal: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic video, deterministic from ``rng`` (a seed or a Generator, which is advanced).

    Args:
      num_objects: K, the number of objects; None draws it from 1..``max_objects``.
      return_amodal: also return each object's unoccluded mask.
    Returns:
      frames ``[T, H, W, 3] uint8`` RGB, labels ``[T, H, W] uint8`` (0 background, 1..K objects, the same id
      for an object in every frame; higher ids are in front), and with ``return_amodal`` the unoccluded masks
      ``[T, K, H, W] bool``.
    """
    if num_frames < 1 or height < 16 or width < 16:
        raise ValueError(f"need num_frames >= 1 and height, width >= 16, got {num_frames}, {height}, {width}")
    rng = _rng(rng)
    if num_objects is None:
        if max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {max_objects}")
        num_objects = int(rng.integers(1, max_objects + 1))
    if not 1 <= num_objects <= 254:
        raise ValueError(f"num_objects must be in 1..254, got {num_objects}")
    background = _background(rng, num_frames, height, width)
    for _ in range(30):  # resample the objects until all are visible enough (nearly always at once)
        objects = [_sample_object(rng, num_frames, height, width) for _ in range(num_objects)]
        frames, labels, amodal = _render(objects, background, rng)
        if _acceptable(labels, amodal):
            break
    return (frames, labels, amodal) if return_amodal else (frames, labels)


def first_scribble(name: str, labels: np.ndarray) -> dict:
    """The video's first scribble: the DAVIS robot on an empty prediction of ``labels: [T, H, W]``
    (:func:`atnet_jax.interaction.first_scribble.first_scribble`, which ``python -m atnet_jax.scribble`` uses)."""
    from atnet_jax.interaction.first_scribble import first_scribble as robot_first_scribble

    return robot_first_scribble(name, labels)


def sequence_name(index: int) -> str:
    """``synth-0000``, ``synth-0001``, ..."""
    return f"synth-{index:04d}"


def write_dataset(
    out: str | Path,
    *,
    videos: int,
    seed: int = 0,
    num_frames: int = NUM_FRAMES,
    height: int = HEIGHT,
    width: int = WIDTH,
    max_objects: int = MAX_OBJECTS,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write ``videos`` synthetic videos as a DAVIS folder at ``out`` and return it.

    Layout: ``JPEGImages/480p/<name>/%05d.jpg``, ``Annotations/480p/<name>/%05d.png`` (palette PNGs),
    ``Scribbles/<name>/001.json`` (:func:`first_scribble`), ``ImageSets/2017/train.txt`` and ``val.txt``
    (disjoint, :func:`split_train_val`: the last 20% of the videos, at least one, are val; a single video is
    train only). Names are ``synth-0000`` ...; video ``i`` comes from seed ``(seed, i)``, so a seed gives the
    same dataset. A non-empty ``out`` raises FileExistsError unless ``overwrite``; then ``out`` is replaced as
    a whole (nothing of the earlier folder stays).
    """
    from atnet_jax.io.frames import write_frame
    from atnet_jax.io.masks import write_mask
    from atnet_jax.io.safe import atomic_write, replace_dir, staging_dir
    from atnet_jax.io.scribbles import save_scribbles

    out = Path(out)
    if videos < 1:
        raise ValueError(f"videos must be >= 1, got {videos}")
    if height % 16 or width % 16:
        raise ValueError(f"height and width must be multiples of 16, got {height}x{width}")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} already holds files (pass overwrite to replace them)")
    names = [sequence_name(i) for i in range(videos)]
    train, val = split_train_val(names)
    # Written into a staging folder beside ``out``, which then replaces ``out`` as a whole: no video of an
    # earlier dataset stays, and an interrupted run leaves the earlier folder as it was.
    staged = staging_dir(out)
    try:
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=videos, unit="video", desc="generating")
        for i, name in enumerate(names):
            rng = np.random.default_rng([seed, i])
            frames, labels = generate_video(rng, num_frames=num_frames, height=height, width=width,
                                            max_objects=max_objects)
            for t in range(num_frames):
                write_frame(staged / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", frames[t])
                write_mask(staged / "Annotations" / "480p" / name / f"{t:05d}.png", labels[t])
            save_scribbles(staged / "Scribbles" / name / "001.json", first_scribble(name, labels))
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        for subset, listed in (("train", train), ("val", val)):
            text = "".join(f"{n}\n" for n in listed)
            atomic_write(staged / "ImageSets" / "2017" / f"{subset}.txt", lambda tmp, s=text: tmp.write_text(s))
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return replace_dir(staged, out)


def split_train_val(names: Sequence[str]) -> tuple[list[str], list[str]]:
    """Disjoint (train, val) lists: the last 20% of ``names`` (rounded, at least one) are val, the rest train;
    a single video is train only (val is then empty)."""
    names = list(names)
    num_val = max(1, round(0.2 * len(names))) if len(names) >= 2 else 0
    return names[: len(names) - num_val], names[len(names) - num_val :]
