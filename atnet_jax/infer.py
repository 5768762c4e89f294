"""``python -m atnet_jax.infer``: interactive segmentation of a video from scribble or click files, round by round.

Without ``--input`` it runs the demo: a generated video (:mod:`atnet_jax.demo`), two rounds of scribbles (the
generated first scribble, then a robot correction on round 1's worst frame), the weights shipped in
``atnet_jax/assets/demo_weights``, and everything written to ``atnet_demo/``.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from atnet_jax import cli, demo
from atnet_jax.errors import ConflictError, InputError
from atnet_jax.io import lock
from atnet_jax.io.export import (
    OVERLAYS,
    check_overlay_writer,
    check_results_output,
    discard,
    result_names,
    write_sequence_files,
    write_sequence_results,
)
from atnet_jax.models.preprocess import DEFAULT_PROCESSING_SIZE, parse_processing_size

if TYPE_CHECKING:
    from atnet_jax.interaction.kinds import Interaction

DEMO_OUTPUT = Path("atnet_demo")
DEMO_DATA = "data"  # the generated DAVIS folder, inside the output folder
DEMO_ROUND2 = "round2.json"  # the robot's correction of round 1, inside the output folder
OVERVIEW = "overview.jpg"

EXAMPLES = """examples:
  # the demo: a generated video, two rounds of scribbles, masks and overlays written to atnet_demo/
  python -m atnet_jax.infer
  # a DAVIS sequence, two rounds of scribbles
  python -m atnet_jax.infer --checkpoint weights/atnet --input DAVIS --sequence bear \\
      --scribbles DAVIS/Scribbles/bear/001.json round2.json --output results
  # a folder of frames or a video file, with scribbles drawn in the studio
  python -m atnet_jax.infer --checkpoint weights/atnet --input my_video.mp4 --scribbles round1.json --output results
  # clicks instead of scribbles: {"clicks": [{"frame": 0, "x": 0.52, "y": 0.41, "object_id": 1}, ...]}
  python -m atnet_jax.infer --checkpoint weights/atnet --input my_video.mp4 --clicks clicks.json --output results
