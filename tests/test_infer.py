"""``python -m atnet_jax.infer`` on a generated DAVIS-format folder: outputs, refusals, clear errors."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from atnet_jax import infer
from atnet_jax.checkpointing import save_weights

T, H, W = 5, 60, 90


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("davis")
    frames = root / "JPEGImages" / "480p" / "toy"
    frames.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for t in range(T):
        cv2.imwrite(str(frames / f"{t:05d}.jpg"), rng.integers(0, 256, (H, W, 3), dtype=np.uint8))
    return root


def _scribbles(path, frame: int, object_ids=(1, 2), sequence: str = "toy", num_frames: int = T):
    per_frame = [[] for _ in range(num_frames)]
    for k in object_ids:
        y = 0.25 + 0.2 * k
        per_frame[frame].append({"path": [[0.2, y], [0.5, y], [0.7, y + 0.05]], "object_id": k,
                                 "start_time": 0.0, "end_time": 1.0})
    path.write_text(json.dumps({"scribbles": per_frame, "sequence": sequence}))
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory, tiny_config, tiny_variables):
    root = tmp_path_factory.mktemp("weights")
    return (save_weights(root / "tiny", tiny_variables, tiny_config),
            save_weights(root / "anet_only", {"anet": tiny_variables["anet"]}, tiny_config))


def _args(weights_dir, root, scribbles, out, *extra):
    return ["--checkpoint", str(weights_dir), "--input", str(root), "--sequence", "toy",
            "--scribbles", *map(str, scribbles), "--output", str(out), *extra]


def test_two_rounds_write_palette_masks_and_overlays(tmp_path, davis_root, weights, capsys):
    rounds = [_scribbles(tmp_path / "r1.json", 2), _scribbles(tmp_path / "r2.json", 4)]
    out = tmp_path / "out"
    assert infer.main(_args(weights[0], davis_root, rounds, out, "--overlay", "images")) == 0
    log = capsys.readouterr().out
    assert "round 2" in log and str(out / "toy") in log
    pngs = sorted((out / "toy").glob("*.png"))
    assert [p.name for p in pngs] == [f"{t:05d}.png" for t in range(T)]
    with Image.open(pngs[0]) as im:
        assert im.mode == "P" and im.size == (W, H)
        assert set(np.unique(np.asarray(im))) <= {0, 1, 2}
    assert len(list((out / "toy_overlay").glob("*.jpg"))) == T
    # Existing results are kept unless --overwrite.
    before = pngs[0].read_bytes()
    assert infer.main(_args(weights[0], davis_root, rounds, out)) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert pngs[0].read_bytes() == before
    assert infer.main(_args(weights[0], davis_root, rounds[:1], out, "--overwrite", "--overlay", "none")) == 0


def test_overlay_video(tmp_path, davis_root, weights):
    out = tmp_path / "out"
    assert infer.main(_args(weights[0], davis_root, [_scribbles(tmp_path / "r1.json", 0)], out)) == 0
    video = cv2.VideoCapture(str(out / "toy_overlay.mp4"))
    count = 0
    while video.read()[0]:
        count += 1
    assert count == T


def test_bad_inputs_get_one_line_errors(tmp_path, davis_root, weights, capsys):
    good = _scribbles(tmp_path / "good.json", 1)
    out = tmp_path / "out"
    cases = [
        (2, _args(tmp_path / "missing", davis_root, [good], out), "does not exist"),
        (1, _args(weights[1], davis_root, [good], out), "tnet"),
        (1, _args(weights[0], davis_root, [_scribbles(tmp_path / "o.json", 1, (1, 3))], out, "--objects", "2"),
         "object"),
        (1, _args(weights[0], davis_root, [_scribbles(tmp_path / "f.json", 1, num_frames=T + 3)], out), "frame"),
        (1, _args(weights[0], davis_root, [_scribbles(tmp_path / "s.json", 1, sequence="bear")], out), "bear"),
    ]
    (tmp_path / "bad.json").write_text("{not json")
    cases.append((1, _args(weights[0], davis_root, [tmp_path / "bad.json"], out), "bad.json"))
    for code, argv, needle in cases:
        assert infer.main(argv) == code, argv
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_real_davis_mini_sequences(tmp_path, weights):
    from conftest import shared_path

    from atnet_jax.data.davis import DavisFolder, read_mask

    root = shared_path("data", "davis_mini")
    # tennis: the real human scribbles, two objects.
    out = tmp_path / "out"
    scribbles = root / "Scribbles" / "tennis" / "001.json"
    args = ["--checkpoint", str(weights[0]), "--input", str(root), "--scribbles", str(scribbles),
            "--output", str(out), "--overlay", "none"]
    assert infer.main([*args[:4], "--sequence", "tennis", *args[4:]]) == 0
    assert read_mask(out / "tennis" / "00001.png").shape == (480, 854)
    # car-shadow: the whole 40-frame sequence, a stroke through the object of frame 20.
    gt = read_mask(root / "Annotations" / "480p" / "car-shadow" / "00020.png")
    ys, xs = np.nonzero(gt)
    cy, cx = ys.mean() / gt.shape[0], xs.mean() / gt.shape[1]
    frames = len(DavisFolder(root).frame_paths("car-shadow"))
    per_frame = [[] for _ in range(frames)]
    per_frame[20] = [{"path": [[cx - 0.05, cy], [cx + 0.05, cy]], "object_id": 1}]
    stroke = tmp_path / "car.json"
    stroke.write_text(json.dumps({"scribbles": per_frame, "sequence": "car-shadow"}))
    args[5] = str(stroke)
    assert infer.main([*args[:4], "--sequence", "car-shadow", *args[4:]]) == 0
    assert len(list((out / "car-shadow").glob("*.png"))) == frames == 40


def test_corrupt_and_mismatched_frames_are_named(tmp_path, weights, capsys):
    root = tmp_path / "davis"
    frames = root / "JPEGImages" / "480p" / "toy"
    frames.mkdir(parents=True)
    for t in range(3):
        cv2.imwrite(str(frames / f"{t:05d}.jpg"), np.zeros((H, W, 3), np.uint8))
    scribbles = _scribbles(tmp_path / "s.json", 0, num_frames=3)
    (frames / "00001.jpg").write_bytes(b"not a jpeg")
    assert infer.main(_args(weights[0], root, [scribbles], tmp_path / "o")) == 1
    assert "00001.jpg" in capsys.readouterr().err
    cv2.imwrite(str(frames / "00001.jpg"), np.zeros((H + 2, W, 3), np.uint8))
    assert infer.main(_args(weights[0], root, [scribbles], tmp_path / "o")) == 1
    assert "00001.jpg" in capsys.readouterr().err
