"""The session API over a stand-in network: add an interaction -> that frame's result; propagate -> a generator of
frame updates; cancelling by stopping it; typed interactions (clicks); results that later rounds leave alone."""
from __future__ import annotations

import numpy as np
import pytest

from atnet_jax.errors import ConflictError, UsageError
from atnet_jax.inference.plan import merge_objects
from atnet_jax.inference.session import FrameUpdate, Session
from atnet_jax.interaction.kinds import ROUND1_PREVIOUS_MASK, Click, Clicks, Scribble
from atnet_jax.interaction.scribbles import interaction_maps
from atnet_jax.models.predictor import Predictor

T, H, W = 8, 32, 48  # padded to 64 x 64: 16 rows top and bottom, 8 columns left and right
DECAY = 0.9


class NumpyPredictor(Predictor):
    """A stand-in network in NumPy whose outputs are easy to compute by hand.

    A-Net: an object's probability is 0.95 where its positive channel exceeds 0.1, else 0.05 (its "indicator" is
    the mean of its channels). Encoder: the frame's mean colour. Step: the previous probability times ``DECAY``.
    It records every call.
    """

    def __init__(self) -> None:
        self.warmed: set = set()
        self.annotations: list[np.ndarray] = []
        self.steps = 0

    def annotate(self, images, interaction):
        interaction = np.asarray(interaction)
        self.annotations.append(interaction.copy())
        prob = np.where(interaction[..., 1:2] > 0.1, 0.95, 0.05).astype(np.float32)
        return prob, interaction.mean(axis=(1, 2), keepdims=True)

    def encode(self, images):
        images = np.asarray(images)
        colour = images.mean(axis=(1, 2), keepdims=True)
        return {"r2": colour, "r5": colour, "r5_fused": colour, "s3": colour, "s2": colour}

    def fuse(self, indicator):
        return np.asarray(indicator)

    def step(self, target, annotated_r5, fused, frame_mask, prev_r2, prev_prob):
        self.steps += 1
        return np.asarray(prev_prob) * DECAY


def _video() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (T, H, W, 3), dtype=np.uint8)


def _stroke(object_id: int, x: float, y: float) -> dict:
    return {"path": [[x - 0.1, y], [x + 0.1, y]], "object_id": object_id, "start_time": 0.0, "end_time": 1.0}


@pytest.fixture()
def session():
    s = Session(_video(), NumpyPredictor(), num_objects=2)
    yield s
    s.close()


def _a_net_probability(session: Session, strokes: list[dict], previous: np.ndarray | None) -> np.ndarray:
    positive, _ = interaction_maps(strokes, H, W, session.num_objects, previous)
    return np.where(positive > 0.1, 0.95, 0.05).astype(np.float32)


def test_a_whole_session_runs_on_a_stand_in_network(session):
    predictor = session.predictor
    strokes = [_stroke(1, 0.3, 0.5), _stroke(2, 0.7, 0.5)]
    first = session.add(Scribble(3, strokes))
    assert isinstance(first, FrameUpdate)
    assert (first.frame, first.kind, first.done, first.total) == (3, "annotated", 1, T)
    expected3 = _a_net_probability(session, strokes, None)
    np.testing.assert_array_equal(session.probabilities[3], expected3)
    np.testing.assert_array_equal(first.labels, merge_objects(expected3))
    # Round 1's A-Net input: the frame's previous mask is 0.5 everywhere, its scribbles, no negatives.
    (top, _), (left, _) = session.pad
    seen = predictor.annotations[0][:, top : top + H, left : left + W]
    assert np.all(seen[..., 0] == ROUND1_PREVIOUS_MASK) and not seen[..., 2].any()
    assert session.pending is not None and session.annotated == []  # annotated once propagation starts

    updates = list(session.propagate())
    assert [u.frame for u in updates] == [2, 4, 1, 5, 0, 6, 7]  # backward and forward, stepped together
    assert [u.done for u in updates] == list(range(2, T + 1)) and {u.kind for u in updates} == {"propagated"}
    for u in updates:  # alpha = 1 in round 1: T-Net's chain from A-Net's map, DECAY per step
        np.testing.assert_allclose(session.probabilities[u.frame], expected3 * DECAY ** abs(u.frame - 3), rtol=1e-6)
        np.testing.assert_array_equal(u.labels, session.labels[u.frame])
    assert session.annotated == [3] and session.strokes == {3: strokes} and session.pending is None
    assert predictor.steps == T - 1 and session.last_round_seconds > 0

    # Round 2 on frame 6: backward to 4 (3 was annotated), forward to 7, blended by eq. (6).
    before = np.asarray(session.probabilities)
    info = session.interact(Scribble(6, [_stroke(1, 0.5, 0.2)]))
    assert info.frame == 6 and info.frames == (6, 5, 7, 4)
    a6 = session.probabilities[6]
    for t in (5, 4):
        alpha = 0.5 + 0.5 * (t - 3) / (6 - 3)
        np.testing.assert_allclose(session.probabilities[t], alpha * a6 * DECAY ** (6 - t) + (1 - alpha) * before[t],
                                   rtol=1e-5)
    np.testing.assert_allclose(session.probabilities[7], a6 * DECAY, rtol=1e-6)  # no annotation after 6: alpha 1
    for t in (0, 1, 2, 3):
        np.testing.assert_array_equal(session.probabilities[t], before[t])


