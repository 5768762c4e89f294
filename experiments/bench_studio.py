"""Benchmark the annotation studio as a user meets it: a real server (``python -m atnet_jax.studio`` in its own
process), rounds submitted over HTTP, progress read from the event stream, masks fetched as PNGs.

    python experiments/bench_studio.py                 # all three setups below (several minutes on 2 cores)
    python experiments/bench_studio.py --skip-full     # leave out the full-size networks
    python experiments/bench_studio.py --page          # also stroke -> preview drawn in headless Chromium
    python experiments/bench_studio.py --skip-480p --davis tests/data/davis_mini   # the demo, and real maps

With ``--davis ROOT``, first: the workspace's storage of real rounds (a session with the demo weights on a real 480p
DAVIS sequence, two rounds, each saved as a workspace step), each frame read back and checked bit for bit, bytes
against the raw float32 and against the probabilities through the frame codec alone.

Setups:
  1. the demo video (12 frames of 240x432) with the demo weights: latencies, and RSS over --rounds rounds;
  2. a generated 480p video of 50 frames (480x854) with the demo weights: latencies, and RSS over --rounds rounds
     (each round's state, up to 164 MB of probabilities, goes to the workspace on disk, not to memory);
  3. the same 480p video with the full-size networks (paper config, random weights): the first round's
     latencies only, then the round is cancelled (a full-size round over 50 frames takes minutes here).

After the rounds of setups 1 and 2, an object is added, a round is run with it and it is removed again; then the
workspace's bytes are counted per step: the steps as stored now (a round's logits, from which its probabilities
are recomputed exactly, compressed losslessly; object edits as selections of the previous step) and as the
studio stored them before (workspace format 1: the changed frames' probabilities as raw float32 .npy, every frame
after an object edit), per round per object, and in total.

Per round: Run -> the annotated frame's mask served (the POST, the server computing the annotated frame, the
event, the PNG fetched), the server's own time to that frame (interaction maps, A-Net, the T-Net encoder of that
frame: the model's share), their difference (the studio's overhead, target < 0.3 s), and Run -> the first
propagated frame's event. RSS is the server's resident memory (/proc) after round 1 and after the last round.

Preview (stroke -> preview shown), before round 1 and after the last round (a frame with a previous mask): the
POST /api/preview round trip, the server's A-Net time in it, and POST -> the preview mask fetched (what the page
waits for after its debounce of 300 ms, which ``--page`` adds: the time from a stroke drawn with the mouse in
headless Chromium to the preview drawn, read from the page). Each preview sends another interaction than the one
before (one click per object, then one object's click left out), so that A-Net runs every time. After the last
round, a round is run with the last previewed strokes: Run -> annotated mask served without A-Net running again.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def start_server(args: list[str]) -> tuple[subprocess.Popen, str, float]:
    start = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "atnet_jax.studio", "--port", "0", "--no-browser", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        match = re.search(r"the studio is at (http://\S+)", line)
        if match:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # drain
            return proc, match.group(1), time.perf_counter() - start
    raise RuntimeError("the studio did not start:\n" + "".join(lines))


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def clicks_inside(gt: np.ndarray, num_objects: int) -> list[dict]:
    """One positive click at the deepest point of each object of ``gt [H, W]``."""
    from scipy.ndimage import distance_transform_edt

    height, width = gt.shape
    strokes = []
    for k in range(1, num_objects + 1):
        if not (gt == k).any():
            continue
        depth = distance_transform_edt(gt == k)
        y, x = np.unravel_index(np.argmax(depth), gt.shape)
        strokes.append({"path": [[x / width, y / height]], "object_id": k, "start_time": 0.0, "end_time": 0.0})
    return strokes


def one_round(client: httpx.Client, url: str, frame: int, strokes: list[dict], *, cancel_after_first: bool = False
              ) -> dict:
    """Submit a round and time it from the client: mask of the annotated frame served, first propagated frame."""
    times: dict[str, float] = {}
    ready = threading.Event()
    done = threading.Event()
    result: dict = {}

    def listen() -> None:
        with httpx.Client(base_url=url, timeout=None) as events_client, events_client.stream(
                "GET", "/api/events") as response:
            ready.set()
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                now = time.perf_counter()
                if event["type"] == "frame" and event["kind"] == "annotated":
                    times["annotated_event"] = now
                    result["server_annotated_s"] = event["elapsed"]
                    mask = client.get(f"/api/masks/{event['t']}?v={event['version']}")
                    mask.raise_for_status()
                    times["annotated_served"] = time.perf_counter()
                elif event["type"] == "frame" and "first_propagated" not in times:
                    times["first_propagated"] = now
                    if cancel_after_first:
                        client.post("/api/cancel", json={})
                elif event["type"] == "round_end":
                    times["end"] = now
                    result["status"] = event["status"]
                    result["server_round_s"] = event["seconds"]
                    done.set()
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait(30)
    start = time.perf_counter()
    response = client.post("/api/rounds", json={"frame": frame, "strokes": strokes})
    response.raise_for_status()
    if not done.wait(3600):
        raise RuntimeError("the round did not end")
    result["run_to_annotated_served_s"] = times["annotated_served"] - start
    result["overhead_s"] = result["run_to_annotated_served_s"] - result["server_annotated_s"]
    if "first_propagated" in times:
        result["run_to_first_propagated_s"] = times["first_propagated"] - start
    result["run_to_end_s"] = times["end"] - start
    return result


def previews(client: httpx.Client, frame: int, strokes: list[dict], count: int, *, keep: bool = False) -> dict:
    """``count`` previews on ``frame``, each another interaction than the one before; then the preview dropped
    (``keep``: left for Run, the strokes it holds in ``"strokes"``). The medians of: the POST's round trip, the
    server's A-Net time, POST -> the preview mask fetched."""
    posts, servers, shown = [], [], []
    for i in range(count):
        sent = strokes if i % 2 == 0 or len(strokes) == 1 else strokes[:-1]
        if len(strokes) == 1 and i % 2:
            sent = [{**strokes[0], "path": [[min(1.0, strokes[0]["path"][0][0] + 0.01), strokes[0]["path"][0][1]]]}]
        start = time.perf_counter()
        response = client.post("/api/preview", json={"frame": frame, "strokes": sent})
        response.raise_for_status()
        answered = time.perf_counter()
        result = response.json()
        mask = client.get(f"/api/preview/mask?v={result['version']}")
        mask.raise_for_status()
        posts.append(answered - start)
        servers.append(result["seconds"])
        shown.append(time.perf_counter() - start)
    if not keep:
        client.request("DELETE", "/api/preview", headers={"content-type": "application/json"}).raise_for_status()
    return {"frame": frame, "count": count, "strokes": sent, "post_s": round(statistics.median(posts), 4),
            "server_a_net_s": round(statistics.median(servers), 4),
            "post_to_mask_s": round(statistics.median(shown), 4),
            "overhead_s": round(statistics.median(s - a for s, a in zip(shown, servers)), 4)}


