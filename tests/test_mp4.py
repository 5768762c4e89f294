"""H.264 MP4s (atnet_jax.io.mp4) and the overlay video: the codec, pixel format and size as ffmpeg reads them,
every frame there and close to its input when decoded, odd sizes padded, and a failing encoder that says so and
leaves nothing behind."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from atnet_jax.io import mp4
from atnet_jax.io.masks import DAVIS_PALETTE
from atnet_jax.io.visualize import overlay, write_overlay_video


def probe(path: Path) -> dict:
    """Codec, pixel format and size of the first video stream, from the bundled ffmpeg's description."""
    text = subprocess.run([mp4.ffmpeg_exe(), "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    match = re.search(r"Video: (\w+).*?, (\w+)\(?[^,]*,? (\d+)x(\d+)", text)
    assert match, text
    return {"codec": match.group(1), "pix_fmt": match.group(2), "width": int(match.group(3)),
            "height": int(match.group(4))}


def decode(path: Path) -> np.ndarray:
    """Every frame of ``path`` as ``[T, H, W, 3] uint8`` RGB, decoded by OpenCV (an independent decoder)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        out.append(frame[:, :, ::-1])
    capture.release()
    return np.stack(out)


def moving_square(num_frames: int, height: int, width: int) -> np.ndarray:
    frames = np.zeros((num_frames, height, width, 3), np.uint8)
    frames[..., 0] = np.linspace(0, 200, width, dtype=np.uint8)[None, None, :]
    frames[..., 2] = 90
    for t in range(num_frames):
        frames[t, 10:30, 5 + 3 * t:25 + 3 * t] = (240, 240, 40)
    return frames


@pytest.mark.parametrize("height, width", [(48, 64), (45, 63)])
def test_h264_codec_frames_and_pixels(tmp_path, height, width):
    frames = moving_square(9, height, width)
    path = mp4.write_h264(tmp_path / "v.mp4", iter(frames), height, width, fps=10)
    info = probe(path)
    assert (info["codec"], info["pix_fmt"]) == ("h264", "yuv420p")
    assert (info["height"], info["width"]) == mp4.even_shape(height, width) == (height + height % 2, width + width % 2)
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart: the index before the media
    decoded = decode(path)
    assert decoded.shape == (9, *mp4.even_shape(height, width), 3)
    error = np.abs(decoded[:, :height, :width].astype(int) - frames.astype(int))
    assert error.mean() < 4 and np.percentile(error, 99) < 40, (error.mean(), np.percentile(error, 99))
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]  # no temporary file left


def test_overlay_video_is_h264_of_the_overlays(tmp_path):
    frames = moving_square(6, 40, 56)
    labels = np.zeros((6, 40, 56), np.uint8)
    labels[:, 10:30, 5:25] = 1
    labels[:, 0:8, 40:56] = 2
    path = tmp_path / "o.mp4"
    write_overlay_video(path, frames, labels, DAVIS_PALETTE, fps=5)
    assert probe(path)["codec"] == "h264"
    decoded = decode(path)
    expected = np.stack([overlay(frames[t], labels[t], DAVIS_PALETTE) for t in range(6)])
    assert decoded.shape == expected.shape
    assert np.abs(decoded.astype(int) - expected.astype(int)).mean() < 8  # yuv420p halves the colour edges


def test_failing_encoder_names_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    failing = tmp_path / "bin" / "ffmpeg"
    failing.parent.mkdir()
    failing.write_text("#!/bin/sh\necho 'Unknown encoder libx264' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setattr(mp4, "ffmpeg_exe", lambda: str(failing))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(mp4.EncoderError, match=r"v\.mp4.*Unknown encoder libx264"):
        mp4.write_h264(out / "v.mp4", iter(moving_square(40, 32, 32)), 32, 32)
    assert list(out.iterdir()) == []


def test_wrong_frame_shape_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"frame 1 is \(32, 30, 3\)"):
        mp4.write_h264(tmp_path / "v.mp4", [np.zeros((32, 32, 3), np.uint8), np.zeros((32, 30, 3), np.uint8)],
                       32, 32)
    assert list(tmp_path.iterdir()) == []
