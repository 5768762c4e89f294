"""``python -m atnet_jax.infer``: interactive segmentation of a video from scribble files, round by round.

Without ``--input`` it runs the demo: a generated video (:mod:`atnet_jax.data.synthetic`), two rounds of
scribbles (the generated first scribble, then a robot correction on round 1's worst frame), the weights
shipped in ``atnet_jax/assets/demo_weights``, and everything written to ``atnet_demo/``.
"""
from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import atnet_jax
from atnet_jax import cli
from atnet_jax.io import lock
from atnet_jax.models.preprocess import DEFAULT_PROCESSING_SIZE, parse_processing_size

DEFAULT_CHECKPOINT = Path(atnet_jax.__file__).resolve().parent / "assets" / "demo_weights"
"""The weights shipped with the package: a small network trained on synthetic videos (the demo's)."""
DEMO_OUTPUT = Path("atnet_demo")
DEMO_SEQUENCE, DEMO_SEED, DEMO_OBJECTS = "shapes", 7, 2
DEMO_FRAMES, DEMO_HEIGHT, DEMO_WIDTH = 12, 240, 432
DEMO_DATA = "data"  # the generated DAVIS folder, inside the output folder
DEMO_ROUND2 = "round2.json"  # the robot's correction of round 1, inside the output folder
OVERVIEW = "overview.jpg"
OVERLAYS = ("video", "images", "none")

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
    parser.add_argument("--objects", type=cli.positive_int, metavar="K",
                        help="number of objects (default: the largest object id in the scribbles; an object "
                             "with no stroke of its own in any file is an error unless --objects asks for it)")
    parser.add_argument("--overlay", choices=OVERLAYS,
                        help="how to write the overlay of masks on frames (default: video; the demo: images)")
    parser.add_argument("--size", type=parse_processing_size, default=DEFAULT_PROCESSING_SIZE, metavar="N",
                        help="run the networks on frames whose shorter side is at most N pixels; masks come at the "
                             f"video's own size (default: {DEFAULT_PROCESSING_SIZE}; 'full': the video's size)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the sequence's results already in the output folder, as a whole (masks "
                             "and overlays of the earlier run all go)")
    return parser


def result_names(name: str) -> list[str]:
    """The entries of a results folder that hold sequence ``name``'s results (whichever overlay was asked
    for): the masks folder, the overlay video and the overlay images folder."""
    return [name, f"{name}_overlay.mp4", f"{name}_overlay"]


def check_results_output(output: Path, name: str, *, overwrite: bool, flag: str = "--output") -> None:
    """Before any work: ``output`` must be a folder that can be written (or created), and without
    ``overwrite`` it must hold no results of ``name`` yet. UsageError / FileExistsError naming the flag."""
    cli.require_writable_folder(output, flag)
    existing = [output / n for n in result_names(name) if (output / n).exists() or (output / n).is_symlink()]
    if existing and not overwrite:
        raise FileExistsError(f"{flag} {output} already holds results of {name} ({existing[0]}); pass "
                              "--overwrite to replace them")


