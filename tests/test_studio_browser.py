"""The studio end to end in headless Chromium (Playwright): scribble on each object of the demo video with the
mouse, run, check the served masks against the demo's ground truth, undo, and save a screenshot.

``ATNET_STUDIO_SCREENSHOT=docs/studio.png`` writes the screenshot there (the README's); otherwise into the test's
temporary folder. With ``CI=true`` a missing browser fails the test instead of skipping it.
"""
from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def _require_browser():
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install playwright)"
    if missing is None and not CHROMIUM.exists():
        missing = f"{CHROMIUM} not found (apt-get install chromium)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true: {missing}")
        pytest.skip(missing)
    return sync_playwright


def launch_browser(playwright, profile: Path, *, viewport: dict | None = None, **options):
    """A persistent Chromium context on a fresh ``profile``, as the studio's browser tests use."""
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
        viewport=viewport or {"width": 1280, "height": 760}, **options)


def start_studio(*args: str, port: int = 0) -> tuple[subprocess.Popen, str]:
    """``python -m atnet_jax.studio ARGS --port PORT --no-browser`` -> the process and the URL it printed."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    cache = os.environ.get("ATNET_JAX_TEST_CACHE", str(Path.home() / ".cache" / "atnet_jax_xla"))
    env.setdefault("JAX_COMPILATION_CACHE_DIR", cache)
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1")
    proc = subprocess.Popen([sys.executable, "-m", "atnet_jax.studio", *args, "--port", str(port), "--no-browser"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        match = re.search(r"the studio is at (http://\S+)", line)
        if match:
            return proc, match.group(1)
    proc.kill()
    raise AssertionError("the studio did not start:\n" + "".join(lines))


def stop_studio(proc: subprocess.Popen) -> int:
    """Ctrl-C to the studio -> its exit code (130)."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def _start_studio(workspace: Path) -> tuple[subprocess.Popen, str]:
    return start_studio("--workspace", str(workspace))


def _served_labels(client, num_frames: int) -> np.ndarray:
    from PIL import Image

    out = []
    for t in range(num_frames):
        response = client.get(f"/api/masks/{t}")
        assert response.status_code == 200
        with Image.open(io.BytesIO(response.content)) as image:
            assert image.mode == "P"
            out.append(np.array(image))
    return np.stack(out)


