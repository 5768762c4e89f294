"""The studio's workspace on disk and its request rules: steps' probabilities stored compressed and read back bit
for bit (after rounds, object edits and undo), workspaces of format 1 still open, mask versions that never go back
across a restart, and the API's answers to nested JSON, non-integer numbers, export before a round and suggest
during a round."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from test_studio import NAME, _fingerprint, block_model_thread, click, make_workspace, read_events, run_round

from atnet_jax.studio.history import decode_frame, encode_frame, select_objects


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo video (DAVIS folder), its first scribble and the demo weights."""
    from atnet_jax import cli
    from atnet_jax.demo import DEFAULT_CHECKPOINT, write_demo_video
    from atnet_jax.io.davis import DavisFolder
    from atnet_jax.io.scribbles import annotated_frames, load_scribbles

    root = tmp_path_factory.mktemp("studio_store") / "video"
    scribbles = load_scribbles(write_demo_video(root))
    frame = annotated_frames(scribbles)[0]
    variables, config = cli.load_checkpoint(DEFAULT_CHECKPOINT)
    return {"root": root, "frames": DavisFolder(root).frames(NAME), "frame": frame,
            "strokes": scribbles["scribbles"][frame], "variables": variables, "config": config,
            "checkpoint": str(DEFAULT_CHECKPOINT)}


def bits(x) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x, np.float32)).view(np.uint32)


def do_round(ws, frame, strokes) -> None:
    live = ws.begin_round(frame)
    ws.run_round(live, strokes)
    assert ws.steps[-1].kind == "round", "the round did not complete"


# ---------------------------------------------------------------------------------------------- the codec


