"""Benchmark interactive sessions: round 1 vs a later round, 1 vs 2 objects, on a synthetic 480p video.

    python experiments/bench_session.py                        # 50 frames at 480x854, full-size networks
    python experiments/bench_session.py --frames 10 --height 240 --width 427
    python experiments/bench_session.py --robot-rounds 8 --frames 80 --objects 2   # the DAVIS protocol's rounds

Round 1 annotates the middle frame and propagates through the whole video (every frame is encoded);
round 2 annotates a frame a quarter in and propagates only up to the round-1 frame, reusing the cached
encoder features. Each object count runs in its own process so that peak RSS is its own. Random weights.

``--mid-video``: a round annotated in the middle of the video (60 frames processed at 240 by default), whose
backward and forward chains run one after the other (the released order) and as one batch per step, side by
side in one process (alternating, on the same frames, weights and interaction); prints seconds (wall and the
process's CPU time: other load on the machine inflates the first), the ratio, the masks equal between the two
and the CPU. ``--later`` adds a second round on the same frame (encoder features cached). ``--round 2`` times
round 2 instead: round 1 on the frame three quarters in (every frame encoded, untimed), then the timed round in
the middle, every frame's features from the cache (both schedules start from the same state after round 1).

    python experiments/bench_session.py --mid-video --frames 60 --height 480 --width 854 --size 240
    python experiments/bench_session.py --mid-video --round 2 --frames 60 --height 480 --width 854 --objects 1

``--robot-rounds N``: instead, N rounds on a generated video with ground truth (:mod:`atnet_jax.data.synthetic`),
the first from its generated scribble, each later one from the DAVIS robot's scribble on the worst frame, as
the interactive benchmark plays them; prints each round's model time (after compiling).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _setup(frames: int, height: int, width: int, objects: int):
    """A random video ``[T, H, W, 3]``, the full-size networks with random weights, and ``maps(seed)``: one
    horizontal positive bar per object at a random place (positive and negative maps)."""
    import numpy as np

    from atnet_jax.models import paper_model_config
    from atnet_jax.models.build import random_variables
    from atnet_jax.models.predictor import ATNetPredictor

    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    config = paper_model_config()
    predictor = ATNetPredictor(random_variables(config), config)

    def maps(seed: int) -> tuple[np.ndarray, np.ndarray]:
        r = np.random.default_rng(seed)
        pos = np.zeros((objects, height, width), np.float32)
        for k in range(objects):
            y, x = r.integers(height // 4, 3 * height // 4), r.integers(width // 4, 3 * width // 4)
            pos[k, y - 3 : y + 3, x - 30 : x + 30] = 1.0
        return pos, np.zeros_like(pos)

    return video, predictor, maps


def worker(frames: int, height: int, width: int, objects: int) -> dict:
    from atnet_jax.inference.plan import propagation_plan
    from atnet_jax.inference.session import Session

    video, predictor, maps = _setup(frames, height, width, objects)

    # Compile on a 2-frame prefix first (the compiled calls are shared by sessions of one config).
    warm = Session(video[:2], predictor, num_objects=objects)
    warm.interact_maps(0, *maps(0))
    compile_s = warm.last_round_seconds

    session = Session(video, predictor, num_objects=objects)
    first, second = frames // 2, frames // 4
    session.interact_maps(first, *maps(1))
    round1 = session.last_round_seconds
    session.interact_maps(second, *maps(2))
    round2 = session.last_round_seconds
    steps2 = sum(len(d) for d in propagation_plan(second, [first], frames))
    session.close()
    return {
        "objects": objects, "compile_s": compile_s, "round1_s": round1, "round1_frames": frames - 1, "round2_s": round2,
        "round2_frames": steps2, "round1_s_per_frame": round1 / (frames - 1),
        "round2_s_per_frame": round2 / max(steps2, 1), "traces": session.trace_counts,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def mid_video_worker(frames: int, height: int, width: int, size: int, objects: int, reps: int, later: bool,
                     round_no: int = 1) -> dict:
    import time

    import numpy as np

    from atnet_jax.inference.session import Session

    video, predictor, maps = _setup(frames, height, width, objects)

    start = time.perf_counter()
    Session(video[:3], predictor, num_objects=objects, size=size).warmup()
    compile_s = time.perf_counter() - start
    middle = frames // 2
    rounds = (["first", "later"] if round_no == 1 else ["second", "third"])[: 2 if later else 1]
    if round_no == 2:  # round 1 once, untimed; each timed round starts from its state
        prior = Session(video, predictor, num_objects=objects, size=size)
        prior.warmup()
        prior.interact_maps(3 * frames // 4, *maps(len(rounds)))
        state = prior.snapshot()
    seconds: dict[str, dict[str, list[tuple[float, float]]]] = {
        r: {"sequential": [], "batched": []} for r in rounds}
    labels: dict[str, dict[str, np.ndarray]] = {r: {} for r in rounds}
    for _ in range(reps):
        for schedule in ("sequential", "batched"):  # alternating, so that load on the machine hits both alike
            if round_no == 2:
                session = prior
                session.restore(state)
            else:
                session = Session(video, predictor, num_objects=objects, size=size)
                session.warmup()
            session._batch_chains = schedule == "batched"
            for i, name in enumerate(rounds):
                wall, cpu = time.perf_counter(), time.process_time()
                session.interact_maps(middle, *maps(i))
                seconds[name][schedule].append((time.perf_counter() - wall, time.process_time() - cpu))
                labels[name][schedule] = np.asarray(session.labels)
            if round_no == 1:
                session.close()
    if round_no == 2:
        prior.close()
    out = {"objects": objects, "compile_s": compile_s, "rounds": {}}
    for name in rounds:
        seq, bat = (min(seconds[name][s], key=lambda x: x[0]) for s in ("sequential", "batched"))
        equal = float(np.mean(labels[name]["sequential"] == labels[name]["batched"]))
        out["rounds"][name] = {"sequential_s": seq[0], "batched_s": bat[0], "sequential_cpu_s": seq[1],
                               "batched_cpu_s": bat[1], "equal_pct": 100 * equal}
    return out


def robot_worker(frames: int, height: int, width: int, objects: int, rounds: int) -> dict:
    import time

    import numpy as np

    from atnet_jax.data.synthetic import first_scribble, generate_video
    from atnet_jax.inference.session import Session
    from atnet_jax.interaction.robot import InteractiveRobot
    from atnet_jax.models import paper_model_config
    from atnet_jax.models.build import random_variables
    from atnet_jax.models.predictor import ATNetPredictor

    video, gt = generate_video(0, num_frames=frames, height=height, width=width, num_objects=objects)
    config = paper_model_config()
    session = Session(video, ATNetPredictor(random_variables(config), config), num_objects=objects)
    start = time.perf_counter()
    session.warmup()
    compile_s = time.perf_counter() - start
    robot = InteractiveRobot()
    scribbles = first_scribble("bench", gt)
    times = []
    for i in range(rounds):
        marked = [t for t, strokes in enumerate(scribbles["scribbles"]) if strokes]
        if not marked:
            break
        session.interact(marked[0], scribbles["scribbles"][marked[0]])
        times.append(session.last_round_seconds)
        if i + 1 < rounds:
            scribbles = robot.interact("bench", np.asarray(session.labels), gt, session.annotated, "J", objects)
    session.close()
    return {"objects": objects, "compile_s": compile_s, "round_s": times, "annotated": session.annotated,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=50, help="video length")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--objects", default="1,2", help="comma-separated object counts")
    parser.add_argument("--robot-rounds", type=int, default=0,
                        help="play this many robot rounds on a generated video instead (one process, the first "
                             "object count)")
    parser.add_argument("--mid-video", action="store_true",
                        help="a round annotated mid-video, sequential chains against batched chains")
    parser.add_argument("--size", type=int, default=240, help="processing size (--mid-video)")
    parser.add_argument("--reps", type=int, default=1, help="repetitions of each schedule (--mid-video)")
    parser.add_argument("--later", action="store_true", help="also a later round on the frame (--mid-video)")
    parser.add_argument("--round", type=int, choices=(1, 2), default=1,
                        help="the timed round (--mid-video): 2 = after an untimed round 1 three quarters in, every "
                             "frame's features cached")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mid_video:
        mid_video(args)
        return
    if args.robot_rounds:
        objects = int(args.objects.split(",")[0])
        r = robot_worker(args.frames, args.height, args.width, objects, args.robot_rounds)
        print(f"{len(r['round_s'])} robot rounds, {args.frames} frames at {args.height}x{args.width}, {objects} "
              f"object(s), full-size networks (random weights), compile {r['compile_s']:.1f} s")
        for i, (seconds, frame) in enumerate(zip(r["round_s"], r["annotated"]), start=1):
            print(f"  round {i}: frame {frame:>3}  {seconds:7.2f} s")
        print(f"  total {sum(r['round_s']):.2f} s; peak RSS {r['peak_rss_mb']:.0f} MB")
        return
    if args.worker:
        print(json.dumps(worker(args.frames, args.height, args.width, args.worker)))
        return
    rows = []
    for objects in map(int, args.objects.split(",")):
        print(f"measuring {objects} object(s) ...", flush=True)
        out = subprocess.run(
            [sys.executable, __file__, "--frames", str(args.frames), "--height", str(args.height),
             "--width", str(args.width), "--worker", str(objects)], check=True, capture_output=True, text=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"\n{args.frames} frames at {args.height}x{args.width}, full-size networks, float32")
    print(f"  {'objects':>7}  {'compile+2 frames [s]':>20}  {'round 1 [s]':>11}  {'s/frame':>8}  {'round 2 [s]':>11}  "
          f"{'s/frame':>8}  {'peak RSS [MB]':>13}")
    for r in rows:
        print(f"  {r['objects']:>7}  {r['compile_s']:>20.1f}  {r['round1_s']:>11.1f}  {r['round1_s_per_frame']:>8.2f}  "
              f"{r['round2_s']:>11.1f}  {r['round2_s_per_frame']:>8.2f}  {r['peak_rss_mb']:>13.0f}   "
              f"({r['round1_frames']} and {r['round2_frames']} frames propagated; traces {r['traces']})")
    if len(rows) >= 2:
        print(f"  round 1 with {rows[1]['objects']} objects / {rows[0]['objects']} object: "
              f"{rows[1]['round1_s'] / rows[0]['round1_s']:.2f}x; later round per frame: "
              f"{rows[1]['round2_s_per_frame'] / rows[0]['round2_s_per_frame']:.2f}x")


def mid_video(args: argparse.Namespace) -> None:
    if args.worker:
        print(json.dumps(mid_video_worker(args.frames, args.height, args.width, args.size, args.worker, args.reps,
                                          args.later, args.round)))
        return
    rows = []
    for objects in map(int, args.objects.split(",")):
        print(f"measuring {objects} object(s) ...", flush=True)
        command = [sys.executable, __file__, "--mid-video", "--frames", str(args.frames), "--height",
                   str(args.height), "--width", str(args.width), "--size", str(args.size), "--reps",
                   str(args.reps), "--round", str(args.round), "--worker", str(objects),
                   *(["--later"] if args.later else [])]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    after = (f", after round 1 on frame {3 * args.frames // 4} (every frame's features cached)" if args.round == 2
             else "")
    print(f"\na round annotated on frame {args.frames // 2} of {args.frames}{after} ({args.height}x{args.width} "
          f"processed at {args.size}), full-size networks (random weights), float32, {cpu_name()}")
    print(f"  {'objects':>7}  {'round':>6}  {'sequential [s]':>14}  {'batched [s]':>11}  {'ratio':>5}  "
          f"{'CPU s seq / batched':>19}  {'ratio':>5}  {'masks equal':>11}")
    for r in rows:
        for name, x in r["rounds"].items():
            print(f"  {r['objects']:>7}  {name:>6}  {x['sequential_s']:>14.1f}  {x['batched_s']:>11.1f}  "
                  f"{x['batched_s'] / x['sequential_s']:>5.2f}  "
                  f"{x['sequential_cpu_s']:>9.1f} / {x['batched_cpu_s']:<7.1f}  "
                  f"{x['batched_cpu_s'] / x['sequential_cpu_s']:>5.2f}  {x['equal_pct']:>10.3f}%")


if __name__ == "__main__":
    main()
