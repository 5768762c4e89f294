"""``python -m atnet_jax.scribble``: a first scribble file from ground-truth masks, drawn by the DAVIS robot.

For videos without human scribbles (DAVIS-2016, a user's own video with one mask): the robot scribbles on an
empty prediction, as the DAVIS interactive benchmark starts such a sequence
(:mod:`atnet_jax.interaction.first_scribble`). The file is round 1 of ``python -m atnet_jax.infer``.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from atnet_jax import cli
from atnet_jax.errors import ConflictError, InputError, UsageError

EXAMPLES = """examples:
  # a DAVIS sequence (DAVIS-2016 or 2017 folder): the robot picks the frame, as the benchmark does
  python -m atnet_jax.scribble --input DAVIS --sequence bear --output bear_001.json
  # a folder of masks, one PNG per frame of the video (names sorted as the frames)
  python -m atnet_jax.scribble --input my_video_masks/ --output my_video_001.json
  # one mask of frame 0 of a 120-frame video
  python -m atnet_jax.scribble --input frame0.png --frames 120 --frame 0 --output my_video_001.json
  # then segment the video from it
  python -m atnet_jax.infer --checkpoint weights/atnet --input my_video.mp4 --scribbles my_video_001.json \\
      --output results
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(
        "python -m atnet_jax.scribble",
        "Write a first scribble file (DAVIS interactive format) from ground-truth masks: the DAVIS robot draws "
        "one stroke along each object's skeleton on the frame where an empty prediction is worst (the first "
        "frame where every object shows), as the DAVIS benchmark starts a sequence without human scribbles. "
        "Masks are palette PNGs (0 background, k object k, 255 void) or 0/255 grayscale (DAVIS-2016).",
        EXAMPLES,
    )
    parser.add_argument("--input", type=Path, required=True, metavar="PATH",
                        help="a DAVIS root (with --sequence), a folder of mask PNGs (one per frame), or one mask "
                             "PNG (with --frames)")
    parser.add_argument("--sequence", metavar="NAME",
                        help="the sequence inside a DAVIS root; for other inputs the name written into the file "
                             "(default: the input's name)")
    parser.add_argument("--output", type=Path, required=True, metavar="FILE.json", help="scribble file to write")
    parser.add_argument("--frames", type=int, metavar="N", help="with one mask: the number of frames of the video")
    parser.add_argument("--frame", type=int, metavar="T",
                        help="with one mask: the frame it belongs to (default 0); otherwise draw on frame T "
                             "instead of the robot's choice")
    parser.add_argument("--min-nb-nodes", type=int, default=4, metavar="N",
                        help="the robot drops skeletons of fewer than N nodes (default 4, the DAVIS framework's; "
                             "ATNet's published evaluation used 2)")
    parser.add_argument("--overwrite", action="store_true", help="replace FILE.json if it exists")
    return parser


def _read_labels(args: argparse.Namespace) -> tuple[str, np.ndarray | None, np.ndarray | None, bool]:
    """-> (sequence name, all frames' labels [T, H, W] or None, the one mask [H, W] or None, a DAVIS folder?)."""
    from atnet_jax.io.davis import DavisFolder
    from atnet_jax.io.frames import list_images, stack_same_size
    from atnet_jax.io.masks import read_mask

    path = args.input
    if path.is_dir() and ((path / "JPEGImages").is_dir() or (path / "Annotations").is_dir()):
        if args.sequence is None:
            davis = DavisFolder(path)
            names = davis.sequences()
            raise UsageError(f"--input {path} is a DAVIS folder: pass --sequence NAME (available: "
                             f"{', '.join(names[:10]) or 'none'}{', ...' if len(names) > 10 else ''})")
        davis = DavisFolder(path)
        if not (davis.annotations_dir / args.sequence).is_dir():
            raise UsageError(f"--sequence {args.sequence}: no masks in {davis.annotations_dir / args.sequence}")
        return args.sequence, davis.read_masks(args.sequence, allow_missing=True), None, True
    name = args.sequence or path.stem
    if path.is_dir():
        paths = [p for p in list_images(path) if p.suffix.lower() == ".png"]
        if not paths:
            raise UsageError(f"--input {path} holds no mask PNGs")
        return name, stack_same_size([read_mask(p) for p in paths], paths), None, False
    if args.frames is None:
        raise UsageError(f"--input {path} is one mask: pass --frames N, the number of frames of its video")
    return name, None, read_mask(path), False


