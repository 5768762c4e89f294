"""Scribble JSON validation and I/O, Bresenham lines, rasterising, the negative-map rule, clicks, real files."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from conftest import data_path

from atnet_jax.interaction.scribbles import (
    bresenham,
    clicks_to_strokes,
    interaction_maps,
    rasterize_strokes,
    stroke_pixels,
)
from atnet_jax.io.davis import DavisFolder
from atnet_jax.io.scribbles import ScribbleError, ScribbleWarning, annotated_frames, load_scribbles, save_scribbles

H, W = 40, 80


def _stroke(path, object_id=1):
    return {"path": [list(p) for p in path], "object_id": object_id, "start_time": 0, "end_time": 1}


def _file(tmp_path, data, name="001.json"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


GOOD = {"scribbles": [[], [_stroke([(0.1, 0.2), (0.3, 0.4)], 1)]], "sequence": "cat"}


# ----------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "data, kwargs, message",
    [
        ('{"scribbles": [[]', {}, "not valid JSON"),
        ([[]], {}, "expected a JSON object"),
        ({"sequence": "cat"}, {}, "'scribbles' must be a list"),
        ({"scribbles": [{}]}, {}, "frame 0: expected a list of strokes"),
        ({"scribbles": [["x"]]}, {}, "frame 0 stroke 0: expected an object"),
        ({"scribbles": [[{"object_id": 1}]]}, {}, "missing 'path'"),
        ({"scribbles": [[{"path": [[0.1, 0.1]]}]]}, {}, "missing 'object_id'"),
        ({"scribbles": [[_stroke([(0.1, 0.1)], -1)]]}, {}, "object_id must be an integer >= 0"),
        ({"scribbles": [[_stroke([(0.1, 0.1)], "1")]]}, {}, "object_id must be an integer >= 0"),
        ({"scribbles": [[{"path": [], "object_id": 1}]]}, {}, "non-empty list"),
        ({"scribbles": [[{"path": [[0.1]], "object_id": 1}]]}, {}, r"point 0: expected \[x, y\]"),
        ({"scribbles": [[{"path": [[0.1, "a"]], "object_id": 1}]]}, {}, r"point 0: expected \[x, y\]"),
        ({"scribbles": [[], [_stroke([(0.1, 0.1), (1.5, 0.2)])]]}, {}, r"frame 1 stroke 0 point 1: .*outside \[0, 1\]"),
        ({"scribbles": [[_stroke([(0.1, -0.2)])]]}, {}, r"outside \[0, 1\]"),
        ('{"scribbles": [[{"path": [[NaN, 0.1]], "object_id": 1}]]}', {}, "non-finite"),
        ({"scribbles": [[_stroke([(0.1, 0.1)])]], "sequence": 3}, {}, "'sequence' must be a string"),
        ({"scribbles": [[{"path": [[0.1, 0.1]], "object_id": 1, "start_time": "now"}]]}, {}, "start_time"),
        (GOOD, {"num_frames": 1}, "2 frames of scribbles, but the video has 1 frames"),
        (GOOD, {"num_frames": 3}, "2 frames of scribbles, but the video has 3 frames"),
        (GOOD, {"num_objects": 0}, "object_id 1 > number of objects 0"),
    ],
)
def test_load_errors_name_file_and_problem(tmp_path, data, kwargs, message):
    path = _file(tmp_path, data, "bad-scribble.json")
    with pytest.raises(ScribbleError, match=f"bad-scribble.json: .*{message}"):
        load_scribbles(path, **kwargs)


def test_a_file_for_another_sequence_is_a_warning(tmp_path):
    path = _file(tmp_path, GOOD, "cat.json")
    with pytest.warns(ScribbleWarning, match=r"cat.json: the scribbles are for sequence 'cat', used for 'dog'"):
        out = load_scribbles(path, num_frames=2, sequence="dog")
    assert out["sequence"] == "cat" and out["scribbles"] == GOOD["scribbles"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_scribbles(path, num_frames=2, sequence="cat")
        load_scribbles(path, num_frames=2)


def test_a_command_prints_a_warning_as_one_line(tmp_path, capsys):
    from atnet_jax import cli

    path = _file(tmp_path, GOOD, "cat.json")
    parser = cli.make_parser("python -m atnet_jax.x", "A command.", "")
    assert cli.run(parser, lambda args: load_scribbles(path, num_frames=2, sequence="dog"), []) == 0
    err = capsys.readouterr().err
    assert err.splitlines() == [f"python -m atnet_jax.x: warning: {path}: the scribbles are for sequence 'cat', "
                                "used for 'dog'"], err


def test_scribble_error_is_value_error_and_missing_file(tmp_path):
    assert issubclass(ScribbleError, ValueError)
    with pytest.raises(FileNotFoundError, match="absent.json"):
        load_scribbles(tmp_path / "absent.json")


def test_load_normalises_and_clips(tmp_path):
    data = {"scribbles": [[_stroke([(1.0000001, -0.0000001), (0.5, 0.5)], 2.0)], [], []], "sequence": "cat"}
    out = load_scribbles(_file(tmp_path, data), num_frames=3, num_objects=2, sequence="cat")
    assert len(out["scribbles"]) == 3 and out["scribbles"][1:] == [[], []]
    stroke = out["scribbles"][0][0]
    assert stroke["path"][0] == [1.0, 0.0] and stroke["object_id"] == 2 and type(stroke["object_id"]) is int
    assert stroke["start_time"] == 0 and stroke["end_time"] == 1
    no_name = load_scribbles(_file(tmp_path, {"scribbles": []}, "x.json"), sequence="cat")
    assert no_name["sequence"] == "cat"


def test_save_load_round_trip_and_no_clobber(tmp_path):
    path = save_scribbles(tmp_path / "out" / "001.json", GOOD)
    assert load_scribbles(path, num_frames=2, num_objects=1, sequence="cat") == GOOD
    with pytest.raises(FileExistsError, match="001.json"):
        save_scribbles(path, {"scribbles": [], "sequence": "cat"})
    save_scribbles(path, {"scribbles": [], "sequence": "cat"}, overwrite=True)
    assert load_scribbles(path)["scribbles"] == []
    with pytest.raises(ScribbleError, match="002.json"):
        save_scribbles(tmp_path / "out" / "002.json", {"scribbles": [[_stroke([(2, 0)])]]})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["001.json"]


def test_annotated_frames():
    data = {"scribbles": [[], [_stroke([(0.1, 0.1)])], [], [_stroke([(0.2, 0.1)], 0)]]}
    assert annotated_frames(data) == [1, 3]
    assert annotated_frames({"scribbles": [[], []]}) == []


# ----------------------------------------------------------------------------------------------- Bresenham


def _reference_line(x0, y0, x1, y1):
    """davisinteractive's error-term loop, restated: step the major axis, bump the minor one when D >= 0."""
    dx, dy = x1 - x0, y1 - y0
    sx, sy = (1 if dx > 0 else -1), (1 if dy > 0 else -1)
    ax, ay = abs(dx), abs(dy)
    x_major = ax > ay
    major, minor = (ax, ay) if x_major else (ay, ax)
    err, off, out = 2 * minor - major, 0, []
    for t in range(major + 1):
        out.append((x0 + sx * t, y0 + sy * off) if x_major else (x0 + sx * off, y0 + sy * t))
        if err >= 0:
            off += 1
            err -= 2 * major
        err += 2 * minor
    return out


