"""``python -m atnet_jax.evaluate``: the DAVIS interactive benchmark (robot scribbles, AUC and @60s)."""
from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from atnet_jax import cli
from atnet_jax.demo import DEFAULT_CHECKPOINT
from atnet_jax.io import lock
from atnet_jax.io.weights import folder_fingerprint
from atnet_jax.models.preprocess import DEFAULT_PROCESSING_SIZE, parse_processing_size

EXAMPLES = """examples:
  # DAVIS-2017 val, J&F (the challenge metric), 8 rounds
  python -m atnet_jax.evaluate --checkpoint weights/atnet --input DAVIS --subset val --output eval/val
  # two sequences, J, the robot setting of ATNet's own evaluation
  python -m atnet_jax.evaluate --checkpoint weights/atnet --input DAVIS --sequences bear,tennis \\
      --metric J --min-nb-nodes 2 --output eval/small
  # the demo's generated video (run python -m atnet_jax.infer first) with the demo weights
  python -m atnet_jax.evaluate --input atnet_demo/data --output eval/demo
  # continue an interrupted run (the same settings only)
  python -m atnet_jax.evaluate --checkpoint weights/atnet --input DAVIS --subset val --output eval/val --resume
  # four shards (e.g. a job array, one GPU each), then one report
  python -m atnet_jax.evaluate --checkpoint weights/atnet --input DAVIS --subset val --shard 0/4 --output eval/s0
  python -m atnet_jax.evaluate --merge eval/s0 eval/s1 eval/s2 eval/s3 --output eval/val
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(
        "python -m atnet_jax.evaluate",
        "Evaluate on the DAVIS interactive protocol: for each sequence and each of its scribble files, up "
        "to --max-rounds rounds in which a robot scribbles on the worst frame; only the model's time "
        "counts. Writes report.csv (J, F, J&F and timing per round, object and frame), summary.json (auc, "
        "metric_at_threshold, curve, as the official framework) and curve.png. Each finished sample is "
        "kept at once in samples/ (--resume continues an interrupted run); a sequence that cannot be read "
        "is reported and the others go on (exit 1 at the end).",
        EXAMPLES,
    )
    parser.add_argument("--checkpoint", type=Path, metavar="DIR",
                        help="weights folder (default: the demo weights shipped with the package, trained on "
                             "synthetic videos only)")
    parser.add_argument("--input", type=Path, metavar="DAVIS_ROOT",
                        help="DAVIS-format folder (JPEGImages/480p, Annotations/480p, optional Scribbles)")
    parser.add_argument("--subset", metavar="NAME", help="ImageSets list to evaluate, e.g. val (default: all)")
    parser.add_argument("--sequences", metavar="A,B", help="comma-separated sequences (overrides --subset)")
    parser.add_argument("--output", required=True, type=Path, metavar="DIR", help="folder for the reports")
    parser.add_argument("--metric", choices=("J", "J_AND_F"), default="J_AND_F",
                        help="metric the robot minimises and the summary reports (default: J_AND_F)")
    parser.add_argument("--max-rounds", type=cli.positive_int, default=8, help="interactions per sample (default: 8)")
    parser.add_argument("--time-per-object", type=cli.positive_float, default=30.0,
                        help="seconds of model time per round per object (default: 30)")
    parser.add_argument("--min-nb-nodes", type=cli.positive_int, default=4,
                        help="robot: smallest skeleton that gives a stroke (DAVIS: 4; ATNet's paper: 2)")
    parser.add_argument("--size", type=parse_processing_size, default=DEFAULT_PROCESSING_SIZE, metavar="N",
                        help="run the networks on frames whose shorter side is at most N pixels (default: "
                             f"{DEFAULT_PROCESSING_SIZE}; 'full': the video's size)")
    cli.add_precision_argument(parser)
    parser.add_argument("--overwrite", action="store_true", help="replace results already in --output")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --output: skip its finished samples (refused if the settings "
                             "differ)")
    parser.add_argument("--save-masks", action="store_true",
                        help="also write every scored round's masks as DAVIS palette PNGs, a folder per sample "
                             "and round: masks/SEQUENCE/SCRIBBLE_IDX/round_R/%%05d.png")
    parser.add_argument("--shard", metavar="I/N",
                        help="evaluate every N-th sample, starting at sample I (0 <= I < N); merge with --merge")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="DIR",
                        help="merge the outputs of all N shards of a run into --output (nothing is evaluated)")
    return parser


def evaluate_command(args: argparse.Namespace) -> None:
    from atnet_jax.evaluation import protocol
    from atnet_jax.evaluation.masks import MaskWriter
    from atnet_jax.io.davis import DavisFolder

    if args.merge:
        return merge_command(args)
    if args.input is None:
        raise cli.UsageError("--input is required (or --merge DIR ... to merge shards)")
    checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
    cli.require_path(checkpoint, "--checkpoint")
    cli.require_path(args.input, "--input")
    if not args.input.is_dir():
        raise cli.UsageError(f"--input {args.input} is a file, expected a DAVIS folder")
    cli.require_writable_folder(args.output, "--output")
    lock.hold(args.output)  # a second run writing this output stops here (ConflictError)
    try:
        shard = protocol.parse_shard(args.shard) if args.shard else (0, 1)
    except ValueError as err:
        raise cli.UsageError(f"--shard: {err}") from None
    davis = DavisFolder(args.input)
    sources = discover_sequences(davis, args.subset, args.sequences)
    config = protocol.ProtocolConfig(max_rounds=args.max_rounds, time_per_object=args.time_per_object,
                                     metric=args.metric, min_nb_nodes=args.min_nb_nodes)
    settings = run_settings(args, checkpoint, [s.name for s in sources])
    try:  # the same check evaluate() makes, before the weights are read
        protocol.check_output(args.output, protocol.full_settings(sources, config, shard, settings),
                              resume=args.resume, overwrite=args.overwrite)
    except protocol.OutputConflict as err:
        raise cli.UsageError(str(err)) from None
    predictor = cli.load_predictor(checkpoint, precision=args.precision)
    print(f"weights: {checkpoint}" + (" (the demo weights, trained on synthetic videos only)"
                                      if args.checkpoint is None else ""))
    total = sum(s.num_samples for s in sources)
    print(f"{len(sources)} sequence(s), {total} sample(s)"
          + (f", shard {shard[0]}/{shard[1]}: {len(range(shard[0], total, shard[1]))} of them" if args.shard else "")
          + f", metric {args.metric}, up to {args.max_rounds} rounds")
    make_session = functools.partial(open_session, predictor, args.size)
    result = protocol.evaluate(sources, make_session, config, args.output, settings=settings, shard=shard,
                               resume=args.resume, overwrite=args.overwrite, raise_errors=args.debug,
                               on_round=MaskWriter(args.output) if args.save_masks else None)
    if result is None:
        print(f"no sample in this shard: {args.output} holds its settings only (--merge needs it)")
    else:
        print(json.dumps({"auc": result["auc"], "metric_at_threshold": result["metric_at_threshold"]}, indent=2))
        print(f"wrote {args.output / 'report.csv'}, {args.output / 'summary.json'}, {args.output / 'curve.png'}")


def open_session(predictor: Any, size: int | None, sequence: Any) -> Any:
    """A :class:`Session` over one sequence's frames at processing size ``size``."""
    from atnet_jax.inference.session import Session

    return Session(sequence.frames, predictor, sequence.num_objects, size=size)


