"""Redo and the ``busy`` field over the studio's JSON API: undo then redo gives the same masks, strokes, objects
and scribble files; a new step drops what could be redone; the redo stack survives a restart, or is dropped
whole when a step folder is missing; what holds the workspace is published to every page."""
from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import test_studio as api
from test_studio import click, make_workspace, run_round, served

demo, studio = api.demo, api.studio  # the API tests' fixtures


def _redo(client) -> dict:
    response = client.post("/api/redo", json={})
    assert response.status_code == 200, response.text
    return response.json()


def test_undo_then_redo_restores_each_step_exactly(studio, demo):
    client, ws, _ = studio
    run_round(client, demo["frame"], demo["strokes"])
    after_round = served(client, 12)
    assert client.post("/api/objects", json={}).status_code == 201
    client.patch("/api/objects/3", json={"name": "ball"})
    run_round(client, 7, [click(3, 0.5, 0.5)])
    final, final_state = served(client, 12), client.get("/api/state").json()
    scribbles = sorted(p.name for p in (ws.root / "scribbles").iterdir())
    assert scribbles == ["001.json", "002.json"]

    for _ in range(3):
        assert client.post("/api/undo", json={}).status_code == 200
    assert not served(client, 12).any()
    state = client.get("/api/state").json()
    assert [r["kind"] for r in state["redo"]] == ["round", "add_object", "round"] and state["steps"] == []
    assert not (ws.root / "scribbles" / "001.json").exists()

    assert _redo(client)["redone"]["kind"] == "round"
    np.testing.assert_array_equal(served(client, 12), after_round)
    assert json.loads((ws.root / "scribbles" / "001.json").read_text())["scribbles"][demo["frame"]] == demo["strokes"]
    _redo(client)
    _redo(client)
    np.testing.assert_array_equal(served(client, 12), final)
    state = client.get("/api/state").json()
    for key in ("objects", "steps", "strokes", "annotated", "rounds"):
        assert state[key] == final_state[key], key
    assert state["redo"] == [] and ws.session.num_objects == 3
    assert sorted(p.name for p in (ws.root / "scribbles").iterdir()) == scribbles
    response = client.post("/api/redo", json={})
    assert (response.status_code, response.json()["error"]) == (409, "nothing to redo")


def test_a_new_step_drops_the_redo_stack_and_its_folders(studio, demo):
    client, ws, _ = studio
    run_round(client, demo["frame"], demo["strokes"])
    run_round(client, 7, [click(2, 0.6, 0.6)])
    client.post("/api/undo", json={})
    client.post("/api/undo", json={})
    assert sorted(p.name for p in (ws.root / "steps").iterdir()) == ["0001", "0002"]  # kept for redo
    run_round(client, 3, [click(1, 0.3, 0.7)])
    state = client.get("/api/state").json()
    assert state["redo"] == [] and [s["frame"] for s in state["steps"]] == [3]
    assert sorted(p.name for p in (ws.root / "steps").iterdir()) == ["0001"]
    assert json.loads((ws.root / "steps" / "0001" / "state.json").read_text())["annotated"] == [3]
    assert client.post("/api/redo", json={}).status_code == 409


def test_the_redo_stack_survives_a_restart_or_is_dropped_whole(studio, demo):
    client, ws, _ = studio
    run_round(client, demo["frame"], demo["strokes"])
    done = served(client, 12)
    run_round(client, 7, [click(2, 0.6, 0.6)])
    client.post("/api/undo", json={})
    client.post("/api/undo", json={})

    resumed = make_workspace(demo, ws.root)
    assert [r.step.frame for r in resumed.redo_stack] == [demo["frame"], 7]
    resumed.redo()
    np.testing.assert_array_equal(resumed.session.labels, done)
    resumed.close()

    shutil.rmtree(ws.root / "steps" / "0002")  # a redo step's folder lost: nothing half-redone
    resumed = make_workspace(demo, ws.root)
    assert resumed.redo_stack == [] and len(resumed.steps) == 1
    assert sorted(p.name for p in (ws.root / "steps").iterdir()) == ["0001"]
    resumed.close()


def test_busy_names_the_running_step_to_every_page(studio, demo):
    client, ws, studio_app = studio
    entered, release = threading.Event(), threading.Event()
    original = ws.add_object

    def slow_add() -> int:
        entered.set()
        release.wait(30)
        return original()

    ws.add_object = slow_add
    since = ws.events.last_id
    adding = threading.Thread(target=lambda: client.post("/api/objects", json={}))
    adding.start()
    try:
        assert entered.wait(30)
        assert client.get("/api/state").json()["busy"] == "adding object 3"
        response = client.post("/api/rounds", json={"frame": 0, "strokes": demo["strokes"]})
        assert response.status_code == 409
        assert response.json()["error"] == "the studio is busy adding object 3: try again when it is done"
    finally:
        release.set()
        adding.join(30)
    assert client.get("/api/state").json()["busy"] is None
    busy = [e["busy"] for e in ws.events.between(since, ws.events.last_id) if e["type"] == "busy"]
    assert busy == ["adding object 3", None]