def test_results_handed_out_do_not_change_when_a_later_round_runs(session):
    first = session.add(Scribble(0, [_stroke(1, 0.3, 0.5)]))
    updates = list(session.propagate())
    labels5, probs5 = session.labels[5], session.probabilities[5]
    everything = np.asarray(session.labels)
    kept = (first.labels.copy(), [u.labels.copy() for u in updates], labels5.copy(), probs5.copy(), everything.copy())
    with pytest.raises(ValueError):
        labels5[0, 0] = 7  # read-only
    with pytest.raises(ValueError):
        updates[0].labels[0, 0] = 7
    session.interact(Scribble(5, [_stroke(2, 0.5, 0.5), _stroke(0, 0.3, 0.5)]))
    assert not np.array_equal(np.asarray(session.labels), everything)  # the round changed the session ...
    np.testing.assert_array_equal(first.labels, kept[0])  # ... and nothing handed out before
    for u, old in zip(updates, kept[1]):
        np.testing.assert_array_equal(u.labels, old)
    np.testing.assert_array_equal(labels5, kept[2])
    np.testing.assert_array_equal(probs5, kept[3])
    np.testing.assert_array_equal(everything, kept[4])
    assert session.strokes is not session.strokes and session.annotated is not session.annotated  # copies


def test_clicks_are_an_interaction_of_their_own(session):
    clicks = Clicks(2, [Click(0.25, 0.5, 1), Click(0.75, 0.5, 2), Click(0.9, 0.1, 0)], time=3.0)
    first = session.add(clicks)
    dots = [{"path": [[0.25, 0.5]], "object_id": 1, "start_time": 3.0, "end_time": 3.0},
            {"path": [[0.75, 0.5]], "object_id": 2, "start_time": 3.0, "end_time": 3.0},
            {"path": [[0.9, 0.1]], "object_id": 0, "start_time": 3.0, "end_time": 3.0}]
    positive, _ = interaction_maps(dots, H, W, 2)
    (top, _), (left, _) = session.pad
    np.testing.assert_array_equal(session.predictor.annotations[0][:, top : top + H, left : left + W, 1], positive)
    assert 0.6 < positive[0].max() < 0.75  # a dot: the 5x5 ellipse blurred, as the released code draws one point
    np.testing.assert_array_equal(first.labels, merge_objects(_a_net_probability(session, dots, None)))
    list(session.propagate())
    assert session.strokes == {2: dots}  # recorded as one-point strokes: a scribble file replays them
    with pytest.raises(UsageError, match="in \\[0, 1\\]"):
        Click(1.5, 0.5, 1)
    with pytest.raises(UsageError, match="object id"):
        session.add(Clicks(1, [Click(0.5, 0.5, 3)]))


def test_adding_again_before_propagating_refines_the_frame_and_stopping_cancels(session):
    session.interact(Scribble(1, [_stroke(1, 0.3, 0.5)]))
    before = (np.asarray(session.probabilities), np.asarray(session.labels), session.annotated, session.strokes)
    a = [_stroke(2, 0.6, 0.4)]
    b = [_stroke(2, 0.6, 0.7)]
    session.add(Scribble(5, a))
    session.add(Scribble(5, b))  # a preview refined: A-Net sees both on frame 5
    previous = before[1][5]
    np.testing.assert_array_equal(session.probabilities[5], _a_net_probability(session, a + b, previous))
    with pytest.raises(ConflictError, match="frame 5"):
        session.add(Scribble(6, a))
    with pytest.raises(ConflictError):
        session.snapshot()
    updates = session.propagate()
    next(updates), next(updates)
    updates.close()  # stopped between two updates: the round is undone exactly
    np.testing.assert_array_equal(np.asarray(session.probabilities), before[0])
    np.testing.assert_array_equal(np.asarray(session.labels), before[1])
    assert (session.annotated, session.strokes, session.pending) == (before[2], before[3], None)
    session.add(Scribble(5, a))
    session.cancel()  # a round added and never propagated
    np.testing.assert_array_equal(np.asarray(session.probabilities), before[0])
    with pytest.raises(UsageError, match="nothing to propagate"):
        session.propagate()
    with pytest.raises(UsageError, match="outside the video"):
        session.add(Scribble(T, a))


