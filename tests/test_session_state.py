"""Session state: strokes that accumulate per frame, cancelled rounds, snapshots, objects added and removed."""
from __future__ import annotations

import numpy as np
import pytest

from atnet_jax.errors import ConflictError
from atnet_jax.inference.plan import merge_objects
from atnet_jax.inference.session import Session
from atnet_jax.interaction.kinds import Scribble
from atnet_jax.interaction.scribbles import interaction_maps
from atnet_jax.models.predictor import ATNetPredictor, Predictor

T, H, W = 6, 60, 90


def _video() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (T, H, W, 3), dtype=np.uint8)


def _stroke(object_id: int, y: float, x0: float, x1: float) -> dict:
    return {"path": [[x0, y], [(x0 + x1) / 2, y + 0.02], [x1, y]], "object_id": object_id,
            "start_time": 0.0, "end_time": 1.0}


ROUND1 = [_stroke(1, 0.3, 0.2, 0.4), _stroke(2, 0.7, 0.5, 0.8)]
ROUND2 = [_stroke(1, 0.5, 0.6, 0.7), _stroke(0, 0.1, 0.1, 0.9)]
ROUND3 = [_stroke(2, 0.2, 0.6, 0.9)]


class _AnetSpy(Predictor):
    """A predictor that runs another and records the interaction maps A-Net receives."""

    def __init__(self, inner: Predictor) -> None:
        self.inner, self.warmed, self.logits_stride = inner, inner.warmed, inner.logits_stride
        self.inputs: list[np.ndarray] = []

    def annotate(self, images, interaction):
        self.inputs.append(np.asarray(interaction))
        return self.inner.annotate(images, interaction)

    def encode(self, images):
        return self.inner.encode(images)

    def fuse(self, indicator):
        return self.inner.fuse(indicator)

    def step(self, *args):
        return self.inner.step(*args)

    def probabilities(self, outputs):
        return self.inner.probabilities(outputs)

    def logits(self, outputs):
        return self.inner.logits(outputs)


@pytest.fixture()
def session(tiny_config, tiny_variables):
    s = Session(_video(), ATNetPredictor(tiny_variables, tiny_config), num_objects=2)
    yield s
    s.close()


def test_strokes_accumulate_on_a_frame_scribbled_twice(tiny_config, tiny_variables):
    spy = _AnetSpy(ATNetPredictor(tiny_variables, tiny_config))
    session = Session(_video(), spy, num_objects=2)
    session.interact(2, ROUND1)
    labels_before = session.labels[2].copy()
    session.interact(2, ROUND2)
    assert session.strokes[2] == ROUND1 + ROUND2
    # Round 2's A-Net input holds every stroke placed on frame 2 so far, rasterised together.
    positive, negative = interaction_maps(ROUND1 + ROUND2, H, W, 2, labels_before)
    (top, _), (left, _) = session.pad
    got = spy.inputs[1][:, top : top + H, left : left + W]
    np.testing.assert_array_equal(got[..., 1], positive)
    np.testing.assert_array_equal(got[..., 2], negative)
    only_new, _ = interaction_maps(ROUND2, H, W, 2, labels_before)
    assert not np.array_equal(positive, only_new)  # the test would notice a round that forgot round 1


def test_cancel_restores_the_previous_round_exactly(session, tiny_config, tiny_variables):
    session.interact(1, ROUND1)
    before = session.snapshot()
    first = session.add(Scribble(4, ROUND3))
    updates = session.propagate()
    seen = [(first.frame, first.kind), *((u.frame, u.kind) for u in (next(updates), next(updates)))]
    updates.close()  # stopping between two updates cancels the round
    assert seen[0] == (4, "annotated") and len(seen) == 3  # some frames were written, then undone
    np.testing.assert_array_equal(session.probabilities, before.probabilities)
    assert session.annotated == [1] and session.strokes == before.strokes
    np.testing.assert_array_equal(session.labels, np.asarray(_labels(before.probabilities)))
    # The same round run to the end equals a session that was never cancelled.
    session.interact(4, ROUND3)
    fresh = Session(_video(), ATNetPredictor(tiny_variables, tiny_config), num_objects=2)
    fresh.interact(1, ROUND1)
    fresh.interact(4, ROUND3)
    np.testing.assert_array_equal(session.probabilities, fresh.probabilities)


def _labels(probabilities: np.ndarray) -> np.ndarray:
    return merge_objects(np.moveaxis(probabilities, 1, 0))


def test_restore_of_a_snapshot_gives_the_same_later_rounds(session):
    session.interact(1, ROUND1)
    state = session.snapshot()
    session.interact(4, ROUND3)
    after_two = session.probabilities.copy()
    session.interact(2, ROUND2)
    session.restore(state)
    np.testing.assert_array_equal(session.probabilities, state.probabilities)
    assert session.annotated == [1] and session.strokes == {1: ROUND1}
    session.interact(4, ROUND3)
    np.testing.assert_array_equal(session.probabilities, after_two)


def test_an_added_object_starts_empty_and_can_be_scribbled(session):
    session.interact(1, ROUND1)
    labels, probabilities = session.labels.copy(), session.probabilities.copy()
    assert session.add_object() == 3
    assert session.probabilities.shape == (T, 3, H, W)
    np.testing.assert_array_equal(session.probabilities[:, :2], probabilities)
    assert not session.probabilities[:, 2].any()
    np.testing.assert_array_equal(session.labels, labels)
    session.interact(3, [_stroke(3, 0.5, 0.1, 0.5)])
    assert session.probabilities[3, 2].max() > 0


def test_removing_an_object_drops_its_masks_and_strokes_and_renumbers(session):
    session.interact(1, ROUND1 + ROUND3)
    probabilities = session.probabilities.copy()
    session.remove_object(1)
    assert session.num_objects == 1
    np.testing.assert_array_equal(session.probabilities[:, 0], probabilities[:, 1])
    assert [s["object_id"] for s in session.strokes[1]] == [1, 1]  # object 2's strokes, now object 1
    np.testing.assert_array_equal(session.labels, _labels(session.probabilities))
    with pytest.raises(ConflictError, match="only object"):
        session.remove_object(1)
    with pytest.raises(ValueError, match="does not exist"):
        session.remove_object(2)
    session.interact(3, [_stroke(1, 0.5, 0.1, 0.5)])  # the session still runs rounds


def test_ctrl_c_while_the_undo_log_saves_a_frame_restores_the_session(session, monkeypatch):
    """A KeyboardInterrupt raised inside the undo log's write comes out as itself, and the round is undone
    exactly (a frame listed before its copy was kept made the rollback fail with an AssertionError)."""
    import atnet_jax.inference.undo as undo_module

    session.interact(1, ROUND1)
    before = session.snapshot()
    calls = []

    class InterruptedStore(undo_module.FrameStore):
        def __setitem__(self, t, value):
            calls.append(t)
            if len(calls) == 2:  # the second frame the round replaces: one is saved, then Ctrl-C
                raise KeyboardInterrupt
            super().__setitem__(t, value)

    monkeypatch.setattr(undo_module, "FrameStore", InterruptedStore)
    with pytest.raises(KeyboardInterrupt):
        session.interact(4, ROUND3)
    assert len(calls) == 2
    np.testing.assert_array_equal(session.probabilities, before.probabilities)
    np.testing.assert_array_equal(session.labels, np.asarray(_labels(before.probabilities)))
    assert session.annotated == [1] and session.strokes == before.strokes