def test_frame_codec_is_exact_to_the_bit_on_odd_values():
    rng = np.random.default_rng(0)
    smooth = np.cumsum(np.cumsum(rng.random((2, 37, 53)), axis=1), axis=2).astype(np.float32)
    odd = rng.random((3, 5, 7)).astype(np.float32)
    odd[0, 0, 0], odd[0, 1, 1], odd[1] = np.nan, -np.inf, 0.0
    odd[2, 2] = np.float32(1e-45)  # subnormal
    for x in (smooth, odd, np.zeros((1, 4, 4), np.float32), -smooth):
        np.testing.assert_array_equal(bits(decode_frame(encode_frame(x), x.shape)), bits(x))
    with pytest.raises(ValueError, match="holds 70 values"):
        decode_frame(encode_frame(smooth[:1, :7, :10]), (1, 7, 11))
    x = rng.random((3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(select_objects(x, [2, -1, 0]), np.stack([x[2], np.zeros((4, 5)), x[0]]))


# ------------------------------------------------------------------------------------- steps on disk, exact


def test_every_step_reads_back_bit_for_bit_after_rounds_object_edits_and_undo(demo, tmp_path):
    ws = make_workspace(demo, tmp_path / "ws")
    snapshots = [np.array(ws.session.probabilities)]
    do_round(ws, demo["frame"], demo["strokes"])
    snapshots.append(np.array(ws.session.probabilities))
    ws.add_object()
    snapshots.append(np.array(ws.session.probabilities))
    do_round(ws, 6, [click(3, 0.5, 0.5), click(1, 0.3, 0.6)])
    snapshots.append(np.array(ws.session.probabilities))
    ws.remove_object(1)
    snapshots.append(np.array(ws.session.probabilities))
    do_round(ws, 9, [click(1, 0.4, 0.4)])
    snapshots.append(np.array(ws.session.probabilities))
    assert [s.shape[1] for s in snapshots] == [2, 2, 3, 3, 2, 2]

    for i in range(1, len(snapshots)):
        np.testing.assert_array_equal(bits(ws.history.read_state(i).probabilities), bits(snapshots[i]), f"step {i}")
    # Object edits store no probabilities: a selection of the previous step's objects.
    steps = ws.root / "steps"
    for i in (2, 4):
        record = json.loads((steps / f"{i:04d}" / "state.json").read_text())
        assert (record["frames"], (steps / f"{i:04d}" / "probabilities.bin").stat().st_size) == ([], 0)
    assert json.loads((steps / "0002" / "state.json").read_text())["objects"] == [0, 1, -1]
    assert json.loads((steps / "0004" / "state.json").read_text())["objects"] == [1, 2]
    # Indicator planes are stored once: adding an object stores the new object's, removing one none.
    for i, new_planes in [(1, 2), (2, 1), (3, 3), (4, 0)]:
        rows = json.loads((steps / f"{i:04d}" / "state.json").read_text())["indicators"]
        assert sum(plane[1] == i for row in rows for plane in row) == new_planes, (i, rows)
    # A round's frames: stored as the network's logits (16x fewer values), compressed losslessly.
    for i in (1, 3, 5):
        record = json.loads((steps / f"{i:04d}" / "state.json").read_text())
        assert sorted(map(int, record["logits"]["rows"])) == record["frames"], i
        raw = len(record["frames"]) * snapshots[i][0].nbytes
        assert (steps / f"{i:04d}" / "probabilities.bin").stat().st_size < raw / 10, i

    # A new server on the workspace resumes the last step exactly; undo goes back through every step exactly.
    resumed = make_workspace(demo, ws.root)
    np.testing.assert_array_equal(bits(resumed.session.probabilities), bits(snapshots[-1]))
    resumed.close()
    for i in range(len(snapshots) - 2, -1, -1):
        ws.undo()
        np.testing.assert_array_equal(bits(ws.session.probabilities), bits(snapshots[i]), f"undo to step {i}")
    assert ws.steps == [] and len(ws.objects) == 2
    ws.close()


def _as_format_1(ws, root) -> None:
    """Rewrite the workspace at ``root`` (a copy of ``ws``'s) as the studio wrote it before compression:
    probabilities.npy of the changed frames (every frame after an object edit, ``"full"``), indicators.npy."""
    meta = json.loads((root / "studio.json").read_text())
    for i, step in enumerate(ws.steps, start=1):
        folder = root / "steps" / f"{i:04d}"
        state = ws.history.read_state(i)
        indicators = np.stack(state.indicators)
        full = step.kind != "round"
        frames = list(range(ws.num_frames)) if full else sorted(step.updated)
        shutil.rmtree(folder)
        folder.mkdir()
        np.save(folder / "probabilities.npy", np.stack([np.asarray(state.probabilities[t]) for t in frames]))
        np.save(folder / "indicators.npy", indicators)
        (folder / "state.json").write_text(json.dumps({
            "annotated": state.annotated, "strokes": {str(t): s for t, s in state.strokes.items()},
            "frames": frames, "full": full}))
    meta["format"] = 1
    del meta["clock"]
    (root / "studio.json").write_text(json.dumps(meta))


def test_a_format_1_workspace_opens_and_continues_in_format_3(demo, tmp_path):
    ws = make_workspace(demo, tmp_path / "ws")
    do_round(ws, demo["frame"], demo["strokes"])
    ws.add_object()
    do_round(ws, 8, [click(3, 0.6, 0.5)])
    expected = [np.array(ws.history.read_state(i).probabilities) for i in (1, 2, 3)]
    old = tmp_path / "old"
    shutil.copytree(ws.root, old)
    _as_format_1(ws, old)
    ws.close()
    assert (old / "steps" / "0003" / "probabilities.npy").is_file()

    reopened = make_workspace(demo, old)
    np.testing.assert_array_equal(bits(reopened.session.probabilities), bits(expected[2]))
    assert [o["uid"] for o in reopened.objects] == [1, 2, 3]
    do_round(reopened, 3, [click(2, 0.5, 0.5)])
    assert json.loads((old / "steps" / "0004" / "state.json").read_text())["format"] == 3
    assert json.loads((old / "studio.json").read_text())["format"] == 3
    for i in (2, 1, 0):  # undo the new step, then the old ones
        reopened.undo()
        np.testing.assert_array_equal(bits(reopened.session.probabilities), bits(expected[i]), f"step {i + 1}")
    reopened.close()


# --------------------------------------------------------------------------------------- mask versions


def test_mask_versions_never_go_back_across_a_restart(demo, tmp_path):
    from starlette.testclient import TestClient

    from atnet_jax.studio.app import create_app

    ws = make_workspace(demo, tmp_path / "ws")
    with TestClient(create_app(ws)) as client:
        run_round(client, demo["frame"], demo["strokes"])
        run_round(client, 8, [click(2, 0.6, 0.4)])
        seen = client.get("/api/state").json()["versions"]
    assert all(v > 0 for v in seen)

    restarted = make_workspace(demo, ws.root)
    with TestClient(create_app(restarted)) as client:
        after = client.get("/api/state").json()["versions"]
        assert min(after) > max(seen), (seen, after)
        response = client.post("/api/undo", json={})
        assert response.status_code == 200
        undone = response.json()["state"]["versions"]
        changed = response.json()["undone"]["updated"]
        assert all(undone[t] > after[t] for t in changed)
        assert all(u >= a for u, a in zip(undone, after))
    assert json.loads((ws.root / "studio.json").read_text())["clock"] >= max(after)


# ---------------------------------------------------------------------------------------- request rules


def _send(client, method, path, body: str | dict | None):
    content = body.encode() if isinstance(body, str) else None if body is None else json.dumps(body).encode()
    return client.request(method, path, content=content, headers={"content-type": "application/json"})


def _refused(client, ws, method, path, body, status, message) -> None:
    before = _fingerprint(client, ws)
    response = _send(client, method, path, body)
    assert response.status_code == status, (path, str(body)[:60], response.status_code, response.text[:200])
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert message in error and "\n" not in error and len(error) < 200, error
    assert _fingerprint(client, ws) == before, f"{method} {path} {str(body)[:60]} changed the state"


@pytest.fixture
def client_ws(demo, tmp_path):
    from starlette.testclient import TestClient

    from atnet_jax.studio.app import create_app

    ws = make_workspace(demo, tmp_path / "ws")
    app = create_app(ws)
    with TestClient(app) as client:
        yield client, ws, app.app.state.studio


def test_deeply_nested_json_is_a_400_with_a_one_line_message(client_ws):
    client, ws, _ = client_ws
    for path in ("/api/rounds", "/api/undo", "/api/export", "/api/objects"):
        _refused(client, ws, "POST", path, "[" * 100_000, 400, "malformed JSON: nested more than 32 levels deep")
    _refused(client, ws, "POST", "/api/rounds", "[" * 500 + "]" * 500, 400, "nested more than 32 levels deep")
    _refused(client, ws, "PATCH", "/api/objects/1", '{"name": ' + "[" * 100_000, 400, "malformed JSON")
    deep = {"frame": 0, "strokes": [{"path": [[0.5, 0.5]], "object_id": 1, "extra": [[[[[[[[[[[[[[[[[[[[[[[[[[[[
        [[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}]}
    _refused(client, ws, "POST", "/api/rounds", deep, 400, "nested more than 32 levels deep")


GOOD = {"path": [[0.5, 0.5]], "object_id": 1}
INTEGER_FIELDS = [
    # (body, the field as the message names it)
    ({"frame": 2.0, "strokes": [{"path": [[0.5, 0.5]], "object_id": 1}]}, "frame"),
    ({"frame": "2", "strokes": [{"path": [[0.5, 0.5]], "object_id": 1}]}, "frame"),
    ({"frame": True, "strokes": [{"path": [[0.5, 0.5]], "object_id": 1}]}, "frame"),
    ({"frame": 2.5, "strokes": [{"path": [[0.5, 0.5]], "object_id": 1}]}, "frame"),
    ({"frame": [2], "strokes": [{"path": [[0.5, 0.5]], "object_id": 1}]}, "frame"),
    ({"frame": 2, "strokes": [{"path": [[0.5, 0.5]], "object_id": 1.0}]}, "stroke 0: object_id"),
    ({"frame": 2, "strokes": [GOOD, {"path": [[0.5, 0.5]], "object_id": True}]}, "stroke 1: object_id"),
    ({"frame": 2, "strokes": [GOOD, {"path": [[0.5, 0.5]], "object_id": "1"}]}, "stroke 1: object_id"),
    ({"frame": 2, "clicks": [{"x": 0.5, "y": 0.5, "object_id": 1.0}]}, "click 0: object_id"),
    ({"frame": 2, "clicks": [{"x": 0.5, "y": 0.5, "object_id": False}]}, "click 0: object_id"),
    ({"frame": 2.0, "clicks": [{"x": 0.5, "y": 0.5, "object_id": 1}]}, "frame"),
]


def test_one_rule_for_every_integer_field(client_ws):
    """A JSON integer and nothing else: ``2`` is a frame, ``2.0``, ``"2"``, ``true`` are not, in every field."""
    client, ws, _ = client_ws
    for body, field in INTEGER_FIELDS:
        _refused(client, ws, "POST", "/api/rounds", body, 400, f"{field} must be an integer, got ")
    _refused(client, ws, "POST", "/api/rounds", '{"frame": 2e0, "strokes": [{"path": [[0.5, 0.5]], "object_id": 1}]}',
             400, "frame must be an integer, got 2.0")
    # The same fields as integers start rounds.
    for body in ({"frame": 2, "strokes": [GOOD]}, {"frame": 3, "clicks": [{"x": 0.5, "y": 0.5, "object_id": 1}]}):
        response = _send(client, "POST", "/api/rounds", body)
        assert response.status_code == 202, response.text
        assert read_events(client, response.json()["since"])[-1]["status"] == "done"


def test_export_before_any_round_is_refused(client_ws):
    client, ws, _ = client_ws
    _refused(client, ws, "POST", "/api/export", {}, 409, "nothing to export yet: run a round first")
    assert client.post("/api/objects", json={}).status_code == 201  # an object edit is not a round
    _refused(client, ws, "POST", "/api/export", {}, 409, "nothing to export yet: run a round first")
    assert not (ws.root / "export").exists()
    run_round(client, 2, [GOOD])
    response = client.post("/api/export", json={})
    assert response.status_code == 200
    replay = json.loads((ws.root / "export" / "replay.json").read_text())
    assert replay["command"].count("--scribbles") == 1 and "export/scribbles/001.json" in replay["command"]


def test_suggest_while_a_round_runs_is_a_409(client_ws):
    client, ws, app_studio = client_ws
    run_round(client, 2, [GOOD])
    expected = client.get("/api/suggest").json()
    release = block_model_thread(app_studio)
    response = client.post("/api/rounds", json={"frame": 7, "strokes": [click(2, 0.5, 0.5)]})
    assert response.status_code == 202
    busy = client.get("/api/suggest")
    assert busy.status_code == 409 and "a round is running" in busy.json()["error"]
    release.set()
    events = read_events(client, response.json()["since"])
    assert events[-1]["status"] == "done"
    after = client.get("/api/suggest")
    assert after.status_code == 200 and after.json()["entropies"] != expected["entropies"]


# ------------------------------------------------------------------------------------ rounds stored as logits


def _round_logits(prev: np.ndarray, alphas: dict[int, float], rng, *, crc_of=None):
    """A hand-made round over ``prev [T, K, h, w]``: random logits at 1/4 of a padded frame, the frames' new
    probabilities as a session computes them, and the record a session hands the history."""
    from atnet_jax.inference.plan import blend
    from atnet_jax.inference.rounds import RoundLogits, frame_crc
    from atnet_jax.inference.store import FrameStore
    from atnet_jax.models.expand import expand_logits

    num_frames, k, h, w = prev.shape
    window = (2, 3, h, w)
    record = RoundLogits(4, window, FrameStore.temporary(num_frames, (k, (h + 4) // 4, (w + 6) // 4), np.float32))
    out = prev.copy()
    for t, alpha in alphas.items():
        logits = rng.normal(0, 5, record.logits.frame_shape).astype(np.float32)
        record.logits[t] = logits
        record.alphas[t] = alpha
        if alpha < 1:
            record.before_crc[t] = (crc_of or frame_crc)(prev[t])
        out[t] = blend(expand_logits(logits, 4, window), prev[t], alpha)
    return record, out


def test_a_round_is_stored_as_its_logits_and_recomputed_to_the_bit(tmp_path, monkeypatch):
    from atnet_jax.errors import InputError
    from atnet_jax.inference.rounds import SessionState
    from atnet_jax.studio import history as history_module
    from atnet_jax.studio.history import History

    monkeypatch.setattr(history_module, "MAX_CHAIN", 2)
    rng = np.random.default_rng(0)
    history = History(tmp_path / "ws", 6, (22, 30))
    states = [np.zeros((6, 2, 22, 30), np.float32)]

    def step(alphas, **kwargs):
        record, out = _round_logits(states[-1], alphas, rng, **kwargs)
        history.write_state(len(states), SessionState(out, [], {}, []), 2, sorted(alphas), logits=record)
        states.append(out)
        return json.loads((history.step_dir(len(states) - 1) / "state.json").read_text())

    first = step(dict.fromkeys(range(6), 1.0))  # round 1: nothing to blend with
    assert first["logits"]["rows"] == {str(t): [1.0, 0] for t in range(6)}
    raw = 6 * states[1][0].nbytes
    assert (history.step_dir(1) / "probabilities.bin").stat().st_size < raw / 10
    second = step({2: 0.75, 3: 0.6, 4: 1.0})
    assert second["logits"]["rows"] == {"2": [0.75, 1], "3": [0.6, 1], "4": [1.0, 0]}
    # A frame whose previous probabilities the session saw differently is stored whole.
    third = step({1: 0.9, 2: 0.8}, crc_of=lambda frame: 12345)
    assert "logits" not in third and third["frames"] == [1, 2]
    # More than MAX_CHAIN steps in a row that need the frame before: the frame is stored whole.
    fourth = step({2: 0.7, 3: 0.7})
    assert fourth["logits"]["rows"] == {"2": [0.7, 1], "3": [0.7, 2]}
    fifth = step({3: 0.9, 4: 0.5})
    assert fifth["logits"]["rows"] == {"4": [0.5, 1]} and fifth["frames"] == [3, 4]
    # After an object edit (a selection of the previous step's objects) the chain goes on through it.
    history.write_state(6, SessionState(states[-1][:, ::-1].copy(), [], {}, []), 2, [], objects=[1, 0])
    states.append(states[-1][:, ::-1].copy())
    sixth = step({4: 0.6, 5: 0.6})
    assert sixth["logits"]["rows"] == {"4": [0.6, 2], "5": [0.6, 1]}

    for i in range(1, len(states)):
        np.testing.assert_array_equal(bits(history.read_state(i).probabilities), bits(states[i]), f"step {i}")
    # A recomputed frame is checked against the CRC-32 of the probabilities it stood for.
    path = history.step_dir(7) / "state.json"
    record = json.loads(path.read_text())
    record["chunks"][0][2] ^= 1
    path.write_text(json.dumps(record))
    with pytest.raises(InputError, match="0007.*frame 4 of step 7 does not recompute"):
        history.read_state(7)


def test_a_format_2_step_still_opens(tmp_path):
    from atnet_jax.inference.rounds import SessionState
    from atnet_jax.studio.history import History

    rng = np.random.default_rng(1)
    history = History(tmp_path / "ws", 3, (10, 12))
    probabilities = rng.random((3, 1, 10, 12)).astype(np.float32)
    history.write_state(1, SessionState(probabilities, [0], {}, []), 1, None)
    path = history.step_dir(1) / "state.json"
    record = json.loads(path.read_text())
    record["format"], record["chunks"] = 2, [chunk[:2] for chunk in record["chunks"]]  # as format 2 wrote it
    path.write_text(json.dumps(record))
    np.testing.assert_array_equal(bits(history.read_state(1).probabilities), bits(probabilities))
    record, out = _round_logits(probabilities, {1: 0.5}, rng)
    history.write_state(2, SessionState(out, [0, 2], {}, []), 1, [1], logits=record)
    assert json.loads((history.step_dir(2) / "state.json").read_text())["logits"]["rows"] == {"1": [0.5, 1]}
    np.testing.assert_array_equal(bits(history.read_state(2).probabilities), bits(out))
