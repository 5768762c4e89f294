"""The studio's media in headless Chromium (Playwright), as a person uses them: ground-truth J&F under the
timeline and per step in the history (the demo video has ground truth; a sequence without Annotations none),
Download zip (the browser's download, a zip that opens and holds the served masks), and the exported overlay
video played by the browser's own <video> element (H.264: it loads, has a duration, and a seek to the middle
decodes a frame that is not black), and the start page over a DAVIS root's sequences. With ``CI=true`` a
missing browser fails instead of skipping."""
from __future__ import annotations

import os
import zipfile

import numpy as np
from test_studio_browser import (
    _require_browser,
    _served_labels,
    _stroke_inside,
    launch_browser,
    start_studio,
    stop_studio,
)

PLAY_CHECK = """async () => {
  const video = document.getElementById("export-video");
  if (video.readyState < 2) await new Promise((ok, fail) => {
    video.addEventListener("loadeddata", ok, { once: true });
    const failed = () => fail(new Error(`video error ${video.error && video.error.code}`));
    video.addEventListener("error", failed, { once: true });
  });
  const ready = video.readyState;
  video.currentTime = video.duration / 2;
  await new Promise((ok) => video.addEventListener("seeked", ok, { once: true }));
  const canvas = document.createElement("canvas");
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  const g = canvas.getContext("2d");
  g.drawImage(video, 0, 0);
  const pixels = g.getImageData(0, 0, canvas.width, canvas.height).data;
  let sum = 0;
  for (let i = 0; i < pixels.length; i += 4) sum += pixels[i] + pixels[i + 1] + pixels[i + 2];
  return { ready, duration: video.duration, width: video.videoWidth, height: video.videoHeight,
           time: video.currentTime, mean: sum / (3 * pixels.length / 4), error: video.error && video.error.code };
}"""


def _scribble_each_object(page, gt0: np.ndarray, num_objects: int) -> None:
    height, width = gt0.shape
    page.get_by_test_id("tool-pos-scribble").click()
    box = page.get_by_test_id("frame-canvas").bounding_box()
    for k in range(1, num_objects + 1):
        page.get_by_test_id(f"object-{k}").locator(".key").click()
        points = [(box["x"] + (x + 0.5) * box["width"] / width, box["y"] + (y + 0.5) * box["height"] / height)
                  for x, y in _stroke_inside(gt0 == k)]
        page.mouse.move(*points[0])
        page.mouse.down()
        for point in points[1:]:
            page.mouse.move(*point, steps=2)
        page.mouse.up()


def test_scores_download_and_video_in_browser(tmp_path):
    sync_playwright = _require_browser()
    import httpx

    from atnet_jax.io.davis import DavisFolder

    workspace = tmp_path / "ws"
    proc, url = start_studio("--workspace", str(workspace))
    try:
        gt = DavisFolder(workspace / "video").read_masks("shapes")
        num_frames, num_objects = gt.shape[0], int(gt.max())
        client = httpx.Client(base_url=url, timeout=60)
        with sync_playwright() as p:
            context = launch_browser(p, tmp_path / "profile", viewport={"width": 1280, "height": 800},
                                     accept_downloads=True)
            page = context.pages[0] if context.pages else context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(url)
            page.get_by_test_id("status").filter(has_text="ready").wait_for()

            # Ground truth: a bar per frame under the timeline, all at 0 before any round.
            page.get_by_test_id("scores-mean").filter(has_text="J&F 0.000").wait_for()
            assert page.get_by_test_id("scores").is_visible()
            assert page.locator("[data-testid^=score-cell-]").count() == num_frames

            _scribble_each_object(page, gt[0], num_objects)
            page.get_by_test_id("run").click()
            page.get_by_test_id("status").filter(has_text="round 1 on frame 0").wait_for(timeout=120_000)
            badge = page.get_by_test_id("step-score-1")
            badge.wait_for()
            scores = client.get("/api/scores").json()
            assert scores["steps"][0] > 0.4
            assert badge.inner_text() == f"J&F {scores['steps'][0]:.2f}"
            page.get_by_test_id("scores-mean").filter(has_text=f"J&F {scores['mean']:.3f}").wait_for()
            cell = page.get_by_test_id("score-cell-5")
            assert cell.get_attribute("title") == f"frame 5: J&F {scores['per_frame'][5]:.3f}"

            # Download zip: the browser's download, a zip that opens and holds the served masks.
            with page.expect_download() as info:
                page.get_by_test_id("download-zip").click()
            download = info.value
            assert download.suggested_filename == "shapes_export.zip"
            saved = tmp_path / "download.zip"
            download.save_as(saved)
            page.get_by_test_id("status").filter(has_text="downloaded shapes_export.zip").wait_for()
            with zipfile.ZipFile(saved) as archive:
                assert archive.testzip() is None
                names = archive.namelist()
                assert "export/shapes_overlay.mp4" in names and "export/replay.json" in names
                from PIL import Image

                masks = []
                for t in range(num_frames):
                    with archive.open(f"export/shapes/{t:05d}.png") as f, Image.open(f) as image:
                        masks.append(np.array(image))
            np.testing.assert_array_equal(np.stack(masks), _served_labels(client, num_frames))

            # The exported overlay video plays in the browser.
            page.get_by_test_id("open-video").click()
            page.get_by_test_id("video-dialog").wait_for()
            played = page.evaluate(PLAY_CHECK)
            assert played["error"] is None and played["ready"] >= 2, played
            assert played["duration"] > 0 and played["time"] > 0, played
            assert (played["width"], played["height"]) == (gt.shape[2], gt.shape[1]), played
            assert played["mean"] > 20, played  # a decoded frame, not black
            page.screenshot(path=str(tmp_path / "video.png"))
            page.get_by_test_id("video-close").click()
            shot = os.environ.get("ATNET_STUDIO_MEDIA_SCREENSHOT")
            if shot:
                page.screenshot(path=shot)
            assert errors == []
            context.close()
        client.close()
    finally:
        stop_studio(proc)


