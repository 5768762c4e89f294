"""The studio's media over its JSON API: the export as one zip (its names, its masks equal to the served ones),
the exported overlay video (H.264) served to the page, and J&F against the video's ground truth (per frame, the
mean after each step) checked against a direct NumPy computation; none of it without ground truth."""
from __future__ import annotations

import io
import json
import tempfile
import zipfile

import numpy as np
import pytest
import test_studio
from starlette.testclient import TestClient
from test_studio import NAME, make_workspace, read_png, run_round, served

from atnet_jax.interaction.metrics import boundary_f
from atnet_jax.studio.app import create_app

demo = test_studio.demo  # the demo video, its ground truth, first scribble and weights (a module fixture)


@pytest.fixture
def studio(demo, tmp_path):
    ws = make_workspace(demo, tmp_path / "ws")
    with TestClient(create_app(ws)) as client:
        yield client, ws


def numpy_jf(labels: np.ndarray, gt: np.ndarray, num_objects: int) -> float:
    """Mean over objects of (J + F) / 2 on one frame, J counted by hand."""
    scores = []
    for k in range(1, num_objects + 1):
        pred, true = labels == k, gt == k
        union = np.logical_or(pred, true).sum()
        j = 1.0 if union == 0 else np.logical_and(pred, true).sum() / union
        scores.append((j + float(boundary_f(pred, true))) / 2)
    return float(np.mean(scores))


def test_export_zip_holds_the_export_and_the_served_masks(studio, demo, monkeypatch, tmp_path):
    client, ws = studio
    assert client.get("/api/export/video").status_code == 404
    run_round(client, demo["frame"], demo["strokes"])
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    response = client.post("/api/export.zip", json={})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["content-disposition"] == f'attachment; filename="{NAME}_export.zip"'
    assert list(spool.iterdir()) == []  # the temporary zip is gone once sent
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert archive.testzip() is None
    names = archive.namelist()
    export = ws.root / "export"  # written in the workspace too
    on_disk = sorted(f"export/{p.relative_to(export).as_posix()}" for p in export.rglob("*") if p.is_file())
    assert names == on_disk
    masks = [f"export/{NAME}/{t:05d}.png" for t in range(12)]
    assert set(masks) | {f"export/{NAME}_overlay.mp4", f"export/{NAME}_rle.json", "export/replay.json",
                         "export/scribbles/001.json"} == set(names)
    np.testing.assert_array_equal(np.stack([read_png(archive.read(m)) for m in masks]), served(client, 12))
    replay = json.loads(archive.read("export/replay.json"))
    assert replay["command"][:3] == ["python", "-m", "atnet_jax.infer"] and "export/scribbles/001.json" in \
        replay["command"]
    video = archive.read(f"export/{NAME}_overlay.mp4")
    assert b"avc1" in video[:4096]
    served_video = client.get("/api/export/video")
    assert served_video.status_code == 200 and served_video.headers["content-type"] == "video/mp4"
    assert served_video.content == video