def test_bresenham_matches_the_davisinteractive_loop():
    rng = np.random.default_rng(0)
    for _ in range(300):
        pts = rng.integers(-5, 25, (rng.integers(2, 6), 2))
        expected = [q for a, b in zip(pts[:-1], pts[1:]) for q in _reference_line(*a, *b)]
        np.testing.assert_array_equal(bresenham(pts), np.array(expected))
    np.testing.assert_array_equal(bresenham(np.array([[3, 4]])), [[3, 4]])
    line = bresenham(np.array([[0, 0], [7, 3]]))
    assert line[0].tolist() == [0, 0] and line[-1].tolist() == [7, 3]
    assert (np.abs(np.diff(line, axis=0)).max(1) == 1).all()  # 8-connected, one pixel per step


def test_stroke_pixel_conventions():
    # released code: round(x * W) - 1 (NumPy rounds half to even), clipped at the border where it wrapped
    assert stroke_pixels([[0.5, 0.25]], H, W).tolist() == [[39, 9]]
    assert stroke_pixels([[0.0, 0.0]], H, W).tolist() == [[0, 0]]
    assert stroke_pixels([[1.0, 1.0]], H, W).tolist() == [[W - 1, H - 1]]
    assert stroke_pixels([[2.5 / W, 0.5]], H, W).tolist() == [[1, 19]]  # round(2.5) = 2
    assert stroke_pixels([[0.5, 0.25]], H, W, "davisinteractive").tolist() == [[39, 9]]  # floor(39.5), floor(9.75)
    assert stroke_pixels([[1.0, 1.0]], H, W, "davisinteractive").tolist() == [[W - 1, H - 1]]


# ----------------------------------------------------------------------------------------------- rasterising


