"""Interactive sessions: propagation order and stopping rule, eq. (6), merge, global averaging, compiles."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from atnet_jax.inference.plan import blend_weight, merge_objects, propagation_plan
from atnet_jax.inference.session import Session
from atnet_jax.models.predictor import ATNetPredictor, Predictor

T, H, W = 7, 60, 90  # reflect-padded to 64 x 96


def test_propagation_plan_round_one_covers_the_video():
    backward, forward = propagation_plan(3, [], T)
    assert backward == [(2, 1.0), (1, 1.0), (0, 1.0)]
    assert forward == [(4, 1.0), (5, 1.0), (6, 1.0)]


def test_propagation_plan_stops_before_annotated_frames_and_weights_eq6():
    backward, forward = propagation_plan(5, [2, 8], 10)
    assert [t for t, _ in backward] == [4, 3] and [t for t, _ in forward] == [6, 7]
    # backward: 0.5 + 0.5 (t - 2) / (5 - 2); forward: 0.5 + 0.5 (8 - t) / (8 - 5)
    np.testing.assert_allclose([a for _, a in backward], [0.5 + 0.5 * 2 / 3, 0.5 + 0.5 * 1 / 3])
    np.testing.assert_allclose([a for _, a in forward], [0.5 + 0.5 * 2 / 3, 0.5 + 0.5 * 1 / 3])
    # Only one side annotated: the other side runs to the end of the video with alpha = 1.
    backward, forward = propagation_plan(1, [4], 6)
    assert backward == [(0, 1.0)] and [t for t, _ in forward] == [2, 3]
    assert blend_weight(4, 4, 1) == 1.0 and blend_weight(1, 4, 1) == 0.5


def test_merge_objects_thresholds_the_argmax():
    probs = np.array([[[0.9, 0.5, 0.85, 0.1]], [[0.95, 0.7, 0.2, 0.81]]])  # [K=2, 1, 4]
    np.testing.assert_array_equal(merge_objects(probs), [[2, 0, 1, 2]])
    # Against np.argmax on random maps with ties (the lower id wins, as argmax).
    rng = np.random.default_rng(0)
    probs = np.round(rng.random((4, 2, 30, 40)).astype(np.float32), 1)
    best = np.argmax(probs, axis=0)
    expected = np.where(np.max(probs, axis=0) > 0.8, best + 1, 0)
    np.testing.assert_array_equal(merge_objects(probs), expected)


def _video(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (T, H, W, 3), dtype=np.uint8)


def _maps(k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pos = np.zeros((k, H, W), np.float32)
    neg = np.zeros((k, H, W), np.float32)
    for i in range(k):
        y, x = rng.integers(10, H - 10), rng.integers(10, W - 10)
        pos[i, y - 3 : y + 3, x - 8 : x + 8] = 1.0
        neg[i, 2:6, 2:30] = 1.0
    return pos, neg


class _Spy(Predictor):
    """A predictor that runs another and records the T-Net steps and encoder batches it was asked for."""

    def __init__(self, inner: Predictor, session_like: Session) -> None:
        self.inner, self.warmed, self.logits_stride = inner, inner.warmed, inner.logits_stride
        (self.top, _), (self.left, _) = session_like.pad
        self.h, self.w = session_like.processing_shape
        self.calls: list[dict] = []
        self.batches: list[int] = []

    def annotate(self, images, interaction):
        return self.inner.annotate(images, interaction)

    def encode(self, images):
        self.batches.append(images.shape[0])
        return self.inner.encode(images)

    def fuse(self, indicator):
        return self.inner.fuse(indicator)

    def step(self, target, annotated_r5, fused, frame_mask, prev_r2, prev_prob):
        out = self.inner.step(target, annotated_r5, fused, frame_mask, prev_r2, prev_prob)
        rows, cols = slice(self.top, self.top + self.h), slice(self.left, self.left + self.w)
        self.calls.append({"frame_mask": np.asarray(frame_mask), "annotated_r5": np.asarray(annotated_r5),
                           "prev_r2": np.asarray(prev_r2),
                           "out": np.asarray(self.probabilities(out))[..., rows, cols, 0]})
        return out

    def probabilities(self, outputs):
        return self.inner.probabilities(outputs)

    def logits(self, outputs):
        return self.inner.logits(outputs)

    @property
    def trace_counts(self):
        return self.inner.trace_counts


def _spied_session(tiny_config, tiny_variables, **kwargs) -> tuple[Session, _Spy]:
    plain = Session(_video()[:1], ATNetPredictor(tiny_variables, tiny_config), num_objects=1)
    spy = _Spy(ATNetPredictor(tiny_variables, tiny_config), plain)
    plain.close()
    return Session(_video(), spy, **kwargs), spy


@pytest.fixture(scope="module")
def two_rounds(tiny_config, tiny_variables):
    session, spy = _spied_session(tiny_config, tiny_variables, num_objects=2)
    traces0 = session.trace_counts
    session.interact_maps(3, *_maps(2, 1))
    round1 = session.probabilities.astype(np.float32).copy()
    traces1 = session.trace_counts
    calls1 = len(spy.calls)
    session.interact_maps(5, *_maps(2, 2))
    return session, spy, calls1, round1, (traces0, traces1, session.trace_counts)


def test_round_one_propagates_to_every_frame(two_rounds):
    session, spy, calls1, round1, _ = two_rounds
    assert calls1 == T - 1
    assert np.all(round1.max(axis=(1, 2, 3)) > 0)  # every frame was written
    assert session.labels.shape == (T, H, W) and session.labels.dtype == np.uint8
    np.testing.assert_array_equal(session.labels, merge_objects(session.probabilities.astype(np.float32)
                                                                .transpose(1, 0, 2, 3)))


def test_second_round_changes_only_the_frames_it_should(two_rounds):
    session, spy, calls1, round1, _ = two_rounds
    after = session.probabilities.astype(np.float32)
    assert session.annotated == [3, 5]
    for t in range(4):  # up to and including the first annotated frame: untouched
        np.testing.assert_array_equal(after[t], round1[t])
    for t in (4, 5, 6):
        assert np.abs(after[t] - round1[t]).max() > 1e-3
    # Round 2 stepped backward to frame 4 only (3 was annotated before), forward to 6.
    assert len(spy.calls) - calls1 == 2


def test_second_round_blends_with_eq6_and_averages_both_annotations(two_rounds):
    session, spy, calls1, round1, _ = two_rounds
    back, fwd = spy.calls[calls1:]
    alpha = 0.5 + 0.5 * (4 - 3) / (5 - 3)
    np.testing.assert_allclose(session.probabilities[4].astype(np.float32),
                               alpha * back["out"] + (1 - alpha) * round1[4], atol=2e-3)
    np.testing.assert_allclose(session.probabilities[6].astype(np.float32), fwd["out"], atol=2e-3)  # alpha = 1
    # The global transfer sees both annotated frames (padded to a fixed count) ...
    np.testing.assert_array_equal(back["frame_mask"], [True, True] + [False] * (len(back["frame_mask"]) - 2))
    np.testing.assert_allclose(back["annotated_r5"][0], session.features.get(3)["r5"])
    np.testing.assert_allclose(back["annotated_r5"][1], session.features.get(5)["r5"])
    # ... and the first step of each direction starts from the annotated frame.
    np.testing.assert_allclose(back["prev_r2"], session.features.get(5)["r2"])
    np.testing.assert_allclose(fwd["prev_r2"], session.features.get(5)["r2"])


def test_one_compile_serves_all_frames_and_rounds(two_rounds):
    session, _, _, _, (traces0, traces1, traces2) = two_rounds
    assert traces2 == traces1  # round 2 compiled nothing new
    assert all(traces1[k] - traces0[k] <= 1 for k in traces1)
    assert session.features.computed == T  # each frame encoded once over both rounds


def test_objects_are_independent_in_round_one(tiny_config, tiny_variables, two_rounds):
    pos, neg = _maps(2, 1)
    single = Session(_video(), ATNetPredictor(tiny_variables, tiny_config), num_objects=1)
    single.interact_maps(3, pos[1:], neg[1:])
    np.testing.assert_allclose(single.probabilities[:, 0].astype(np.float32),
                               two_rounds[3][:, 1], atol=2e-3)


def test_feature_cache_spills_to_disk_with_the_same_results(tiny_config, tiny_variables, two_rounds):
    session = Session(_video(), ATNetPredictor(tiny_variables, tiny_config), num_objects=2, feature_cache_bytes=1)
    session._batch_chains = False  # as the spied session, whose steps run one chain at a time: equal bits
    session.interact_maps(3, *_maps(2, 1))
    assert session.features._disk  # spilled
    np.testing.assert_array_equal(session.probabilities.astype(np.float32), two_rounds[3])
    session.close()


def test_feature_cache_spills_bfloat16_bit_for_bit(tmp_path):
    import jax.numpy as jnp

    from atnet_jax.inference.features import FeatureCache

    rng = np.random.default_rng(0)
    frames = [{"s2": rng.standard_normal((1, 4, 5, 3)).astype(jnp.bfloat16),
               "r5": rng.standard_normal((1, 2, 3)).astype(np.float32)} for _ in range(3)]
    cache = FeatureCache(lambda indices: [frames[t] for t in indices], 1, folder=tmp_path)
    for t in range(3):
        cache.get(t)
    assert len(cache._disk) == 2  # all but the last one
    for t in (1, 0):
        got = cache.get(t)
        assert set(got) == set(frames[t])
        for k, v in frames[t].items():
            assert got[k].dtype == v.dtype and got[k].shape == v.shape
            np.testing.assert_array_equal(got[k].view(np.uint8), v.view(np.uint8))
    assert cache.computed == 3
    cache.close()


def test_bad_interactions_are_rejected(tiny_config, tiny_variables):
    session = Session(_video(), ATNetPredictor(tiny_variables, tiny_config), num_objects=2)
    pos, neg = _maps(2, 1)
    with pytest.raises(ValueError, match="outside the video"):
        session.interact_maps(T, pos, neg)
    with pytest.raises(ValueError, match=r"\[K, H, W\]"):
        session.interact_maps(0, pos[:1], neg[:1])
    with pytest.raises(ValueError, match="num_objects"):
        Session(_video(), ATNetPredictor(tiny_variables, tiny_config), num_objects=0)


def test_warmup_compiles_what_a_round_needs(tiny_config, tiny_variables):
    # a shape no other test uses
    session = Session(_video()[:3], ATNetPredictor(tiny_variables, tiny_config), num_objects=3)
    session.warmup()
    warmed = session.trace_counts
    session.interact_maps(1, *_maps(3, 4))
    assert session.trace_counts == warmed


def _released_range(frame: int, previous: list[int], num_frames: int, proportion: float) -> list[int]:
    """The frames the released evaluation loop re-propagates (its ``get_prop_list``, written out independently):
    nearest annotation on each side, then each bound that has one pulled towards ``frame`` by ``proportion``."""
    others = sorted(set(previous) - {frame})
    lo = max([a + 1 for a in others if a < frame], default=0)
    hi = min([a - 1 for a in others if a > frame], default=num_frames - 1)
    if proportion != 1.0:
        if lo != 0:
            lo = frame - int(float(frame - lo) * proportion + 0.5)
        if hi != num_frames - 1:
            hi = frame + int(float(hi - frame) * proportion + 0.5)
    return [t for t in range(lo, hi + 1) if t != frame]


def test_propagation_plan_leaves_the_frame_next_to_a_distant_annotation_as_the_released_code():
    # 120 frames: round 1 on frame 0, round 2 on frame 60. The gap to frame 0 is 59 frames:
    # int(59 * 0.99 + 0.5) = 58, so round 2 goes back to frame 2 and frame 1 keeps round 1's result.
    backward, forward = propagation_plan(60, [0], 120)
    assert [t for t, _ in backward] == list(range(59, 1, -1))
    assert [t for t, _ in forward] == list(range(61, 120))  # no annotation after: to the end
    # Round 3 on frame 90: frames 61-89 lie between, int(29 * 0.99 + 0.5) = 29, so all of them are updated.
    backward, _ = propagation_plan(90, [0, 60], 120)
    assert [t for t, _ in backward][-1] == 61
    backward, _ = propagation_plan(119, [0, 60, 90], 120)
    assert [t for t, _ in backward] == list(range(118, 90, -1))
    # Gaps of 50 frames or fewer are propagated whole; 51-150 leave one frame, 151-250 two.
    assert [t for t, _ in propagation_plan(51, [0], 60)[0]][-1] == 1
    assert [t for t, _ in propagation_plan(52, [0], 60)[0]][-1] == 2
    assert [t for t, _ in propagation_plan(152, [0], 200)[0]][-1] == 3
    # Forward towards a later annotation, likewise; proportion 1.0 goes up to the annotated frames.
    assert [t for t, _ in propagation_plan(0, [100], 120)[1]][-1] == 98
    assert [t for t, _ in propagation_plan(0, [100], 120, proportion=1.0)[1]][-1] == 99
    assert [t for t, _ in propagation_plan(60, [0], 120, proportion=1.0)[0]][-1] == 1


def test_propagation_plan_equals_the_released_range_on_random_cases():
    rng = np.random.default_rng(0)
    for _ in range(500):
        n = int(rng.integers(1, 400))
        previous = [int(a) for a in rng.integers(0, n, int(rng.integers(0, 5)))]
        frame = int(rng.integers(0, n))
        for proportion in (0.99, 1.0, 0.9):
            backward, forward = propagation_plan(frame, previous, n, proportion)
            assert sorted(t for t, _ in backward + forward) == _released_range(frame, previous, n, proportion)
            assert [t for t, _ in backward] == sorted((t for t, _ in backward), reverse=True)
            assert [t for t, _ in forward] == sorted(t for t, _ in forward)


def test_probabilities_are_float32_so_a_value_just_above_the_threshold_keeps_its_label(tiny_config, tiny_variables):
    session = Session(_video(), ATNetPredictor(tiny_variables, tiny_config), num_objects=1)
    assert session.probabilities.dtype == np.float32
    p = np.full((1, H, W), 0.80003, np.float32)  # float16 would round this to 0.7998 or 0.8
    assert np.float16(0.80003) <= 0.8
    state = session.snapshot()
    probabilities = np.asarray(state.probabilities).copy()
    probabilities[2] = p
    session.restore(dataclasses.replace(state, probabilities=probabilities))
    assert (session.labels[2] == 1).all()
    np.testing.assert_array_equal(session.probabilities[2], p)


def test_round_one_encoder_in_batches_gives_the_same_results(tiny_config, tiny_variables, two_rounds):
    """Accelerators encode several frames per call in round 1; the results are those of one frame per call."""
    session, spy = _spied_session(tiny_config, tiny_variables, num_objects=2, encoder_batch=4)
    session.interact_maps(3, *_maps(2, 1))
    calls = spy.batches
    assert set(calls) == {4} and len(calls) < T  # batches of 4 (the last filled up), fewer calls than frames
    assert session.features.computed == T
    np.testing.assert_allclose(np.asarray(session.probabilities), two_rounds[3], atol=1e-5)
    session.close()