def test_dataset_start_page_in_browser(tmp_path):
    sync_playwright = _require_browser()
    import shutil

    import httpx
    from conftest import data_path

    from atnet_jax.io.davis import DavisFolder

    davis = tmp_path / "davis"  # davis_mini's three sequences, tennis without its ground truth
    for name in ("bear", "car-shadow", "tennis"):
        shutil.copytree(data_path("davis_mini", "JPEGImages", "480p", name), davis / "JPEGImages" / "480p" / name)
    for name in ("bear", "car-shadow"):
        shutil.copytree(data_path("davis_mini", "Annotations", "480p", name), davis / "Annotations" / "480p" / name)
    gt0 = DavisFolder(davis).read_masks("bear")[0]
    root = tmp_path / "workspaces"
    proc, url = start_studio("--input", str(davis), "--workspace", str(root), "--size", "240")
    try:
        client = httpx.Client(base_url=url, timeout=60)
        listing = client.get("/api/dataset").json()
        assert [s["name"] for s in listing["sequences"]] == ["bear", "car-shadow", "tennis"]
        assert listing["open"] is None
        assert client.get("/api/state").status_code == 409  # nothing open yet
        bad = client.post("/api/dataset/open", json={"sequence": "../bear"})
        assert bad.status_code == 404 and "no sequence '../bear'" in bad.json()["error"]
        assert client.post("/api/dataset/open", json={"name": "bear"}).status_code == 400
        with sync_playwright() as p:
            context = launch_browser(p, tmp_path / "profile")
            page = context.pages[0] if context.pages else context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(url)
            for name, frames in [("bear", 2), ("car-shadow", 40), ("tennis", 2)]:
                row = page.get_by_test_id(f"sequence-{name}")
                assert row.locator("td").nth(1).inner_text() == str(frames)
                assert page.get_by_test_id(f"sequence-state-{name}").inner_text() == "not started"
            page.get_by_test_id("open-bear").click()
            page.wait_for_url(url.rstrip("/") + "/")
            page.get_by_test_id("status").filter(has_text="ready").wait_for(timeout=120_000)
            assert page.get_by_test_id("dataset-back").is_visible()
            assert page.get_by_test_id("frame-label").inner_text() == "frame 0 / 1"
            assert (root / "bear" / "studio.json").is_file()

            _scribble_each_object(page, gt0, 1)
            page.get_by_test_id("run").click()
            page.get_by_test_id("status").filter(has_text="round 1 on frame 0").wait_for(timeout=120_000)
            page.get_by_test_id("step-score-1").wait_for()  # bear has ground truth
            assert page.get_by_test_id("scores").is_visible()

            page.get_by_test_id("dataset-back").click()
            page.get_by_test_id("sequence-state-bear").filter(has_text="1 round").wait_for()
            assert page.get_by_test_id("sequence-state-bear").inner_text() == "1 round"
            assert page.get_by_test_id("sequence-state-tennis").inner_text() == "not started"
            assert "(open)" in page.get_by_test_id("sequence-bear").inner_text()
            page.screenshot(path=str(tmp_path / "start.png"))

            # tennis has no ground truth: no scores, also after a round.
            page.get_by_test_id("open-tennis").click()
            page.wait_for_url(url.rstrip("/") + "/")
            page.get_by_test_id("status").filter(has_text="ready").wait_for(timeout=120_000)
            assert page.get_by_test_id("frame-label").inner_text() == "frame 0 / 1"
            page.get_by_test_id("tool-pos-scribble").click()
            box = page.get_by_test_id("frame-canvas").bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.5)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5, steps=5)
            page.mouse.up()
            page.get_by_test_id("run").click()
            page.get_by_test_id("status").filter(has_text="round 1 on frame 0").wait_for(timeout=120_000)
            page.get_by_test_id("step-1").wait_for()
            page.wait_for_timeout(500)  # the scores request after the step has answered
            assert client.get("/api/scores").json() == {"available": False}
            assert not page.get_by_test_id("scores").is_visible()
            assert not page.get_by_test_id("scores-legend").is_visible()
            assert page.locator("[data-testid^=step-score-]").count() == 0
            assert not (root / "tennis" / "scores.json").exists()
            assert errors == []
            context.close()
        client.close()
    finally:
        stop_studio(proc)
