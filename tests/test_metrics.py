"""J, boundary F and the interactive curve / AUC / @60s against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest

from atnet_jax.evaluation.metrics import auc, metric_at, summary, timeout_curve
from atnet_jax.interaction.metrics import (
    boundary_f,
    boundary_tolerance,
    jaccard,
    per_object_masks,
    per_object_scores,
    seg2bmap,
)


def square(h: int, w: int, y0: int, x0: int, size: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    m[y0:y0 + size, x0:x0 + size] = True
    return m


def rows(h: int, w: int, n: int) -> np.ndarray:
    """Top `n` rows set: its seg2bmap boundary is exactly row n - 1."""
    m = np.zeros((h, w), dtype=bool)
    m[:n] = True
    return m


# --- J ---

def test_jaccard_overlapping_squares():
    a, b = square(20, 20, 0, 0, 10), square(20, 20, 5, 5, 10)
    # |a & b| = 5 * 5 = 25, |a | b| = 100 + 100 - 25 = 175.
    assert jaccard(a, b) == pytest.approx(25 / 175)


def test_jaccard_empty_union_is_one_and_disjoint_is_zero():
    empty = np.zeros((8, 8), dtype=bool)
    assert jaccard(empty, empty) == 1.0
    assert jaccard(square(8, 8, 0, 0, 2), empty) == 0.0
    assert jaccard(square(8, 8, 0, 0, 2), square(8, 8, 4, 4, 2)) == 0.0


def test_jaccard_void_excluded_from_both_counts():
    pred, gt = square(20, 20, 0, 0, 10), square(20, 20, 0, 5, 10)
    void = np.zeros((20, 20), dtype=bool)
    void[:, 10:15] = True  # exactly the GT-only part: 10 rows x 5 columns = 50 pixels
    # Without void: inter 10 * 5 = 50, union 10 * 15 = 150. With void: union 150 - 50 = 100.
    assert jaccard(pred, gt) == pytest.approx(50 / 150)
    assert jaccard(pred, gt, void) == pytest.approx(50 / 100)
    # Everything void -> empty union -> 1.
    assert jaccard(pred, gt, np.ones((20, 20), dtype=bool)) == 1.0


def test_jaccard_batched_shapes_and_broadcast_void():
    rng = np.random.default_rng(0)
    pred = rng.random((3, 2, 12, 16)) > 0.5
    gt = rng.random((3, 2, 12, 16)) > 0.5
    void = rng.random((12, 16)) > 0.8
    out = jaccard(pred, gt, void)
    assert out.shape == (3, 2)
    for t in range(3):
        for k in range(2):
            assert out[t, k] == pytest.approx(float(jaccard(pred[t, k], gt[t, k], void)))


def test_jaccard_symmetric_and_in_range():
    rng = np.random.default_rng(1)
    a = rng.random((10, 9, 11)) > 0.6
    b = rng.random((10, 9, 11)) > 0.4
    ja, jb = jaccard(a, b), jaccard(b, a)
    np.testing.assert_array_equal(ja, jb)
    assert np.all((ja >= 0) & (ja <= 1))
    np.testing.assert_array_equal(jaccard(a, a), np.ones(10))


# --- boundaries and F ---

def test_seg2bmap_square():
    # A 4x4 square at rows/cols 2..5: inside, the right column and bottom row (4 + 4 - 1 = 7 pixels);
    # outside, the column x=1 for y=1..5 and the row y=1 for x=1..5 (5 + 5 - 1 = 9): 16 pixels.
    b = seg2bmap(square(10, 10, 2, 2, 4))
    assert b.sum() == 16
    assert b[2:6, 5].all() and b[5, 2:6].all() and b[1:6, 1].all() and b[1, 1:6].all()
    assert seg2bmap(rows(6, 7, 3)).sum() == 7 and seg2bmap(rows(6, 7, 3))[2].all()


def test_boundary_tolerance_is_ceil_of_diagonal_fraction():
    assert boundary_tolerance(100, 100) == 2  # ceil(0.008 * 141.4) = ceil(1.13)
    assert boundary_tolerance(480, 854) == 8  # ceil(0.008 * 979.6) = ceil(7.84)
    assert boundary_tolerance(100, 100, bound_th=3) == 3  # >= 1: pixels


def test_boundary_f_identical_and_empty_cases():
    m = square(30, 40, 5, 5, 12)
    empty = np.zeros_like(m)
    assert boundary_f(m, m) == 1.0
    assert boundary_f(empty, empty) == 1.0
    assert boundary_f(m, empty) == 0.0
    assert boundary_f(empty, m) == 0.0


def test_boundary_f_shift_within_and_beyond_tolerance():
    gt = rows(100, 100, 10)  # boundary = row 9; tolerance 2 px on a 100x100 image
    assert boundary_f(rows(100, 100, 12), gt) == 1.0  # boundary row 11: 2 px away
    assert boundary_f(rows(100, 100, 13), gt) == 0.0  # row 12: 3 px away, nothing matches
    assert boundary_f(rows(100, 100, 8), gt) == 1.0


def test_boundary_f_partial_match_by_hand():
    gt = rows(100, 100, 10)  # boundary: row 9, 100 px
    pred = np.zeros((100, 100), dtype=bool)
    pred[:10, :50] = True
    pred[:20, 50:] = True
    # pred boundary: row 9 x=0..49 (50), column x=49 y=10..19 (10, left of the step), row 19 x=50..99 (50)
    # -> 110 px. Matches within disk(2) of row 9: row 9 (50) + (10, 49), (11, 49) -> 52, precision 52/110.
    # GT pixels within disk(2) of pred boundary: x=0..49 (50) + (9, 50), (9, 51) -> 52, recall 52/100.
    # F = 2PR / (P + R) = 2 * 52 / (110 + 100).
    assert seg2bmap(pred).sum() == 110
    assert boundary_f(pred, gt) == pytest.approx(104 / 210)
    assert boundary_f(gt, pred) == pytest.approx(104 / 210)  # P and R swap, F symmetric


def test_boundary_f_void_pixels_cut_from_both_masks():
    gt = square(40, 40, 5, 5, 20)
    pred = gt.copy()
    pred[30:38, 5:25] = True  # an extra block below the object...
    assert boundary_f(pred, gt) < 1.0
    void = np.zeros((40, 40), dtype=bool)
    void[30:38, :] = True  # ...entirely void: both boundaries agree again
    assert boundary_f(pred, gt, void) == 1.0


def test_boundary_f_batched_matches_loop_and_range():
    rng = np.random.default_rng(2)
    pred = np.zeros((2, 3, 40, 50), dtype=bool)
    gt = np.zeros_like(pred)
    for t in range(2):
        for k in range(3):
            y, x, s = rng.integers(0, 20, size=3)
            pred[t, k] = square(40, 50, y, x, s + 3)
            gt[t, k] = square(40, 50, y + rng.integers(0, 5), x, s + 3)
    out = boundary_f(pred, gt)
    assert out.shape == (2, 3)
    assert np.all((out >= 0) & (out <= 1))
    for t in range(2):
        for k in range(3):
            assert out[t, k] == pytest.approx(float(boundary_f(pred[t, k], gt[t, k])))


def test_per_object_masks_and_scores():
    labels = np.array([[[0, 1, 2], [255, 1, 0]]])  # [T=1, H=2, W=3]
    masks = per_object_masks(labels, 2)
    assert masks.shape == (1, 2, 2, 3) and masks.dtype == bool
    np.testing.assert_array_equal(masks[0, 0], labels[0] == 1)
    np.testing.assert_array_equal(masks[0, 1], labels[0] == 2)
    gt = np.zeros((2, 20, 20), dtype=np.int64)
    gt[:, 2:8, 2:8] = 1
    gt[:, 10:18, 10:18] = 2
    pred = gt.copy()
    pred[1, 10:18, 10:14] = 0  # object 2 half missing in frame 1: J = 32 / 64
    j = per_object_scores(pred, gt, 2, "J")
    np.testing.assert_allclose(j, [[1, 1], [1, 0.5]])
    jf = per_object_scores(pred, gt, 2, "J_AND_F")
    f = per_object_scores(pred, gt, 2, "F")
    np.testing.assert_allclose(jf, 0.5 * j + 0.5 * f)
    # exclude_void: predicted object pixels on GT void stop counting.
    gt_v = gt.copy()
    gt_v[:, 0:2, :] = 255
    pred_v = gt.copy()
    pred_v[:, 0:2, 2:8] = 1
    assert per_object_scores(pred_v, gt_v, 2, "J")[0, 0] == pytest.approx(36 / 48)
    assert per_object_scores(pred_v, gt_v, 2, "J", exclude_void=True)[0, 0] == 1.0


def test_metrics_on_real_davis_masks():
    from conftest import data_path
    from PIL import Image

    root = data_path("davis_mini", "Annotations", "480p")
    gt = np.array(Image.open(root / "tennis" / "00000.png"))
    masks = per_object_masks(gt, 2)
    assert jaccard(masks, masks).tolist() == [1.0, 1.0]
    assert boundary_f(masks, masks).tolist() == [1.0, 1.0]
    shifted = np.roll(masks, 20, axis=-1)
    assert np.all(jaccard(shifted, masks) < 1) and np.all(boundary_f(shifted, masks) < 1)


# --- curve, AUC, @60s ---

def test_timeout_curve_prepends_zero_and_extends_to_timeout():
    t, m = timeout_curve([10, 25], [0.5, 0.7], max_time=100)
    np.testing.assert_allclose(t, [0, 10, 25, 100])
    np.testing.assert_allclose(m, [0, 0.5, 0.7, 0.7])


def test_auc_and_metric_at_for_a_run_that_ends_early():
    times, metric = [10, 25, 40], [0.5, 0.7, 0.8]  # stopped after 3 rounds, budget 100 s
    # Curve: (0, 0) (10, .5) (25, .7) (40, .8) (100, .8).
    # Trapezoids: 10 * .25 + 15 * .6 + 15 * .75 + 60 * .8 = 2.5 + 9 + 11.25 + 48 = 70.75.
    assert auc(times, metric, max_time=100) == pytest.approx(70.75 / 100)
    assert metric_at(times, metric, 60, max_time=100) == pytest.approx(0.8)  # on the flat extension
    assert metric_at(times, metric, 20) == pytest.approx(0.5 + (10 / 15) * 0.2)
    assert metric_at(times, metric, 5) == pytest.approx(0.25)  # between (0, 0) and (10, .5)


def test_auc_full_budget_and_degenerate_cases():
    times = np.arange(1, 9) * 30.0  # 8 rounds of 30 s = the 240 s budget, constant metric .5
    # 0..30 s rises 0 -> .5 (area 7.5), then 210 s at .5 (105): (7.5 + 105) / 240.
    assert auc(times, np.full(8, 0.5), max_time=240) == pytest.approx(112.5 / 240)
    assert metric_at(times, np.full(8, 0.5), 60, max_time=240) == pytest.approx(0.5)
    assert metric_at([40, 80], [0.6, 0.8], 60) == pytest.approx(0.7)
    assert auc([0, 0], [0.3, 0.4], max_time=0) == 0.0


def _records():
    """Seq A: 1 object, 3 rounds of 10 s. Seq B: 2 objects, round 1 took 50 s, then timed out."""
    recs = []
    for it, j, c in [(1, 0.5, 0.7), (2, 0.7, 0.9), (3, 0.8, 1.0)]:
        recs.append(dict(sequence="A", scribble_idx=1, interaction=it, object_id=1, timing=10.0,
                         jaccard=j, contour=c))
    # Per-frame records of B, object 1: frames J .3 and .5 -> mean .4.
    for j in (0.3, 0.5):
        recs.append(dict(sequence="B", scribble_idx=1, interaction=1, object_id=1, timing=50.0,
                         jaccard=j, contour=0.2))
    recs.append(dict(sequence="B", scribble_idx=1, interaction=1, object_id=2, timing=50.0,
                     jaccard=0.6, contour=0.4))
    return recs


def test_summary_reconstructs_timeouts_by_hand():
    s = summary(_records(), metric="J", max_time=30, max_interactions=3)
    # Entries per round (A1, B1, B2); B's rounds 2-3 repeat round 1 with timing 0.
    # J: r1 (.5 + .4 + .6) / 3 = .5, r2 (.7 + .4 + .6) / 3, r3 (.8 + .4 + .6) / 3 = .6.
    j2 = (0.7 + 0.4 + 0.6) / 3
    # Time per round = mean over samples: r1 (10 + 50) / 2 = 30, r2 (10 + 0) / 2 = 5, r3 5 -> 30, 35, 40.
    # Global timeout = avg objects per sequence (1 + 2) / 2 * 30 s = 45 s.
    np.testing.assert_allclose(s["curve"]["time"], [0, 30, 35, 40, 45])
    np.testing.assert_allclose(s["curve"]["metric"], [0, 0.5, j2, 0.6, 0.6])
    area = 30 * 0.5 / 2 + 5 * (0.5 + j2) / 2 + 5 * (j2 + 0.6) / 2 + 5 * 0.6
    assert s["auc"] == pytest.approx(area / 45)
    assert s["metric_at_threshold"]["threshold"] == 60
    assert s["metric_at_threshold"]["value"] == pytest.approx(0.6)  # past the timeout: last value
    assert s["metric_at_threshold"]["J"] == s["metric_at_threshold"]["value"]
    assert s["curve"]["J"] == s["curve"]["metric"]
    s20 = summary(_records(), metric="J", max_time=30, max_interactions=3, time_threshold=20)
    assert s20["metric_at_threshold"]["value"] == pytest.approx(20 / 30 * 0.5)


def test_summary_j_and_f_and_default_timeout():
    s = summary(_records(), metric="J_AND_F")
    # Round 1, (J + F) / 2 per entry: A (.5 + .7) / 2 = .6, B1 (.4 + .2) / 2 = .3, B2 (.6 + .4) / 2 = .5.
    assert s["curve"]["metric"][1] == pytest.approx((0.6 + 0.3 + 0.5) / 3)
    # No max_time: timeout = rounds seen (3) * longest single round (50 s).
    assert s["curve"]["time"][-1] == pytest.approx(150)
    assert "J_AND_F" in s["metric_at_threshold"]