def page_previews(url: str, gt: np.ndarray, frame: int, count: int) -> dict:
    """Stroke -> preview drawn, as the page measures it (mouse strokes in headless Chromium; the debounce
    included)."""
    from playwright.sync_api import sync_playwright
    from scipy.ndimage import distance_transform_edt

    height, width = gt.shape[1:]
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync"]
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(profile, executable_path="/usr/bin/chromium", headless=True,
                                                       args=flags, viewport={"width": 1280, "height": 760})
        page = context.pages[0] if context.pages else context.new_page()
        page.goto(url)
        page.get_by_test_id("status").filter(has_text="ready").wait_for(timeout=60_000)
        box = page.get_by_test_id("frame-canvas").bounding_box()
        depth = distance_transform_edt(gt[frame] > 0)
        y, x = np.unravel_index(np.argmax(depth), depth.shape)
        for i in range(count):
            px = box["x"] + (x + 0.5) * box["width"] / width
            py = box["y"] + (y + 0.5 + 2 * i) * box["height"] / height
            page.mouse.move(px - 10, py)
            page.mouse.down()
            page.mouse.move(px + 10, py, steps=4)
            page.mouse.up()
            page.wait_for_function(f"window.studio.preview.timings.length > {i}", timeout=600_000)
        timings = page.evaluate("window.studio.preview.timings")
        page.keyboard.press("Escape")
        page.wait_for_timeout(500)
        context.close()
    return {"stroke_to_shown_s": round(statistics.median(timings) / 1000, 4), "count": len(timings),
            "debounce_s": 0.3}


