"""Benchmark long 1080p videos: seconds per frame and peak memory against the video's length and processing size.

    python experiments/bench_long_video.py                         # everything below (long on a 2-core CPU)
    python experiments/bench_long_video.py --lengths 100,300 --full-frames 0

The script writes a generated 1920x1080 video (a textured background that scrolls, an ellipse that moves
across it) as MP4 files of each length, then runs, each in its own process so that its peak RSS is its own:

1. Demo weights (the small network shipped with the package), default processing size (480): one round from
   a scribble on frame 0 over 100, 300 and 600 frames, masks written as PNGs as each frame is finalised.
   Reports seconds per frame and peak RSS, which must stay flat in the video's length (within 10%).
2. Full-size networks (random weights: times do not depend on their values) on the first 30 frames: round 1
   at the default size and with ``size=None`` (``--size full``), and a later round (on the middle frame, the
   encoder features cached) against round 1.

Times are model rounds after compiling (``Session.warmup``); the video's decoding (OpenCV, once per process,
into a frame cache) is reported apart.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

HEIGHT, WIDTH, FPS = 1080, 1920, 25.0
OBJECT_AXES = (150, 100)  # ellipse half-axes in pixels


def _object_centre(t: int) -> tuple[float, float]:
    """(x, y) of the moving object at frame ``t``: a slow sweep with a vertical wave, in pixels."""
    import math

    return WIDTH * (0.25 + 0.5 * (0.5 - 0.5 * math.cos(t / 120.0))), HEIGHT * (0.5 + 0.15 * math.sin(t / 20.0))


def write_video(path: Path, num_frames: int, seed: int = 0) -> None:
    """A generated ``num_frames`` x 1920x1080 MP4 (mp4v), written frame by frame (flat memory)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(seed)
    texture = cv2.resize(rng.integers(0, 256, (HEIGHT // 24, WIDTH // 12, 3), dtype=np.uint8), (2 * WIDTH, HEIGHT),
                         interpolation=cv2.INTER_CUBIC)
    pattern = cv2.resize(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), (2 * OBJECT_AXES[0], 2 * OBJECT_AXES[1]),
                         interpolation=cv2.INTER_NEAREST)
    pattern = (0.5 * pattern + 0.5 * np.array([40, 40, 220])).astype(np.uint8)  # reddish (BGR), textured
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path} (no mp4v encoder)")
    try:
        for t in range(num_frames):
            shift = (3 * t) % WIDTH
            frame = np.ascontiguousarray(texture[:, shift : shift + WIDTH])
            cx, cy = _object_centre(t)
            mask = np.zeros((HEIGHT, WIDTH), np.uint8)
            cv2.ellipse(mask, (int(cx), int(cy)), OBJECT_AXES, 0, 0, 360, 1, -1)
            x0, y0 = int(cx) - OBJECT_AXES[0], int(cy) - OBJECT_AXES[1]
            region = (slice(y0, y0 + 2 * OBJECT_AXES[1]), slice(x0, x0 + 2 * OBJECT_AXES[0]))
            inside = mask[region].astype(bool)
            frame[region][inside] = pattern[inside]
            writer.write(frame)
    finally:
        writer.release()


def first_scribble() -> list[dict]:
    """A stroke of object 1 across the object on frame 0 and a background stroke, normalised (x/W, y/H)."""
    cx, cy = _object_centre(0)
    a = 0.6 * OBJECT_AXES[0]
    fg = [[(cx + dx) / WIDTH, (cy + 0.2 * dx) / HEIGHT] for dx in (-a, -a / 2, 0.0, a / 2, a)]
    bg = [[0.05, 0.1], [0.3, 0.12], [0.6, 0.1], [0.9, 0.12]]
    return [{"path": fg, "object_id": 1, "start_time": 0.0, "end_time": 1.0},
            {"path": bg, "object_id": 0, "start_time": 1.0, "end_time": 2.0}]


class _Prefix:
    """The first ``n`` frames of a frame source."""

    def __init__(self, frames, n: int) -> None:
        self.frames, self.n = frames, min(n, len(frames))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int):
        if not 0 <= index < self.n:
            raise IndexError(index)
        return self.frames[index]