"""


def build_parser() -> argparse.ArgumentParser:
    parser = cli.make_parser(
        "python -m atnet_jax.infer",
        "Segment the objects of a video from scribbles or clicks: each scribbled (or clicked) frame of a file is "
        "one round of interaction (A-Net on that frame, T-Net propagation to the other frames). Writes one "
        "palette PNG per frame (DAVIS format) and an overlay for viewing.\n\n"
        "Without --input it runs a demo: it generates a small video with ground truth, segments it in two "
        "rounds (the generated first scribble, then a robot's correction of the worst frame), prints J after "
        "each round and writes everything to --output (default: atnet_demo).",
        EXAMPLES,
    )
    parser.add_argument("--checkpoint", type=Path, metavar="DIR",
                        help="weights folder (from python -m atnet_jax.convert or the training; default: the "
                             "demo weights shipped with the package, trained on synthetic videos only)")
    parser.add_argument("--input", type=Path, metavar="PATH",
                        help="a DAVIS root (with --sequence), a folder of frames, or a video file "
                             "(omit it to run the demo)")
    parser.add_argument("--sequence", metavar="NAME", help="sequence name inside a DAVIS root")
    interactions = parser.add_mutually_exclusive_group()
    interactions.add_argument("--scribbles", type=Path, nargs="+", metavar="FILE.json",
                              help="DAVIS scribble files, applied in the order given: each scribbled frame is a "
                                   "round (--input needs these or --clicks)")
    interactions.add_argument("--clicks", type=Path, nargs="+", metavar="FILE.json",
                              help="click files ({\"clicks\": [{\"frame\", \"x\", \"y\", \"object_id\"}, ...]}, x "
                                   "and y as fractions of the frame, object_id 0 = background), applied in the "
                                   "order given: each clicked frame is a round")
    parser.add_argument("--output", type=Path, metavar="DIR",
                        help="results folder: DIR/<sequence>/%%05d.png and DIR/<sequence>_overlay* (needed with "
                             f"--input; the demo's default: {DEMO_OUTPUT})")
    parser.add_argument("--objects", type=cli.positive_int, metavar="K",
                        help="number of objects (default: the largest object id in the files; an object with "
                             "no stroke or click of its own in any file is an error unless --objects asks for it)")
    parser.add_argument("--overlay", choices=OVERLAYS,
                        help="how to write the overlay of masks on frames: video (an H.264 MP4 that browsers "
                             "play), images (JPEGs) or none (default: video; the demo: images)")
    parser.add_argument("--size", type=parse_processing_size, default=DEFAULT_PROCESSING_SIZE, metavar="N",
                        help="run the networks on frames whose shorter side is at most N pixels; masks come at the "
                             f"video's own size (default: {DEFAULT_PROCESSING_SIZE}; 'full': the video's size)")
    cli.add_precision_argument(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the sequence's results already in the output folder, as a whole (masks "
                             "and overlays of the earlier run all go)")
    return parser


def _report_results(written: list[Path], num_frames: int) -> None:
    print(f"wrote {num_frames} masks (palette PNGs, 0 = background, k = object k) to {written[0]}")
    for path in written[1:]:
        kind = "overlay video" if path.suffix == ".mp4" else f"{num_frames} overlay images to"
        print(f"wrote {kind} {path}")


def _report_objects(ids: set[int], objects: int | None, kind: str, source: str) -> int:
    """The number of objects to segment: ``objects`` (``--objects``) or the largest id in the files.

    An object without a positive stroke or click in any round (ids below the largest, or up to ``objects``) would
    get masks from nothing: without ``objects`` that is an error naming the ids, with it a warning on stderr."""
    num_objects = objects or max(ids, default=0)
    mark = "stroke" if kind == "scribble" else "click"
    if num_objects < 1:
        raise InputError(f"the {kind} files name no object (only background {mark}s): {source}")
    missing = sorted(set(range(1, num_objects + 1)) - ids)
    if missing and objects is None:
        raise InputError(f"object(s) {_id_list(missing)} get no {mark} in any {kind} file (objects with one: "
                         f"{_id_list(sorted(ids))}); pass --objects {num_objects} to segment them anyway")
    if missing:
        print(f"warning: object(s) {_id_list(missing)} of --objects {num_objects} get no {mark} in any {kind} "
              "file: their masks come from the network's guess alone", file=sys.stderr)
    return num_objects


def _id_list(ids: Sequence[int]) -> str:
    return ", ".join(map(str, ids[:10])) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")


def read_rounds(args: argparse.Namespace, num_frames: int) -> tuple[list[tuple[Path, list[Interaction]]], int]:
    """The rounds of ``--scribbles`` or ``--clicks``, file by file (each marked frame is one interaction, in
    order), and the number of objects."""
    from atnet_jax.interaction.kinds import Click, Clicks, Scribble
    from atnet_jax.io.clicks import clicked_frames, load_clicks
    from atnet_jax.io.scribbles import annotated_frames, load_scribbles

    rounds: list[tuple[Path, list[Interaction]]] = []
    if args.clicks is not None:
        for path in args.clicks:
            data = load_clicks(path, num_frames=num_frames, num_objects=args.objects)
            rounds.append((path, [Clicks(t, [Click(c["x"], c["y"], c["object_id"]) for c in data["clicks"]
                                             if c["frame"] == t]) for t in clicked_frames(data)]))
        kind, source = "click", args.clicks[0]
    else:
        for path in args.scribbles:
            data = load_scribbles(path, num_frames=num_frames, num_objects=args.objects, sequence=args.sequence)
            rounds.append((path, [Scribble(t, data["scribbles"][t]) for t in annotated_frames(data)]))
        kind, source = "scribble", args.scribbles[0]
    ids = set().union(*(i.object_ids() for _, interactions in rounds for i in interactions)) - {0}
    return rounds, _report_objects(ids, args.objects, kind, str(source))


def infer(args: argparse.Namespace) -> None:
    if args.input is None:
        return run_demo(args)
    from atnet_jax.inference.session import Session
    from atnet_jax.io.davis import DavisFolder, open_frames

    files = args.scribbles if args.scribbles is not None else args.clicks
    flag = "--scribbles" if args.scribbles is not None else "--clicks"
    if files is None:
        raise cli.UsageError("--input needs --scribbles FILE.json [...] or --clicks FILE.json [...] (each marked "
                             "frame is a round)")
    if args.output is None:
        raise cli.UsageError("--input needs --output DIR (the results folder)")
    cli.require_path(args.input, "--input")
    for path in files:
        if cli.require_path(path, flag).is_dir():
            kind = "a DAVIS scribble file" if flag == "--scribbles" else "a click file"
            raise cli.UsageError(f"{flag} {path} is a folder, expected a .json file ({kind})")
    checkpoint = args.checkpoint or demo.DEFAULT_CHECKPOINT
    cli.require_path(checkpoint, "--checkpoint")
    cli.require_sequence_input(args.input, args.sequence)
    if args.sequence is None and (args.input / "JPEGImages").is_dir():
        images = args.input / "JPEGImages" / "480p"
        names = DavisFolder(args.input).sequences() if images.is_dir() else []
        raise cli.UsageError(f"--input {args.input} is a DAVIS folder: pass --sequence NAME "
                             f"(available: {', '.join(names[:10]) or 'none'}{', ...' if len(names) > 10 else ''})")
    name = args.sequence or args.input.stem
    overlay = args.overlay or "video"
    check_results_output(args.output, name, overwrite=args.overwrite)
    check_overlay_writer(overlay)
    lock.hold(args.output, name)  # a second run writing these results stops here (ConflictError)

    frames = open_frames(args.input, args.sequence)
    rounds, num_objects = read_rounds(args, len(frames))
    predictor = cli.load_predictor(checkpoint, precision=args.precision)
    if args.checkpoint is None:
        print(f"weights: {checkpoint} (the demo weights, trained on synthetic videos only; pass --checkpoint "
              "for real videos)")
    kind = "scribble" if args.scribbles is not None else "click"
    print(f"{name}: {len(frames)} frames of {frames.shape[1]}x{frames.shape[0]}, {num_objects} object(s), "
          f"{len(rounds)} {kind} file(s)")

    session = Session(frames, predictor, num_objects, size=args.size, progress=True)
    n = 0
    for path, interactions in rounds:
        if not interactions:
            print(f"  {path}: no {'strokes' if kind == 'scribble' else 'clicks'}, skipped")
        for interaction in interactions:
            n += 1
            info = session.interact(interaction)
            print(f"  round {n}: {path.name}, frame {interaction.frame}: {info.seconds:.1f} s")
    written = write_sequence_results(args.output, name, frames, session.labels, overlay=overlay,
                                     overwrite=args.overwrite)
    session.close()
    _report_results(written, len(frames))


# ----------------------------------------------------------------------------------------------- the demo


def _demo_outputs(name: str = demo.DEMO_SEQUENCE) -> list[str]:
    """Everything the demo writes inside its output folder (replaced as a whole by the next run)."""
    return [DEMO_DATA, DEMO_ROUND2, *result_names(name), OVERVIEW]


def _mean_j(labels, gt, num_objects: int) -> float:
    from atnet_jax.interaction.metrics import per_object_scores

    return float(per_object_scores(labels, gt, num_objects, "J").mean())


def _overview(path: Path, frames, gt, rounds: list[tuple[str, object, int, list]]) -> None:
    """A grid: ground truth, then each round's overlay (its scribbles drawn on its frame), on 4 frames."""
    import numpy as np

    from atnet_jax.io.frames import write_frame
    from atnet_jax.io.masks import DAVIS_PALETTE
    from atnet_jax.io.visualize import caption, draw_strokes, grid, overlay

    num_frames = len(frames)
    picks = sorted({int(round(x)) for x in np.linspace(0, num_frames - 1, 4)} | {r[2] for r in rounds})
    images = {t: frames[t] for t in picks}
    rows = [[caption(overlay(images[t], gt[t], DAVIS_PALETTE), f"ground truth, frame {t}") for t in picks]]
    for title, labels, frame, strokes in rounds:
        row = []
        for t in picks:
            image = overlay(images[t], labels[t], DAVIS_PALETTE)
            if t == frame:
                image = draw_strokes(image, strokes, DAVIS_PALETTE)
            row.append(caption(image, f"{title}, frame {t}{' (scribbled)' if t == frame else ''}"))
        rows.append(row)
    write_frame(path, grid(rows), overwrite=True)