def scribble(args: argparse.Namespace) -> None:
    from atnet_jax.interaction.first_scribble import first_scribble, first_scribble_from_mask, object_ids
    from atnet_jax.interaction.robot import InteractiveRobot
    from atnet_jax.io.scribbles import annotated_frames, save_scribbles

    cli.require_path(args.input, "--input")
    if args.frames is not None and args.frames < 1:
        raise UsageError(f"--frames must be at least 1, got {args.frames}")
    if args.frames is not None and args.input.is_dir():
        raise UsageError("--frames goes with one mask file; a DAVIS folder or a folder of masks has its frames")
    if args.min_nb_nodes < 1:
        raise UsageError(f"--min-nb-nodes must be at least 1, got {args.min_nb_nodes}")
    if args.output.is_dir():
        raise UsageError(f"--output {args.output} is a folder, expected a .json file to write")
    cli.require_writable_folder(args.output.parent, "--output")
    if args.output.exists() and not args.overwrite:
        raise ConflictError(f"--output {args.output} exists (pass --overwrite to replace it)")

    name, labels, mask, is_davis = _read_labels(args)
    robot = InteractiveRobot(min_nb_nodes=args.min_nb_nodes)
    if mask is not None:
        frame = 0 if args.frame is None else args.frame
        if not 0 <= frame < args.frames:
            raise UsageError(f"--frame {frame} is outside the video's {args.frames} frames (0..{args.frames - 1})")
        ids = object_ids(mask)
        scribbles = first_scribble_from_mask(name, mask, frame=frame, num_frames=args.frames, robot=robot)
    else:
        if args.frame is not None and not 0 <= args.frame < len(labels):
            raise UsageError(f"--frame {args.frame} is outside the video's {len(labels)} frames "
                             f"(0..{len(labels) - 1})")
        ids = object_ids(labels)
        scribbles = first_scribble(name, labels, frame=args.frame, robot=robot)
    if not ids:
        raise InputError(f"--input {args.input}: the masks hold no object (every pixel is background or void)")
    marked = annotated_frames(scribbles)
    if not marked:
        raise InputError(f"--input {args.input}: the robot drew no stroke (objects thinner than its skeletons of "
                         f"{args.min_nb_nodes} nodes; try --min-nb-nodes 2)")
    strokes = scribbles["scribbles"][marked[0]]
    drawn = sorted({s["object_id"] for s in strokes if s["object_id"]})
    missing = [i for i in ids if i not in drawn]
    out = save_scribbles(args.output, scribbles, overwrite=args.overwrite)
    print(f"wrote {out}: {len(strokes)} stroke(s) on frame {marked[0]} of {len(scribbles['scribbles'])}, "
          f"object(s) {', '.join(map(str, drawn))} of {name}")
    if missing:
        print(f"warning: no stroke for object(s) {', '.join(map(str, missing))} on frame {marked[0]} (not there or "
              "too small); add one by hand or pass --frame", file=sys.stderr)
    video = f"{shlex.quote(str(args.input))} --sequence {shlex.quote(name)}" if is_davis else "VIDEO"
    print(f"next: python -m atnet_jax.infer --checkpoint weights/atnet --input {video} "
          f"--scribbles {shlex.quote(str(out))} --output results")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), scribble, argv)


if __name__ == "__main__":
    sys.exit(main())
