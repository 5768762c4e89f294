"""The studio's JSON API with Starlette's test client, over the demo video and the demo weights: rounds streamed
as events, cancel and undo that restore the masks exactly, objects, resume, exports replayed by ``infer``, a table
of bad requests (status, message, unchanged state), the access token and the Host check."""
from __future__ import annotations

import hashlib
import io
import json
import threading
import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", message=".*httpx.*")

from starlette.testclient import TestClient  # noqa: E402

from atnet_jax.io.export import rle_decode, rle_encode  # noqa: E402
from atnet_jax.studio.controller import Controller, binary_entropy  # noqa: E402
from atnet_jax.studio.history import VideoRecord  # noqa: E402

NAME = "shapes"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo video (DAVIS folder), its ground truth, first scribble and the demo weights."""
    from atnet_jax import cli
    from atnet_jax.demo import DEFAULT_CHECKPOINT, write_demo_video
    from atnet_jax.io.davis import DavisFolder
    from atnet_jax.io.scribbles import annotated_frames, load_scribbles

    root = tmp_path_factory.mktemp("studio_demo") / "video"
    scribble_path = write_demo_video(root)
    davis = DavisFolder(root)
    scribbles = load_scribbles(scribble_path)
    frame = annotated_frames(scribbles)[0]
    variables, config = cli.load_checkpoint(DEFAULT_CHECKPOINT)
    return {"root": root, "frames": davis.frames(NAME), "gt": davis.read_masks(NAME), "frame": frame,
            "strokes": scribbles["scribbles"][frame], "variables": variables, "config": config,
            "checkpoint": str(DEFAULT_CHECKPOINT)}


def make_workspace(demo, root, num_objects=2) -> Controller:
    from atnet_jax.inference.session import Session
    from atnet_jax.models.predictor import ATNetPredictor

    session = Session(demo["frames"], ATNetPredictor(demo["variables"], demo["config"]), num_objects)
    session.warmup()
    return Controller(root, session, name=NAME, video=VideoRecord(str(demo["root"]), NAME),
                      checkpoint=demo["checkpoint"], demo_weights=True)


@pytest.fixture
def studio(demo, tmp_path):
    from atnet_jax.studio.app import create_app

    ws = make_workspace(demo, tmp_path / "ws")
    app = create_app(ws)
    with TestClient(app) as client:
        yield client, ws, app.app.state.studio


def read_png(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "P"
        return np.array(image)


def served(client, num_frames: int) -> np.ndarray:
    return np.stack([read_png(client.get(f"/api/masks/{t}").content) for t in range(num_frames)])


def run_round(client, frame: int, strokes: list[dict]) -> list[dict]:
    """Submit a round and read its events up to round_end."""
    response = client.post("/api/rounds", json={"frame": frame, "strokes": strokes})
    assert response.status_code == 202, response.text
    return read_events(client, response.json()["since"])


def read_events(client, since: int) -> list[dict]:
    events = []
    with client.stream("GET", f"/api/events?since={since}&until=round_end") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    return events


def block_model_thread(studio_app) -> threading.Event:
    """Occupy the model thread until the returned event is set, so that a submitted round waits."""
    release = threading.Event()
    studio_app.model_thread.submit(release.wait)
    return release


def click(frame_strokes_object: int, x: float, y: float) -> dict:
    return {"path": [[x, y]], "object_id": frame_strokes_object, "start_time": 0.0, "end_time": 0.0}


def mean_j(labels, gt, k):
    from atnet_jax.interaction.metrics import per_object_scores

    return float(per_object_scores(labels, gt, k, "J").mean())


# ------------------------------------------------------------------------------------------------ rounds


def test_round_streams_annotated_frame_first_then_propagated(studio, demo):
    client, ws, _ = studio
    state = client.get("/api/state").json()
    assert (state["num_frames"], state["height"], state["width"]) == (12, 240, 432)
    assert [o["id"] for o in state["objects"]] == [1, 2] and state["demo_weights"] is True
    assert state["steps"] == [] and state["annotated"] == []
    frame_jpeg = client.get("/api/frames/3")
    assert frame_jpeg.headers["content-type"] == "image/jpeg" and frame_jpeg.content[:2] == b"\xff\xd8"
    assert not served(client, 12).any()

    events = run_round(client, demo["frame"], demo["strokes"])
    kinds = [e["type"] for e in events]
    assert kinds[0] == "round_start" and kinds[-1] == "round_end" and events[-1]["status"] == "done"
    frames = [e for e in events if e["type"] == "frame"]
    assert frames[0]["kind"] == "annotated" and frames[0]["t"] == demo["frame"]
    assert all(e["kind"] == "propagated" for e in frames[1:])
    assert sorted(e["t"] for e in frames) == list(range(12)) and frames[-1]["done"] == events[0]["total"] == 12
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)

    labels = served(client, 12)
    np.testing.assert_array_equal(labels, ws.session.labels)
    assert mean_j(labels[demo["frame"]][None], demo["gt"][demo["frame"]][None], 2) > 0.5
    assert mean_j(labels, demo["gt"], 2) > 0.5
    state = client.get("/api/state").json()
    assert state["annotated"] == [demo["frame"]] and state["rounds"] == 1
    assert state["strokes"][str(demo["frame"])] == demo["strokes"]

    # Saved in the workspace: the step, the round's scribble file, the masks, with normal file modes.
    root = ws.root
    assert (root / "steps" / "0001" / "probabilities.bin").is_file()
    scribbles = json.loads((root / "scribbles" / "001.json").read_text())
    assert scribbles["scribbles"][demo["frame"]] == demo["strokes"] and len(scribbles["scribbles"]) == 12
    from atnet_jax.io.masks import read_mask

    np.testing.assert_array_equal(read_mask(root / "masks" / "00005.png"), labels[5])
    for path in [root / "studio.json", root / "masks" / "00005.png", root / "scribbles" / "001.json"]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~_umask(), path

    # The uncertainty suggestion: the unannotated frame of largest mean binary entropy, computed here in NumPy.
    p = np.clip(ws.session.probabilities.astype(np.float64), 1e-7, 1 - 1e-7)
    entropy = (-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).mean(axis=(1, 2, 3))
    entropy[demo["frame"]] = -1
    assert client.get("/api/suggest").json()["frame"] == int(np.argmax(entropy))


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_second_round_while_one_runs_gets_409_and_cancel_restores_exactly(studio, demo):
    client, ws, app_studio = studio
    run_round(client, demo["frame"], demo["strokes"])
    before, versions = served(client, 12), list(ws.versions)
    probabilities = np.array(ws.session.probabilities)

    release = block_model_thread(app_studio)
    response = client.post("/api/rounds", json={"frame": 6, "strokes": [click(1, 0.5, 0.5)]})
    assert response.status_code == 202
    since = response.json()["since"]
    for path, body in [("/api/rounds", {"frame": 8, "strokes": [click(2, 0.3, 0.3)]}), ("/api/undo", {}),
                       ("/api/objects", {}), ("/api/export", {})]:
        busy = client.post(path, json=body)
        assert busy.status_code == 409 and "a round is running" in busy.json()["error"], path
    assert client.post("/api/cancel", json={}).status_code == 202
    release.set()
    events = read_events(client, since)
    assert events[-1]["type"] == "round_end" and events[-1]["status"] == "cancelled"
    np.testing.assert_array_equal(served(client, 12), before)
    np.testing.assert_array_equal(ws.session.probabilities, probabilities)
    assert all(v >= old for v, old in zip(ws.versions, versions))
    state = client.get("/api/state").json()
    assert state["annotated"] == [demo["frame"]] and state["rounds"] == 1 and state["running"] is None
    assert client.post("/api/cancel", json={}).status_code == 409


def test_undo_back_to_the_start_and_resume(studio, demo, tmp_path):
    client, ws, _ = studio
    masks = [served(client, 12)]
    run_round(client, demo["frame"], demo["strokes"])
    masks.append(served(client, 12))
    run_round(client, 7, [click(2, 0.6, 0.6), click(0, 0.1, 0.1)])
    masks.append(served(client, 12))
    run_round(client, demo["frame"], [click(1, 0.3, 0.7)])  # the same frame again: strokes accumulate
    assert len(client.get("/api/state").json()["strokes"][str(demo["frame"])]) == len(demo["strokes"]) + 1

    # Later rounds store only the frames they changed; undo and resume read the others from earlier steps.
    stored = [json.loads((ws.root / "steps" / f"{i:04d}" / "state.json").read_text())["frames"] for i in (1, 2, 3)]
    assert stored[0] == list(range(12)) and 0 < len(stored[2]) < 12 and 0 not in stored[1]

    # A new server on the same workspace resumes it exactly.
    resumed = make_workspace(demo, ws.root)
    np.testing.assert_array_equal(resumed.session.labels, ws.session.labels)
    assert resumed.session.strokes == ws.session.strokes and resumed.session.annotated == ws.session.annotated
    assert resumed.steps == ws.steps
    resumed.close()

    for expected in reversed(masks):
        response = client.post("/api/undo", json={})
        assert response.status_code == 200, response.text
        np.testing.assert_array_equal(served(client, 12), expected)
    assert client.get("/api/state").json()["steps"] == []
    assert not (ws.root / "scribbles" / "001.json").exists()
    response = client.post("/api/undo", json={})
    assert (response.status_code, response.json()["error"]) == (409, "nothing to undo")


def test_objects_add_rename_recolour_remove_and_undo(studio, demo):
    client, ws, _ = studio
    run_round(client, demo["frame"], demo["strokes"])
    before = served(client, 12)
    response = client.post("/api/objects", json={})
    assert response.status_code == 201 and response.json()["id"] == 3
    np.testing.assert_array_equal(served(client, 12), before)  # the new object starts empty everywhere
    assert ws.session.num_objects == 3

    assert client.patch("/api/objects/3", json={"name": "ball", "colour": "#00FF80"}).json() == {
        "name": "ball", "colour": "#00ff80"}
    from PIL import Image

    with Image.open(io.BytesIO(client.get("/api/masks/0").content)) as image:
        palette = image.getpalette()
        assert palette[9:12] == [0, 255, 128] and image.info["transparency"] == 0

    run_round(client, 4, [click(3, 0.5, 0.5)])
    response = client.delete("/api/objects/1", headers={"content-type": "application/json"})
    assert response.status_code == 200
    state = client.get("/api/state").json()
    assert [o["name"] for o in state["objects"]] == ["object 2", "ball"]
    assert not (served(client, 12) == 3).any()
    client.post("/api/undo", json={})
    assert [o["name"] for o in client.get("/api/state").json()["objects"]] == ["object 1", "object 2", "ball"]
    exported = json.loads((ws.root / "studio.json").read_text())
    assert [o["name"] for o in exported["objects"]] == ["object 1", "object 2", "ball"]
    assert ws.replay_exact()[0] is False


# ------------------------------------------------------------------------------------------------ export


def test_export_replayed_by_infer_gives_the_same_masks_byte_for_byte(studio, demo, tmp_path):
    client, ws, _ = studio
    run_round(client, demo["frame"], demo["strokes"])
    run_round(client, 8, [{"path": [[0.2, 0.2], [0.25, 0.3]], "object_id": 0}, click(2, 0.7, 0.4)])
    run_round(client, demo["frame"], [click(1, 0.4, 0.6)])
    response = client.post("/api/export", json={})
    assert response.status_code == 200
    files = response.json()["files"]
    assert files[:3] == [f"{NAME}/", f"{NAME}_rle.json", f"{NAME}_overlay.mp4"]
    export = ws.root / "export"
    labels = np.asarray(ws.session.labels)

    rle = json.loads((export / f"{NAME}_rle.json").read_text())
    for entry in rle["frames"]:
        for k, obj in entry["objects"].items():
            np.testing.assert_array_equal(rle_decode(obj), labels[entry["frame"]] == int(k))
    import cv2

    video = cv2.VideoCapture(str(export / f"{NAME}_overlay.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 12 and int(video.get(cv2.CAP_PROP_FRAME_WIDTH)) == 432
    video.release()

    replay = json.loads((export / "replay.json").read_text())
    assert replay["exact"] is True
    command = replay["command"]
    assert command[:3] == ["python", "-m", "atnet_jax.infer"]
    args = [a.replace("export/", f"{export}/") for a in command[3:]]
    args[args.index("--output") + 1] = str(tmp_path / "replay")
    from atnet_jax.infer import main as infer_main

    assert infer_main([*args, "--overlay", "none"]) == 0
    for t in range(12):
        ours = (export / NAME / f"{t:05d}.png").read_bytes()
        assert ours == (tmp_path / "replay" / NAME / f"{t:05d}.png").read_bytes(), t


def test_rle_against_hand_computed_runs():
    mask = np.array([[0, 1], [1, 1]], bool)  # column-major: 0, 1, 1, 1
    assert rle_encode(mask) == {"size": [2, 2], "counts": [1, 3]}
    mask = np.array([[1, 0, 0]], bool)
    assert rle_encode(mask)["counts"] == [0, 1, 2]
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = rng.random((7, 9)) > 0.6
        np.testing.assert_array_equal(rle_decode(rle_encode(mask)), mask)
    assert binary_entropy(np.full(4, 0.5)) == pytest.approx(1.0)
    assert binary_entropy(np.array([0.0, 1.0])) < 1e-5


def test_a_round_of_clicks_through_the_api(studio, demo):
    """Clicks are an interaction of their own in the API; they are recorded (and exported) as one-point strokes,
    and give the masks the session API gives for the same clicks."""
    from atnet_jax.inference.session import Session
    from atnet_jax.interaction.kinds import Click, Clicks
    from atnet_jax.models.predictor import ATNetPredictor

    client, ws, _ = studio
    response = client.post("/api/rounds", json={"frame": 5, "clicks": [{"x": 0.3, "y": 0.4, "object_id": 1},
                                                                       {"x": 0.7, "y": 0.6, "object_id": 2}]})
    assert response.status_code == 202, response.text
    events = read_events(client, response.json()["since"])
    assert events[-1]["status"] == "done", events[-1]
    dots = [click(1, 0.3, 0.4), click(2, 0.7, 0.6)]
    assert client.get("/api/state").json()["strokes"] == {"5": dots}
    assert json.loads((ws.root / "scribbles" / "001.json").read_text())["scribbles"][5] == dots
    session = Session(demo["frames"], ATNetPredictor(demo["variables"], demo["config"]), 2)
    session.interact(Clicks(5, [Click(0.3, 0.4, 1), Click(0.7, 0.6, 2)]))
    np.testing.assert_array_equal(served(client, 12), np.asarray(session.labels))
    session.close()


# ------------------------------------------------------------------------------------------ bad requests


def _big_points(n):
    return [[(i % 100) / 100, 0.5] for i in range(n)]


GOOD = {"path": [[0.5, 0.5]], "object_id": 1}
CLICK = {"x": 0.5, "y": 0.5, "object_id": 1}
BAD_REQUESTS = [
    # (method, path, body (dict -> JSON, str -> raw), headers, status, message fragment)
    ("POST", "/api/rounds", {"frame": 12, "strokes": [GOOD]}, None, 404, "frame 12 is outside the video (0..11)"),
    ("POST", "/api/rounds", {"frame": -1, "strokes": [GOOD]}, None, 404, "frame -1 is outside the video"),
    ("POST", "/api/rounds", {"frame": "3", "strokes": [GOOD]}, None, 400, "frame must be an integer"),
    ("POST", "/api/rounds", {"frame": True, "strokes": [GOOD]}, None, 400, "frame must be an integer"),
    ("POST", "/api/rounds", {"frame": 0, "strokes": [{"path": [[0.5, 0.5]], "object_id": 3}]}, None, 400,
     "object_id 3 > number of objects 2"),
    ("POST", "/api/rounds", '{"frame": 0, "strokes": [{"path": [[NaN, 0.5]], "object_id": 1}]}', None, 400,
     "non-finite coordinates"),
    ("POST", "/api/rounds", '{"frame": 0, "strokes": [{"path": [[0.5, 1e999]], "object_id": 1}]}', None, 400,
     "non-finite coordinates"),
    ("POST", "/api/rounds", {"frame": 0, "strokes": [{"path": [[1.5, 0.5]], "object_id": 1}]}, None, 400,
     "outside [0, 1]"),
    ("POST", "/api/rounds", {"frame": 0, "strokes": [{"path": [[0.5]], "object_id": 1}]}, None, 400,
     "expected [x, y] numbers"),
    ("POST", "/api/rounds", {"frame": 0, "strokes": [{"path": _big_points(20_001), "object_id": 1}]}, None, 400,
     "too many points: 20001"),
    ("POST", "/api/rounds", {"frame": 0, "strokes": [GOOD] * 501}, None, 400, "too many strokes: 501"),
    ("POST", "/api/rounds", {"frame": 0, "strokes": []}, None, 400, "'strokes' must be a non-empty list"),
    ("POST", "/api/rounds", {"frame": 0}, None, 400, "a round needs 'frame' and either 'strokes' or 'clicks'"),
    ("POST", "/api/rounds", {"frame": 0, "strokes": [GOOD], "clicks": [CLICK]}, None, 400,
     "either 'strokes' or 'clicks'"),
    ("POST", "/api/rounds", {"frame": 0, "clicks": []}, None, 400, "'clicks' must be a non-empty list"),
    ("POST", "/api/rounds", {"frame": 0, "clicks": [{**CLICK, "x": 1.5}]}, None, 400,
     "click 0: click x must be a number in [0, 1]"),
    ("POST", "/api/rounds", {"frame": 0, "clicks": [{**CLICK, "object_id": 3}]}, None, 400,
     "click 0: object_id 3 does not exist (objects 1..2, 0 = background)"),
    ("POST", "/api/rounds", {"frame": 0, "clicks": [{**CLICK, "object_id": 1.0}]}, None, 400,
     "click 0: object_id must be an integer"),
    ("POST", "/api/rounds", {"frame": 0, "clicks": [{"x": 0.5, "y": 0.5}]}, None, 400,
     "click 0: expected an object with exactly 'x', 'y' and 'object_id'"),
    ("POST", "/api/rounds", {"frame": 0, "strokes": [GOOD], "path": "/etc"}, None, 400, "unknown field(s) 'path'"),
    ("POST", "/api/rounds", [1, 2], None, 400, "expected a JSON object"),
    ("POST", "/api/rounds", '{"frame": 0, "strokes": [', None, 400, "malformed JSON"),
    ("POST", "/api/rounds", "", None, 400, "malformed JSON: the request body is empty"),
    ("POST", "/api/rounds", "x" * ((1 << 20) + 1), None, 413, "request body too large"),
    ("POST", "/api/rounds", {"frame": 0, "strokes": [GOOD]}, {"content-type": "text/plain"}, 415,
     "application/json"),
    ("POST", "/api/undo", "", {"content-type": "application/x-www-form-urlencoded"}, 415, "application/json"),
    ("POST", "/api/undo", {}, None, 409, "nothing to undo"),
    ("POST", "/api/cancel", {}, None, 409, "no round is running"),
    ("GET", "/api/suggest", None, None, 409, "nothing to suggest before the first round"),
    ("GET", "/api/masks/12", None, None, 404, "frame 12 is outside the video"),
    ("GET", "/api/frames/99", None, None, 404, "frame 99 is outside the video"),
    ("GET", "/api/frames/..%2f..%2fetc%2fpasswd", None, None, 404, "no such endpoint"),
    ("GET", "/static/..%2f..%2fworkspace.py", None, None, 404, "no such endpoint"),
    ("GET", "/api/rounds", None, None, 405, "GET is not allowed on /api/rounds"),
    ("PATCH", "/api/objects/3", {"name": "x"}, None, 404, "object 3 does not exist (objects 1..2)"),
    ("PATCH", "/api/objects/1", {"colour": "red"}, None, 400, "colour must be '#rrggbb'"),
    ("PATCH", "/api/objects/1", {"name": ""}, None, 400, "name must be 1..40 printable characters"),
    ("PATCH", "/api/objects/1", {"name": "a\nb"}, None, 400, "name must be 1..40 printable characters"),
    ("PATCH", "/api/objects/1", {"size": 3}, None, 400, "expected a JSON object with 'name' and/or 'colour'"),
    ("DELETE", "/api/objects/0", "", None, 404, "object 0 does not exist"),
]


def _fingerprint(client, ws) -> str:
    state = client.get("/api/state").json()
    digest = hashlib.sha256(json.dumps(state, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(ws.session.probabilities).tobytes())
    for path in sorted(ws.root.rglob("*")):
        digest.update(str(path.relative_to(ws.root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_bad_requests_get_a_4xx_with_a_one_line_message_and_change_nothing(studio):
    client, ws, _ = studio
    before = _fingerprint(client, ws)
    for method, path, body, headers, status, message in BAD_REQUESTS:
        kwargs = {"headers": {"content-type": "application/json", **(headers or {})}}
        if isinstance(body, str):
            kwargs["content"] = body.encode()
        elif body is not None:
            kwargs["content"] = json.dumps(body).encode()
        response = client.request(method, path, **kwargs)
        where = f"{method} {path} {str(body)[:60]}"
        assert response.status_code == status, f"{where}: {response.status_code} {response.text[:200]}"
        error = response.json()["error"]
        assert message in error, f"{where}: {error!r}"
        assert "\n" not in error and len(error) < 200, where
        assert _fingerprint(client, ws) == before, f"{where} changed the state"


def test_only_the_only_object_cannot_be_removed(demo, tmp_path):
    from atnet_jax.studio.app import create_app

    with TestClient(create_app(make_workspace(demo, tmp_path / "ws", num_objects=1))) as client:
        response = client.delete("/api/objects/1", headers={"content-type": "application/json"})
        assert (response.status_code, response.json()["error"]) == (409, "the only object cannot be removed")


# --------------------------------------------------------------------------------------------- security


def test_token_and_host_checks(demo, tmp_path):
    from atnet_jax.studio.app import create_app

    ws = make_workspace(demo, tmp_path / "ws")
    app = create_app(ws, token="s3cret-token", allowed_hosts=["127.0.0.1", "localhost"])
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        for path in ["/", "/api/state", "/api/masks/0", "/static/studio.js", "/api/events"]:
            response = client.get(path)
            assert response.status_code == 401 and "access token" in response.json()["error"], path
        assert client.get("/api/state?token=wrong").status_code == 401
        assert client.get("/api/state", headers={"authorization": "Bearer s3cret-token"}).status_code == 200
        page = client.get("/?token=s3cret-token")
        assert page.status_code == 200 and "studio.js" in page.text
        assert "HttpOnly" in page.headers["set-cookie"] and "SameSite=Strict" in page.headers["set-cookie"]
        assert client.get("/api/state").status_code == 200  # the cookie from the visit above
    with TestClient(app, base_url="http://evil.example:8765") as client:
        response = client.get("/api/state?token=s3cret-token")
        assert response.status_code == 403 and "host 'evil.example' is not allowed" in response.json()["error"]


def test_cli_usage_errors_before_loading_anything(tmp_path, capsys):
    from atnet_jax.studio.__main__ import is_loopback, main

    assert main(["--objects", "0", "--no-browser", "--workspace", str(tmp_path / "w")]) == 2
    assert "--objects: must be at least 1, got 0" in capsys.readouterr().err
    assert main(["--input", str(tmp_path / "missing.mp4"), "--no-browser", "--port", "0"]) == 2
    assert f"--input {tmp_path / 'missing.mp4'} does not exist" in capsys.readouterr().err
    assert main(["--sequence", "bear", "--no-browser", "--port", "0"]) == 2
    assert "--sequence needs --input" in capsys.readouterr().err
    assert main(["--port", "70000"]) == 2
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")


def test_cli_resumes_a_workspace_from_its_record(demo, tmp_path, capsys):
    """``--workspace DIR`` alone reopens DIR's video and weights with its rounds; another video is refused."""
    from atnet_jax import cli
    from atnet_jax.studio.__main__ import build_parser, open_workspace

    ws = make_workspace(demo, tmp_path / "ws")
    live = ws.begin_round(demo["frame"])
    ws.run_round(live, demo["strokes"])
    labels = np.array(ws.session.labels)
    ws.close()

    resumed = open_workspace(build_parser().parse_args(["--workspace", str(ws.root)]))
    assert "resumed, 1 round(s)" in capsys.readouterr().out
    assert resumed.video.infer_args() == ["--input", str(demo["root"]), "--sequence", NAME] and resumed.demo_weights
    np.testing.assert_array_equal(resumed.session.labels, labels)
    assert resumed.session.strokes == {demo["frame"]: demo["strokes"]}
    resumed.close()
    # A workspace written before the video was recorded by name (its infer flags only) opens the same.
    meta_path = ws.root / "studio.json"
    meta = json.loads(meta_path.read_text())
    meta["video"] = {"args": ["--input", str(demo["root"]), "--sequence", NAME], "demo": False, "size": 480,
                     "num_frames": 12, "height": 240, "width": 432}
    meta_path.write_text(json.dumps(meta))
    old = open_workspace(build_parser().parse_args(["--workspace", str(ws.root)]))
    assert (old.video.input, old.video.sequence, old.video.size) == (str(demo["root"]), NAME, 480)
    np.testing.assert_array_equal(old.session.labels, labels)
    old.close()
    capsys.readouterr()

    other = tmp_path / "frames"
    other.mkdir()
    from atnet_jax.io.frames import write_frame

    write_frame(other / "00000.jpg", np.zeros((240, 432, 3), np.uint8))
    with pytest.raises(cli.UsageError, match="holds the rounds of"):
        open_workspace(build_parser().parse_args(["--workspace", str(ws.root), "--input", str(other)]))


def test_a_processing_size_below_the_video_size_serves_masks_at_the_video_size_and_undoes(demo, tmp_path):
    from atnet_jax.inference.session import Session
    from atnet_jax.models.predictor import ATNetPredictor
    from atnet_jax.studio.app import create_app

    predictor = ATNetPredictor(demo["variables"], demo["config"])
    session = Session(demo["frames"], predictor, 2, size=160)  # 240x432 -> 160x288
    assert session.processing_shape == (160, 288)
    ws = Controller(tmp_path / "ws", session, name=NAME, checkpoint=demo["checkpoint"], demo_weights=True,
                    video=VideoRecord(str(demo["root"]), NAME, size=160))
    with TestClient(create_app(ws)) as client:
        run_round(client, demo["frame"], demo["strokes"])
        first = served(client, 12)
        assert first.shape == (12, 240, 432) and first.any()
        run_round(client, 8, [click(1, 0.5, 0.5)])
        assert client.post("/api/undo", json={}).status_code == 200
        np.testing.assert_array_equal(served(client, 12), first)
        assert client.post("/api/export", json={}).status_code == 200
    command = json.loads((ws.root / "export" / "replay.json").read_text())["command"]
    assert command[command.index("--size") + 1] == "160"
    ws.close()