def test_an_error_in_the_network_mid_round_leaves_the_session_as_before(session):
    session.interact(Scribble(2, [_stroke(1, 0.3, 0.5)]))
    before = np.asarray(session.probabilities)

    class Broken(RuntimeError):
        pass

    def broken_step(*args):
        raise Broken("device lost")

    session.predictor.step = broken_step
    session.add(Scribble(6, [_stroke(2, 0.6, 0.5)]))
    with pytest.raises(Broken):
        list(session.propagate())
    np.testing.assert_array_equal(np.asarray(session.probabilities), before)
    assert session.annotated == [2] and session.pending is None


def test_a_round_limited_to_one_direction_or_up_to_a_frame(session):
    predictor = session.predictor
    strokes = [_stroke(1, 0.3, 0.5)]
    session.add(Scribble(3, strokes))
    expected3 = _a_net_probability(session, strokes, None)
    updates = list(session.propagate("forward"))
    assert [u.frame for u in updates] == [4, 5, 6, 7] and updates[-1].total == 5 and predictor.steps == 4
    for t in (4, 5, 6, 7):  # round 1: alpha 1, T-Net's chain from A-Net's map
        np.testing.assert_allclose(session.probabilities[t], expected3 * DECAY ** (t - 3), rtol=1e-6)
    for t in (0, 1, 2):  # never written: zeros, background
        assert not session.probabilities[t].any() and not session.labels[t].any()
    assert session.annotated == [3] and session.strokes == {3: strokes}

    # Round 2 on frame 6, backward up to frame 5 (inclusive): the whole round would update 5, 4 and 7.
    assert [t for t, _ in session.plan(6).backward] == [5, 4] and [t for t, _ in session.plan(6).forward] == [7]
    before = np.asarray(session.probabilities)
    info = session.interact(Scribble(6, [_stroke(2, 0.5, 0.2)]), direction="backward", until=5)
    assert info.frames == (6, 5)
    a6 = session.probabilities[6]
    alpha = 0.5 + 0.5 * (5 - 3) / (6 - 3)  # eq. (6) as in the whole round
    np.testing.assert_allclose(session.probabilities[5], alpha * a6 * DECAY + (1 - alpha) * before[5], rtol=1e-5)
    for t in (0, 1, 2, 3, 4, 7):
        np.testing.assert_array_equal(session.probabilities[t], before[t])
    assert session.annotated == [3, 6]

    # Both ways, stopped at frame 1 before frame 3 of a fresh session: backward 2, 1; forward to the end.
    session.restore(_empty(session))
    session.add(Scribble(3, strokes))
    assert [u.frame for u in session.propagate(until=1)] == [2, 4, 1, 5, 6, 7]  # the two chains alternate
    assert not session.probabilities[0].any()


def _empty(session: Session):
    from atnet_jax.inference.rounds import SessionState

    return SessionState(np.zeros((T, session.num_objects, H, W), np.float32), [], {}, [])


def test_a_range_that_does_not_fit_is_refused_and_changes_nothing(session):
    session.interact(Scribble(2, [_stroke(1, 0.3, 0.5)]))
    before = np.asarray(session.probabilities)
    calls = len(session.predictor.annotations)
    for kwargs, message in [({"direction": "sideways"}, "direction must be one of"),
                            ({"until": T}, "outside the video"), ({"until": -1}, "outside the video"),
                            ({"until": 1.0}, "must be an integer"), ({"until": True}, "must be an integer"),
                            ({"direction": "forward", "until": 4}, "before frame 5, against direction forward"),
                            ({"direction": "backward", "until": 7}, "after frame 5, against direction backward")]:
        with pytest.raises(UsageError, match=message):
            session.interact(Scribble(5, [_stroke(2, 0.6, 0.5)]), **kwargs)
        assert len(session.predictor.annotations) == calls and session.pending is None  # refused before A-Net
    np.testing.assert_array_equal(np.asarray(session.probabilities), before)
    session.add(Scribble(5, [_stroke(2, 0.6, 0.5)]))
    with pytest.raises(UsageError, match="direction"):
        session.propagate("up")
    assert session.pending is not None and session.pending.total == 5  # still the whole round, not started
    assert [u.frame for u in session.propagate(until=5)] == []  # until the annotated frame: that frame alone
    assert session.annotated == [2, 5]
    np.testing.assert_array_equal(session.probabilities[4], before[4])
