"""The DAVIS scribble robot on synthetic masks drawn here, and against the official robot on real DAVIS masks.

`data/official_robot/cases.json` holds what davisinteractive 1.0.4's robot and service returned (made once by
`experiments/make_official_robot_data.py`) for predictions rebuilt here from the real ground truth in
`tests/data/davis_mini` by the recipes of `official_robot_cases.py`.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import data_path
from official_robot_cases import build_prediction, decode_chain, encode_chain, load_gt
from scipy.ndimage import distance_transform_edt

from atnet_jax.interaction.robot import InteractiveRobot, bezier_curve

OFFICIAL = json.loads((Path(__file__).parent / "data" / "official_robot" / "cases.json").read_text())

H, W = 60, 90  # non-square, so swapped x / y normalisation would show


def pixels(stroke: dict, h: int = H, w: int = W) -> np.ndarray:
    """Stroke path back to pixel xy."""
    return np.asarray(stroke["path"]) * [w, h]


def assert_inside(xy: np.ndarray, region: np.ndarray, tol: float = 1.5) -> None:
    """Every point within `tol` px of a pixel of `region` (Bezier smoothing leaves the pixel grid)."""
    dist = distance_transform_edt(~region)
    x = np.clip(np.rint(xy[:, 0]).astype(int), 0, region.shape[1] - 1)
    y = np.clip(np.rint(xy[:, 1]).astype(int), 0, region.shape[0] - 1)
    assert np.all(dist[y, x] <= tol), f"{np.sum(dist[y, x] > tol)} points outside the error region"


def strokes_of(out: dict) -> list[tuple[int, dict]]:
    return [(f, s) for f, frame in enumerate(out["scribbles"]) for s in frame]


@pytest.fixture(scope="module")
def scene():
    """4 frames, object 1 a rectangle; prediction perfect on 0, worst on 2 (object missing)."""
    gt = np.zeros((4, H, W), dtype=np.int64)
    gt[:, 10:40, 10:70] = 1
    pred = gt.copy()
    pred[1, 10:40, 10:30] = 0  # J = 2/3
    pred[2, 10:40, 10:70] = 0  # J = 0
    pred[3, 10:40, 10:60] = 0  # J = 1/6
    return pred, gt


def test_worst_frame_gets_the_strokes(scene):
    pred, gt = scene
    out = InteractiveRobot().interact("synthetic", pred, gt)
    assert out["sequence"] == "synthetic"
    assert len(out["scribbles"]) == 4
    found = strokes_of(out)
    assert found and {f for f, _ in found} == {2}
    error = (gt[2] == 1) & (pred[2] != 1)
    for _, s in found:
        assert s["object_id"] == 1
        assert_inside(pixels(s), error)
        xy = pixels(s)
        assert np.ptp(xy[:, 0]) > 30  # the stroke runs along the 60 px long region


def test_annotated_frames_are_never_chosen(scene):
    pred, gt = scene
    robot = InteractiveRobot()
    assert robot.worst_frame(pred, gt) == 2
    assert robot.worst_frame(pred, gt, annotated_frames=[2]) == 3
    assert robot.worst_frame(pred, gt, annotated_frames=[2, 3]) == 1
    out = robot.interact("s", pred, gt, annotated_frames=[2, 3])
    assert {f for f, _ in strokes_of(out)} == {1}
    # Every frame annotated: all frames are candidates again (official behaviour).
    assert robot.worst_frame(pred, gt, annotated_frames=[0, 1, 2, 3]) == 2


def _official_worst_frame(metric: np.ndarray, annotated_frames) -> int:
    """davisinteractive's service: walk ``metric.argsort()`` to the first frame not annotated yet; the worst
    frame of all when every frame is annotated."""
    worst = metric.argsort()
    for frame in worst:
        if frame not in annotated_frames:
            return int(frame)
    return int(worst[0])


def test_tied_worst_frames_are_chosen_as_the_official_service_chooses(scene, monkeypatch):
    _, gt = scene
    pred = np.zeros_like(gt)  # every frame J = 0
    for annotated in ([], [0], [0, 1, 2, 3]):
        scores = InteractiveRobot.frame_scores(pred, gt)
        assert InteractiveRobot().worst_frame(pred, gt, annotated) == _official_worst_frame(scores, annotated)
    # 40-frame cases with 2-9 tied minima, where NumPy's default sort need not keep the index order.
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(300):
        scores = rng.uniform(0.3, 1.0, 40).round(2)
        scores[rng.choice(40, int(rng.integers(2, 10)), replace=False)] = 0.25
        annotated = [int(f) for f in rng.choice(40, int(rng.integers(0, 4)), replace=False)]
        cases.append((scores, annotated))
    robot = InteractiveRobot()
    for scores, annotated in cases:
        monkeypatch.setattr(InteractiveRobot, "frame_scores", staticmethod(lambda *a, s=scores: s))
        assert robot.worst_frame(pred, gt, annotated) == _official_worst_frame(scores, annotated)


def test_j_and_f_metric_changes_the_choice():
    gt = np.zeros((2, H, W), dtype=np.int64)
    gt[:, 10:50, 10:80] = 1
    pred = gt.copy()
    pred[0, 10:50, 10:30] = 0  # frame 0: J = 50/70 = .71, boundary right on three sides
    pred[1] = 0
    pred[1, 12:48, 12:78] = 1  # frame 1: J = 36*66/2800 = .85, boundary 2 px inside (tolerance 1 px)
    robot = InteractiveRobot()
    assert robot.worst_frame(pred, gt, metric="J") == 0
    assert robot.worst_frame(pred, gt, metric="J_AND_F") == 1


def test_background_false_positives_get_id_zero_and_objects_their_id():
    gt = np.zeros((1, H, W), dtype=np.int64)
    gt[0, 5:25, 5:45] = 1
    gt[0, 35:55, 40:85] = 2
    pred = gt.copy()
    pred[0, 35:55, 40:85] = 0  # object 2 missed
    pred[0, 5:25, 55:85] = 1  # background taken for object 1
    out = InteractiveRobot().interact("s", pred, gt)
    ids = sorted(s["object_id"] for _, s in strokes_of(out))
    assert ids == [0, 2]
    for _, s in strokes_of(out):
        region = (gt[0] == s["object_id"]) & (pred[0] != s["object_id"])
        assert_inside(pixels(s), region)
        assert isinstance(s["object_id"], int)
        assert s["start_time"] <= s["end_time"]


def test_paths_are_normalised_by_width_and_height(scene):
    pred, gt = scene
    for _, s in strokes_of(InteractiveRobot().interact("s", pred, gt)):
        path = np.asarray(s["path"])
        assert path.shape == (1000, 2)
        assert np.all((path >= 0) & (path <= 1))
        # Columns 10..69 of 90 (x) and rows 10..39 of 60 (y), with smoothing tolerance.
        assert path[:, 0].min() >= 9 / W and path[:, 0].max() <= 70 / W
        assert path[:, 1].min() >= 9 / H and path[:, 1].max() <= 40 / H


def test_same_input_same_strokes(scene):
    pred, gt = scene
    pred = pred.copy()
    pred[2, 20:30, 0:10] = 1  # add an irregular background error too
    a = InteractiveRobot().interact("s", pred, gt)
    b = InteractiveRobot().interact("s", pred, gt)
    key = lambda out: [(f, s["object_id"], s["path"]) for f, s in strokes_of(out)]  # noqa: E731
    assert key(a) == key(b) and key(a)


def test_perfect_prediction_gives_no_strokes(scene):
    _, gt = scene
    out = InteractiveRobot().interact("s", gt.copy(), gt)
    assert out["scribbles"] == [[], [], [], []]


def test_void_pixels_never_make_strokes():
    gt = np.zeros((1, H, W), dtype=np.int64)
    gt[0, 10:30, 10:40] = 1
    gt[0, 35:58, 45:88] = 255  # a big void block...
    pred = np.where(gt == 255, 1, gt)  # ...predicted as object 1: not a background error
    assert strokes_of(InteractiveRobot().interact("s", pred, gt)) == []


def test_min_nb_nodes_prunes_tiny_regions():
    gt = np.zeros((1, 20, 20), dtype=np.int64)
    gt[0, 10, 5:8] = 1  # a 3-pixel line: 3 skeleton nodes
    pred = np.zeros_like(gt)
    assert strokes_of(InteractiveRobot(min_nb_nodes=4).interact("s", pred, gt)) == []
    out = InteractiveRobot(min_nb_nodes=2).interact("s", pred, gt)
    (_, s), = strokes_of(out)
    assert_inside(pixels(s, 20, 20), gt[0] == 1, tol=0.5)


def test_opening_removes_thin_spurs():
    gt = np.zeros((1, H, W), dtype=np.int64)
    gt[0, 10:50, 10:40] = 1  # 40 x 30 block, radius min(0.2 * sqrt(~1240) / 2, 16) ~ 3.5 px
    gt[0, 30, 40:85] = 1  # a 1 px wide, 45 px long spur
    pred = np.zeros_like(gt)
    strokes = strokes_of(InteractiveRobot().interact("s", pred, gt))
    assert strokes
    block = np.zeros((H, W), dtype=bool)
    block[10:50, 10:40] = True
    for _, s in strokes:
        assert_inside(pixels(s), block)


def test_bezier_curve_like_the_official():
    pts = np.array([[0, 0], [2, 1], [4, 2], [6, 3]])
    curve = bezier_curve(pts, 50)
    assert curve.shape == (50, 2)
    np.testing.assert_allclose(curve[0], pts[-1])  # the official curve runs last -> first point
    np.testing.assert_allclose(curve[-1], pts[0])
    np.testing.assert_allclose(curve[:, 1], curve[:, 0] / 2)  # collinear control points
    many = np.stack([np.arange(1200), np.zeros(1200)], axis=1)
    np.testing.assert_array_equal(bezier_curve(many, 1000), many)  # more points than samples


def davis_root() -> Path:
    """tests/data/davis_mini, the real DAVIS masks the official robot ran on."""
    return data_path("davis_mini")


def test_real_tennis_masks():
    from PIL import Image

    root = davis_root() / "Annotations" / "480p" / "tennis"
    gt = np.stack([np.array(Image.open(root / f"{i:05d}.png")) for i in range(2)]).astype(np.int64)
    pred = np.where(gt == 255, 0, gt)
    pred[1][pred[1] == 1] = 0  # the player missing in frame 1
    robot = InteractiveRobot()
    for metric in ("J", "J_AND_F"):
        out = robot.interact("tennis", pred, gt, metric=metric)
        found = strokes_of(out)
        assert found and {f for f, _ in found} == {1}
        for _, s in found:
            assert s["object_id"] == 1
            assert_inside(pixels(s, 480, 854), gt[1] == 1, tol=2.0)
    # With frame 1 annotated the robot goes to frame 0, where the prediction is right: no strokes.
    assert strokes_of(robot.interact("tennis", pred, gt, annotated_frames=[1])) == []


# --- the official robot (davisinteractive 1.0.4) on real masks ---

def test_official_cases_cover_the_settings():
    cases = OFFICIAL["cases"]
    assert len(cases) >= 30 and len({c["name"] for c in cases}) == len(cases)
    assert {c["metric"] for c in cases} == {"J", "J_AND_F"}
    assert {c["min_nb_nodes"] for c in cases} == {2, 4}
    assert {c["nb_objects"] for c in cases} == {1, 2}
    assert any(c["recipe"]["base"] == "empty" for c in cases) and any(c["annotated_frames"] for c in cases)
    assert sum(len(c["strokes"]) for c in cases) > 100


def test_chain_code_round_trip():
    path = np.array([[5, 7], [6, 7], [7, 8], [7, 9], [6, 10], [5, 10], [4, 9], [4, 8], [5, 7]])
    code = encode_chain(path)
    assert code == "5,7:01234567"
    np.testing.assert_array_equal(decode_chain(code), path)
    with pytest.raises(ValueError, match="8-neighbour"):
        encode_chain(np.array([[0, 0], [2, 0]]))


@pytest.mark.parametrize("case", OFFICIAL["cases"], ids=lambda c: c["name"])
def test_same_frame_and_strokes_as_the_official_robot(case):
    gt = load_gt(davis_root(), case["sequence"], tuple(case["frames"]))
    pred = build_prediction(gt, case["recipe"], case["nb_objects"])
    robot = InteractiveRobot(OFFICIAL["kernel_size"], OFFICIAL["max_kernel_radius"], case["min_nb_nodes"])
    scores = robot.frame_scores(pred, gt, case["metric"], case["nb_objects"])
    np.testing.assert_allclose(scores, case["scores"], rtol=0, atol=1e-12)
    frame = robot.worst_frame(pred, gt, case["annotated_frames"], case["metric"], case["nb_objects"])
    assert frame == case["frame"]

    out = robot.interact(case["sequence"], pred, gt, case["annotated_frames"], case["metric"], case["nb_objects"])
    assert {f for f, _ in strokes_of(out)} <= {case["frame"]}
    ours = out["scribbles"][case["frame"]]
    assert [s["object_id"] for s in ours] == [s["object_id"] for s in case["strokes"]]
    h, w = gt.shape[1:]
    for mine, official in zip(ours, case["strokes"]):
        path = np.asarray(mine["path"])
        assert len(path) == official["nb_points"]
        # The whole path: the Bezier curve of the official robot's pixel path...
        pixels = decode_chain(official["pixels"])
        np.testing.assert_allclose(path, bezier_curve(pixels) / [w, h], rtol=0, atol=1e-12)
        # ...and the official robot's own output values.
        np.testing.assert_allclose(path[official["sample_index"]], official["samples"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(path.sum(axis=0), official["sum"], rtol=0, atol=1e-9)
