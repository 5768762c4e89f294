"""A round's backward and forward chains stepped as one batch give the one-after-the-other (released) results."""
from __future__ import annotations

import numpy as np
import pytest

from atnet_jax.inference.session import Session
from atnet_jax.models.predictor import ATNetPredictor, Predictor

T, H, W = 9, 40, 56  # reflect-padded to 64 x 64


def _video(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (T, H, W, 3), dtype=np.uint8)


def _maps(k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pos = np.zeros((k, H, W), np.float32)
    neg = np.zeros((k, H, W), np.float32)
    for i in range(k):
        y, x = rng.integers(8, H - 8), rng.integers(10, W - 10)
        pos[i, y - 3 : y + 3, x - 8 : x + 8] = 1.0
        neg[i, 1:4, 2:20] = 1.0
    return pos, neg


def _rounds(predictor: Predictor, video: np.ndarray, k: int, frames: list[int], *, batched: bool
            ) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    session = Session(video, predictor, num_objects=k)
    session._batch_chains = batched
    orders = []
    for r, frame in enumerate(frames):
        session.add_maps(frame, *_maps(k, 10 * r + k))
        orders.append([u.frame for u in session.propagate()])
    probs, labels = session.probabilities.astype(np.float32), np.asarray(session.labels)
    session.close()
    return probs, labels, orders


def _interleaved(plan_backward: list[int], plan_forward: list[int]) -> list[int]:
    out = []
    for i in range(max(len(plan_backward), len(plan_forward))):
        out += [d[i] for d in (plan_backward, plan_forward) if i < len(d)]
    return out


@pytest.mark.parametrize(("k", "frames"), [(1, [4, 0, 8]), (2, [0, 8, 4, 2]), (3, [8, 3, 6])])
def test_batched_chains_match_the_sequential_order(tiny_config, tiny_variables, k, frames):
    video = _video(k)
    predictor = ATNetPredictor(tiny_variables, tiny_config)
    calls = predictor.trace_counts["step_chains"]
    sequential, seq_labels, seq_orders = _rounds(predictor, video, k, frames, batched=False)
    assert predictor.trace_counts["step_chains"] == calls  # the sequential order never batches
    batched, labels, orders = _rounds(predictor, video, k, frames, batched=True)
    assert predictor.trace_counts["step_chains"] - calls <= 1  # one compile for two chains, whatever the round
    np.testing.assert_allclose(batched, sequential, rtol=0, atol=1e-5)
    # Labels change only where a probability sits within float rounding of the 0.8 threshold or of a tie.
    changed = int(np.sum(labels != seq_labels))
    assert changed <= 2, f"{changed} of {labels.size} labels differ"
    for seq, got in zip(seq_orders, orders, strict=True):
        # Same frames, alternating directions: nearest first.
        frame = frames[orders.index(got)]
        back = [t for t in seq if t < frame]
        fwd = [t for t in seq if t > frame]
        assert seq == back + fwd and got == _interleaved(back, fwd)
    assert len(orders[0]) == T - 1


class _Decay(Predictor):
    """A NumPy network: the step multiplies the previous probability by a factor that depends on the target
    frame's mean colour, so that every chain's result depends on its own frames and order."""

    def __init__(self) -> None:
        self.warmed: set = set()
        self.steps = 0

    def annotate(self, images, interaction):
        interaction = np.asarray(interaction)
        return np.where(interaction[..., 1:2] > 0.1, 0.95, 0.05).astype(np.float32), interaction.mean(axis=(1, 2))

    def encode(self, images):
        colour = np.asarray(images).mean(axis=(1, 2, 3), keepdims=True)
        return {"r2": colour, "r5": colour, "r5_fused": colour, "s3": colour, "s2": colour}

    def fuse(self, indicator):
        return np.asarray(indicator)

    def step(self, target, annotated_r5, fused, frame_mask, prev_r2, prev_prob):
        self.steps += 1
        factor = 0.9 + 0.05 * np.tanh(target["r2"] - prev_r2)
        return np.asarray(prev_prob) * factor


def test_the_default_batched_step_loops_over_chains():
    video = _video(7)
    for frames in ([0, 8, 4], [4, 2, 6, 0]):
        sequential, seq_labels, _ = _rounds(_Decay(), video, 2, frames, batched=False)
        predictor = _Decay()
        batched, labels, orders = _rounds(predictor, video, 2, frames, batched=True)
        np.testing.assert_array_equal(batched, sequential)
        np.testing.assert_array_equal(labels, seq_labels)
        assert predictor.steps == sum(len(o) for o in orders)


def test_step_chains_is_step_per_chain(tiny_config, tiny_variables):
    """The jitted batch over chains against separate steps, on random inputs with 2 objects and 3 chains."""
    predictor = ATNetPredictor(tiny_variables, tiny_config)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 64, 64, 3)).astype(np.float32)
    feats = [predictor.encode(images[i : i + 1]) for i in range(4)]
    _, indicator = predictor.annotate(np.repeat(images[:1], 2, axis=0), rng.random((2, 64, 64, 3), np.float32))
    fused = np.stack([np.asarray(predictor.fuse(indicator))] * 2)
    annotated_r5 = np.stack([np.asarray(feats[0]["r5"])] * 2)
    mask = np.array([True, False])
    prev = [rng.random((2, 64, 64, 1), np.float32) for _ in range(3)]
    targets, prev_r2s = feats[1:], [feats[0]["r2"], feats[1]["r2"], feats[2]["r2"]]
    together = predictor.step_chains(targets, annotated_r5, fused, mask, prev_r2s, prev)
    for target, prev_r2, p, out in zip(targets, prev_r2s, prev, together, strict=True):
        alone = predictor.step(target, annotated_r5, fused, mask, prev_r2, p)
        np.testing.assert_allclose(predictor.probabilities(out), predictor.probabilities(alone), atol=1e-5)
        np.testing.assert_allclose(predictor.logits(out), predictor.logits(alone), atol=1e-5)
