"""The studio's preview and propagation range through the JSON API, over the demo video and the demo weights:
a preview is A-Net's result on the frame, not propagated and never a step; Run with the same interaction takes it
(A-Net runs once) and gives the masks of a round without preview; a later preview supersedes an earlier one; every
other step drops it exactly; a round limited to one direction or up to a frame updates those frames alone."""
# ruff: noqa: F811 (the fixtures of test_studio, imported, are the tests' arguments)
from __future__ import annotations

import json
import threading
import time
import warnings

import numpy as np
import pytest

warnings.filterwarnings("ignore", message=".*httpx.*")

from test_studio import (  # noqa: E402
    block_model_thread,
    click,
    demo,  # noqa: F401 (a fixture)
    read_events,
    read_png,
    run_round,
    served,
    studio,  # noqa: F401 (a fixture)
)

T = 12  # the demo video's frames


def _count_annotations(ws) -> list[int]:
    """Count A-Net's runs on the workspace's predictor."""
    calls = [0]
    predictor = ws.session.predictor
    annotate = predictor.annotate

    def counted(*args, **kwargs):
        calls[0] += 1
        return annotate(*args, **kwargs)

    predictor.annotate = counted
    return calls


def _steps_on_disk(ws) -> list[str]:
    folder = ws.root / "steps"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def _preview(client, frame: int, strokes: list[dict], **extra) -> dict:
    response = client.post("/api/preview", json={"frame": frame, "strokes": strokes, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def _drop(client):
    return client.request("DELETE", "/api/preview", headers={"content-type": "application/json"})


def _preview_mask(client) -> np.ndarray:
    response = client.get("/api/preview/mask")
    assert response.status_code == 200, response.text
    return read_png(response.content)


def test_a_preview_is_not_a_step_and_run_takes_it_without_running_a_net_again(studio, demo):
    client, ws, _ = studio
    calls = _count_annotations(ws)
    frame, strokes = demo["frame"], demo["strokes"]
    before = served(client, T)
    assert client.get("/api/preview/mask").status_code == 404

    result = _preview(client, frame, strokes)
    assert result["frame"] == frame and result["version"] >= 1 and calls[0] == 1
    assert _preview(client, frame, strokes) == result and calls[0] == 1  # the same interaction again
    preview = _preview_mask(client)
    assert (preview == 1).any() and (preview == 2).any()  # both objects segmented on the frame
    np.testing.assert_array_equal(served(client, T), before)  # the saved masks are served unchanged
    state = client.get("/api/state").json()
    assert state["preview"]["version"] == result["version"] and state["steps"] == [] and state["annotated"] == []
    assert _steps_on_disk(ws) == [] and not (ws.root / "scribbles").exists()

    events = run_round(client, frame, strokes)
    assert calls[0] == 1  # Run took the preview's A-Net result
    assert events[1]["type"] == "frame" and events[1]["t"] == frame and events[-1]["status"] == "done"
    after = served(client, T)
    np.testing.assert_array_equal(after[frame], preview)
    assert all(after[t].any() for t in range(T))  # propagated to every frame
    assert client.get("/api/state").json()["preview"] is None

    # The same round without a preview: A-Net runs, and the masks are the same bit for bit.
    assert client.post("/api/undo", json={}).status_code == 200
    run_round(client, frame, strokes)
    assert calls[0] == 2
    np.testing.assert_array_equal(served(client, T), after)


def test_a_later_preview_supersedes_and_run_with_other_strokes_starts_anew(studio, demo):
    client, ws, app_studio = studio
    calls = _count_annotations(ws)
    frame, strokes = demo["frame"], demo["strokes"]
    first = _preview(client, frame, strokes[:1])
    mask_first = _preview_mask(client)
    second = _preview(client, frame, strokes)  # the whole pending interaction anew
    assert second["version"] > first["version"] and calls[0] == 2
    mask_both = _preview_mask(client)
    assert not np.array_equal(mask_both, mask_first)
    _preview(client, frame, strokes[:1])  # a stroke erased: the preview follows
    np.testing.assert_array_equal(_preview_mask(client), mask_first)

    # Two requests queued behind a busy model thread: the earlier is skipped, A-Net runs for the later only.
    release = block_model_thread(app_studio)
    answers: dict[str, dict] = {}
    waiting = threading.Thread(target=lambda: answers.update(a=_preview(client, frame, strokes)))
    waiting.start()
    deadline = time.monotonic() + 10
    while ws._preview_requests < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    later = threading.Thread(target=lambda: answers.update(b=_preview(client, frame, strokes[1:])))
    later.start()
    while ws._preview_requests < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    waiting.join(30)
    later.join(30)
    assert answers["a"]["superseded"] is True and "superseded" not in answers["b"]
    assert calls[0] == 4

    # Run with other strokes than the preview's: the preview is dropped and A-Net runs on the submitted ones.
    run_round(client, frame, strokes)
    assert calls[0] == 5
    with_preview = served(client, T)
    assert client.post("/api/undo", json={}).status_code == 200
    run_round(client, frame, strokes)
    np.testing.assert_array_equal(served(client, T), with_preview)


def test_preview_during_a_round_is_409_and_every_step_drops_it_exactly(studio, demo):
    client, ws, app_studio = studio
    run_round(client, demo["frame"], demo["strokes"])
    saved = served(client, T)
    probabilities = np.array(ws.session.probabilities)
    labels = np.array(ws.session.labels)

    def unchanged(steps: int) -> None:
        np.testing.assert_array_equal(np.asarray(ws.session.probabilities), probabilities)
        np.testing.assert_array_equal(np.asarray(ws.session.labels), labels)
        np.testing.assert_array_equal(served(client, T), saved)
        assert ws.session.pending is None and len(ws.steps) == steps
        assert len(_steps_on_disk(ws)) == steps + len(ws.redo_stack)  # undone steps stay for redo
        assert client.get("/api/state").json()["preview"] is None

    release = block_model_thread(app_studio)
    response = client.post("/api/rounds", json={"frame": 6, "strokes": [click(1, 0.5, 0.5)]})
    assert response.status_code == 202
    busy = client.post("/api/preview", json={"frame": 6, "strokes": [click(1, 0.5, 0.5)]})
    assert busy.status_code == 409 and "a round is running" in busy.json()["error"]
    assert client.post("/api/cancel", json={}).status_code == 202
    release.set()
    assert read_events(client, response.json()["since"])[-1]["status"] == "cancelled"
    unchanged(1)

    stroke = [click(2, 0.6, 0.6)]
    for drop in ("DELETE", "cancel", "other frame"):
        _preview(client, 7, stroke)
        assert not np.array_equal(np.asarray(ws.session.labels[7]), labels[7])  # the session holds the preview
        np.testing.assert_array_equal(served(client, T), saved)  # ... the page's masks do not
        if drop == "DELETE":
            assert _drop(client).json() == {"dropped": True}
        elif drop == "cancel":
            assert client.post("/api/cancel", json={}).json() == {"dropped": True}
        else:
            _preview(client, 9, stroke)
            np.testing.assert_array_equal(ws.session.labels[7], labels[7])
            assert _drop(client).json() == {"dropped": True}
        unchanged(1)
    assert _drop(client).json() == {"dropped": False}

    _preview(client, 7, stroke)
    assert client.post("/api/export", json={}).status_code == 200
    unchanged(1)
    _preview(client, 7, stroke)
    assert client.post("/api/objects", json={}).status_code == 201  # an object edit drops the preview first
    assert client.get("/api/state").json()["preview"] is None and ws.session.pending is None
    _preview(client, 7, stroke)
    assert client.post("/api/undo", json={}).status_code == 200  # undoes the object, not the preview
    unchanged(1)


def test_a_round_forward_only_or_up_to_a_frame(studio, demo):
    client, ws, _ = studio
    frame = 5
    strokes = [click(1, 0.3, 0.5), click(2, 0.7, 0.5)]
    for body, message in [({"direction": "sideways"}, "direction must be one of"),
                          ({"until": 12}, "outside the video"), ({"until": 2.0}, "until must be an integer"),
                          ({"direction": "forward", "until": 2}, "against direction forward")]:
        response = client.post("/api/rounds", json={"frame": frame, "strokes": strokes, **body})
        assert response.status_code == 400 and message in response.json()["error"], response.text
        assert client.post("/api/preview", json={"frame": frame, "strokes": strokes, **body}).status_code == 400 \
            or "against" in message  # a preview does not propagate: only the fields themselves are checked
    assert ws.steps == [] and client.get("/api/state").json()["running"] is None
    _drop(client)

    response = client.post("/api/rounds", json={"frame": frame, "strokes": strokes, "direction": "forward"})
    assert response.status_code == 202 and response.json()["total"] == T - frame
    events = read_events(client, response.json()["since"])
    assert [e["t"] for e in events if e["type"] == "frame"] == list(range(frame, T))
    masks = served(client, T)
    assert not masks[:frame].any() and all(masks[t].any() for t in range(frame, T))
    step = client.get("/api/state").json()["steps"][-1]
    assert (step["direction"], step["updated"]) == ("forward", list(range(frame, T))) and "until" not in step

    # Up to a frame marked on the timeline, both ways: the backward side stops there.
    before = served(client, T)
    response = client.post("/api/rounds", json={"frame": 9, "strokes": [click(1, 0.4, 0.4)], "until": 7})
    assert response.status_code == 202 and response.json()["total"] == 1 + 2 + 2  # 8, 7 and 10, 11
    events = read_events(client, response.json()["since"])
    assert [e["t"] for e in events if e["type"] == "frame"] == [9, 8, 10, 7, 11]  # the chains alternate
    after = served(client, T)
    np.testing.assert_array_equal(after[: 7], before[: 7])
    assert client.get("/api/state").json()["steps"][-1]["until"] == 7

    assert client.post("/api/export", json={}).status_code == 200
    replay = json.loads((ws.root / "export" / "replay.json").read_text())
    assert replay["exact"] is False and "round(s) 1, 2" in replay["why"] and "limited range" in replay["why"]


@pytest.mark.parametrize("body", [{"frame": 0, "strokes": []}, {"frame": 99, "strokes": [click(1, 0.5, 0.5)]},
                                  {"frame": 0, "clicks": [{"x": 2, "y": 0, "object_id": 1}]}])
def test_a_bad_preview_is_refused_like_a_bad_round(studio, body):
    client, ws, _ = studio
    preview = client.post("/api/preview", json=body)
    round_ = client.post("/api/rounds", json=body)
    assert preview.status_code == round_.status_code and 400 <= preview.status_code < 500
    assert preview.json()["error"] == round_.json()["error"]
    assert ws.session.pending is None and ws.preview is None