def test_rasterise_puts_mass_on_the_stroke_only():
    maps = rasterize_strokes([_stroke([(0.25, 0.5), (0.75, 0.5)], 3)], H, W)
    assert list(maps) == [3]
    m = maps[3]
    assert m.shape == (H, W) and m.dtype == np.float32
    assert m.min() >= 0 and m.max() <= 1 + 1e-6
    np.testing.assert_allclose(m[19, 22:57], 1.0, atol=1e-6)  # the line is row 19, x 19..59: inside = 1
    assert m.max() == pytest.approx(1.0, abs=1e-6)
    rows, cols = np.nonzero(m)
    # dilation radius 2 + blur radius 2: nothing beyond 4 pixels of the line
    assert rows.min() == 15 and rows.max() == 23 and cols.min() == 15 and cols.max() == 63
    assert m[19, 17] > 0 and 0 < m[21, 40] < 1


def test_rasterise_separates_ids_and_click_is_a_dot():
    strokes = [_stroke([(0.1, 0.1), (0.2, 0.1)], 1), _stroke([(0.8, 0.8)], 2), _stroke([(0.9, 0.9)], 0)]
    maps = rasterize_strokes(strokes, H, W)
    assert sorted(maps) == [0, 1, 2]
    assert maps[1][30:, :].max() == 0  # object 1 holds only its own stroke
    dot = maps[2]
    assert np.unravel_index(dot.argmax(), dot.shape) == (31, 63)
    assert dot.max() == pytest.approx(17 / 25, abs=0.02)  # 17-pixel ellipse under a near-flat 5x5 blur
    rows, cols = np.nonzero(dot)  # support: the ellipse grown by the 5x5 blur, 9x9 less 2 pixels per corner
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (27, 35, 59, 67) and len(rows) == 81 - 8
    assert rasterize_strokes([], H, W) == {}


