"""``python -m atnet_jax.infer``: interactive segmentation of a video from scribble files, round by round.

Without ``--input`` it runs the demo: a generated video (:mod:`atnet_jax.data.synthetic`), two rounds of
scribbles (the generated first scribble, then a robot correction on round 1's worst frame), the weights
shipped in ``atnet_jax/assets/demo_weights``, and everything written to ``atnet_demo/``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import atnet_jax
from atnet_jax import cli
from atnet_jax.models.preprocess import DEFAULT_PROCESSING_SIZE, parse_processing_size

DEFAULT_CHECKPOINT = Path(atnet_jax.__file__).resolve().parent / "assets" / "demo_weights"
"""The weights shipped with the package: a small network trained on synthetic videos (the demo's)."""
DEMO_OUTPUT = Path("atnet_demo")
DEMO_SEQUENCE, DEMO_SEED, DEMO_OBJECTS = "shapes", 7, 2
DEMO_FRAMES, DEMO_HEIGHT, DEMO_WIDTH = 12, 240, 432
DEMO_DATA = "data"  # the generated DAVIS folder, inside the output folder
DEMO_ROUND2 = "round2.json"  # the robot's correction of round 1, inside the output folder
OVERVIEW = "overview.jpg"

EXAMPLES = """examples:
  # the demo: a generated video, two rounds of scribbles, masks and overlays written to atnet_demo/
  python -m atnet_jax.infer
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
        "frame (DAVIS format) and an overlay for viewing.\n\n"
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
    parser.add_argument("--scribbles", type=Path, nargs="+", metavar="FILE.json",
                        help="DAVIS scribble files, one per round, applied in the order given (needed with --input)")
    parser.add_argument("--output", type=Path, metavar="DIR",
                        help="results folder: DIR/<sequence>/%%05d.png and DIR/<sequence>_overlay* (needed with "
                             f"--input; the demo's default: {DEMO_OUTPUT})")
    parser.add_argument("--objects", type=int, metavar="K",
                        help="number of objects (default: the largest object id in the scribbles)")
    parser.add_argument("--overlay", choices=("video", "images", "none"),
                        help="how to write the overlay of masks on frames (default: video; the demo: images)")
    parser.add_argument("--size", type=parse_processing_size, default=DEFAULT_PROCESSING_SIZE, metavar="N",
                        help="run the networks on frames whose shorter side is at most N pixels; masks come at the "
                             f"video's own size (default: {DEFAULT_PROCESSING_SIZE}; 'full': the video's size)")
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


def _write_results(output: Path, name: str, frames, labels, overlay_kind: str, overwrite: bool) -> list[Path]:
    """Palette PNG masks in ``output/name/`` and the overlay; returns what was written (folders, files)."""
    from tqdm import tqdm

    from atnet_jax.data.davis import DAVIS_PALETTE, write_frame, write_mask
    from atnet_jax.visualize import overlay

    masks_dir = output / name
    masks_dir.mkdir(parents=True, exist_ok=True)
    for t in tqdm(range(len(labels)), desc="writing masks", unit="frame", leave=False):
        write_mask(masks_dir / f"{t:05d}.png", labels[t], overwrite=overwrite)
    print(f"wrote {len(labels)} masks (palette PNGs, 0 = background, k = object k) to {masks_dir}")
    written = [masks_dir]
    if overlay_kind == "video":
        video = output / f"{name}_overlay.mp4"
        _write_overlay_video(video, frames, labels, DAVIS_PALETTE)
        print(f"wrote overlay video {video}")
        written.append(video)
    elif overlay_kind == "images":
        images = output / f"{name}_overlay"
        images.mkdir(exist_ok=True)
        for t in range(len(labels)):
            write_frame(images / f"{t:05d}.jpg", overlay(frames[t], labels[t], DAVIS_PALETTE), overwrite=overwrite)
        print(f"wrote {len(labels)} overlay images to {images}")
        written.append(images)
    return written


def _check_output(masks_dir: Path, overwrite: bool) -> None:
    if masks_dir.exists() and any(masks_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{masks_dir} already holds results (pass --overwrite to replace them)")


def infer(args: argparse.Namespace) -> None:
    if args.input is None:
        return demo(args)
    from atnet_jax.data.davis import DavisFolder, open_frames
    from atnet_jax.data.scribbles import annotated_frames, load_scribbles
    from atnet_jax.interactive.session import Session

    if args.scribbles is None:
        raise cli.UsageError("--input needs --scribbles FILE.json [...] (one file per round)")
    if args.output is None:
        raise cli.UsageError("--input needs --output DIR (the results folder)")
    if args.objects is not None and args.objects < 1:
        raise cli.UsageError(f"--objects must be at least 1, got {args.objects}")
    cli.require_path(args.input, "--input")
    for path in args.scribbles:
        cli.require_path(path, "--scribbles")
    checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
    cli.require_path(checkpoint, "--checkpoint")
    if args.sequence is None and (args.input / "JPEGImages").is_dir():
        images = args.input / "JPEGImages" / "480p"
        names = DavisFolder(args.input).sequences() if images.is_dir() else []
        raise cli.UsageError(f"--input {args.input} is a DAVIS folder: pass --sequence NAME "
                             f"(available: {', '.join(names[:10]) or 'none'}{', ...' if len(names) > 10 else ''})")
    name = args.sequence or args.input.stem
    _check_output(args.output / name, args.overwrite)

    frames = open_frames(args.input, args.sequence)
    rounds = [load_scribbles(p, num_frames=len(frames), num_objects=args.objects,
                             sequence=args.sequence) for p in args.scribbles]
    ids = {s["object_id"] for r in rounds for strokes in r["scribbles"] for s in strokes}
    num_objects = args.objects or max(ids - {0}, default=0)
    if num_objects < 1:
        raise ValueError(f"the scribble files name no object (only background strokes): {args.scribbles[0]}")
    variables, config = cli.load_checkpoint(checkpoint)
    if args.checkpoint is None:
        print(f"weights: {checkpoint} (the demo weights, trained on synthetic videos only; pass --checkpoint "
              "for real videos)")
    print(f"{name}: {len(frames)} frames of {frames.shape[1]}x{frames.shape[0]}, {num_objects} object(s), "
          f"{len(rounds)} scribble file(s)")

    session = Session(frames, variables, config, num_objects, size=args.size, progress=True)
    n = 0
    for path, scribbles in zip(args.scribbles, rounds):
        marked = annotated_frames(scribbles)
        if not marked:
            print(f"  {path}: no strokes, skipped")
        for frame in marked:
            n += 1
            session.interact(frame, scribbles["scribbles"][frame])
            print(f"  round {n}: {path.name}, frame {frame}: {session.last_round_seconds:.1f} s")
    _write_results(args.output, name, frames, session.labels, args.overlay or "video", args.overwrite)
    session.close()


# ----------------------------------------------------------------------------------------------- the demo


def write_demo_video(root: Path, *, name: str = DEMO_SEQUENCE, seed: int = DEMO_SEED,
                     num_objects: int = DEMO_OBJECTS, num_frames: int = DEMO_FRAMES, height: int = DEMO_HEIGHT,
                     width: int = DEMO_WIDTH) -> Path:
    """Write one synthetic video as a DAVIS folder at ``root`` (frames, palette masks, ``Scribbles/<name>/001.json``
    with a first scribble, ``ImageSets/2017/val.txt``) and return the scribble file's path."""
    from atnet_jax.data.davis import atomic_write, write_frame, write_mask
    from atnet_jax.data.scribbles import save_scribbles
    from atnet_jax.data.synthetic import first_scribble, generate_video

    frames, labels = generate_video(seed, num_frames=num_frames, height=height, width=width,
                                    num_objects=num_objects)
    for t in range(num_frames):
        write_frame(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", frames[t])
        write_mask(root / "Annotations" / "480p" / name / f"{t:05d}.png", labels[t])
    for subset in ("train", "val"):
        atomic_write(root / "ImageSets" / "2017" / f"{subset}.txt", lambda tmp: tmp.write_text(f"{name}\n"))
    return save_scribbles(root / "Scribbles" / name / "001.json", first_scribble(name, labels))


def _demo_outputs(output: Path) -> list[Path]:
    """Everything the demo writes inside its output folder."""
    name = DEMO_SEQUENCE
    return [output / DEMO_DATA, output / DEMO_ROUND2, output / name, output / f"{name}_overlay",
            output / f"{name}_overlay.mp4", output / OVERVIEW]


def _mean_j(labels, gt, num_objects: int) -> float:
    from atnet_jax.evaluation.metrics import per_object_scores

    return float(per_object_scores(labels, gt, num_objects, "J").mean())


def _overview(path: Path, frames, gt, rounds: list[tuple[str, object, int, list]]) -> None:
    """A grid: ground truth, then each round's overlay (its scribbles drawn on its frame), on 4 frames."""
    import numpy as np

    from atnet_jax.data.davis import DAVIS_PALETTE, write_frame
    from atnet_jax.visualize import caption, draw_strokes, grid, overlay

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


def demo(args: argparse.Namespace) -> None:
    """Generate a video, segment it in two rounds (generated scribble, then a robot correction), report J."""
    from atnet_jax.data.davis import DavisFolder
    from atnet_jax.data.scribbles import annotated_frames, load_scribbles, save_scribbles
    from atnet_jax.interactive.robot import InteractiveRobot
    from atnet_jax.interactive.session import Session

    for flag, value in (("--scribbles", args.scribbles), ("--sequence", args.sequence),
                        ("--objects", args.objects)):
        if value is not None:
            raise cli.UsageError(f"{flag} needs --input (without --input, infer runs the demo on a generated video)")
    output = args.output or DEMO_OUTPUT
    checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
    if args.checkpoint is None and not checkpoint.exists():
        raise FileNotFoundError(f"the demo weights {checkpoint} are missing from this installation; "
                                "pass --checkpoint DIR")
    cli.require_path(checkpoint, "--checkpoint")
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"--output {output} is a file, expected a folder")
    if output.is_dir() and any(output.iterdir()):
        if not args.overwrite:
            raise FileExistsError(f"{output} already holds results (pass --overwrite to replace them, or "
                                  "--output another folder)")
        for path in _demo_outputs(output):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    name, data = DEMO_SEQUENCE, output / DEMO_DATA
    start = time.perf_counter()
    print("demo (no --input given): segmenting a generated video; python -m atnet_jax.infer --help shows how "
          "to segment your own")

    scribble_path = write_demo_video(data, name=name, seed=DEMO_SEED, num_objects=DEMO_OBJECTS,
                                     num_frames=DEMO_FRAMES, height=DEMO_HEIGHT, width=DEMO_WIDTH)
    davis = DavisFolder(data)
    frames, gt = davis.frames(name), davis.read_masks(name)
    num_objects = davis.num_objects(name)
    print(f"wrote a synthetic video to {data} (DAVIS layout): {len(frames)} frames of {frames.shape[1]}x"
          f"{frames.shape[0]}, {num_objects} objects, ground-truth masks and a first scribble")
    variables, config = cli.load_checkpoint(checkpoint)
    print(f"weights: {checkpoint}")

    session = Session(frames, variables, config, num_objects, size=args.size, progress=True)
    compile_start = time.perf_counter()
    session.warmup()
    print(f"compiled A-Net and T-Net for this frame size in {time.perf_counter() - compile_start:.1f} s")

    scribbles = load_scribbles(scribble_path, num_frames=len(frames), num_objects=num_objects, sequence=name)
    frame1 = annotated_frames(scribbles)[0]
    strokes1 = scribbles["scribbles"][frame1]
    session.interact(frame1, strokes1)
    round1 = session.labels.copy()
    j1 = _mean_j(round1, gt, num_objects)
    print(f"round 1: the first scribble ({scribble_path}) on frame {frame1}: J = {j1:.3f} "
          f"({session.last_round_seconds:.1f} s)")
    rounds = [("round 1", round1, frame1, strokes1)]

    robot = InteractiveRobot()
    correction = robot.interact(name, round1, gt, session.annotated, "J", num_objects)
    for i, stroke in enumerate(s for strokes in correction["scribbles"] for s in strokes):
        stroke["start_time"], stroke["end_time"] = float(i), float(i + 1)  # reproducible files
    round2_path = save_scribbles(output / DEMO_ROUND2, correction)
    correction = load_scribbles(round2_path, num_frames=len(frames), num_objects=num_objects, sequence=name)
    marked = annotated_frames(correction)
    if marked:
        frame2 = marked[0]
        j_there = robot.frame_scores(round1, gt, "J", num_objects)[frame2]
        session.interact(frame2, correction["scribbles"][frame2])
        j2 = _mean_j(session.labels, gt, num_objects)
        print(f"round 2: a robot's correction ({round2_path}) on frame {frame2}, round 1's worst "
              f"(J = {j_there:.3f} there): J = {j2:.3f} ({session.last_round_seconds:.1f} s)")
        rounds.append(("round 2", session.labels.copy(), frame2, correction["scribbles"][frame2]))
    else:
        print("round 2: round 1 is already right everywhere; the robot has nothing to correct")

    _write_results(output, name, frames, session.labels, args.overlay or "images", args.overwrite)
    session.close()
    _overview(output / OVERVIEW, frames, gt, rounds)
    print(f"wrote {output / OVERVIEW}: ground truth and each round's result on a few frames")
    replay = ["python", "-m", "atnet_jax.infer", "--input", str(data), "--sequence", name,
              "--scribbles", str(scribble_path), str(round2_path), "--output", "results"]
    if args.checkpoint is not None:
        replay[3:3] = ["--checkpoint", str(args.checkpoint)]
    print(f"done in {time.perf_counter() - start:.0f} s. The same two rounds from the files: {shlex.join(replay)}")


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), infer, argv)


if __name__ == "__main__":
    sys.exit(main())