def check_overlay_writer(overlay: str) -> None:
    """RuntimeError now, not after the run, where OpenCV cannot encode the overlay video (no mp4v)."""
    if overlay != "video":
        return
    import cv2

    with tempfile.TemporaryDirectory(prefix="atnet_jax_mp4v_") as tmp:
        writer = cv2.VideoWriter(str(Path(tmp) / "probe.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (32, 32))
        ok = writer.isOpened()
        writer.release()
    if not ok:
        raise RuntimeError("OpenCV cannot write mp4 videos here (no mp4v encoder); use --overlay images")


def write_sequence_files(folder: Path, name: str, frames, labels, overlay: str = "video") -> list[Path]:
    """Write a sequence's results into ``folder`` (a fresh staging folder: nothing is replaced):
    ``name/%05d.png`` palette masks and, by ``overlay``, ``name_overlay.mp4`` or ``name_overlay/%05d.jpg``.

    Args:
      frames: ``len`` and ``frames[t] -> [H, W, 3] uint8`` RGB (a FrameSource or an array).
      labels: ``[T, H, W]`` uint8 object ids (0 = background).
      overlay: one of :data:`OVERLAYS`.
    Returns what was written, masks folder first.
    """
    from tqdm import tqdm

    from atnet_jax.io.frames import write_frame
    from atnet_jax.io.masks import DAVIS_PALETTE, write_mask
    from atnet_jax.io.visualize import overlay as draw_overlay
    from atnet_jax.io.visualize import write_overlay_video

    if overlay not in OVERLAYS:
        raise ValueError(f"overlay must be one of {OVERLAYS}, got {overlay!r}")
    if len(frames) != len(labels):
        raise ValueError(f"{len(frames)} frames but {len(labels)} label maps for {name}")
    masks_dir = folder / name
    masks_dir.mkdir(parents=True)
    for t in tqdm(range(len(labels)), desc="writing masks", unit="frame", leave=False):
        write_mask(masks_dir / f"{t:05d}.png", labels[t])
    written = [masks_dir]
    if overlay == "video":
        written.append(folder / f"{name}_overlay.mp4")
        write_overlay_video(written[-1], frames, labels, DAVIS_PALETTE, hint="; use --overlay images")
    elif overlay == "images":
        written.append(folder / f"{name}_overlay")
        written[-1].mkdir()
        for t in range(len(labels)):
            write_frame(written[-1] / f"{t:05d}.jpg", draw_overlay(frames[t], labels[t], DAVIS_PALETTE))
    return written


def write_sequence_results(output: Path, name: str, frames, labels, *, overlay: str = "video",
                           overwrite: bool = False) -> list[Path]:
    """Write sequence ``name``'s results to ``output`` as a whole and return their paths (masks folder first).

    Everything is written into a staging folder beside the results, then swapped in: the earlier results of
    ``name`` (masks, either overlay) all go, so a run never leaves files of another run beside its own, and
    an interrupted or failed write leaves the earlier results as they were. Without ``overwrite`` existing
    results of ``name`` raise FileExistsError. ``frames``, ``labels``, ``overlay``: as
    :func:`write_sequence_files`.
    """
    from atnet_jax.io.safe import replace_entries, staging_dir

    output = Path(output)
    check_results_output(output, name, overwrite=overwrite)
    created = not output.exists()
    staged = staging_dir(output / name)
    try:
        write_sequence_files(staged, name, frames, labels, overlay)
    except BaseException:
        _discard(staged, output if created else None)
        raise
    return replace_entries(staged, output, result_names(name))


def _discard(staged: Path, created: Path | None) -> None:
    """Remove a staging folder, and the output folder made for it (``created``) if it is still empty."""
    shutil.rmtree(staged, ignore_errors=True)
    if created is not None:
        try:
            created.rmdir()
        except OSError:  # not empty: something else was written there meanwhile
            pass


def _report_results(written: list[Path], num_frames: int) -> None:
    print(f"wrote {num_frames} masks (palette PNGs, 0 = background, k = object k) to {written[0]}")
    for path in written[1:]:
        kind = "overlay video" if path.suffix == ".mp4" else f"{num_frames} overlay images to"
        print(f"wrote {kind} {path}")


def scribbled_objects(rounds: Sequence[dict]) -> set[int]:
    """Object ids (> 0) that get at least one stroke in any of the scribble dicts ``rounds``."""
    return {s["object_id"] for r in rounds for strokes in r["scribbles"] for s in strokes} - {0}


def count_objects(rounds: Sequence[dict], objects: int | None, source: str) -> int:
    """The number of objects to segment: ``objects`` (``--objects``) or the largest scribbled id.

    An object without a positive stroke in any round (ids below the largest, or up to ``objects``) would get
    masks from nothing: without ``objects`` that is an error (ValueError naming the ids), with it a warning on
    stderr names them.
    """
    ids = scribbled_objects(rounds)
    num_objects = objects or max(ids, default=0)
    if num_objects < 1:
        raise ValueError(f"the scribble files name no object (only background strokes): {source}")
    missing = sorted(set(range(1, num_objects + 1)) - ids)
    if missing and objects is None:
        raise ValueError(f"object(s) {_id_list(missing)} get no stroke in any scribble file (objects scribbled: "
                         f"{_id_list(sorted(ids))}); pass --objects {num_objects} to segment them anyway")
    if missing:
        print(f"warning: object(s) {_id_list(missing)} of --objects {num_objects} get no stroke in any scribble "
              "file: their masks come from the network's guess alone", file=sys.stderr)
    return num_objects


def _id_list(ids: Sequence[int]) -> str:
    return ", ".join(map(str, ids[:10])) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")


def infer(args: argparse.Namespace) -> None:
    if args.input is None:
        return demo(args)
    from atnet_jax.inference.session import Session
    from atnet_jax.io.davis import DavisFolder, open_frames
    from atnet_jax.io.scribbles import annotated_frames, load_scribbles

    if args.scribbles is None:
        raise cli.UsageError("--input needs --scribbles FILE.json [...] (one file per round)")
    if args.output is None:
        raise cli.UsageError("--input needs --output DIR (the results folder)")
    cli.require_path(args.input, "--input")
    for path in args.scribbles:
        if cli.require_path(path, "--scribbles").is_dir():
            raise cli.UsageError(f"--scribbles {path} is a folder, expected a .json file (a DAVIS scribble file)")
    checkpoint = args.checkpoint or DEFAULT_CHECKPOINT
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
    rounds = [load_scribbles(p, num_frames=len(frames), num_objects=args.objects,
                             sequence=args.sequence) for p in args.scribbles]
    num_objects = count_objects(rounds, args.objects, str(args.scribbles[0]))
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
    written = write_sequence_results(args.output, name, frames, session.labels, overlay=overlay,
                                     overwrite=args.overwrite)
    session.close()
    _report_results(written, len(frames))


# ----------------------------------------------------------------------------------------------- the demo


def write_demo_video(root: Path, *, name: str = DEMO_SEQUENCE, seed: int = DEMO_SEED,
                     num_objects: int = DEMO_OBJECTS, num_frames: int = DEMO_FRAMES, height: int = DEMO_HEIGHT,
                     width: int = DEMO_WIDTH) -> Path:
    """Write one synthetic video as a DAVIS folder at ``root`` (frames, palette masks, ``Scribbles/<name>/001.json``
    with a first scribble, ``ImageSets/2017/val.txt``) and return the scribble file's path."""
    from atnet_jax.data.synthetic import first_scribble, generate_video
    from atnet_jax.io.frames import write_frame
    from atnet_jax.io.masks import write_mask
    from atnet_jax.io.safe import atomic_write
    from atnet_jax.io.scribbles import save_scribbles

    frames, labels = generate_video(seed, num_frames=num_frames, height=height, width=width,
                                    num_objects=num_objects)
    for t in range(num_frames):
        write_frame(root / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", frames[t])
        write_mask(root / "Annotations" / "480p" / name / f"{t:05d}.png", labels[t])
    for subset in ("train", "val"):
        atomic_write(root / "ImageSets" / "2017" / f"{subset}.txt", lambda tmp: tmp.write_text(f"{name}\n"))
    return save_scribbles(root / "Scribbles" / name / "001.json", first_scribble(name, labels))


def _demo_outputs(name: str = DEMO_SEQUENCE) -> list[str]:
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


def demo(args: argparse.Namespace) -> None:
    """Generate a video, segment it in two rounds (generated scribble, then a robot correction), report J."""
    from atnet_jax.io.safe import replace_entries, staging_dir

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
    cli.require_writable_folder(output, "--output")
    lock.hold(output)
    if output.is_dir() and lock.other_entries(output) and not args.overwrite:
        raise FileExistsError(f"{output} already holds results (pass --overwrite to replace them, or "
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
        _discard(staged, output if created else None)
        raise
    replace_entries(staged, output, _demo_outputs())
    print(f"wrote everything to {output}")
    print(f"done in {time.perf_counter() - start:.0f} s. The same two rounds from the files: {shlex.join(replay)}")


def _run_demo(args: argparse.Namespace, staged: Path, output: Path, checkpoint: Path, overlay: str) -> list[str]:
    """The demo's work, written into ``staged``; returns the command that replays it from the final files."""
    from atnet_jax.inference.session import Session
    from atnet_jax.interaction.robot import InteractiveRobot
    from atnet_jax.io.davis import DavisFolder
    from atnet_jax.io.scribbles import annotated_frames, load_scribbles, save_scribbles

    def final(path: Path) -> Path:
        return output / path.relative_to(staged)

    name, data = DEMO_SEQUENCE, staged / DEMO_DATA
    scribble_path = write_demo_video(data, name=name, seed=DEMO_SEED, num_objects=DEMO_OBJECTS,
                                     num_frames=DEMO_FRAMES, height=DEMO_HEIGHT, width=DEMO_WIDTH)
    davis = DavisFolder(data)
    frames, gt = davis.frames(name), davis.read_masks(name)
    num_objects = davis.num_objects(name)
    print(f"generated a synthetic video ({final(data)}, DAVIS layout): {len(frames)} frames of {frames.shape[1]}x"
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
    print(f"round 1: the first scribble ({final(scribble_path)}) on frame {frame1}: J = {j1:.3f} "
          f"({session.last_round_seconds:.1f} s)")
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
        session.interact(frame2, correction["scribbles"][frame2])
        j2 = _mean_j(session.labels, gt, num_objects)
        print(f"round 2: a robot's correction ({final(round2_path)}) on frame {frame2}, round 1's worst "
              f"(J = {j_there:.3f} there): J = {j2:.3f} ({session.last_round_seconds:.1f} s)")
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
    return replay


def main(argv: Sequence[str] | None = None) -> int:
    return cli.run(build_parser(), infer, argv)


if __name__ == "__main__":
    sys.exit(main())
