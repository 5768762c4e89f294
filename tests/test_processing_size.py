"""The processing size: networks at a shorter side of at most N, labels at the video's own size."""
from __future__ import annotations

import argparse
import dataclasses

import cv2
import numpy as np
import pytest
from conftest import data_path

from atnet_jax.inference.plan import merge_objects
from atnet_jax.inference.session import Session
from atnet_jax.models.predictor import ATNetPredictor
from atnet_jax.models.preprocess import parse_processing_size, processing_shape, resize_maps

STROKES = [{"path": [[0.3, 0.4], [0.45, 0.45], [0.6, 0.5]], "object_id": 1, "start_time": 0.0, "end_time": 1.0},
           {"path": [[0.1, 0.9], [0.9, 0.9]], "object_id": 0, "start_time": 1.0, "end_time": 2.0}]


def test_processing_shape_keeps_the_aspect_and_never_enlarges():
    assert processing_shape(1080, 1920) == (480, 853)  # 1920 * 480 / 1080 = 853.3
    assert processing_shape(1920, 1080) == (853, 480)  # portrait
    assert processing_shape(2160, 3840) == (480, 853)
    assert processing_shape(480, 854) == (480, 854)  # DAVIS 480p: unchanged
    assert processing_shape(240, 432) == (240, 432)  # smaller than N: unchanged
    assert processing_shape(1001, 777, 480) == (618, 480)  # odd sides: 1001 * 480 / 777 = 618.4
    assert processing_shape(1000, 1000, 480) == (480, 480)
    assert processing_shape(1080, 1920, None) == (1080, 1920)  # full size
    with pytest.raises(ValueError, match="at least 1"):
        processing_shape(100, 100, 0)