def worker(kind: str, video: Path, frames: int, size: int | None, out: Path, cache_mb: int,
           later_round: bool) -> dict:
    from atnet_jax.inference.plan import propagation_plan
    from atnet_jax.inference.session import Session
    from atnet_jax.io.davis import open_frames
    from atnet_jax.io.masks import write_mask
    from atnet_jax.models.predictor import ATNetPredictor

    start = time.perf_counter()
    source = open_frames(video)
    decode_s = time.perf_counter() - start
    frames_src = _Prefix(source, frames)
    if kind == "demo":
        from atnet_jax import cli
        from atnet_jax.demo import DEFAULT_CHECKPOINT

        variables, config = cli.load_checkpoint(DEFAULT_CHECKPOINT)
    else:
        from atnet_jax.models import paper_model_config
        from atnet_jax.models.build import random_variables

        config = paper_model_config()
        variables = random_variables(config)
    session = Session(frames_src, ATNetPredictor(variables, config), 1, size=size, feature_cache_bytes=cache_mb << 20)
    start = time.perf_counter()
    session.warmup()
    compile_s = time.perf_counter() - start
    masks = out / f"{kind}_{frames}_{size or 'full'}"
    masks.mkdir(parents=True, exist_ok=True)

    def write(t: int, _: str) -> None:  # masks written as they are finalised (one round here)
        write_mask(masks / f"{t:05d}.png", session.labels[t], overwrite=True)

    start = time.perf_counter()
    session.interact(0, first_scribble(), on_frame=write)
    round1_s = time.perf_counter() - start
    result = {"kind": kind, "frames": len(frames_src), "size": size or "full",
              "processing": "x".join(map(str, session.processing_shape[::-1])), "decode_s": decode_s,
              "compile_s": compile_s, "round1_s": round1_s, "round1_s_per_frame": round1_s / len(frames_src),
              "foreground_fraction_t_last": float((session.labels[len(frames_src) - 1] == 1).mean())}
    if later_round:
        # A correction on the middle frame: the encoder features of every frame are cached by now.
        middle = len(frames_src) // 2
        updated = 1 + sum(len(d) for d in propagation_plan(middle, [0], len(frames_src)))
        start = time.perf_counter()
        session.interact(middle, first_scribble()[:1])
        round2_s = time.perf_counter() - start
        result.update({"round2_frame": middle, "round2_s": round2_s, "round2_frames": updated,
                       "round2_s_per_frame": round2_s / updated})
    session.close()
    source.close()
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", default="100,300,600", help="video lengths for the demo weights")
    parser.add_argument("--full-frames", type=int, default=30, help="frames for the full-size networks (0: skip)")
    parser.add_argument("--full-sizes", default="480,full", help="processing sizes for the full-size networks")
    parser.add_argument("--cache-mb", type=int, default=256,
                        help="host memory for cached encoder features (Session feature_cache_bytes); the rest spills")
    parser.add_argument("--workdir", type=Path, help="folder for the videos and masks (default: a temporary one)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, video, frames, size, out = args.worker.split("|")
        size_arg = None if size == "full" else int(size)
        later = kind == "full" and size_arg is not None
        print(json.dumps(worker(kind, Path(video), int(frames), size_arg, Path(out), args.cache_mb, later)))
        return

    import platform

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="atnet_bench_long_"))
    workdir.mkdir(parents=True, exist_ok=True)
    lengths = [int(n) for n in args.lengths.split(",") if n]
    cpu = _cpu_model()
    print(f"CPU: {cpu}; python {platform.python_version()}; workdir {workdir}", flush=True)
    videos = {}
    for n in sorted({*lengths, args.full_frames} - {0}):
        videos[n] = workdir / f"generated_{n}x1080p.mp4"
        start = time.perf_counter()
        write_video(videos[n], n)
        print(f"wrote {videos[n]} ({n} frames of {WIDTH}x{HEIGHT}) in {time.perf_counter() - start:.0f} s", flush=True)

    rows = []
    jobs = [("demo", n, "480") for n in lengths]
    if args.full_frames:
        jobs += [("full", args.full_frames, s) for s in args.full_sizes.split(",")]
    for kind, n, size in jobs:
        print(f"measuring {kind} weights, {n} frames, size {size} ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--cache-mb", str(args.cache_mb), "--worker",
                               f"{kind}|{videos[n]}|{n}|{size}|{workdir}"], capture_output=True, text=True)
        if proc.returncode:
            print(proc.stderr[-3000:], flush=True)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print("  " + json.dumps(rows[-1]), flush=True)
    _report(rows, cpu, args.cache_mb)


def _cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                name = line.split(":", 1)[1].strip()
            if line.startswith("CPU(s):"):
                count = line.split(":", 1)[1].strip()
        return f"{name}, {count} cores"
    except (OSError, UnboundLocalError):
        import platform

        return platform.processor() or "unknown"


def _report(rows: list[dict], cpu: str, cache_mb: int) -> None:
    print(f"\n1920x1080 generated video, one object; {cpu}; feature cache {cache_mb} MB")
    demo = [r for r in rows if r["kind"] == "demo"]
    if demo:
        print("demo weights, default size (networks at " + demo[0]["processing"] + "), one round from frame 0, "
              "masks written as finalised:")
        print(f"  {'frames':>6}  {'round [s]':>9}  {'s/frame':>8}  {'peak RSS [MB]':>13}  {'decode [s]':>10}")
        for r in demo:
            print(f"  {r['frames']:>6}  {r['round1_s']:>9.1f}  {r['round1_s_per_frame']:>8.3f}  "
                  f"{r['peak_rss_mb']:>13.0f}  {r['decode_s']:>10.1f}")
        if len(demo) >= 2:
            growth = demo[-1]["peak_rss_mb"] / demo[0]["peak_rss_mb"] - 1
            print(f"  peak RSS from {demo[0]['frames']} to {demo[-1]['frames']} frames: {100 * growth:+.1f}% "
                  f"({'flat' if abs(growth) <= 0.10 else 'NOT flat'} within 10%)")
    full = [r for r in rows if r["kind"] == "full"]
    if full:
        print(f"full-size networks, {full[0]['frames']} frames:")
        print(f"  {'size':>5}  {'networks at':>11}  {'compile [s]':>11}  {'round 1 s/frame':>15}  "
              f"{'later round s/frame':>19}  {'later / round 1':>15}  {'peak RSS [MB]':>13}")
        for r in full:
            later = f"{r['round2_s_per_frame']:>19.2f}" if "round2_s" in r else f"{'-':>19}"
            ratio = (f"{r['round2_s_per_frame'] / r['round1_s_per_frame']:>15.2f}" if "round2_s" in r
                     else f"{'-':>15}")
            print(f"  {r['size']:>5}  {r['processing']:>11}  {r['compile_s']:>11.0f}  "
                  f"{r['round1_s_per_frame']:>15.2f}  {later}  {ratio}  {r['peak_rss_mb']:>13.0f}")
        if len(full) == 2:
            print(f"  full size / default size, round 1 per frame: "
                  f"{full[1]['round1_s_per_frame'] / full[0]['round1_s_per_frame']:.1f}x")


if __name__ == "__main__":
    main()
