"""Make docs/demo.png, the README's picture: the demo's overlays on four frames of its generated video.

    python experiments/make_readme_figure.py [--checkpoint DIR] [--output docs/demo.png]

Runs ``python -m atnet_jax.infer`` (the demo, default weights unless ``--checkpoint``) in a temporary folder,
then lays out four frames of ``shapes_overlay/`` and the scribbled ones in a row, with the scribbles of both
rounds drawn on their frames, scaled down and saved as a palette PNG (under 300 KB).
"""
from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from atnet_jax.io.frames import read_frame
from atnet_jax.io.masks import DAVIS_PALETTE
from atnet_jax.io.visualize import caption, draw_strokes, grid

ROOT = Path(__file__).resolve().parents[1]
MAX_BYTES = 300_000


def _strokes(path: Path) -> dict[int, list[dict]]:
    """Frame -> strokes of a scribble file."""
    scribbles = json.loads(path.read_text())["scribbles"]
    return {t: strokes for t, strokes in enumerate(scribbles) if strokes}


def compose(demo_dir: Path, frames: int = 4, width: int = 1400) -> Image.Image:
    """The overlays of ``frames`` evenly spaced frames of the demo in ``demo_dir`` and of the scribbled frames,
    scribbles drawn, captioned, scaled to ``width`` pixels."""
    overlays = sorted((demo_dir / "shapes_overlay").glob("*.jpg"))
    scribbled = {**_strokes(demo_dir / "data" / "Scribbles" / "shapes" / "001.json"),
                 **_strokes(demo_dir / "round2.json")}
    picks = sorted({int(round(x)) for x in np.linspace(0, len(overlays) - 1, frames)} | set(scribbled))
    cells = []
    for t in picks:
        image = read_frame(overlays[t])
        text = f"frame {t}"
        if t in scribbled:
            image = draw_strokes(image, scribbled[t], DAVIS_PALETTE)
            text += " (scribbled)"
        cells.append(caption(image, text))
    strip = Image.fromarray(grid([cells], gap=6))
    scale = min(1.0, width / strip.width)
    return strip.resize((round(strip.width * scale), round(strip.height * scale)), Image.Resampling.LANCZOS)


def save_small_png(image: Image.Image, path: Path) -> int:
    """Save ``image`` as a palette PNG, with fewer colours until it is under :data:`MAX_BYTES`; its size."""
    for colours in (256, 128, 64):
        buffer = io.BytesIO()
        image.quantize(colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            buffer, format="PNG", optimize=True)
        if buffer.tell() < MAX_BYTES:
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return buffer.tell()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="weights folder (default: the demo's)")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "demo.png", help="the PNG to write")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "atnet_jax.infer", "--output", str(Path(tmp) / "demo")]
        if args.checkpoint:
            command += ["--checkpoint", str(args.checkpoint.resolve())]
        subprocess.run(command, check=True)
        size = save_small_png(compose(Path(tmp) / "demo"), args.output)
    print(f"wrote {args.output} ({size / 1000:.0f} KB)")


if __name__ == "__main__":
    main()