def step_bytes(workspace: Path) -> list[dict]:
    """Per step of ``workspace``: its kind, object count, the bytes its folder holds now, and the bytes format 1
    wrote for it (probabilities as an .npy of float32 [F, K, h, w], F the changed frames of a round and every
    frame after an object edit; every annotated frame's indicators as an .npy of float32; the record)."""
    meta = json.loads((workspace / "studio.json").read_text())
    num_frames = meta["video"]["num_frames"]
    out = []
    for i, step in enumerate(meta["steps"], start=1):
        folder = workspace / "steps" / f"{i:04d}"
        record = json.loads((folder / "state.json").read_text())
        now = sum(f.stat().st_size for f in folder.iterdir())
        frames = len(record["frames"]) if step["kind"] == "round" else num_frames
        height, width = record["frame_shape"]
        planes = sum(map(len, record["indicators"]))
        header = 128  # an .npy header
        before = ((folder / "state.json").stat().st_size + 2 * header
                  + frames * record["num_objects"] * height * width * 4
                  + planes * int(np.prod(record["indicator_shape"] or [0])) * 4)
        out.append({"kind": step["kind"], "objects": record["num_objects"], "frames": frames, "bytes": now,
                    "bytes_format_1": before})
    return out


def bytes_table(label: str, steps: list[dict]) -> dict:
    """Print the workspace bytes of ``steps`` (from :func:`step_bytes`): per round per object, and in total."""
    mb = 1e6
    print(f"   workspace bytes ({label}): step, kind, objects, frames stored, before (format 1) MB, now MB, ratio",
          flush=True)
    for i, s in enumerate(steps, start=1):
        print(f"     {i:3d}  {s['kind']:14s} {s['objects']:2d} {s['frames']:4d}  {s['bytes_format_1'] / mb:9.2f}  "
              f"{s['bytes'] / mb:9.2f}  {s['bytes_format_1'] / max(s['bytes'], 1):6.2f}x", flush=True)
    rounds = [s for s in steps if s["kind"] == "round"]
    per_round_before = statistics.mean(s["bytes_format_1"] / s["objects"] for s in rounds)
    per_round_now = statistics.mean(s["bytes"] / s["objects"] for s in rounds)
    total_before, total_now = sum(s["bytes_format_1"] for s in steps), sum(s["bytes"] for s in steps)
    print(f"   per round per object: before {per_round_before / mb:.2f} MB, now {per_round_now / mb:.2f} MB "
          f"({per_round_before / per_round_now:.2f}x); all {len(steps)} steps: before {total_before / mb:.1f} MB, "
          f"now {total_now / mb:.1f} MB ({total_before / total_now:.2f}x, target >= 4x)", flush=True)
    return {"per_round_per_object_mb_before": round(per_round_before / mb, 3),
            "per_round_per_object_mb_now": round(per_round_now / mb, 3),
            "total_mb_before": round(total_before / mb, 2), "total_mb_now": round(total_now / mb, 2),
            "total_ratio": round(total_before / total_now, 2), "steps": steps}