def run_settings(args: argparse.Namespace, checkpoint: Path, names: list[str]) -> dict[str, Any]:
    """What a run depends on besides the protocol: ``--resume`` and ``--merge`` require the same. The weights
    count by their contents (shards may read copies on different hosts); the paths are recorded only."""
    settings = {"weights_sha256": folder_fingerprint(checkpoint), "sequences": names, "size": args.size,
                "paths": {"checkpoint": str(checkpoint.resolve()), "input": str(args.input.resolve())}}
    if args.precision != "float32":  # runs in float32 keep the settings recorded before the option existed
        settings["precision"] = args.precision
    return settings


def discover_sequences(davis: Any, subset: str | None, sequences: str | None) -> list[Any]:
    """The sequences to evaluate, each read only when its first sample runs.

    ``--sequences`` names must have frames (else a usage error). Without ``--subset``/``--sequences`` every
    sequence folder is a candidate and those without frames or masks are skipped with a printed reason;
    a sequence that ``--subset`` lists but that cannot be read fails its samples (exit 1 at the end).
    """
    from atnet_jax.evaluation.protocol import SequenceSource

    if sequences:
        names = [n for n in sequences.split(",") if n]
        for name in names:
            davis.frame_paths(name)  # FileNotFoundError (usage) naming the sequence
    elif subset:
        names = davis.sequences(subset)
    else:
        folders = (davis.images_dir, davis.annotations_dir, davis.scribbles_dir)
        candidates = sorted({d.name for f in folders if f.is_dir() for d in f.iterdir() if d.is_dir()})
        names, skipped = [], []
        for name in candidates:
            try:
                davis.frame_paths(name)
                davis.mask_paths(name)
            except FileNotFoundError as err:
                skipped.append(f"{name} ({str(err).replace(f' for sequence {name!r}', '')})")
                continue
            names.append(name)
        if skipped:
            print(f"skipped {len(skipped)} sequence(s): {'; '.join(skipped)}")
    if not names:
        raise ValueError(f"{davis.root}: no sequences to evaluate")
    return [SequenceSource(name, max(1, len(davis.scribble_paths(name))), functools.partial(load_sequence, davis, name))
            for name in names]


def load_sequence(davis: Any, name: str) -> Any:
    """Frames (lazy), masks, objects and first scribbles of one sequence."""
    from atnet_jax.evaluation.protocol import SequenceData
    from atnet_jax.io.scribbles import load_scribbles

    frames = davis.frames(name)
    gt = davis.read_masks(name)
    if gt.shape[0] != len(frames):
        raise ValueError(f"{name}: {len(frames)} frames but {gt.shape[0]} masks")
    num_objects = davis.num_objects(name)
    files = davis.scribble_paths(name)
    first = [load_scribbles(p, num_frames=len(frames), num_objects=num_objects, sequence=name) for p in files]
    return SequenceData(name, frames, gt, num_objects, first or [None])


def merge_command(args: argparse.Namespace) -> None:
    from atnet_jax.evaluation.protocol import OutputConflict, merge

    if args.input or args.shard or args.resume or args.sequences or args.subset or args.save_masks:
        raise cli.UsageError("--merge takes the shards' folders and --output (and --overwrite) only")
    for folder in args.merge:
        cli.require_path(folder, "--merge")
    cli.require_writable_folder(args.output, "--output")
    lock.hold(args.output)
    try:
        result = merge(args.merge, args.output, overwrite=args.overwrite)
    except OutputConflict as err:
        raise cli.UsageError(str(err)) from None
    print(f"merged {len(args.merge)} shard(s) into {args.output}")
    print(json.dumps({"auc": result["auc"], "metric_at_threshold": result["metric_at_threshold"]}, indent=2))
    print(f"wrote {args.output / 'report.csv'}, {args.output / 'summary.json'}, {args.output / 'curve.png'}")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), evaluate_command, argv)


if __name__ == "__main__":
    sys.exit(main())