def test_interaction_maps_negative_rule():
    strokes = [
        _stroke([(0.1, 0.5), (0.2, 0.5)], 1),  # object 1, left half
        _stroke([(0.3, 0.25), (0.4, 0.25)], 2),  # object 2's stroke inside object 1's previous region
        _stroke([(0.7, 0.5), (0.8, 0.5)], 0),  # background, in object 2's previous region
    ]
    prev = np.zeros((H, W), np.uint8)
    prev[:, : W // 2] = 1
    prev[:, W // 2 + 10 :] = 2
    maps = rasterize_strokes(strokes, H, W)
    pos, neg = interaction_maps(strokes, H, W, 2, prev)
    assert pos.shape == neg.shape == (2, H, W) and pos.dtype == neg.dtype == np.float32
    np.testing.assert_array_equal(pos[0], maps[1])
    np.testing.assert_array_equal(pos[1], maps[2])
    # object 1: strokes of 2 and 0, kept only where prev == 1 -> object 2's stroke only
    np.testing.assert_array_equal(neg[0], np.where(prev == 1, maps[2], 0))
    assert neg[0][9, 28] > 0.9 and neg[0][19, 60] == 0
    # object 2: strokes of 1 and 0 inside prev == 2 -> the background stroke only
    np.testing.assert_array_equal(neg[1], np.where(prev == 2, maps[0], 0))
    assert neg[1][19, 60] > 0.9 and neg[1][19, 12] == 0
    # round 1: no negative map
    pos1, neg1 = interaction_maps(strokes, H, W, 2)
    np.testing.assert_array_equal(pos1, pos)
    assert not neg1.any()


def test_interaction_maps_overlapping_negatives_blur_as_one_drawing():
    # two other-id strokes side by side are drawn on one canvas before dilating/blurring (not summed)
    strokes = [_stroke([(0.2, 0.5), (0.8, 0.5)], 0), _stroke([(0.2, 0.55), (0.8, 0.55)], 2)]
    pos, neg = interaction_maps(strokes, H, W, 2, np.ones((H, W), np.uint8))
    assert neg[0].max() <= 1 + 1e-6 and not pos[0].any()
    with pytest.raises(ScribbleError, match=r"object_id \[3\]"):
        interaction_maps([_stroke([(0.1, 0.1)], 3)], H, W, 2)
    with pytest.raises(ValueError, match="prev_labels"):
        interaction_maps(strokes, H, W, 2, np.ones((H, W + 1), np.uint8))


def test_clicks_to_strokes(tmp_path):
    clicks = clicks_to_strokes([(2, 1, 0.5, 0.25), (2, 0, 0.1, 0.9), (0, 2, 0.3, 0.3)], num_frames=4, sequence="cat")
    assert annotated_frames(clicks) == [0, 2] and len(clicks["scribbles"]) == 4
    assert clicks["scribbles"][2][0]["path"] == [[0.5, 0.25]]
    maps = rasterize_strokes(clicks["scribbles"][2], H, W)
    assert np.unravel_index(maps[1].argmax(), (H, W)) == (9, 39)
    path = save_scribbles(tmp_path / "clicks.json", clicks)
    assert load_scribbles(path, num_frames=4, num_objects=2, sequence="cat") == clicks
    assert len(clicks_to_strokes([(1, 1, 0.5, 0.5)])["scribbles"]) == 2
    with pytest.raises(ScribbleError, match="frame 5"):
        clicks_to_strokes([(5, 1, 0.5, 0.5)], num_frames=3)
    with pytest.raises(ScribbleError, match=r"outside \[0, 1\]"):
        clicks_to_strokes([(0, 1, 1.5, 0.5)])


# ----------------------------------------------------------------------------------------------- real files


def test_real_scribbles_load_and_rasterise():
    davis = DavisFolder(data_path("davis_mini"))
    checked = 0
    for seq in ("bear", "blackswan", "tennis"):
        masks = davis.read_masks(seq)
        num_objects = davis.num_objects(seq)
        for path in davis.scribble_paths(seq):
            data = load_scribbles(path, num_frames=len(masks), num_objects=num_objects, sequence=seq)
            frames = annotated_frames(data)
            assert frames, path
            strokes = data["scribbles"][frames[0]]
            pos, neg = interaction_maps(strokes, 480, 854, num_objects, masks[frames[0]])
            assert pos.shape == (num_objects, 480, 854)
            for stroke in strokes:
                if stroke["object_id"] == 0:
                    continue
                pixels = stroke_pixels(stroke["path"], 480, 854)
                values = pos[stroke["object_id"] - 1][pixels[:, 1], pixels[:, 0]]
                assert values.min() > 0.6, path  # every stroke pixel is covered
            for k in range(num_objects):
                if pos[k].any():
                    assert pos[k].max() == pytest.approx(1.0, abs=1e-5)  # human strokes are long enough
                assert (neg[k][masks[frames[0]] != k + 1] == 0).all()
            checked += 1
    assert checked == 4


def test_real_full_scribble_file_and_tennis_ids():
    root = data_path("davis_mini")
    full = load_scribbles(root / "ScribblesFull" / "bear" / "001.json", num_frames=82, num_objects=1, sequence="bear")
    assert len(full["scribbles"]) == 82 and annotated_frames(full) == [39]
    with pytest.raises(ScribbleError, match="82 frames of scribbles, but the video has 2"):
        load_scribbles(root / "ScribblesFull" / "bear" / "001.json", num_frames=2)
    with pytest.raises(ScribbleError, match=r"object_id 2 > number of objects 1"):
        load_scribbles(root / "Scribbles" / "tennis" / "001.json", num_objects=1)
    tennis = load_scribbles(root / "Scribbles" / "tennis" / "001.json", num_frames=2, num_objects=2)
    maps = rasterize_strokes(tennis["scribbles"][1], 480, 854)
    assert sorted(maps) == [1, 2]
    far = np.ones((480, 854), bool)  # pixels more than 4 px from any stroke pixel get nothing
    for stroke in tennis["scribbles"][1]:
        for x, y in stroke_pixels(stroke["path"], 480, 854):
            far[max(y - 4, 0) : y + 5, max(x - 4, 0) : x + 5] = False
    assert not any(m[far].any() for m in maps.values())


def test_a_stroke_point_rounding_to_pixel_zero_is_clipped_not_wrapped_to_the_far_border():
    # The released code indexes round(x * W) - 1 = -1 here, which wraps to the last column and row.
    canvas = rasterize_strokes([_stroke([(0.2 / W, 0.2 / H), (0.2 / W, 0.2 / H)], 1)], H, W, dilation=1, blur_size=0)[1]
    assert canvas[0, 0] == 1
    assert not canvas[-1].any() and not canvas[:, -1].any()


def test_the_readme_example_file_is_valid(tmp_path):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("\n### Scribble files\n", 1)[1]
    example = section.split("```json\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "my_video.json"
    path.write_text(example)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = load_scribbles(path, num_frames=3, num_objects=2, sequence="my_video")
    assert annotated_frames(data) == [1] and [s["object_id"] for s in data["scribbles"][1]] == [1, 2, 0]
    with pytest.raises(ScribbleError, match="3 frames of scribbles, but the video has 4 frames"):
        load_scribbles(path, num_frames=4)
