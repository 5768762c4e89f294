"""MP4 videos that browsers play: H.264 (libx264), yuv420p, even dimensions, the index at the front
(``faststart``), encoded by the ffmpeg binary that the ``imageio-ffmpeg`` package ships (no system ffmpeg).

Raw RGB frames are piped to ffmpeg; the file is written beside its final name and renamed into place
(:func:`atnet_jax.io.safe.atomic_write`), so a failed encode leaves nothing half-written.
"""
from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from atnet_jax.errors import AtnetError
from atnet_jax.io.safe import atomic_write

CRF = 18  # x264 quality: visually lossless for overlays, about 10x smaller than mp4v at equal quality
PRESET = "veryfast"


class EncoderError(AtnetError, RuntimeError):
    """The H.264 encoder is missing or failed (its message says why): exit status 1, HTTP 500."""


def ffmpeg_exe() -> str:
    """The path of the ffmpeg binary bundled with ``imageio-ffmpeg``; an :class:`EncoderError` if it is missing."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise EncoderError("writing MP4 videos needs the imageio-ffmpeg package (pip install imageio-ffmpeg)") \
            from None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as err:
        raise EncoderError(f"imageio-ffmpeg has no ffmpeg binary for this platform: {err}") from None


def even_shape(height: int, width: int) -> tuple[int, int]:
    """The video's size for a ``height x width`` frame: rounded up to even numbers (yuv420p needs them)."""
    return height + height % 2, width + width % 2


def pad_even(frame: np.ndarray) -> np.ndarray:
    """``frame [H, W, 3] uint8`` with its last row / column repeated where H / W is odd."""
    height, width = frame.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return frame
    return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def write_h264(path: Path, frames: Iterable[np.ndarray], height: int, width: int, *, fps: float = 10.0,
               overwrite: bool = True) -> Path:
    """Encode ``frames`` (each ``[height, width, 3] uint8`` RGB) as an H.264 MP4 at ``path``.

    Odd sizes are padded to even ones (:func:`pad_even`). Raises :class:`EncoderError` naming the file and
    ffmpeg's last message if the encoder fails; nothing is left at ``path`` then (nor a temporary file)."""
    path = Path(path)
    exe = ffmpeg_exe()
    out_h, out_w = even_shape(height, width)

    def encode(tmp: Path) -> None:
        command = [exe, "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
                   "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{out_w}x{out_h}", "-r", f"{fps:g}", "-i", "pipe:0",
                   "-an", "-c:v", "libx264", "-preset", PRESET, "-crf", str(CRF), "-pix_fmt", "yuv420p",
                   "-movflags", "+faststart", "-f", "mp4", str(tmp)]
        with tempfile.TemporaryFile() as log:
            try:
                proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log)
            except OSError as err:
                raise EncoderError(f"cannot run the H.264 encoder {exe} for {path.name}: {err}") from None
            assert proc.stdin is not None
            count, broken = 0, False
            try:
                for frame in frames:
                    frame = np.asarray(frame)
                    if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
                        raise ValueError(f"{path.name}: frame {count} is {frame.shape} {frame.dtype}, expected "
                                         f"({height}, {width}, 3) uint8")
                    try:
                        proc.stdin.write(np.ascontiguousarray(pad_even(frame)).tobytes())
                    except BrokenPipeError:
                        broken = True
                        break
                    count += 1
                try:
                    proc.stdin.close()
                except BrokenPipeError:
                    broken = True
                code = proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            log.seek(0)
            message = log.read().decode("utf-8", "replace").strip().splitlines()
        if code != 0 or broken:
            last = message[-1] if message else f"exit status {code}"
            raise EncoderError(f"the H.264 encoder (ffmpeg libx264) failed on {path.name}: {last}")
        if count == 0:
            raise EncoderError(f"{path.name}: no frames to encode")

    return atomic_write(path, encode, overwrite=overwrite)


def check_encoder() -> None:
    """Before any long work: an :class:`EncoderError` now if the H.264 encoder cannot write a tiny video."""
    with tempfile.TemporaryDirectory(prefix="atnet_jax_h264_") as tmp:
        write_h264(Path(tmp) / "probe.mp4", [np.zeros((16, 16, 3), np.uint8)], 16, 16)