def test_export_zip_refusals_and_a_failing_encoder(studio, demo, monkeypatch, tmp_path):
    from atnet_jax.io import mp4

    client, ws = studio
    assert client.post("/api/export.zip", content=b"{}").status_code == 415
    assert client.post("/api/export.zip", json={}).status_code == 409  # nothing to export before a round
    run_round(client, demo["frame"], demo["strokes"])
    ws.busy.acquire()
    try:
        response = client.post("/api/export.zip", json={})
        assert response.status_code == 409 and "busy" in response.json()["error"]
    finally:
        ws.busy.release()
    failing = tmp_path / "ffmpeg"
    failing.write_text("#!/bin/sh\necho 'libx264: out of memory' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setattr(mp4, "ffmpeg_exe", lambda: str(failing))
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    response = client.post("/api/export.zip", json={})
    assert response.status_code == 500
    assert response.json()["error"] == ("the H.264 encoder (ffmpeg libx264) failed on shapes_overlay.mp4: "
                                        "libx264: out of memory")
    assert not (ws.root / "export").exists() and list(spool.iterdir()) == []
    assert [p.name for p in ws.root.iterdir() if p.name.startswith(".export")] == []  # no staging folder left


def test_scores_against_numpy_per_frame_and_per_step(studio, demo):
    client, ws = studio
    gt = demo["gt"]
    before = client.get("/api/scores").json()
    assert before["available"] is True and before["frames"] == list(range(12)) and before["objects"] == 2
    assert before["per_frame"] == [0.0] * 12 and before["steps"] == []  # nothing segmented yet: J = F = 0

    means = []
    for frame, strokes in [(demo["frame"], demo["strokes"]),
                           (8, [{"path": [[0.2, 0.2], [0.25, 0.3]], "object_id": 0, "start_time": 0.0,
                                 "end_time": 0.0}])]:
        run_round(client, frame, strokes)
        scores = client.get("/api/scores").json()
        labels = served(client, 12)
        expected = [numpy_jf(labels[t], gt[t], 2) for t in range(12)]
        np.testing.assert_allclose(scores["per_frame"], expected, atol=1e-5)
        assert scores["mean"] == pytest.approx(np.mean(expected), abs=1e-5)
        means.append(scores["mean"])
        assert scores["steps"] == means
    assert means[0] > 0.4
    saved = json.loads((ws.root / "scores.json").read_text())["steps"]
    assert [s[1] for s in saved] == means

    assert client.post("/api/undo", json={}).status_code == 200
    scores = client.get("/api/scores").json()
    assert scores["steps"] == means[:1] and scores["mean"] == pytest.approx(means[0], abs=1e-5)


def test_no_scores_without_ground_truth(demo, tmp_path):
    from atnet_jax.io.frames import write_frame
    from atnet_jax.studio.history import VideoRecord

    folder = tmp_path / "frames"  # the same frames as a plain folder: no ground truth beside them
    for t in range(len(demo["frames"])):
        write_frame(folder / f"{t:05d}.jpg", np.asarray(demo["frames"][t]))
    ws = make_workspace(demo, tmp_path / "ws")
    ws.video = VideoRecord(str(folder), None)
    with TestClient(create_app(ws)) as client:
        assert client.get("/api/scores").json() == {"available": False}
        run_round(client, demo["frame"], demo["strokes"])
        assert client.get("/api/scores").json() == {"available": False}
    assert not (tmp_path / "ws" / "scores.json").exists()


class FakeWorkspace:
    """What :class:`Dataset` needs of a controller: a name, the step lock, close."""

    def __init__(self, name: str) -> None:
        import threading

        self.name = name
        self.busy = threading.Lock()
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_dataset_lists_states_and_switches_sequences(tmp_path):
    from conftest import data_path

    from atnet_jax.errors import ConflictError, NotFoundError, UsageError
    from atnet_jax.io.safe import write_json
    from atnet_jax.studio.dataset import Dataset

    root = tmp_path / "workspaces"
    (root / "tennis" / "export").mkdir(parents=True)  # a sequence with two rounds and an object edit, exported
    steps = [{"kind": "round", "before": [1], "frame": 0}, {"kind": "add_object", "before": [1]},
             {"kind": "round", "before": [1, 2], "frame": 1}]
    write_json(root / "tennis" / "studio.json", {"format": 1, "name": "tennis", "video": {"input": "x"},
                                                 "checkpoint": "w", "objects": [], "steps": steps, "next_uid": 3})
    opened, closed = [], []

    def opener(name, folder):
        assert folder == root / name
        opened.append(name)
        return FakeWorkspace(name)

    dataset = Dataset(data_path("davis_mini"), root, opener, lambda ws: closed.append(ws.name))
    listing = dataset.listing()
    assert [(s["name"], s["frames"], s["state"]) for s in listing["sequences"]] == [
        ("bear", 2, "not started"), ("car-shadow", 40, "not started"), ("tennis", 2, "2 rounds, exported")]
    assert listing["open"] is None

    first = dataset.open("bear")
    assert dataset.open("bear") is first and opened == ["bear"]  # already open: kept
    first.busy.acquire()  # a round of bear runs: no switching
    with pytest.raises(ConflictError, match="round of bear is running"):
        dataset.open("tennis")
    assert dataset.current is first and not first.closed
    first.busy.release()
    second = dataset.open("tennis")
    assert first.closed and closed == ["bear"] and dataset.current is second
    assert dataset.listing()["open"] == "tennis"
    for body, kind in [({"sequence": "../bear"}, NotFoundError), ({"sequence": 3}, UsageError), ([], UsageError),
                       ({"sequence": "bear", "x": 1}, UsageError)]:
        with pytest.raises(kind):
            dataset.check_name(body)
    dataset.close()
    assert second.closed and dataset.current is None


def test_a_davis_root_without_sequence_is_a_dataset(tmp_path):
    from conftest import data_path

    from atnet_jax.studio.__main__ import build_parser, check_args, is_dataset

    root = str(data_path("davis_mini"))
    args = build_parser().parse_args(["--input", root])
    check_args(args)  # no longer a usage error: the start page
    assert is_dataset(args)
    assert not is_dataset(build_parser().parse_args(["--input", root, "--sequence", "bear"]))
    frames = str(data_path("davis_mini", "JPEGImages", "480p", "bear"))
    assert not is_dataset(build_parser().parse_args(["--input", frames]))
    assert not is_dataset(build_parser().parse_args([]))