def run_demo(args: argparse.Namespace) -> None:
    """Generate a video, segment it in two rounds (generated scribble, then a robot correction), report J."""
    from atnet_jax.io.safe import replace_entries, staging_dir

    for flag, value in (("--scribbles", args.scribbles), ("--clicks", args.clicks), ("--sequence", args.sequence),
                        ("--objects", args.objects)):
        if value is not None:
            raise cli.UsageError(f"{flag} needs --input (without --input, infer runs the demo on a generated video)")
    output = args.output or DEMO_OUTPUT
    checkpoint = args.checkpoint or demo.DEFAULT_CHECKPOINT
    if args.checkpoint is None and not checkpoint.exists():
        raise FileNotFoundError(f"the demo weights {checkpoint} are missing from this installation; "
                                "pass --checkpoint DIR")
    cli.require_path(checkpoint, "--checkpoint")
    cli.require_writable_folder(output, "--output")
    lock.hold(output)
    if output.is_dir() and lock.other_entries(output) and not args.overwrite:
        raise ConflictError(f"{output} already holds results (pass --overwrite to replace them, or "
                              "--output another folder)")
    overlay = args.overlay or "images"
    check_overlay_writer(overlay)
    start = time.perf_counter()
    print("demo (no --input given): segmenting a generated video; python -m atnet_jax.infer --help shows how "
          "to segment your own")
    # Everything goes to a staging folder beside the output first, then replaces the earlier run's outputs
    # at once; messages name the final paths.
    created = not output.exists()
    staged = staging_dir(output / "demo")
    try:
        replay = _run_demo(args, staged, output, checkpoint, overlay)
    except BaseException:
        discard(staged, output if created else None)
        raise
    replace_entries(staged, output, _demo_outputs())
    print(f"wrote everything to {output}")
    print(f"done in {time.perf_counter() - start:.0f} s. The same two rounds from the files: {shlex.join(replay)}")


