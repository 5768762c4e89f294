"""Simulated training interactions: points, affine deformation, robot scribbles, A-Net input, T-Net sampling."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import distance_transform_edt

from atnet_jax.data.interactions import (
    ROUND1_PREVIOUS_MASK,
    anet_training_input,
    num_points,
    points_to_map,
    random_affine,
    sample_points,
    scribbles_from_error,
    tnet_mini_sequence,
)
from atnet_jax.interaction.scribbles import stroke_pixels

H, W = 60, 90  # non-square, so swapped x / y would show


def rect(h: int, w: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def dist_to(region: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Distance (px) from each (x, y) point, rounded to a pixel, to the nearest pixel of ``region``."""
    dist = distance_transform_edt(~region)
    x = np.clip(np.rint(xy[:, 0]).astype(int), 0, region.shape[1] - 1)
    y = np.clip(np.rint(xy[:, 1]).astype(int), 0, region.shape[0] - 1)
    return dist[y, x]


# ----------------------------------------------------------------------------------------------- points


def test_num_points_rule():
    assert num_points(1000, 100) == 10
    assert num_points(1000, 300) == 4  # ceil(3.33)
    assert num_points(50, 3000) == 1  # a non-empty mask always gets a point
    assert num_points(0, 100) == 0
    assert num_points(3, 0.5) == 3  # never more points than pixels


@pytest.mark.parametrize("per_point", [100, 250, 3000])
def test_points_inside_mask_and_count(per_point):
    mask = ellipse(H, W, 30, 45, 20, 35)
    pts = sample_points(mask, np.random.default_rng(1), pixels_per_point_range=(per_point, per_point))
    assert pts.shape == (num_points(int(mask.sum()), per_point), 2)
    assert pts.shape[0] == max(1, math.ceil(mask.sum() / per_point))
    assert mask[pts[:, 0], pts[:, 1]].all()
    assert len({tuple(p) for p in pts.tolist()}) == len(pts)  # distinct pixels


def test_points_empty_and_tiny_masks():
    rng = np.random.default_rng(0)
    assert sample_points(np.zeros((H, W), bool), rng).shape == (0, 2)
    one = np.zeros((H, W), bool)
    one[7, 11] = True
    assert sample_points(one, rng).tolist() == [[7, 11]]


def test_point_density_spans_the_range():
    mask = rect(220, 220, 10, 210, 10, 210)  # 40000 pixels: 14 (P = 3000) to 400 (P = 100) points
    rng = np.random.default_rng(2)
    counts = np.array([len(sample_points(mask, rng)) for _ in range(200)])
    assert counts.min() >= math.ceil(40000 / 3000) and counts.max() <= 40000 // 100
    implied = 40000 / counts  # pixels per point actually used
    assert (implied < 200).any() and (implied > 1500).any()  # both dense and sparse draws occur
    assert 300 < np.median(implied) < 1000  # log-uniform: median near sqrt(100 * 3000) ~ 548


def test_point_map_peaks_at_points():
    pts = np.array([[10, 10], [30, 60], [50, 85], [0, 0], [59, 89]])
    m = points_to_map(pts, H, W)
    assert m.shape == (H, W) and m.dtype == np.float32
    assert 0 <= m.min() and m.max() <= 1
    for y, x in pts:
        window = m[max(y - 3, 0) : y + 4, max(x - 3, 0) : x + 4]
        assert m[y, x] == pytest.approx(window.max())
        assert m[y, x] > 0.5
    assert m[20, 30] == 0  # far from every point
    np.testing.assert_array_equal(points_to_map(np.zeros((0, 2), int), H, W), np.zeros((H, W), np.float32))


# ----------------------------------------------------------------------------------------------- affine


def test_affine_changes_mask_but_keeps_area_in_scale_bounds():
    h, w = 120, 160
    mask = ellipse(h, w, 60, 80, 18, 28)  # room to move without leaving the image
    area = mask.sum()
    rng = np.random.default_rng(3)
    for _ in range(10):
        out = random_affine(mask, rng, max_rotation=20, scale_range=(0.8, 1.2), max_shift=0.15)
        assert out.shape == mask.shape and out.dtype == bool
        assert (out != mask).sum() > 0.02 * area
        assert 0.8**2 * 0.9 * area <= out.sum() <= 1.2**2 * 1.1 * area


def test_affine_identity_and_empty():
    mask = ellipse(H, W, 30, 45, 15, 25)
    same = random_affine(mask, np.random.default_rng(0), max_rotation=0, scale_range=(1, 1), max_shift=0)
    np.testing.assert_array_equal(same, mask)
    assert not random_affine(np.zeros((H, W), bool), np.random.default_rng(0)).any()


# ----------------------------------------------------------------------------------------------- scribbles


