"""``python -m atnet_jax.infer``: interactive segmentation of a video from scribble files, round by round."""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from atnet_jax import cli

EXAMPLES = """examples:
  # a DAVIS sequence, two rounds of scribbles
  python -m atnet_jax.infer --checkpoint weights/atnet --input DAVIS --sequence bear \\
      --scribbles DAVIS/Scribbles/bear/001.json round2.json --output results
  # a folder of frames or a video file
  python -m atnet_jax.infer --checkpoint weights/atnet --input my_video.mp4 --scribbles clicks.json --output results
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(
        "python -m atnet_jax.infer",
        "Segment the objects of a video from scribbles: each scribble file is one round of interaction "
        "(A-Net on the scribbled frame, T-Net propagation to the other frames). Writes one palette PNG per "
        "frame (DAVIS format) and an overlay for viewing.",
        EXAMPLES,
    )
    parser.add_argument("--checkpoint", required=True, type=Path, metavar="DIR",
                        help="weights folder (from python -m atnet_jax.convert or the training)")
    parser.add_argument("--input", required=True, type=Path, metavar="PATH",
                        help="a DAVIS root (with --sequence), a folder of frames, or a video file")
    parser.add_argument("--sequence", metavar="NAME", help="sequence name inside a DAVIS root")
    parser.add_argument("--scribbles", required=True, type=Path, nargs="+", metavar="FILE.json",
                        help="DAVIS scribble files, one per round, applied in the order given")
    parser.add_argument("--output", required=True, type=Path, metavar="DIR",
                        help="results folder: DIR/<sequence>/%%05d.png and DIR/<sequence>_overlay.*")
    parser.add_argument("--objects", type=int, metavar="K",
                        help="number of objects (default: the largest object id in the scribbles)")
    parser.add_argument("--overlay", choices=("video", "images", "none"), default="video",
                        help="how to write the overlay of masks on frames (default: video)")
    parser.add_argument("--overwrite", action="store_true", help="replace results already in the output folder")
    return parser


def _write_overlay_video(path: Path, frames, labels, palette, fps: float = 10.0) -> None:
    import cv2

    from atnet_jax.visualize import overlay

    height, width = labels.shape[1:]
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        os.unlink(tmp)
        raise RuntimeError(f"OpenCV cannot write {path} (no mp4v encoder); use --overlay images")
    try:
        for t in range(len(labels)):
            writer.write(overlay(frames[t], labels[t], palette)[:, :, ::-1])
    finally:
        writer.release()
    os.replace(tmp, path)


def infer(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from atnet_jax.checkpointing import load_weights
    from atnet_jax.data.davis import DAVIS_PALETTE, open_frames, write_frame, write_mask
    from atnet_jax.data.scribbles import annotated_frames, load_scribbles
    from atnet_jax.interactive.session import Session
    from atnet_jax.visualize import overlay

    for path in [args.checkpoint, args.input, *args.scribbles]:
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
    if args.objects is not None and args.objects < 1:
        raise cli.UsageError(f"--objects must be at least 1, got {args.objects}")
    name = args.sequence or args.input.stem
    masks_dir = args.output / name
    if masks_dir.exists() and any(masks_dir.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{masks_dir} already holds results (pass --overwrite to replace them)")

    frames = open_frames(args.input, args.sequence)
    rounds = [load_scribbles(p, num_frames=len(frames), num_objects=args.objects,
                             sequence=args.sequence) for p in args.scribbles]
    ids = {s["object_id"] for r in rounds for strokes in r["scribbles"] for s in strokes}
    num_objects = args.objects or max(ids - {0}, default=0)
    if num_objects < 1:
        raise ValueError(f"the scribble files name no object (only background strokes): {args.scribbles[0]}")
    variables, config = load_weights(args.checkpoint)
    print(f"{name}: {len(frames)} frames of {frames.shape[1]}x{frames.shape[0]}, {num_objects} object(s), "
          f"{len(rounds)} scribble file(s)")

    session = Session(frames, variables, config, num_objects, progress=True)
    n = 0
    for path, scribbles in zip(args.scribbles, rounds):
        marked = annotated_frames(scribbles)
        if not marked:
            print(f"  {path}: no strokes, skipped")
        for frame in marked:
            n += 1
            session.interact(frame, scribbles["scribbles"][frame])
            print(f"  round {n}: {path.name}, frame {frame}: {session.last_round_seconds:.1f} s")
    session.close()

    masks_dir.mkdir(parents=True, exist_ok=True)
    for t in tqdm(range(len(frames)), desc="writing masks", unit="frame", leave=False):
        write_mask(masks_dir / f"{t:05d}.png", session.labels[t], overwrite=args.overwrite)
    print(f"wrote {len(frames)} masks to {masks_dir}")
    if args.overlay == "video":
        video = args.output / f"{name}_overlay.mp4"
        _write_overlay_video(video, frames, session.labels, DAVIS_PALETTE)
        print(f"wrote overlay video {video}")
    elif args.overlay == "images":
        images = args.output / f"{name}_overlay"
        images.mkdir(exist_ok=True)
        for t in range(len(frames)):
            write_frame(images / f"{t:05d}.jpg", overlay(frames[t], session.labels[t], DAVIS_PALETTE),
                        overwrite=args.overwrite)
        print(f"wrote overlay images to {images}")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), infer, argv)


if __name__ == "__main__":
    sys.exit(main())