def codec_on_davis(root: Path, sequence: str, rounds: int = 2) -> dict:
    """The workspace's storage of real rounds: a session (demo weights) on a DAVIS sequence, ``rounds`` rounds
    of one click per object, each saved as a step of a workspace (its logits, or its probabilities where they do
    not recompute from them) and read back bit for bit; the bytes against the raw float32 of the round's frames
    (what format 1 stored), and those of the probabilities through the frame codec alone (format 2)."""
    from atnet_jax import cli
    from atnet_jax.demo import DEFAULT_CHECKPOINT
    from atnet_jax.inference.session import Session
    from atnet_jax.interaction.kinds import Scribble
    from atnet_jax.io.davis import DavisFolder
    from atnet_jax.models.predictor import ATNetPredictor
    from atnet_jax.studio.history import PROBABILITIES, History, encode_frame

    davis = DavisFolder(root)
    gt = davis.read_masks(sequence)
    num_objects = int(gt.max())
    variables, config = cli.load_checkpoint(DEFAULT_CHECKPOINT)
    session = Session(davis.frames(sequence), ATNetPredictor(variables, config), num_objects)
    print(f"== real probability maps: DAVIS {sequence} ({gt.shape[0]} x {gt.shape[1]}x{gt.shape[2]}, processed at "
          f"{session.processing_shape[0]}x{session.processing_shape[1]}), demo weights", flush=True)
    out: dict = {"sequence": sequence, "rounds": []}
    workspace = Path(tempfile.mkdtemp(prefix="atnet_bench_davis_ws_"))
    history = History(workspace, session.num_frames, session.processing_shape)
    try:
        for r in range(rounds):
            frame = [0, len(gt) - 1, len(gt) // 2][r % 3]
            info = session.interact(Scribble(frame, clicks_inside(gt[frame], num_objects)))
            state = session.snapshot(copy=False)
            start = time.perf_counter()
            history.write_state(r + 1, state, num_objects, info.frames, logits=session.last_round)
            write_seconds = time.perf_counter() - start
            start = time.perf_counter()
            back = history.read_state(r + 1).probabilities
            read_seconds = time.perf_counter() - start
            raw = codec = 0
            for t in info.frames:
                p = np.ascontiguousarray(session.probabilities[t], np.float32)
                if not np.array_equal(np.asarray(back[t]).view(np.uint32), p.view(np.uint32)):
                    raise AssertionError(f"round {r + 1}: frame {t} did not come back bit for bit")
                raw, codec = raw + p.nbytes, codec + len(encode_frame(p))
            stored = (history.step_dir(r + 1) / PROBABILITIES).stat().st_size
            print(f"   round {r + 1} on frame {frame} ({len(info.frames)} frames): per object "
                  f"{raw / num_objects / 1e6:.2f} MB raw float32 -> {stored / num_objects / 1e6:.3f} MB stored "
                  f"({raw / stored:.1f}x, exact; probabilities through the codec alone {raw / codec:.2f}x); "
                  f"write {write_seconds:.1f} s, read back every frame {read_seconds:.1f} s", flush=True)
            out["rounds"].append({"raw_mb_per_object": round(raw / num_objects / 1e6, 3),
                                  "stored_mb_per_object": round(stored / num_objects / 1e6, 4),
                                  "ratio": round(raw / stored, 2), "codec_ratio": round(raw / codec, 3),
                                  "write_s": round(write_seconds, 2), "read_s": round(read_seconds, 2)})
    finally:
        session.close()
        shutil.rmtree(workspace, ignore_errors=True)
    return out


def bench(label: str, server_args: list[str], gt: np.ndarray, *, rounds: int, cancel_first: bool = False,
          preview_count: int = 5, page: bool = False, workspace: Path | None = None) -> dict:
    print(f"== {label}", flush=True)
    proc, url, startup = start_server(server_args)
    print(f"   server up in {startup:.1f} s (loading, compiling); RSS {rss_mb(proc.pid):.0f} MB", flush=True)
    num_frames, num_objects = len(gt), int(gt.max())
    order = [0, num_frames - 1, num_frames // 2, num_frames // 4, 3 * num_frames // 4, num_frames // 8,
             3 * num_frames // 8, 5 * num_frames // 8, 7 * num_frames // 8, num_frames // 3]
    out: dict = {"label": label, "startup_s": round(startup, 1), "rounds": []}
    try:
        with httpx.Client(base_url=url, timeout=600) as client:
            if preview_count:
                out["preview_first"] = previews(client, 0, clicks_inside(gt[0], num_objects), preview_count)
                del out["preview_first"]["strokes"]
                print(f"   preview before round 1: {_preview_line(out['preview_first'])}", flush=True)
                if page:
                    out["preview_page"] = page_previews(url, gt, 0, preview_count)
                    print(f"   page: stroke -> preview drawn {out['preview_page']['stroke_to_shown_s']:.3f} s "
                          f"(median of {out['preview_page']['count']}, the 0.3 s debounce included)", flush=True)
            for r in range(rounds):
                frame = order[r % len(order)]
                result = one_round(client, url, frame, clicks_inside(gt[frame], num_objects),
                                   cancel_after_first=cancel_first)
                result["rss_mb"] = round(rss_mb(proc.pid), 1)
                result["frame"] = frame
                out["rounds"].append(result)
                print(f"   round {r + 1} on frame {frame} ({result['status']}): Run -> annotated mask served "
                      f"{result['run_to_annotated_served_s']:.3f} s (server {result['server_annotated_s']:.3f} s, "
                      f"studio overhead {result['overhead_s']:.3f} s), Run -> first propagated "
                      f"{result.get('run_to_first_propagated_s', float('nan')):.3f} s, round "
                      f"{result['run_to_end_s']:.1f} s, RSS {result['rss_mb']:.0f} MB", flush=True)
            if preview_count and not cancel_first:
                frame = num_frames // 2 + 1
                later = previews(client, frame, clicks_inside(gt[frame], num_objects), preview_count, keep=True)
                print(f"   preview after round {rounds}: {_preview_line(later)}", flush=True)
                taken = one_round(client, url, frame, later.pop("strokes"))  # Run takes the preview: no A-Net run
                out["preview_later"], out["run_after_preview"] = later, taken
                print(f"   Run with the previewed strokes -> annotated mask served "
                      f"{taken['run_to_annotated_served_s']:.3f} s (server {taken['server_annotated_s']:.3f} s: "
                      "A-Net's result taken from the preview)", flush=True)
            if workspace is not None:  # an object edit each way, and a round with the added object between
                added = client.post("/api/objects", json={})
                added.raise_for_status()
                k = added.json()["id"]
                frame = num_frames // 2
                one_round(client, url, frame, [{"path": [[0.5, 0.5]], "object_id": k, "start_time": 0.0,
                                                "end_time": 0.0}])
                client.delete(f"/api/objects/{k}", headers={"content-type": "application/json"}).raise_for_status()
    finally:
        stop_server(proc)
    if workspace is not None:
        out["workspace"] = bytes_table(label.split(",")[0], step_bytes(workspace))
    first, last = out["rounds"][0], out["rounds"][-1]
    out["overhead_median_s"] = round(statistics.median(r["overhead_s"] for r in out["rounds"]), 3)
    out["rss_after_1_mb"], out["rss_after_last_mb"] = first["rss_mb"], last["rss_mb"]
    if rounds > 1:
        print(f"   RSS after round 1: {first['rss_mb']:.0f} MB, after round {rounds}: {last['rss_mb']:.0f} MB "
              f"(ratio {last['rss_mb'] / first['rss_mb']:.2f})", flush=True)
    print(f"   studio overhead, median over rounds: {out['overhead_median_s']:.3f} s (target < 0.3 s)", flush=True)
    return out


def _preview_line(result: dict) -> str:
    return (f"POST -> preview mask fetched {result['post_to_mask_s']:.3f} s (server A-Net "
            f"{result['server_a_net_s']:.3f} s, studio overhead {result['overhead_s']:.3f} s; POST alone "
            f"{result['post_s']:.3f} s), median of {result['count']} on frame {result['frame']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="rounds for the RSS measurement (default 10)")
    parser.add_argument("--skip-full", action="store_true", help="leave out the full-size networks")
    parser.add_argument("--keep", type=Path, help="keep the workspaces in this folder")
    parser.add_argument("--previews", type=int, default=5, help="previews timed per setup (default 5; 0: none)")
    parser.add_argument("--page", action="store_true",
                        help="also time stroke -> preview drawn in headless Chromium (Playwright)")
    parser.add_argument("--skip-480p", action="store_true", help="the demo video only (setups 2 and 3 left out)")
    parser.add_argument("--davis", type=Path, help="also measure the compression of real probability maps on a "
                        "DAVIS root (e.g. tests/data/davis_mini), sequence --davis-sequence")
    parser.add_argument("--davis-sequence", default="car-shadow", help="the DAVIS sequence (default car-shadow)")
    args = parser.parse_args()

    from atnet_jax.demo import write_demo_video
    from atnet_jax.io.davis import DavisFolder

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench_studio_"))
    results = []
    if args.davis is not None:
        results.append(codec_on_davis(args.davis, args.davis_sequence))
    try:
        demo_ws = root / "demo"
        write_demo_video(demo_ws / "video")  # where the studio's demo expects it, so that its ground truth is known
        gt = DavisFolder(demo_ws / "video").read_masks("shapes")
        results.append(bench("demo video (12 x 240x432), demo weights", ["--workspace", str(demo_ws)], gt,
                             rounds=args.rounds, preview_count=args.previews, page=args.page,
                             workspace=demo_ws))

        if args.skip_480p:
            print(json.dumps(results, indent=1))
            return
        video = root / "video480"
        write_demo_video(video, name="long", num_frames=50, height=480, width=854, seed=3)
        gt = DavisFolder(video).read_masks("long")
        common = ["--input", str(video), "--sequence", "long", "--objects", str(int(gt.max()))]
        results.append(bench("480p video (50 x 480x854), demo weights", [*common, "--workspace",
                                                                         str(root / "ws480_demo")], gt,
                             rounds=args.rounds, preview_count=args.previews, page=args.page,
                             workspace=root / "ws480_demo"))
        if not args.skip_full:
            from atnet_jax.io.weights import save_weights
            from atnet_jax.models import paper_model_config
            from atnet_jax.models.build import random_variables

            config = paper_model_config()
            weights = save_weights(root / "full_weights", random_variables(config), config)
            results.append(bench("480p video (50 x 480x854), full-size networks, random weights (round cancelled "
                                 "after the first propagated frame)",
                                 [*common, "--checkpoint", str(weights), "--workspace", str(root / "ws480_full")],
                                 gt, rounds=1, cancel_first=True, preview_count=min(args.previews, 2)))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