def test_scribbles_inside_error_regions():
    gt = rect(H, W, 15, 45, 20, 70)
    prev = rect(H, W, 15, 45, 35, 85)  # FN: x 20..35, FP: x 70..85
    fn, fp = gt & ~prev, prev & ~gt
    positive, negative = scribbles_from_error(gt, prev, np.random.default_rng(0))
    assert positive and negative
    assert {s["object_id"] for s in positive} == {1} and {s["object_id"] for s in negative} == {0}
    for strokes, region in ((positive, fn), (negative, fp)):
        for s in strokes:
            xy = np.asarray(s["path"]) * [W, H]
            assert np.all((0 <= np.asarray(s["path"])) & (np.asarray(s["path"]) <= 1))
            assert dist_to(region, xy).max() <= 1.5  # Bezier smoothing leaves the pixel grid
            drawn = stroke_pixels(s["path"], H, W)  # as rasterised at inference (1 px up-left)
            assert dist_to(region, drawn.astype(float)).max() <= 2.0


def test_no_scribbles_without_error():
    gt = ellipse(H, W, 30, 45, 15, 25)
    assert scribbles_from_error(gt, gt.copy(), np.random.default_rng(0)) == ([], [])


def test_scribble_subset_capped():
    gt = np.zeros((H, W), bool)
    for x0 in range(5, 85, 16):  # 5 separate missed blobs
        gt[20:40, x0 : x0 + 10] = True
    positive, negative = scribbles_from_error(gt, np.zeros_like(gt), np.random.default_rng(0), max_strokes=2)
    assert 1 <= len(positive) <= 2 and negative == []


# ----------------------------------------------------------------------------------------------- A-Net input


def check_maps(maps):
    assert len(maps) == 3
    for m in maps:
        assert m.shape == (H, W) and m.dtype == np.float32
        assert m.min() >= 0 and m.max() <= 1


def test_anet_round1_form():
    gt = ellipse(H, W, 30, 45, 15, 25)
    prev, pos, neg = maps = anet_training_input(gt, np.random.default_rng(0), round1_probability=1.0)
    check_maps(maps)
    assert np.all(prev == ROUND1_PREVIOUS_MASK)
    assert not neg.any()
    assert pos.max() > 0.5
    assert distance_transform_edt(~gt)[pos > 0].max() <= math.hypot(4, 1)  # 5x5 ellipse + 5x5 blur: 4 px (4, 1)


def test_anet_later_round_form():
    gt = ellipse(H, W, 30, 45, 15, 25)
    rng = np.random.default_rng(0)
    seen_pos = seen_neg = False
    for _ in range(4):
        prev, pos, neg = maps = anet_training_input(gt, rng, round1_probability=0.0)
        check_maps(maps)
        assert set(np.unique(prev)) <= {0.0, 1.0}
        assert not neg[prev == 0].any()  # negatives only where prev is the object
        fn = gt & (prev == 0)
        if pos.any():
            assert distance_transform_edt(~fn)[pos > 0].max() <= 6  # 1 px shift + 5x5 dilation + 5x5 blur
        seen_pos |= bool(pos.any())
        seen_neg |= bool(neg.any())
    assert seen_pos and seen_neg


def test_anet_mixing_ratio():
    gt = rect(20, 30, 5, 15, 5, 25)
    rng = np.random.default_rng(4)
    first = [np.all(anet_training_input(gt, rng, round1_probability=0.3, max_strokes=1)[0] == 0.5) for _ in range(40)]
    assert 4 <= sum(first) <= 22  # expected 12


def test_determinism():
    gt = ellipse(H, W, 30, 45, 15, 25)
    for seed in (0, 1, 2):
        a = anet_training_input(gt, np.random.default_rng(seed))
        b = anet_training_input(gt, np.random.default_rng(seed))
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    points = [sample_points(gt, np.random.default_rng(5)) for _ in range(2)]
    np.testing.assert_array_equal(*points)
    assert tnet_mini_sequence(50, np.random.default_rng(6)) == tnet_mini_sequence(50, np.random.default_rng(6))


# ----------------------------------------------------------------------------------------------- T-Net


@pytest.mark.parametrize("num_frames", [5, 6, 8, 30])
def test_tnet_mini_sequence(num_frames):
    rng = np.random.default_rng(num_frames)
    directions = set()
    for _ in range(100):
        seq = tnet_mini_sequence(num_frames, rng)
        assert len(seq) == 5 and len(set(seq)) == 5
        assert all(0 <= t < num_frames for t in seq)
        annotated, targets = seq[0], np.array(seq[1:])
        offsets = targets - annotated
        assert np.all(offsets > 0) or np.all(offsets < 0)  # one side
        assert np.abs(offsets).max() <= 7
        assert np.all(np.diff(np.abs(offsets)) > 0)  # propagation order: nearest first
        directions.add(int(np.sign(offsets[0])))
    assert directions == {-1, 1}


def test_tnet_mini_sequence_too_short():
    with pytest.raises(ValueError, match="5 frames"):
        tnet_mini_sequence(4, np.random.default_rng(0))
