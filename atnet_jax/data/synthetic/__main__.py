"""``python -m atnet_jax.data.synthetic``: write a DAVIS-format folder of synthetic videos
(:func:`atnet_jax.data.synthetic.write_dataset`)."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from atnet_jax import cli
from atnet_jax.data.synthetic import (
    HEIGHT,
    MAX_FRAMES,
    MAX_OBJECTS,
    MAX_SIDE,
    NUM_FRAMES,
    WIDTH,
    split_train_val,
    write_dataset,
)

EXAMPLES = """examples:
  # 20 videos of 12 frames at 240x432 (16 train, 4 val) with one robot scribble each
  python -m atnet_jax.data.synthetic --output data/synthetic --videos 20
  # longer, larger videos with up to 5 objects, another seed, replacing an earlier folder
  python -m atnet_jax.data.synthetic --output data/synthetic --videos 50 --seed 1 --frames 30 \\
      --height 480 --width 848 --max-objects 5 --overwrite
  # then evaluate on the val videos (the last 20%)
  python -m atnet_jax.evaluate --checkpoint weights/atnet --input data/synthetic --subset val --output eval/synthetic
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(
        "python -m atnet_jax.data.synthetic",
        "Write a DAVIS-format folder of synthetic videos (textured shapes that move, rotate, scale and occlude "
        "each other over a panning textured background), with palette masks, a train/val split and a first "
        "robot scribble per video. The same seed gives the same dataset.",
        EXAMPLES,
    )
    cli.add_argument(parser, "--output", old_names=("--out",), dest="output", required=True, type=Path,
                     metavar="DIR", help="folder to write (--out is the old name of this flag)")
    parser.add_argument("--videos", required=True, type=cli.positive_int, metavar="N", help="number of videos")
    parser.add_argument("--seed", type=cli.nonnegative_int, default=0, help="random seed (default: 0)")
    parser.add_argument("--frames", type=cli.int_range(1, MAX_FRAMES), default=NUM_FRAMES,
                        help=f"frames per video (default: {NUM_FRAMES})")
    parser.add_argument("--height", type=frame_side, default=HEIGHT,
                        help=f"frame height, a multiple of 16 (default: {HEIGHT})")
    parser.add_argument("--width", type=frame_side, default=WIDTH,
                        help=f"frame width, a multiple of 16 (default: {WIDTH})")
    parser.add_argument("--max-objects", type=cli.int_range(1, 254), default=MAX_OBJECTS,
                        help=f"each video has 1..K objects (default: {MAX_OBJECTS})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace DIR as a whole if it already holds files (nothing of it is kept)")
    return parser


def frame_side(value: str) -> int:
    """An argparse ``type=`` for ``--height`` / ``--width``: a multiple of 16 from 16 to :data:`MAX_SIDE`."""
    side = cli.int_range(16, MAX_SIDE, "pixels")(value)
    if side % 16:
        raise argparse.ArgumentTypeError(f"must be a multiple of 16, got {side}")
    return side


def _generate(args: argparse.Namespace) -> None:
    cli.require_writable_folder(args.output, "--output")
    if args.output.is_dir() and any(args.output.iterdir()) and not args.overwrite:
        raise FileExistsError(f"--output {args.output} already holds files (pass --overwrite to replace it)")
    out = write_dataset(args.output, videos=args.videos, seed=args.seed, num_frames=args.frames, height=args.height,
                        width=args.width, max_objects=args.max_objects, overwrite=args.overwrite, progress=True)
    train, val = split_train_val(range(args.videos))
    print(f"wrote {args.videos} synthetic videos ({args.frames} frames, {args.height}x{args.width}; {len(train)} "
          f"listed as train, {len(val)} as val) to {out}")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), _generate, argv)


if __name__ == "__main__":
    sys.exit(main())
