"""``python -m atnet_jax.evaluate``: the DAVIS interactive benchmark (robot scribbles, AUC and @60s)."""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from atnet_jax import cli
from atnet_jax.infer import DEFAULT_CHECKPOINT
from atnet_jax.models.preprocess import DEFAULT_PROCESSING_SIZE, parse_processing_size

EXAMPLES = """examples:
  # DAVIS-2017 val, J&F (the challenge metric), 8 rounds
  python -m atnet_jax.evaluate --checkpoint weights/atnet --input DAVIS --subset val --output eval/val
  # two sequences, J, the robot setting of ATNet's own evaluation
  python -m atnet_jax.evaluate --checkpoint weights/atnet --input DAVIS --sequences bear,tennis \\
      --metric J --min-nb-nodes 2 --output eval/small
  # the demo's generated video (run python -m atnet_jax.infer first) with the demo weights
  python -m atnet_jax.evaluate --input atnet_demo/data --output eval/demo
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(
        "python -m atnet_jax.evaluate",
        "Evaluate on the DAVIS interactive protocol: for each sequence and each of its scribble files, up "
        "to --max-rounds rounds in which a robot scribbles on the worst frame; only the model's time "
        "counts. Writes report.csv (J, F, J&F and timing per round, object and frame), summary.json (auc, "
        "metric_at_threshold, curve, as the official framework) and curve.png.",
        EXAMPLES,
    )
    parser.add_argument("--checkpoint", type=Path, metavar="DIR",
                        help="weights folder (default: the demo weights shipped with the package, trained on "
                             "synthetic videos only)")
    parser.add_argument("--input", required=True, type=Path, metavar="DAVIS_ROOT",
                        help="DAVIS-format folder (JPEGImages/480p, Annotations/480p, optional Scribbles)")
    parser.add_argument("--subset", metavar="NAME", help="ImageSets list to evaluate, e.g. val (default: all)")
    parser.add_argument("--sequences", metavar="A,B", help="comma-separated sequences (overrides --subset)")
    parser.add_argument("--output", required=True, type=Path, metavar="DIR", help="folder for the reports")
    parser.add_argument("--metric", choices=("J", "J_AND_F"), default="J_AND_F",
                        help="metric the robot minimises and the summary reports (default: J_AND_F)")
    parser.add_argument("--max-rounds", type=int, default=8, help="interactions per sample (default: 8)")
    parser.add_argument("--time-per-object", type=float, default=30.0,
                        help="seconds of model time per round per object (default: 30)")
    parser.add_argument("--min-nb-nodes", type=int, default=4,
                        help="robot: smallest skeleton that gives a stroke (DAVIS: 4; ATNet's paper: 2)")
    parser.add_argument("--size", type=parse_processing_size, default=DEFAULT_PROCESSING_SIZE, metavar="N",
                        help="run the networks on frames whose shorter side is at most N pixels (default: "
                             f"{DEFAULT_PROCESSING_SIZE}; 'full': the video's size)")
    parser.add_argument("--overwrite", action="store_true", help="replace reports already in --output")
    return parser


def evaluate_command(args: argparse.Namespace) -> None:
    from atnet_jax.data.davis import DavisFolder
    from atnet_jax.data.scribbles import load_scribbles
    from atnet_jax.evaluation.protocol import ProtocolConfig, SequenceData, evaluate
    from atnet_jax.interactive.session import Session

    checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
    cli.require_path(checkpoint, "--checkpoint")
    cli.require_path(args.input, "--input")
    if not args.input.is_dir():
        raise cli.UsageError(f"--input {args.input} is a file, expected a DAVIS folder")
    if args.max_rounds < 1:
        raise cli.UsageError(f"--max-rounds must be at least 1, got {args.max_rounds}")
    if args.output.exists() and not args.output.is_dir():
        raise NotADirectoryError(f"--output {args.output} is a file, expected a folder")
    if (args.output / "summary.json").exists() and not args.overwrite:
        raise FileExistsError(f"{args.output} already holds results (summary.json; pass --overwrite to replace them)")
    davis = DavisFolder(args.input)
    names = args.sequences.split(",") if args.sequences else davis.sequences(args.subset)
    if not names:
        raise ValueError(f"{args.input}: no sequences to evaluate")
    variables, model_config = cli.load_checkpoint(checkpoint)
    print(f"weights: {checkpoint}" + (" (the demo weights, trained on synthetic videos only)"
                                      if args.checkpoint is None else ""))

    sequences = []
    for name in names:
        frames = davis.frames(name)
        gt = davis.read_masks(name)
        if gt.shape[0] != len(frames):
            raise ValueError(f"{name}: {len(frames)} frames but {gt.shape[0]} masks")
        num_objects = davis.num_objects(name)
        files = davis.scribble_paths(name)
        first = [load_scribbles(p, num_frames=len(frames), num_objects=num_objects, sequence=name) for p in files]
        sequences.append(SequenceData(name, frames, gt, num_objects, first or [None]))
    print(f"{len(sequences)} sequence(s), {sum(len(s.scribbles) for s in sequences)} sample(s), metric "
          f"{args.metric}, up to {args.max_rounds} rounds")
    config = ProtocolConfig(max_rounds=args.max_rounds, time_per_object=args.time_per_object,
                            metric=args.metric, min_nb_nodes=args.min_nb_nodes)
    result = evaluate(sequences, lambda s: Session(s.frames, variables, model_config, s.num_objects,
                                                   size=args.size), config, args.output)
    print(json.dumps({"auc": result["auc"], "metric_at_threshold": result["metric_at_threshold"]}, indent=2))
    print(f"wrote {args.output / 'report.csv'}, {args.output / 'summary.json'}, {args.output / 'curve.png'}")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), evaluate_command, argv)


if __name__ == "__main__":
    sys.exit(main())