def test_size_flag_parses_numbers_and_full():
    assert parse_processing_size("480") == 480
    assert parse_processing_size("full") is None and parse_processing_size("FULL") is None
    for bad in ("abc", "8", "-480"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_processing_size(bad)
    from atnet_jax.evaluate import build_parser as evaluate_parser
    from atnet_jax.infer import build_parser as infer_parser

    assert infer_parser().parse_args([]).size == 480
    assert infer_parser().parse_args(["--size", "full"]).size is None
    assert evaluate_parser().parse_args(["--input", "d", "--output", "o", "--size", "360"]).size == 360


def _video(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (num_frames, max(height // 8, 2), max(width // 8, 2), 3), dtype=np.uint8)
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_LINEAR) for f in small])


@pytest.mark.parametrize("num_frames,height,width,size,expected", [
    (3, 75, 121, 40, (40, 65)),  # odd sides: 121 * 40 / 75 = 64.5 -> 65
    (3, 121, 75, 40, (65, 40)),  # portrait
    (1, 75, 121, 40, (40, 65)),  # a one-frame video
])
def test_shapes_round_trip(tiny_config, tiny_variables, num_frames, height, width, size, expected):
    session = Session(_video(num_frames, height, width), ATNetPredictor(tiny_variables, tiny_config), num_objects=2,
                      size=size)
    try:
        assert session.processing_shape == expected and session.resized
        session.interact(num_frames // 2, STROKES)
        labels = session.labels
        assert labels.shape == (num_frames, height, width) and labels.dtype == np.uint8
        assert session.probabilities.shape == (num_frames, 2, *expected)
        assert session.video_probabilities(0).shape == (2, height, width)
        for t in range(num_frames):
            assert session.labels[t].shape == (height, width)
            # Labels are the merge of the probabilities upsampled (bilinear) to the video's size.
            np.testing.assert_array_equal(session.labels[t], merge_objects(session.video_probabilities(t)))
        # Interaction maps at the video's size are accepted and shrunk.
        maps = np.zeros((2, height, width), np.float32)
        maps[0, height // 3 : height // 2, width // 3 : width // 2] = 1.0
        session.interact_maps(0, maps, np.zeros_like(maps))
        with pytest.raises(ValueError, match=r"\[K, H, W\]"):
            session.interact_maps(0, maps[:, :-1], maps[:, :-1])
    finally:
        session.close()


def test_a_resized_video_gives_the_small_videos_results_at_its_own_size(tiny_config, tiny_variables):
    """A video enlarged 2x (each pixel repeated) and processed at the small size: area averaging gives back the
    small frames exactly, so the probabilities equal the small video's bit for bit, and the labels are their
    bilinear upsampling, merged."""
    small = _video(4, 60, 90, seed=5)
    large = small.repeat(2, axis=1).repeat(2, axis=2)
    a = Session(small, ATNetPredictor(tiny_variables, tiny_config), num_objects=1)
    b = Session(large, ATNetPredictor(tiny_variables, tiny_config), num_objects=1, size=60)
    try:
        assert b.processing_shape == (60, 90) and not a.resized
        for session in (a, b):
            session.interact(1, STROKES)
            session.interact(3, [{**STROKES[0], "path": [[0.5, 0.2], [0.6, 0.3]]}])
        np.testing.assert_array_equal(np.asarray(b.probabilities), np.asarray(a.probabilities))
        for t in range(4):
            upsampled = cv2.resize(a.probabilities[t][0], (180, 120), interpolation=cv2.INTER_LINEAR)
            np.testing.assert_array_equal(b.video_probabilities(t)[0], upsampled)
            np.testing.assert_array_equal(b.labels[t], merge_objects(upsampled[None]))
        assert np.asarray(b.labels).shape == (4, 120, 180)
        # Labels come from the bilinear upsampling, not from upsampled labels (blocky): a box of probability 1
        # at rows 20..39 of the small map covers rows 41..78 at twice the size (0.75 < 0.8 at rows 40 and 79).
        box = np.zeros((1, 60, 90), np.float32)
        box[0, 20:40, 30:60] = 1.0
        state = b.snapshot()
        probabilities = np.asarray(state.probabilities).copy()
        probabilities[0] = box
        b.restore(dataclasses.replace(state, probabilities=probabilities))
        rows = np.flatnonzero(b.labels[0].any(axis=1))
        assert (rows[0], rows[-1]) == (41, 78)
        np.testing.assert_array_equal(b.labels[0], merge_objects(resize_maps(box, (120, 180))))
    finally:
        a.close()
        b.close()


def test_resize_maps_is_the_identity_at_the_same_size():
    maps = np.random.default_rng(0).random((3, 5, 7)).astype(np.float32)
    assert resize_maps(maps, (5, 7)) is maps
    assert resize_maps(maps, (10, 14), mode="linear").shape == (3, 10, 14)
    np.testing.assert_allclose(resize_maps(np.full((2, 5, 7), 0.3, np.float32), (9, 13)), 0.3, rtol=1e-6)
    # Area averaging undoes a 2x pixel repetition exactly; nearest picks the repeated pixels.
    repeated = maps.repeat(2, axis=1).repeat(2, axis=2)
    np.testing.assert_allclose(resize_maps(repeated, (5, 7), mode="area"), maps, rtol=1e-6)
    np.testing.assert_array_equal(resize_maps(repeated, (5, 7), mode="nearest"), maps)
    many = np.random.default_rng(1).random((600, 4, 6)).astype(np.float32)  # beyond OpenCV's 512 channels
    np.testing.assert_array_equal(resize_maps(many, (2, 3), mode="nearest"), many[:, ::2, ::2])


def test_davis_480p_is_unchanged_bit_for_bit_by_the_default_size(tiny_config, tiny_variables):
    """A real DAVIS 480p sequence: the default processing size leaves it at its size, so rounds give exactly what
    the full-size session gives (no resampling anywhere), and labels are the plain merge of the probabilities."""
    from atnet_jax.io.davis import DavisFolder

    davis = DavisFolder(data_path("davis_mini"))
    source = davis.frames("bear")
    frames = np.stack([source[t] for t in range(min(len(source), 3))])
    assert frames.shape[1:3] == (480, 854)
    default = Session(frames, ATNetPredictor(tiny_variables, tiny_config), num_objects=1)
    full = Session(frames, ATNetPredictor(tiny_variables, tiny_config), num_objects=1, size=None)
    try:
        assert default.processing_shape == (480, 854) and not default.resized
        for session in (default, full):
            session.interact(1, STROKES)
        np.testing.assert_array_equal(np.asarray(default.probabilities), np.asarray(full.probabilities))
        np.testing.assert_array_equal(np.asarray(default.labels), np.asarray(full.labels))
        probabilities = np.asarray(default.probabilities)
        np.testing.assert_array_equal(np.asarray(default.labels), merge_objects(np.moveaxis(probabilities, 1, 0)))
    finally:
        default.close()
        full.close()
