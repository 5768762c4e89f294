"""File-backed per-frame stores: round trips, closing, and a session's files over a round."""
from __future__ import annotations

import gc
import os

import numpy as np
import pytest

from atnet_jax.inference.session import Session
from atnet_jax.inference.store import FrameStore
from atnet_jax.interaction.kinds import Scribble
from atnet_jax.models.predictor import ATNetPredictor


def test_frames_round_trip_and_the_file_goes_at_close(tmp_path):
    store = FrameStore(tmp_path / "p.f32", 4, (2, 3, 5), np.float32)
    assert store.shape == (4, 2, 3, 5) and len(store) == 4 and store.dtype == np.float32
    assert not np.asarray(store).any()  # starts as zeros
    frames = np.random.default_rng(0).random((4, 2, 3, 5)).astype(np.float32)
    for t in (2, 0, 3, 1):
        store[t] = frames[t]
    np.testing.assert_array_equal(np.asarray(store), frames)
    np.testing.assert_array_equal(store[-1], frames[3])
    np.testing.assert_array_equal(store[1, 0], frames[1, 0])
    np.testing.assert_array_equal(store[:, 1], frames[:, 1])
    assert isinstance(store.copy(), np.ndarray) and store.astype(np.float64).dtype == np.float64
    copy = store.copy_to(tmp_path / "q.f32")
    store[0] = np.zeros((2, 3, 5), np.float32)  # the copy is independent
    np.testing.assert_array_equal(copy[0], frames[0])
    with pytest.raises(IndexError):
        store[4]
    with pytest.raises(ValueError, match="shape"):
        store[0] = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(TypeError, match="one frame at a time"):
        store[0:2] = frames[:2]
    store.close()
    assert not (tmp_path / "p.f32").exists() and store.closed
    with pytest.raises(ValueError, match="closed"):
        store[0]
    copy.close()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="resident memory is read from Linux's /proc")
def test_frames_written_and_read_do_not_stay_in_memory(tmp_path):
    """Each access maps one frame and unmaps it: 256 MB written and read back leave resident memory as it was."""
    store = FrameStore(tmp_path / "big.f32", 64, (1024, 1024), np.float32)  # 4 MB frames
    frame = np.ones((1024, 1024), np.float32)
    before = _rss_bytes()
    for t in range(64):
        store[t] = frame * t
    for t in range(64):
        assert store[t][0, 0] == t
    assert _rss_bytes() - before < 64 << 20
    store.close()


def test_temporary_stores_are_removed_when_collected():
    store = FrameStore.temporary(2, (3,), np.uint8)
    folder = store.path.parent
    store[1] = np.array([1, 2, 3], np.uint8)
    assert folder.is_dir()
    del store
    gc.collect()
    assert not folder.exists()


def _video() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (5, 60, 90, 3), dtype=np.uint8)


STROKE = {"path": [[0.3, 0.4], [0.6, 0.5]], "object_id": 1, "start_time": 0.0, "end_time": 1.0}


def test_a_session_keeps_its_results_in_files_that_survive_a_round_and_go_at_close(tiny_config, tiny_variables):
    session = Session(_video(), ATNetPredictor(tiny_variables, tiny_config), num_objects=1)
    workdir = session.workdir
    assert session.probabilities.path.parent == workdir and session.labels.path.parent == workdir
    first = session.add(Scribble(2, [STROKE]))
    seen = {first.frame: first.labels, **{u.frame: u.labels for u in session.propagate()}}
    assert sorted(seen) == list(range(5))
    # What the updates held is final for this round (masks can be written as they come), and it is in the files.
    for t, labels in seen.items():
        np.testing.assert_array_equal(session.labels[t], labels)
    assert session.probabilities.path.stat().st_size == 5 * 60 * 90 * 4
    assert session.labels.path.stat().st_size == 5 * 60 * 90
    state = session.snapshot()
    assert isinstance(state.probabilities, FrameStore) and state.probabilities.path.parent != workdir
    # A cancelled round's undo file is gone afterwards; the results are as before.
    before = np.asarray(session.probabilities)
    session.add(Scribble(4, [STROKE]))
    session.propagate().close()
    np.testing.assert_array_equal(np.asarray(session.probabilities), before)
    assert not (workdir / "undo.f32").exists()
    # Objects added and removed rewrite the store (K changes), frame by frame.
    session.add_object()
    assert session.probabilities.shape == (5, 2, 60, 90) and session.probabilities.path.parent == workdir
    session.remove_object(2)
    np.testing.assert_array_equal(np.asarray(session.probabilities)[:, 0], before[:, 0])
    assert len(list(workdir.glob("probabilities-*"))) == 1  # replaced stores are deleted
    session.close()
    assert not workdir.exists()
    session.close()  # twice is fine
    snapshot_dir = state.probabilities.path.parent
    np.testing.assert_array_equal(np.asarray(state.probabilities), before)  # the snapshot outlives the session
    del state
    gc.collect()
    assert not snapshot_dir.exists()


def test_a_cancelled_first_round_leaves_empty_frames_without_an_undo_file(tiny_config, tiny_variables, monkeypatch):
    created = []
    original = FrameStore.__init__

    def spy(self, path, *args, **kwargs):
        created.append(path.name)
        original(self, path, *args, **kwargs)

    monkeypatch.setattr(FrameStore, "__init__", spy)
    session = Session(_video(), ATNetPredictor(tiny_variables, tiny_config), num_objects=1)
    session.add(Scribble(2, [STROKE]))
    updates = session.propagate()
    next(updates), next(updates)
    updates.close()
    assert "undo.f32" not in created  # the frames held nothing: the undo log only lists them
    assert not np.asarray(session.probabilities).any() and not np.asarray(session.labels).any()
    assert session.annotated == [] and session.pending is None
    session.interact(2, [STROKE])
    fresh = Session(_video(), ATNetPredictor(tiny_variables, tiny_config), num_objects=1)
    fresh.interact(2, [STROKE])
    np.testing.assert_array_equal(np.asarray(session.probabilities), np.asarray(fresh.probabilities))
    session.close()
    fresh.close()