def _stroke_inside(mask: np.ndarray) -> list[tuple[int, int]]:
    """A short horizontal stroke through the deepest point of ``mask [H, W]`` bool, staying inside it."""
    from scipy.ndimage import distance_transform_edt

    depth = distance_transform_edt(mask)
    y, x = np.unravel_index(np.argmax(depth), mask.shape)
    half = max(2, int(depth[y, x] * 0.6))
    return [(int(x) + dx, int(y)) for dx in range(-half, half + 1, max(1, half // 4))]


def test_studio_in_browser(tmp_path):
    sync_playwright = _require_browser()
    import httpx

    from atnet_jax.interaction.metrics import per_object_scores
    from atnet_jax.io.davis import DavisFolder

    start = time.perf_counter()
    workspace = tmp_path / "ws"
    proc, url = _start_studio(workspace)
    try:
        davis = DavisFolder(workspace / "video")
        gt = davis.read_masks("shapes")
        num_frames, height, width = gt.shape
        num_objects = int(gt.max())
        client = httpx.Client(base_url=url, timeout=30)
        before = _served_labels(client, num_frames)
        assert not before.any()

        with sync_playwright() as p:
            context = launch_browser(p, tmp_path / "profile")
            page = context.pages[0] if context.pages else context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(url)
            page.get_by_test_id("status").filter(has_text="ready").wait_for()
            assert page.get_by_test_id("demo-banner").is_visible()
            assert page.get_by_test_id("frame-label").inner_text() == f"frame 0 / {num_frames - 1}"

            # A positive scribble on each object of frame 0, with the mouse.
            page.get_by_test_id("tool-pos-scribble").click()
            box = page.get_by_test_id("frame-canvas").bounding_box()
            for k in range(1, num_objects + 1):
                page.get_by_test_id(f"object-{k}").locator(".key").click()
                points = [(box["x"] + (x + 0.5) * box["width"] / width, box["y"] + (y + 0.5) * box["height"] / height)
                          for x, y in _stroke_inside(gt[0] == k)]
                page.mouse.move(*points[0])
                page.mouse.down()
                for point in points[1:]:
                    page.mouse.move(*point, steps=2)
                page.mouse.up()
            page.get_by_test_id("pending-note").filter(has_text=f"{num_objects} new stroke(s)").wait_for()

            page.get_by_test_id("run").click()
            page.get_by_test_id("status").filter(has_text="round 1 on frame 0").wait_for(timeout=120_000)
            assert page.evaluate("document.body.dataset.running") == "0"
            after = _served_labels(client, num_frames)
            j = per_object_scores(after, gt, num_objects, "J")  # [T, K]
            assert j[0].mean() > 0.5, f"J on the annotated frame {j[0]}"
            assert j.mean() > 0.5, f"mean J {j.mean():.3f}"
            timeline = page.get_by_test_id("timeline-cell-0")
            assert "annotated" in timeline.get_attribute("class")
            page.get_by_test_id("timeline-cell-5").click()
            assert page.get_by_test_id("frame-label").inner_text() == f"frame 5 / {num_frames - 1}"
            page.keyboard.press("ArrowRight")
            assert page.get_by_test_id("frame-label").inner_text() == f"frame 6 / {num_frames - 1}"
            page.keyboard.press("Home")
            # The ground truth's J&F under the timeline and in the history, a preview of a new stroke on frame
            # 3 (A-Net alone, not yet run) and a zoom about it: what the README's screenshot shows.
            page.get_by_test_id("scores").wait_for()
            assert "J&F" in page.get_by_test_id("scores-mean").inner_text()
            page.get_by_test_id("timeline-cell-3").click()
            page.get_by_test_id("object-1").locator(".key").click()
            box = page.get_by_test_id("frame-canvas").bounding_box()
            points = [(box["x"] + (x + 0.5) * box["width"] / width, box["y"] + (y + 0.5) * box["height"] / height)
                      for x, y in _stroke_inside(gt[3] == 1)]
            page.mouse.move(*points[0])
            page.mouse.down()
            for point in points[1:]:
                page.mouse.move(*point, steps=2)
            page.mouse.up()
            page.wait_for_function("document.body.dataset.previewFrame === '3'", timeout=60_000)
            page.mouse.move(*points[len(points) // 2])
            page.mouse.wheel(0, -200)  # two notches in, about the stroke
            page.wait_for_function("window.studio.view.zoom > 1.5")
            page.wait_for_timeout(300)  # the last mask image to arrive
            shot = tmp_path / "studio.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 10_000
            if os.environ.get("ATNET_STUDIO_SCREENSHOT"):  # the README's: 256 colours keep the file small
                from PIL import Image

                with Image.open(shot) as image:
                    image.convert("RGB").quantize(256, dither=Image.Dither.FLOYDSTEINBERG).save(
                        os.environ["ATNET_STUDIO_SCREENSHOT"], optimize=True)

            page.keyboard.press("0")  # zoom reset
            page.keyboard.press("Escape")  # the preview dropped
            page.wait_for_function("document.body.dataset.previewVersion === undefined")
            page.get_by_test_id("undo").click()
            page.get_by_test_id("status").filter(has_text="undone: round on frame 0").wait_for()
            assert np.array_equal(_served_labels(client, num_frames), before)
            assert "annotated" not in (page.get_by_test_id("timeline-cell-0").get_attribute("class") or "")
            assert errors == []
            context.close()
        client.close()
    finally:
        code = stop_studio(proc)
    assert code == 130
    print(f"end-to-end studio test: {time.perf_counter() - start:.1f} s")