def _run_demo(args: argparse.Namespace, staged: Path, output: Path, checkpoint: Path, overlay: str) -> list[str]:
    """The demo's work, written into ``staged``; returns the command that replays it from the final files."""
    from atnet_jax.inference.session import Session
    from atnet_jax.interaction.kinds import Scribble
    from atnet_jax.interaction.robot import InteractiveRobot
    from atnet_jax.io.davis import DavisFolder
    from atnet_jax.io.scribbles import annotated_frames, load_scribbles, save_scribbles

    def final(path: Path) -> Path:
        return output / path.relative_to(staged)

    name, data = demo.DEMO_SEQUENCE, staged / DEMO_DATA
    scribble_path = demo.write_demo_video(data, name=name)
    davis = DavisFolder(data)
    frames, gt = davis.frames(name), davis.read_masks(name)
    num_objects = davis.num_objects(name)
    print(f"generated a synthetic video ({final(data)}, DAVIS layout): {len(frames)} frames of {frames.shape[1]}x"
          f"{frames.shape[0]}, {num_objects} objects, ground-truth masks and a first scribble")
    predictor = cli.load_predictor(checkpoint, precision=args.precision)
    print(f"weights: {checkpoint}")

    session = Session(frames, predictor, num_objects, size=args.size, progress=True)
    compile_start = time.perf_counter()
    session.warmup()
    print(f"compiled A-Net and T-Net for this frame size in {time.perf_counter() - compile_start:.1f} s")

    scribbles = load_scribbles(scribble_path, num_frames=len(frames), num_objects=num_objects, sequence=name)
    frame1 = annotated_frames(scribbles)[0]
    strokes1 = scribbles["scribbles"][frame1]
    info = session.interact(Scribble(frame1, strokes1))
    round1 = session.labels.copy()
    j1 = _mean_j(round1, gt, num_objects)
    print(f"round 1: the first scribble ({final(scribble_path)}) on frame {frame1}: J = {j1:.3f} "
          f"({info.seconds:.1f} s)")
    rounds = [("round 1", round1, frame1, strokes1)]

    robot = InteractiveRobot()
    # As davisinteractive: the robot skips only frames it chose itself, so the first scribble's frame may be chosen.
    correction = robot.interact(name, round1, gt, [], "J", num_objects)
    for i, stroke in enumerate(s for strokes in correction["scribbles"] for s in strokes):
        stroke["start_time"], stroke["end_time"] = float(i), float(i + 1)  # reproducible files
    round2_path = save_scribbles(staged / DEMO_ROUND2, correction)
    correction = load_scribbles(round2_path, num_frames=len(frames), num_objects=num_objects, sequence=name)
    marked = annotated_frames(correction)
    if marked:
        frame2 = marked[0]
        j_there = robot.frame_scores(round1, gt, "J", num_objects)[frame2]
        info = session.interact(Scribble(frame2, correction["scribbles"][frame2]))
        j2 = _mean_j(session.labels, gt, num_objects)
        print(f"round 2: a robot's correction ({final(round2_path)}) on frame {frame2}, round 1's worst "
              f"(J = {j_there:.3f} there): J = {j2:.3f} ({info.seconds:.1f} s)")
        rounds.append(("round 2", session.labels.copy(), frame2, correction["scribbles"][frame2]))
    else:
        print("round 2: round 1 is already right everywhere; the robot has nothing to correct")

    written = write_sequence_files(staged, name, frames, session.labels, overlay)
    session.close()
    _report_results([final(p) for p in written], len(frames))
    _overview(staged / OVERVIEW, frames, gt, rounds)
    print(f"wrote {output / OVERVIEW}: ground truth and each round's result on a few frames")
    replay = ["python", "-m", "atnet_jax.infer", "--input", str(final(data)), "--sequence", name,
              "--scribbles", str(final(scribble_path)), str(final(round2_path)), "--output", "results"]
    if args.checkpoint is not None:
        replay[3:3] = ["--checkpoint", str(args.checkpoint)]
    if args.precision != "float32":
        replay[3:3] = ["--precision", args.precision]
    return replay


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), infer, argv)


if __name__ == "__main__":
    sys.exit(main())
